package httpapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
)

// TrainedDeployments is what the API needs of the trained model
// deployments.
type TrainedDeployments interface {
	Create(ctx context.Context, d config.Deployment) (uint64, error)
	Get(ctx context.Context, id string) (config.Deployment, uint64, error)
	Update(ctx context.Context, d config.Deployment, revision uint64) error
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]config.DeploymentEntry, error)
}

// assignmentResponse is StartTrainedModelDeploymentAction's response: the
// deployment's TrainedModelAssignment.
type assignmentResponse struct {
	Assignment assignment `json:"assignment"`
}

type assignment struct {
	TaskParameters         taskParameters              `json:"task_parameters"`
	RoutingTable           map[string]routingEntry     `json:"routing_table"`
	AssignmentState        string                      `json:"assignment_state"`
	StartTime              string                      `json:"start_time"`
	MaxAssignedAllocations int                         `json:"max_assigned_allocations"`
	AdaptiveAllocations    *config.AdaptiveAllocations `json:"adaptive_allocations,omitempty"`
}

type taskParameters struct {
	ModelID              string `json:"model_id"`
	DeploymentID         string `json:"deployment_id"`
	ThreadsPerAllocation int    `json:"threads_per_allocation"`
	NumberOfAllocations  int    `json:"number_of_allocations"`
	QueueCapacity        int    `json:"queue_capacity"`
	Priority             string `json:"priority"`
}

type routingEntry struct {
	Current      int    `json:"current_allocations"`
	Target       int    `json:"target_allocations"`
	RoutingState string `json:"routing_state"`
	Reason       string `json:"reason"`
}

func (a *API) trained() (TrainedDeployments, error) {
	if a.cfg.Trained == nil {
		return nil, eserror.New(http.StatusServiceUnavailable, eserror.TypeStatus, "trained model deployments are not available on this node")
	}
	return a.cfg.Trained, nil
}

// startDeployment serves POST _ml/trained_models/{model_id}/deployment/_start.
func (a *API) startDeployment(w http.ResponseWriter, r *http.Request, modelID string) {
	trained, err := a.trained()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	body, err := a.readBody(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	req, err := config.ParseStart(modelID, r.URL.Query(), body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	timeout, timeoutText := DefaultTimeout, "30s"
	if req.Timeout != "" {
		if timeout, err = ParseTimeValue(req.Timeout, "timeout"); err != nil {
			a.writeError(w, r, err)
			return
		}
		timeoutText = req.Timeout
	}
	ctx := r.Context()
	if config.FamilyOf(modelID) == config.FamilyImported && a.cfg.ModelExists != nil {
		if ok, err := a.cfg.ModelExists(ctx, modelID); err != nil || !ok {
			if err == nil {
				err = eserror.NotFound("Could not find trained model [%s]", modelID)
			}
			a.writeError(w, r, err)
			return
		}
	}
	exists := eserror.New(http.StatusConflict, eserror.TypeStatus,
		"Could not start model deployment because an existing deployment with the same id [%s] exist", req.DeploymentID)
	if entry, err := a.cfg.Store.Get(ctx, req.DeploymentID); err == nil && entry.Err == nil {
		a.writeError(w, r, exists)
		return
	}
	req.StartTime = time.Now().UTC()
	revision, err := trained.Create(ctx, req.Deployment)
	if err != nil {
		if errors.Is(err, config.ErrDeploymentExists) {
			err = exists
		}
		a.writeError(w, r, storeError(req.DeploymentID, err))
		return
	}
	a.log.Info().Str("deployment_id", req.DeploymentID).Str("model_id", modelID).Msg("trained model deployment started")
	if req.WaitFor != "starting" && a.cfg.Deployments != nil {
		wctx := ctx
		if timeout >= 0 {
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		if err := a.cfg.Deployments.WaitStarted(wctx, req.DeploymentID, revision, timeoutText); err != nil {
			if e := eserror.As(err); e.Status == http.StatusRequestTimeout {
				err = eserror.New(http.StatusRequestTimeout, eserror.TypeModelDeploymentTimeout,
					"Timed out after [%s] waiting for trained model deployment [%s] to start. Use the trained model stats API to track the state of the deployment and try again once it has started.",
					timeoutText, req.DeploymentID)
			}
			a.writeError(w, r, err)
			return
		}
	}
	a.writeJSON(w, r, http.StatusOK, assignmentResponse{Assignment: a.assignment(ctx, req.Deployment)})
}

// stopDeployment serves POST _ml/trained_models/{id}/deployment/_stop.
func (a *API) stopDeployment(w http.ResponseWriter, r *http.Request, id string) {
	trained, err := a.trained()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	force, err := boolParam(r, "force", false)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	if _, _, err := trained.Get(ctx, id); err != nil {
		a.writeError(w, r, a.noDeployment(ctx, id, "stop", "stopped", err))
		return
	}
	if !force {
		users, err := a.attachedTo(ctx, id)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if len(users) > 0 {
			a.writeError(w, r, eserror.New(http.StatusConflict, eserror.TypeStatus, "Cannot stop deployment [%s] as it is used by inference endpoint [%s]", id, users[0]))
			return
		}
	}
	if err := trained.Delete(ctx, id); err != nil {
		a.writeError(w, r, storeError(id, err))
		return
	}
	a.log.Info().Str("deployment_id", id).Msg("trained model deployment stopped")
	a.writeJSON(w, r, http.StatusOK, map[string]bool{"stopped": true})
}

// updateDeployment serves POST _ml/trained_models/{id}/deployment/_update.
func (a *API) updateDeployment(w http.ResponseWriter, r *http.Request, id string) {
	trained, err := a.trained()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	body, err := a.readBody(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	d, rev, err := trained.Get(ctx, id)
	if err != nil {
		a.writeError(w, r, a.noDeployment(ctx, id, "update", "updated", err))
		return
	}
	updated, err := config.ParseDeploymentUpdate(d, r.URL.Query(), body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := trained.Update(ctx, updated, rev); err != nil {
		a.writeError(w, r, storeError(id, err))
		return
	}
	a.writeJSON(w, r, http.StatusOK, assignmentResponse{Assignment: a.assignment(ctx, updated)})
}

// noDeployment explains why id is no _ml deployment (err is the store's):
// an endpoint's own deployment is changed through the inference API.
func (a *API) noDeployment(ctx context.Context, id, verb, done string, err error) error {
	if !errors.Is(err, config.ErrDeploymentNotFound) {
		return storeError(id, err)
	}
	if entry, err := a.cfg.Store.Get(ctx, id); err == nil && entry.Err == nil && entry.Endpoint.ServiceSettings.DeploymentID == "" {
		return eserror.New(http.StatusConflict, eserror.TypeStatus,
			"Cannot %s deployment [%s] as it was created by inference endpoint [%s]. This model deployment must be %s through the inference API.", verb, id, id, done)
	}
	return eserror.NotFound("Could not find trained model deployment [%s]", id)
}

// attachedTo lists the endpoints using a deployment.
func (a *API) attachedTo(ctx context.Context, id string) ([]string, error) {
	entries, err := a.cfg.Store.List(ctx)
	if err != nil {
		return nil, storeError("_all", err)
	}
	var out []string
	for _, e := range entries {
		if e.Err == nil && e.Endpoint.ServiceSettings.DeploymentID == id {
			out = append(out, e.ID)
		}
	}
	slices.Sort(out)
	return out, nil
}

// assignment describes a deployment as it runs now, from the plan and the
// workers' states (as much as is known; an empty routing table while the
// plan is not made yet).
func (a *API) assignment(ctx context.Context, d config.Deployment) assignment {
	target := 0
	if d.NumberOfAllocations != nil {
		target = *d.NumberOfAllocations
	}
	as := assignment{
		TaskParameters: taskParameters{ModelID: d.ModelID, DeploymentID: d.DeploymentID, ThreadsPerAllocation: d.ThreadsPerAllocation,
			NumberOfAllocations: target, QueueCapacity: d.QueueCapacity, Priority: d.Priority},
		RoutingTable: map[string]routingEntry{}, AssignmentState: cluster.StateStarting,
		StartTime:           d.StartTime.Format("2006-01-02T15:04:05.000Z"),
		AdaptiveAllocations: d.AdaptiveAllocations,
	}
	if a.cfg.Stats == nil {
		return as
	}
	snap, err := a.cfg.Stats.Snapshot(ctx)
	if err != nil {
		return as
	}
	plan := snap.Plans[d.DeploymentID]
	if d.NumberOfAllocations == nil {
		as.TaskParameters.NumberOfAllocations = plan.Target
	}
	for _, st := range snap.States {
		if st.InferenceID != d.DeploymentID {
			continue
		}
		as.RoutingTable[st.Node] = routingEntry{Current: st.Allocations, Target: plan.Nodes[st.Node], RoutingState: st.State, Reason: errorReason(st.Error)}
		as.MaxAssignedAllocations += st.Allocations
		if st.State == cluster.StateStarted {
			as.AssignmentState = cluster.StateStarted
		}
	}
	return as
}
