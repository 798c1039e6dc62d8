package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/wire"
)

// infer serves POST _inference/[{task_type}/]{id}, in Elasticsearch's order
// of checks: without a task type in the URL the endpoint is resolved before
// the body is read; with one, the body is validated first.
func (a *API) infer(w http.ResponseWriter, r *http.Request, p pathParams) {
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
	if err := config.RequireBody(body); err != nil {
		a.writeError(w, r, err)
		return
	}
	var ep config.Endpoint
	if task == config.Any {
		if ep, err = a.inferable(r.Context(), p.id); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	req, err := inferapi.ParseRequest(body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := req.Validate(task); err != nil {
		a.writeError(w, r, err)
		return
	}
	if task != config.Any {
		if ep, err = a.inferable(r.Context(), p.id); err != nil {
			a.writeError(w, r, err)
			return
		}
		if ep.TaskType != task {
			a.writeError(w, r, eserror.BadRequest("Incompatible task_type, the requested type [%s] does not match the model type [%s]", task, ep.TaskType))
			return
		}
	} else if ep.TaskType == config.Rerank {
		// A rerank endpoint needs its query even when the URL omits the
		// task type; Elasticsearch fails later with "[text] must not be null.".
		if err := req.Validate(config.Rerank); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	ctx := r.Context()
	if timeout >= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	resp, err := a.cfg.Inferer.Infer(ctx, ep, req, inferapi.Options{})
	switch {
	case r.Context().Err() != nil:
	case errors.Is(err, wire.ErrNoAllocationInTime):
		err = eserror.New(http.StatusRequestTimeout, eserror.TypeModelDeploymentTimeout,
			"Timed out after [%s] waiting for trained model deployment [%s] to start. Use the trained model stats API to track the state of the deployment and try again once it has started.",
			timeoutText, ep.InferenceID)
	case errors.Is(err, context.DeadlineExceeded):
		err = eserror.New(http.StatusRequestTimeout, eserror.TypeStatus, "timeout [%s] waiting for inference result", timeoutText)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeBody(w, r, http.StatusOK, resp.Body)
}

// inferable resolves id to a valid endpoint.
func (a *API) inferable(ctx context.Context, id string) (config.Endpoint, error) {
	entry, err := a.lookup(ctx, id)
	if err != nil {
		return config.Endpoint{}, err
	}
	if entry.Err != nil {
		a.log.Warn().Str("inference_id", entry.ID).Err(entry.Err).Msg("stored endpoint definition is invalid")
		return config.Endpoint{}, invalidStored(entry)
	}
	return entry.Endpoint, nil
}

// stream serves POST …/_stream: the elasticsearch service has no streaming
// task, so an existing endpoint answers 405 as in Elasticsearch.
func (a *API) stream(w http.ResponseWriter, r *http.Request, p pathParams) {
	if _, err := resolveTaskType(p); err != nil {
		a.writeError(w, r, err)
		return
	}
	if _, err := a.inferable(r.Context(), p.id); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeError(w, r, eserror.New(http.StatusMethodNotAllowed, eserror.TypeStatus,
		"Streaming is not allowed for service [%s].", config.ServiceName))
}
