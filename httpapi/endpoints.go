package httpapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
)

// storeError maps the store's errors to Elasticsearch exceptions.
func storeError(id string, err error) error {
	switch {
	case errors.Is(err, config.ErrNotFound):
		return eserror.NotFound("Inference endpoint not found [%s]", id)
	case errors.Is(err, config.ErrExists):
		return eserror.New(http.StatusBadRequest, eserror.TypeResourceAlreadyExists, "Inference endpoint [%s] already exists", id)
	case errors.Is(err, config.ErrConflict):
		return eserror.New(http.StatusConflict, eserror.TypeStatus, "Inference endpoint [%s] was changed by another request; retry", id)
	case errors.Is(err, config.ErrUnavailable):
		e := eserror.New(http.StatusServiceUnavailable, eserror.TypeStatus, "The inference endpoint store is unavailable")
		e.Cause = eserror.New(http.StatusServiceUnavailable, eserror.TypeIllegalState, "%s", err.Error())
		return e
	}
	return err
}

// invalidStored reports a stored definition that does not validate.
func invalidStored(entry config.Entry) error {
	e := eserror.New(http.StatusInternalServerError, eserror.TypeStatus,
		"Failed to load inference endpoint [%s]. Endpoint is in an invalid state", entry.ID)
	e.Cause = eserror.As(entry.Err)
	e.RootIsCause = true
	return e
}

// lookup returns the endpoint id names: the stored definition, or the
// reserved default when it is not stored.
func (a *API) lookup(ctx context.Context, id string) (config.Entry, error) {
	entry, err := a.cfg.Store.Get(ctx, id)
	if errors.Is(err, config.ErrNotFound) {
		if ep, ok := config.DefaultEndpoint(id); ok {
			return config.Entry{ID: id, Endpoint: ep}, nil
		}
	}
	if err != nil {
		return config.Entry{}, storeError(id, err)
	}
	return entry, nil
}

// list returns every endpoint matching task, the reserved defaults
// included, sorted by id. Invalid stored definitions are logged and left
// out, so that one bad value cannot hide all the others.
func (a *API) list(ctx context.Context, task config.TaskType) ([]config.Endpoint, error) {
	entries, err := a.cfg.Store.List(ctx)
	if err != nil {
		return nil, storeError("_all", err)
	}
	var out []config.Endpoint
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.ID] = true
		if e.Err != nil {
			a.log.Warn().Str("inference_id", e.ID).Err(e.Err).Msg("stored endpoint definition is invalid")
			continue
		}
		if task.Matches(e.Endpoint.TaskType) {
			out = append(out, e.Endpoint)
		}
	}
	for _, ep := range config.DefaultEndpoints() {
		if !seen[ep.InferenceID] && task.Matches(ep.TaskType) {
			out = append(out, ep)
		}
	}
	slices.SortFunc(out, func(x, y config.Endpoint) int { return strings.Compare(x.InferenceID, y.InferenceID) })
	return out, nil
}

func taskMismatch(requested, actual config.TaskType) error {
	return eserror.BadRequest("Requested task type [%s] does not match the inference endpoint's task type [%s]", requested, actual)
}

type endpointsResponse struct {
	Endpoints []config.Endpoint `json:"endpoints"`
}

// getEndpoints serves GET _inference, _inference/_all, _inference/{id} and
// _inference/{task_type}/{id}.
func (a *API) getEndpoints(w http.ResponseWriter, r *http.Request, p pathParams) {
	task, err := resolveTaskType(p)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if p.id == "" || p.id == "_all" || p.id == "*" {
		eps, err := a.list(r.Context(), task)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		a.writeJSON(w, r, http.StatusOK, endpointsResponse{Endpoints: nonNil(a.withLiveAllocations(r.Context(), eps))})
		return
	}
	entry, err := a.lookup(r.Context(), p.id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if entry.Err != nil {
		a.log.Warn().Str("inference_id", entry.ID).Err(entry.Err).Msg("stored endpoint definition is invalid")
		a.writeError(w, r, invalidStored(entry))
		return
	}
	if !task.Matches(entry.Endpoint.TaskType) {
		a.writeError(w, r, taskMismatch(task, entry.Endpoint.TaskType))
		return
	}
	a.writeJSON(w, r, http.StatusOK, endpointsResponse{Endpoints: a.withLiveAllocations(r.Context(), []config.Endpoint{entry.Endpoint})})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// putEndpoint serves PUT _inference/[{task_type}/]{id}.
func (a *API) putEndpoint(w http.ResponseWriter, r *http.Request, p pathParams) {
	task, err := resolveTaskType(p)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	timeout, timeoutText, err := timeoutParam(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	body, err := a.readBody(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	ep, err := config.ParsePut(p.id, task, body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if a.cfg.Trained != nil {
		if _, _, err := a.cfg.Trained.Get(r.Context(), ep.InferenceID); err == nil {
			a.writeError(w, r, eserror.BadRequest("Inference endpoint IDs must be unique. Requested inference endpoint ID [%s] matches existing trained model ID(s) but must not.", ep.InferenceID))
			return
		}
	}
	attached := ep.ServiceSettings.DeploymentID != ""
	if attached {
		if ep, err = a.attach(r.Context(), ep); err != nil {
			a.writeError(w, r, err)
			return
		}
	} else if err := a.checkModel(r.Context(), ep.ServiceSettings.ModelID); err != nil {
		a.writeError(w, r, err)
		return
	}
	revision, err := a.cfg.Store.Create(r.Context(), ep)
	if err != nil {
		a.writeError(w, r, storeError(ep.InferenceID, err))
		return
	}
	a.log.Info().Str("inference_id", ep.InferenceID).Str("task_type", string(ep.TaskType)).
		Str("model_id", ep.ServiceSettings.ModelID).Msg("inference endpoint created")
	if a.cfg.Deployments != nil && !attached {
		// As Elasticsearch, the endpoint stays stored when its deployment
		// fails or is slow to start; the error says why.
		ctx := r.Context()
		if timeout >= 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		if err := a.cfg.Deployments.WaitStarted(ctx, ep.InferenceID, revision, timeoutText); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	a.writeJSON(w, r, http.StatusOK, ep)
}

// attach resolves an endpoint's deployment_id, as validateAgainstDeployment
// does: a deployment started through the _ml API, or another endpoint's
// own, whose settings the endpoint takes. The deployment runs already, so
// nothing is started or waited for.
func (a *API) attach(ctx context.Context, ep config.Endpoint) (config.Endpoint, error) {
	id := ep.ServiceSettings.DeploymentID
	var found config.ServiceSettings
	ok := false
	if a.cfg.Trained != nil {
		if d, _, err := a.cfg.Trained.Get(ctx, id); err == nil {
			found, ok = d.Endpoint().ServiceSettings, true
		}
	}
	if !ok {
		if entry, err := a.cfg.Store.Get(ctx, id); err == nil && entry.Err == nil && entry.Endpoint.ServiceSettings.DeploymentID == "" {
			found, ok = entry.Endpoint.ServiceSettings, true
		}
	}
	if !ok {
		return ep, eserror.New(http.StatusNotFound, eserror.TypeStatus, "Cannot find deployment [%s]", id)
	}
	if m := ep.ServiceSettings.ModelID; m != "" && m != found.ModelID {
		return ep, eserror.BadRequest("Deployment [%s] uses model [%s] which does not match the model [%s] in the request.", id, found.ModelID, m)
	}
	if served := config.ServedTask(found.ModelID); served != "" && served != ep.TaskType {
		return ep, eserror.BadRequest("Deployed model [%s] with type [%s] does not match the requested task type [%s]", found.ModelID, inferenceConfigName(served), ep.TaskType)
	}
	ss := &ep.ServiceSettings
	ss.NumAllocations, ss.NumThreads, ss.AdaptiveAllocations, ss.ModelID = found.NumAllocations, found.NumThreads, found.AdaptiveAllocations, found.ModelID
	if config.FamilyOf(found.ModelID) != config.FamilyImported {
		// Dense settings belong to imported models only.
		ss.Similarity, ss.ElementType, ss.Dimensions = "", "", nil
	}
	return ep, nil
}

// inferenceConfigName is the trained model inference config of a task.
func inferenceConfigName(t config.TaskType) string {
	switch t {
	case config.SparseEmbedding:
		return "text_expansion"
	case config.Rerank:
		return "text_similarity"
	}
	return string(t)
}

// checkModel refuses an endpoint on a user-imported model that is not in
// the model store, with Elasticsearch's message.
func (a *API) checkModel(ctx context.Context, modelID string) error {
	if a.cfg.ModelExists == nil || config.FamilyOf(modelID) != config.FamilyImported {
		return nil
	}
	ok, err := a.cfg.ModelExists(ctx, modelID)
	if err != nil {
		e := eserror.New(http.StatusServiceUnavailable, eserror.TypeStatus, "The model store is unavailable")
		e.Cause = eserror.New(http.StatusServiceUnavailable, eserror.TypeIllegalState, "%s", err.Error())
		return e
	}
	if !ok {
		return eserror.BadRequest("Error parsing request config, model id does not match any models available on this platform. Was [%s]. You may need to load it into the cluster using eland.", modelID)
	}
	return nil
}

// withLiveAllocations sets the num_allocations of adaptive endpoints to the
// allocations running, as Elasticsearch's GET shows the deployment's live
// value. A fixed num_allocations is the deployment's target and is shown
// as stored. When the deployment state cannot be read the stored values are
// returned.
func (a *API) withLiveAllocations(ctx context.Context, eps []config.Endpoint) []config.Endpoint {
	if a.cfg.Deployments == nil {
		return eps
	}
	live, err := a.cfg.Deployments.Allocations(ctx)
	if err != nil {
		a.log.Warn().Err(err).Msg("read deployment state")
		return eps
	}
	for i, ep := range eps {
		if n, ok := live[ep.InferenceID]; ok && ep.ServiceSettings.NumAllocations == nil && ep.ServiceSettings.DeploymentID == "" {
			eps[i].ServiceSettings.NumAllocations = &n
		}
	}
	return eps
}

type deleteResponse struct {
	Acknowledged bool     `json:"acknowledged"`
	Pipelines    []string `json:"pipelines"`
	Indexes      []string `json:"indexes"`
}

// deleteEndpoint serves DELETE _inference/[{task_type}/]{id}.
func (a *API) deleteEndpoint(w http.ResponseWriter, r *http.Request, p pathParams) {
	task, err := resolveTaskType(p)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	force, err := boolParam(r, "force", false)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	dryRun, err := boolParam(r, "dry_run", false)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	entry, err := a.lookup(r.Context(), p.id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	// An invalid stored definition has no trustworthy task type; deleting it
	// is how it gets repaired.
	if entry.Err == nil && !task.Matches(entry.Endpoint.TaskType) {
		a.writeError(w, r, taskMismatch(task, entry.Endpoint.TaskType))
		return
	}
	if config.IsDefaultID(p.id) && !force {
		a.writeError(w, r, eserror.BadRequest("[%s] is a reserved inference endpoint. Use the force=true query parameter to delete the inference endpoint.", p.id))
		return
	}
	if dryRun {
		a.writeJSON(w, r, http.StatusOK, deleteResponse{Acknowledged: false, Pipelines: []string{}, Indexes: []string{}})
		return
	}
	if err := a.cfg.Store.Delete(r.Context(), p.id, entry.Revision); err != nil && !(errors.Is(err, config.ErrNotFound) && config.IsDefaultID(p.id)) {
		a.writeError(w, r, storeError(p.id, err))
		return
	}
	a.log.Info().Str("inference_id", p.id).Msg("inference endpoint deleted")
	a.writeJSON(w, r, http.StatusOK, deleteResponse{Acknowledged: true, Pipelines: []string{}, Indexes: []string{}})
}

// updateEndpoint serves PUT _inference/[{task_type}/]{id}/_update.
func (a *API) updateEndpoint(w http.ResponseWriter, r *http.Request, p pathParams) {
	task, err := resolveTaskType(p)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	// master_timeout is accepted for compatibility: the bucket has no master
	// to wait for, so only its syntax is checked.
	if q := r.URL.Query(); q.Has("master_timeout") {
		if _, err := ParseTimeValue(q.Get("master_timeout"), "master_timeout"); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	body, err := a.readBody(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if config.IsDefaultID(p.id) {
		a.writeError(w, r, eserror.BadRequest("Default endpoint [%s] cannot be updated", p.id))
		return
	}
	entry, err := a.cfg.Store.Get(r.Context(), p.id)
	if errors.Is(err, config.ErrNotFound) {
		a.writeError(w, r, eserror.NotFound("The inference endpoint [%s] does not exist and cannot be updated", p.id))
		return
	}
	if err != nil {
		a.writeError(w, r, storeError(p.id, err))
		return
	}
	if entry.Err != nil {
		a.writeError(w, r, invalidStored(entry))
		return
	}
	if d := entry.Endpoint.ServiceSettings.DeploymentID; d != "" {
		a.writeError(w, r, eserror.New(http.StatusConflict, eserror.TypeStatus,
			"Cannot update inference endpoint [%s] using model deployment [%s]. The model deployment must be updated through the trained models API.", p.id, d))
		return
	}
	updated, err := config.ParseUpdate(entry.Endpoint, task, body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	// The compare-and-set on the revision read above means a concurrent
	// update or delete is reported, never silently overwritten.
	if _, err := a.cfg.Store.Update(r.Context(), updated, entry.Revision); err != nil {
		a.writeError(w, r, storeError(p.id, err))
		return
	}
	a.log.Info().Str("inference_id", p.id).Msg("inference endpoint updated")
	a.writeJSON(w, r, http.StatusOK, updated)
}
