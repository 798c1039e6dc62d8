package httpapi

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"runtime/debug"

	"github.com/jetinfer/jetinfer/auth"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/teiapi"
)

// teiRoutes are Text Embeddings Inference's routes under an endpoint's
// base URL, /tei/<inference_id>/<route>: each endpoint is a TEI server.
func (a *API) teiRoutes(seg []string) map[string]route {
	if len(seg) < 2 || len(seg) > 3 {
		return nil
	}
	id := seg[1]
	post := func(h func(http.ResponseWriter, *http.Request, string)) map[string]route {
		return map[string]route{http.MethodPost: {handle: func(w http.ResponseWriter, r *http.Request, _ pathParams) { h(w, r, id) },
			action: auth.ActionInferencePost, fail: a.writeTEIError}}
	}
	get := func(h func(http.ResponseWriter, *http.Request, string)) map[string]route {
		return map[string]route{http.MethodGet: {handle: func(w http.ResponseWriter, r *http.Request, _ pathParams) { h(w, r, id) },
			action: auth.ActionInferenceGet, fail: a.writeTEIError}}
	}
	if len(seg) == 2 {
		// The base URL itself, which TEI clients (huggingface_hub's
		// InferenceClient) post to: the endpoint's task decides.
		routes := post(a.teiByTask)
		maps.Copy(routes, get(a.teiHealth))
		return routes
	}
	switch seg[2] {
	case "invocations":
		return post(a.teiByTask)
	case "embed":
		return post(a.teiEmbed)
	case "embed_sparse":
		return post(a.teiEmbedSparse)
	case "rerank":
		return post(a.teiRerank)
	case "tokenize":
		return post(a.teiTokenize)
	case "info":
		return get(a.teiInfo)
	case "health":
		return get(a.teiHealth)
	}
	return nil
}

// teiEndpoint reads the endpoint a TEI route serves, which must be of
// task (any task when task is config.Any).
func (a *API) teiEndpoint(r *http.Request, id, route string, task config.TaskType) (config.Endpoint, error) {
	ep, err := a.inferable(r.Context(), id)
	if err == nil && task != config.Any && ep.TaskType != task {
		err = teiapi.NotTask(route)
	}
	return ep, err
}

// teiServe serves one of TEI's inference routes: the body parsed, the
// endpoint checked against the task the route needs, the inference the
// request asks for run, and its body turned into the route's answer.
func teiServe[T any](a *API, w http.ResponseWriter, r *http.Request, id, route string, task config.TaskType,
	parse func([]byte) (T, error), ask func(T) (inferapi.Request, inferapi.Options), answer func(T, []byte) ([]byte, error)) {
	body, err := a.readBody(r)
	var req T
	if err == nil {
		req, err = parse(body)
	}
	var ep config.Endpoint
	if err == nil {
		ep, err = a.teiEndpoint(r, id, route, task)
	}
	var res inferapi.Result
	if err == nil {
		esReq, opts := ask(req)
		res, err = a.inferOther(r.Context(), ep, esReq, opts)
	}
	if err == nil {
		if body, err = answer(req, res.Body); err != nil {
			err = eserror.Internal(err, "internal error: %s", err.Error())
		}
	}
	if err != nil {
		a.writeTEIError(w, r, err)
		return
	}
	writeOther(w, http.StatusOK, body)
}

// teiByTask serves POST /tei/<id> and /tei/<id>/invocations as TEI's / and
// /invocations do: embed, embed_sparse or rerank, by the endpoint's task.
func (a *API) teiByTask(w http.ResponseWriter, r *http.Request, id string) {
	ep, err := a.teiEndpoint(r, id, "", config.Any)
	if err != nil {
		a.writeTEIError(w, r, err)
		return
	}
	switch ep.TaskType {
	case config.SparseEmbedding:
		a.teiEmbedSparse(w, r, id)
	case config.Rerank:
		a.teiRerank(w, r, id)
	default:
		a.teiEmbed(w, r, id)
	}
}

// teiEmbed serves POST /tei/<id>/embed on a text_embedding endpoint.
func (a *API) teiEmbed(w http.ResponseWriter, r *http.Request, id string) {
	teiServe(a, w, r, id, "embed", config.TextEmbedding, teiapi.ParseEmbedRequest,
		func(req teiapi.EmbedRequest) (inferapi.Request, inferapi.Options) {
			opts := req.Options.Inference()
			opts.Normalize, opts.Dimensions = &req.Normalize, req.Dimensions
			return inferapi.Request{Input: req.Inputs, InputType: inferapi.InputUnspecified}, opts
		},
		func(req teiapi.EmbedRequest, body []byte) ([]byte, error) {
			return teiapi.EmbedResponse(body, len(req.Inputs))
		})
}

// teiEmbedSparse serves POST /tei/<id>/embed_sparse on a sparse_embedding
// endpoint.
func (a *API) teiEmbedSparse(w http.ResponseWriter, r *http.Request, id string) {
	teiServe(a, w, r, id, "embed_sparse", config.SparseEmbedding, teiapi.ParseEmbedSparseRequest,
		func(req teiapi.EmbedSparseRequest) (inferapi.Request, inferapi.Options) {
			opts := req.Options.Inference()
			opts.SparseIDs = true
			return inferapi.Request{Input: req.Inputs, InputType: inferapi.InputUnspecified}, opts
		},
		func(_ teiapi.EmbedSparseRequest, body []byte) ([]byte, error) { return teiapi.SparseResponse(body) })
}

// teiRerank serves POST /tei/<id>/rerank on a rerank endpoint.
func (a *API) teiRerank(w http.ResponseWriter, r *http.Request, id string) {
	teiServe(a, w, r, id, "rerank", config.Rerank, teiapi.ParseRerankRequest,
		func(req teiapi.RerankRequest) (inferapi.Request, inferapi.Options) {
			opts := req.Options.Inference()
			opts.Scores = inferapi.ScoresSigmoid
			if req.RawScores {
				opts.Scores = inferapi.ScoresRaw
			}
			return inferapi.Request{Input: req.Texts, Query: &req.Query, ReturnDocuments: &req.ReturnText}, opts
		},
		func(_ teiapi.RerankRequest, body []byte) ([]byte, error) { return teiapi.RerankResponse(body) })
}

// teiTokenize serves POST /tei/<id>/tokenize on any endpoint: its model's
// tokens, never truncated.
func (a *API) teiTokenize(w http.ResponseWriter, r *http.Request, id string) {
	teiServe(a, w, r, id, "tokenize", config.Any, teiapi.ParseTokenizeRequest,
		func(req teiapi.TokenizeRequest) (inferapi.Request, inferapi.Options) {
			return inferapi.Request{Input: req.Inputs}, inferapi.Options{Tokenize: true, SpecialTokens: req.AddSpecialTokens, Prompt: req.PromptName}
		},
		func(_ teiapi.TokenizeRequest, body []byte) ([]byte, error) { return teiapi.TokenizeResponse(body) })
}

// teiInfo serves GET /tei/<id>/info: the endpoint's model as its workers
// loaded it.
func (a *API) teiInfo(w http.ResponseWriter, r *http.Request, id string) {
	ep, err := a.teiEndpoint(r, id, "info", config.Any)
	var d inferapi.ModelDescription
	if err == nil {
		// A describe request reads no input; the body is still a valid
		// POST _inference body.
		var res inferapi.Result
		if res, err = a.inferOther(r.Context(), ep, inferapi.Request{Input: []string{""}}, inferapi.Options{Describe: true}); err == nil {
			if err = json.Unmarshal(res.Body, &d); err != nil {
				err = eserror.Internal(err, "internal error: %s", err.Error())
			}
		}
	}
	if err != nil {
		a.writeTEIError(w, r, err)
		return
	}
	allocations := ep.ServiceSettings.InitialAllocations()
	if adaptive := ep.ServiceSettings.AdaptiveAllocations; ep.ServiceSettings.NumAllocations == nil && adaptive != nil {
		allocations = config.DefaultMaxAllocations
		if adaptive.Max != nil {
			allocations = *adaptive.Max
		}
	}
	writeOther(w, http.StatusOK, teiapi.Encode(teiapi.Info{
		ModelID:               ep.ServiceSettings.ModelID,
		ModelDType:            "float32",
		ServedModelName:       ep.InferenceID,
		ModelType:             teiapi.ModelType(string(ep.TaskType), d),
		MaxConcurrentRequests: a.cfg.QueueCapacity,
		MaxInputLength:        d.MaxInputLength,
		MaxBatchTokens:        d.MaxBatchTokens,
		MaxClientBatchSize:    teiapi.MaxClientBatchSize,
		AutoTruncate:          true,
		// Each allocation tokenizes its own batches: as many as may run.
		TokenizationWorkers: allocations,
		Version:             buildVersion(),
	}))
}

// teiHealth serves GET /tei/<id>/health: 200 with no body while the
// endpoint exists (one scaled to zero starts on its first request).
func (a *API) teiHealth(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := a.teiEndpoint(r, id, "health", config.Any); err != nil {
		a.writeTEIError(w, r, err)
		return
	}
	w.Header().Del("X-Elastic-Product")
	w.WriteHeader(http.StatusOK)
}

// writeTEIError writes err in TEI's error body.
func (a *API) writeTEIError(w http.ResponseWriter, r *http.Request, err error) {
	var te *teiapi.Error
	if errors.As(err, &te) {
		if rec, ok := w.(*recorder); ok {
			rec.errType = te.Type
		}
	} else {
		te = teiapi.FromES(a.failed(w, r, err))
	}
	writeOther(w, te.Status, te.Body())
}

// buildVersion is jetinfer's module version, "(devel)" for a build from a
// work tree.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "unknown"
}
