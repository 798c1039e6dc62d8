package httpapi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"

	"github.com/jetinfer/jetinfer/auth"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/openaiapi"
	"github.com/jetinfer/jetinfer/rerankapi"
	"github.com/jetinfer/jetinfer/wire"
)

// otherRoutes are the routes of the other APIs over the same endpoints:
// OpenAI's embeddings and models, Cohere's (and Jina's) rerank. Each
// answers errors in its own API's envelope and is authorized as the
// Elasticsearch action it amounts to.
func (a *API) otherRoutes(seg []string) map[string]route {
	switch {
	case len(seg) == 2 && seg[0] == "v1" && seg[1] == "embeddings":
		return map[string]route{http.MethodPost: {handle: a.openAIEmbeddings, action: auth.ActionInferencePost, fail: a.writeOpenAIError}}
	case len(seg) == 2 && seg[0] == "v1" && seg[1] == "models":
		return map[string]route{http.MethodGet: {handle: a.openAIModels, action: auth.ActionInferenceGet, fail: a.writeOpenAIError}}
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "models":
		id := seg[2]
		return map[string]route{http.MethodGet: {handle: func(w http.ResponseWriter, r *http.Request, _ pathParams) { a.openAIModel(w, r, id) },
			action: auth.ActionInferenceGet, fail: a.writeOpenAIError}}
	case len(seg) == 2 && seg[1] == "rerank":
		version := seg[0][1:]
		return map[string]route{http.MethodPost: {handle: func(w http.ResponseWriter, r *http.Request, _ pathParams) { a.rerank(w, r, version) },
			action: auth.ActionInferencePost, fail: a.writeRerankError}}
	}
	return nil
}

// otherTimeout bounds an inference on the other APIs, which have no
// timeout parameter: Elasticsearch's default, as its errors print it.
const (
	otherTimeout     = DefaultTimeout
	otherTimeoutText = "30s"
)

// openAIEmbeddings serves POST /v1/embeddings on a text_embedding endpoint.
func (a *API) openAIEmbeddings(w http.ResponseWriter, r *http.Request, _ pathParams) {
	body, err := a.readBody(r)
	if err != nil {
		a.writeOpenAIError(w, r, err)
		return
	}
	req, err := openaiapi.ParseEmbeddingsRequest(body)
	if err != nil {
		a.writeOpenAIError(w, r, err)
		return
	}
	ep, err := a.inferable(r.Context(), req.Model)
	switch {
	case notFound(err):
		err = openaiapi.ModelNotFound(req.Model)
	case err == nil && ep.TaskType != config.TextEmbedding:
		err = openaiapi.NotEmbeddings(req.Model, string(ep.TaskType))
	}
	if err != nil {
		a.writeOpenAIError(w, r, err)
		return
	}
	// OpenAI's request has no input type: as a POST _inference without one.
	res, err := a.inferOther(r.Context(), ep, inferapi.Request{Input: req.Input, InputType: inferapi.InputUnspecified},
		inferapi.Options{Dimensions: req.Dimensions, CountTokens: true})
	if err != nil {
		a.writeOpenAIError(w, r, err)
		return
	}
	vecs, err := inferapi.DenseVectors(res.Body)
	if err == nil && len(vecs) != len(req.Input) {
		err = fmt.Errorf("%d embeddings for %d inputs", len(vecs), len(req.Input))
	}
	if err != nil {
		a.writeOpenAIError(w, r, eserror.Internal(err, "internal error: %s", err.Error()))
		return
	}
	writeOther(w, http.StatusOK, openaiapi.EmbeddingsResponse(req, vecs, res.Tokens))
}

// openAIModels serves GET /v1/models: every endpoint, as a model.
func (a *API) openAIModels(w http.ResponseWriter, r *http.Request, _ pathParams) {
	eps, err := a.list(r.Context(), config.Any)
	if err != nil {
		a.writeOpenAIError(w, r, err)
		return
	}
	models := make([]openaiapi.Model, len(eps))
	for i, ep := range eps {
		models[i] = openaiapi.NewModel(ep.InferenceID)
	}
	writeOther(w, http.StatusOK, openaiapi.ModelList(models))
}

// openAIModel serves GET /v1/models/{model}.
func (a *API) openAIModel(w http.ResponseWriter, r *http.Request, id string) {
	ep, err := a.inferable(r.Context(), id)
	if notFound(err) {
		err = openaiapi.ModelNotFound(id)
	}
	if err != nil {
		a.writeOpenAIError(w, r, err)
		return
	}
	writeOther(w, http.StatusOK, mustMarshal(openaiapi.NewModel(ep.InferenceID)))
}

// rerank serves POST /v1/rerank and /v2/rerank on a rerank endpoint.
func (a *API) rerank(w http.ResponseWriter, r *http.Request, version string) {
	body, err := a.readBody(r)
	if err != nil {
		a.writeRerankError(w, r, err)
		return
	}
	req, err := rerankapi.ParseRequest(body)
	if err != nil {
		a.writeRerankError(w, r, err)
		return
	}
	ep, err := a.inferable(r.Context(), req.Model)
	switch {
	case notFound(err):
		err = rerankapi.ModelNotFound(req.Model)
	case err == nil && ep.TaskType != config.Rerank:
		err = rerankapi.NotRerank(req.Model, string(ep.TaskType))
	}
	if err != nil {
		a.writeRerankError(w, r, err)
		return
	}
	query, returnDocs := req.Query, req.ReturnDocuments
	esReq := inferapi.Request{Input: req.Documents, Query: &query, ReturnDocuments: &returnDocs}
	if req.TopN > 0 {
		esReq.TopN = &req.TopN
	}
	res, err := a.inferOther(r.Context(), ep, esReq, inferapi.Options{})
	if err != nil {
		a.writeRerankError(w, r, err)
		return
	}
	results, err := rerankapi.Ranked(res.Body)
	if err != nil {
		a.writeRerankError(w, r, eserror.Internal(err, "internal error"))
		return
	}
	writeOther(w, http.StatusOK, rerankapi.Response(rand.Text(), req.Model, version, results))
}

// notFound reports whether err is the 404 of an inference id that names
// no endpoint, which each route words its own way.
func notFound(err error) bool {
	var e *eserror.Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// inferOther runs an inference for another API's route, with
// Elasticsearch's default timeout and its wording of a timeout.
func (a *API) inferOther(ctx context.Context, ep config.Endpoint, req inferapi.Request, opts inferapi.Options) (inferapi.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, otherTimeout)
	defer cancel()
	res, err := a.cfg.Inferer.Infer(ctx, ep, req, opts)
	switch {
	case errors.Is(err, wire.ErrNoAllocationInTime):
		err = eserror.New(http.StatusRequestTimeout, eserror.TypeModelDeploymentTimeout,
			"Timed out after [%s] waiting for the deployment of [%s] to start", otherTimeoutText, ep.InferenceID)
	case errors.Is(err, context.DeadlineExceeded):
		err = eserror.New(http.StatusRequestTimeout, eserror.TypeStatus, "timeout [%s] waiting for inference result", otherTimeoutText)
	}
	return res, err
}

// writeOpenAIError writes err in OpenAI's envelope.
func (a *API) writeOpenAIError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *openaiapi.Error
	if errors.As(err, &oe) {
		if rec, ok := w.(*recorder); ok {
			rec.errType = oe.Type
		}
	} else {
		oe = openaiapi.FromES(a.failed(w, r, err))
	}
	writeOther(w, oe.Status, mustMarshal(oe))
}

// writeRerankError writes err in Cohere's error body.
func (a *API) writeRerankError(w http.ResponseWriter, r *http.Request, err error) {
	var re *rerankapi.Error
	if errors.As(err, &re) {
		if rec, ok := w.(*recorder); ok {
			rec.errType = rerankErrorType(re.Status)
		}
	} else {
		re = rerankapi.FromES(a.failed(w, r, err))
	}
	writeOther(w, re.Status, mustMarshal(re))
}

// rerankErrorType names a rerank route's own error for the metrics: Cohere's
// body has no type, so the Elasticsearch type of that status.
func rerankErrorType(status int) string {
	if status == http.StatusNotFound {
		return eserror.TypeResourceNotFound
	}
	return eserror.TypeIllegalArgument
}

// writeOther writes another API's JSON body: not Elasticsearch's, so
// without its product header.
func writeOther(w http.ResponseWriter, status int, body []byte) {
	w.Header().Del("X-Elastic-Product")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
