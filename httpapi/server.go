// Package httpapi serves jetinfer's Elasticsearch-compatible REST API: the
// _inference endpoints and GET /. It owns routing, request decoding and the
// response and error shapes; it keeps no state of its own, asking the
// endpoint store and the inferer for everything. The node runs the server.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/auth"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/metrics"
	"github.com/jetinfer/jetinfer/tracing"
	"github.com/jetinfer/jetinfer/xcontent"
)

// EndpointStore is what the API needs of the endpoint definitions.
type EndpointStore interface {
	Create(ctx context.Context, ep config.Endpoint) (uint64, error)
	Update(ctx context.Context, ep config.Endpoint, revision uint64) (uint64, error)
	Get(ctx context.Context, id string) (config.Entry, error)
	List(ctx context.Context) ([]config.Entry, error)
	Delete(ctx context.Context, id string, revision uint64) error
}

// Inferer runs a validated POST _inference request on an endpoint and
// returns the response body (and the tokens read, when opts ask).
type Inferer interface {
	Infer(ctx context.Context, ep config.Endpoint, req inferapi.Request, opts inferapi.Options) (inferapi.Result, error)
}

// Deployments is what the API learns of the endpoints' deployments.
type Deployments interface {
	// WaitStarted returns once a worker has started the endpoint's
	// definition of the given revision, or with the failure a worker
	// reported, or with a timeout error naming timeout when ctx's deadline
	// passes.
	WaitStarted(ctx context.Context, inferenceID string, revision uint64, timeout string) error
	// Allocations returns the allocations running, per inference id.
	Allocations(ctx context.Context) (map[string]int, error)
}

// Config configures the API.
type Config struct {
	Store   EndpointStore
	Inferer Inferer
	// Deployments, when set, makes PUT wait for the deployment to start and
	// GET show the live num_allocations.
	Deployments Deployments
	// Trained, when set, holds the trained model deployments of the _ml
	// API, which endpoints attach to with deployment_id.
	Trained TrainedDeployments
	// Stats, when set, serves GET _ml/trained_models/_stats; Models lists
	// the models stored, deployed or not.
	Stats  StatsSource
	Models func(ctx context.Context) ([]StoredModel, error)
	// ModelExists, when set, is asked before an endpoint on a user-imported
	// model is stored, as Elasticsearch checks for the trained model.
	ModelExists func(ctx context.Context, modelID string) (bool, error)
	// QueueCapacity is this process's --queue-capacity, which the stats of
	// an endpoint's own deployment report (the workers of a deployment are
	// given the same); 0 means config.DefaultQueueCapacity.
	QueueCapacity int
	// MaxBodyBytes caps request bodies; larger ones get 413.
	MaxBodyBytes int64
	// NodeName and ClusterName are reported by GET /.
	NodeName    string
	ClusterName string
	// ClusterUUID is reported by GET /; it identifies the NATS deployment.
	ClusterUUID string
	// Guard, when set, authenticates every request and authorizes its
	// action (an auth.Action* name).
	Guard Guard
	// Metrics, when set, counts requests by action, status and error type.
	Metrics *metrics.Metrics
	// Tracer, when set, traces every routed request, continuing a client's
	// trace (its traceparent header).
	Tracer trace.TracerProvider
}

// Guard authenticates a request and authorizes an action for it,
// returning Elasticsearch's 401 or 403 security_exception otherwise.
type Guard interface {
	Check(r *http.Request, action string) error
}

// API is the HTTP handler of the REST API.
type API struct {
	cfg Config
	log zerolog.Logger
}

// New returns the API handler.
func New(cfg Config, log zerolog.Logger) (*API, error) {
	if cfg.Store == nil || cfg.Inferer == nil {
		return nil, errors.New("httpapi: Store and Inferer are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		return nil, errors.New("httpapi: MaxBodyBytes must be positive")
	}
	if cfg.QueueCapacity <= 0 {
		cfg.QueueCapacity = config.DefaultQueueCapacity
	}
	return &API{cfg: cfg, log: log.With().Str("component", "http").Logger()}, nil
}

// commonParams are the URL parameters Elasticsearch accepts on every route.
var commonParams = []string{"pretty", "human", "error_trace", "filter_path", "format"}

// route is one matched request: a handler, the URL parameters it reads,
// and the Elasticsearch action it is authorized as.
type route struct {
	handle func(w http.ResponseWriter, r *http.Request, p pathParams)
	params []string
	action string
	// fail writes the route's errors in its API's envelope;
	// Elasticsearch's when nil.
	fail func(w http.ResponseWriter, r *http.Request, err error)
}

type pathParams struct {
	taskType config.TaskType
	id       string
}

// ServeHTTP routes a request as Elasticsearch's RestController does,
// answering unknown paths and methods in its formats.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	// Bodies are capped on the server's own writer: net/http then closes
	// the connection after a 413.
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	w = rec
	start := time.Now()
	// action names the request in metrics and traces: "" until routed;
	// fail is then the route's error writer.
	var action string
	var span trace.Span
	fail := a.writeError
	defer func() {
		// A panic is answered first, so that what is recorded is the 500.
		if p := recover(); p != nil {
			a.log.Error().Interface("panic", p).Str("path", r.URL.Path).Msg("handler panicked")
			fail(w, r, eserror.Internal(fmt.Errorf("%v", p), "internal error"))
		}
		if m := a.cfg.Metrics; m != nil {
			m.HTTPRequests.WithLabelValues(action, strconv.Itoa(rec.status), rec.errType).Inc()
			m.HTTPDuration.WithLabelValues(action).Observe(time.Since(start).Seconds())
		}
		if span != nil {
			span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
			if rec.status >= 500 {
				span.SetStatus(codes.Error, rec.errType)
			}
			span.End()
		}
	}()
	segments, err := splitPath(r.URL.EscapedPath())
	if err != nil {
		a.writeError(w, r, eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument, "%s", err.Error()))
		return
	}
	routes := a.routes(segments)
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	// A path's routes share one API, and so one error envelope.
	for _, rt := range routes {
		if rt.fail != nil {
			fail = rt.fail
		}
	}
	if _, ok := routes[method]; !ok && a.cfg.Guard != nil {
		// Only those who authenticate learn which paths and methods exist,
		// as Elasticsearch authenticates before it routes.
		if err := a.cfg.Guard.Check(r, ""); err != nil {
			fail(w, r, err)
			return
		}
	}
	if len(routes) == 0 {
		// RestController's answer carries no "status" field here.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(mustMarshal(map[string]string{
			"error": fmt.Sprintf("no handler found for uri [%s] and method [%s]", r.URL.RequestURI(), r.Method),
		}))
		return
	}
	rt, ok := routes[method]
	if !ok {
		allowed := make([]string, 0, len(routes))
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			if _, ok := routes[m]; ok {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ","))
		// An exception without a type: RestController's raw error body.
		fail(w, r, eserror.New(http.StatusMethodNotAllowed, "", "Incorrect HTTP method for uri [%s] and method [%s], allowed: [%s]", r.URL.RequestURI(), r.Method, strings.Join(allowed, ", ")))
		return
	}
	action = rt.action
	if tp := a.cfg.Tracer; tp != nil {
		// A client's traceparent makes this request part of its trace.
		var ctx context.Context
		ctx, span = tp.Tracer(tracing.Name).Start(tracing.ExtractHTTP(r.Context(), r.Header), r.Method+" "+rt.action,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		r = r.WithContext(ctx)
	}
	if a.cfg.Guard != nil {
		if err := a.cfg.Guard.Check(r, rt.action); err != nil {
			fail(w, r, err)
			return
		}
	}
	if err := checkParams(r, rt.params); err != nil {
		fail(w, r, err)
		return
	}
	rt.handle(w, r, a.pathParams(segments))
}

// splitPath splits an escaped path into unescaped segments. An escaped '/'
// stays inside its segment, so it can never change which route matches.
func splitPath(escaped string) ([]string, error) {
	trimmed := strings.Trim(escaped, "/")
	if trimmed == "" {
		return nil, nil
	}
	parts := strings.Split(trimmed, "/")
	for i, p := range parts {
		s, err := url.PathUnescape(p)
		if err != nil {
			return nil, fmt.Errorf("invalid path segment [%s]: %w", p, err)
		}
		parts[i] = s
	}
	return parts, nil
}

// routes returns the handlers for a path by method, mirroring the paths of
// Elasticsearch's inference REST handlers.
func (a *API) routes(seg []string) map[string]route {
	timeout, masterTimeout := []string{"timeout"}, []string{"master_timeout"}
	switch {
	case len(seg) == 0:
		return map[string]route{http.MethodGet: {handle: a.root, action: auth.ActionMain}}
	case len(seg) == 5 && seg[0] == "_ml" && seg[1] == "trained_models" && seg[3] == "deployment":
		id := seg[2]
		switch seg[4] {
		case "_start":
			return map[string]route{http.MethodPost: {handle: func(w http.ResponseWriter, r *http.Request, _ pathParams) { a.startDeployment(w, r, id) },
				params: []string{"deployment_id", "number_of_allocations", "threads_per_allocation", "priority", "queue_capacity", "timeout", "wait_for", "cache_size"},
				action: auth.ActionDeploymentStart}}
		case "_stop":
			return map[string]route{http.MethodPost: {handle: func(w http.ResponseWriter, r *http.Request, _ pathParams) { a.stopDeployment(w, r, id) },
				params: []string{"force", "allow_no_match"}, action: auth.ActionDeploymentStop}}
		case "_update":
			return map[string]route{http.MethodPost: {handle: func(w http.ResponseWriter, r *http.Request, _ pathParams) { a.updateDeployment(w, r, id) },
				params: []string{"number_of_allocations"}, action: auth.ActionDeploymentUpdate}}
		}
		return nil
	case len(seg) >= 3 && seg[0] == "_ml" && seg[1] == "trained_models" && seg[len(seg)-1] == "_stats":
		if len(seg) > 4 {
			return nil
		}
		id := "_all"
		if len(seg) == 4 {
			id = seg[2]
		}
		return map[string]route{http.MethodGet: {handle: func(w http.ResponseWriter, r *http.Request, _ pathParams) {
			a.modelStats(w, r, id)
		}, params: []string{"allow_no_match", "from", "size"}, action: auth.ActionModelStats}}
	case seg[0] == "v1" || seg[0] == "v2":
		return a.otherRoutes(seg)
	case seg[0] == "tei":
		return a.teiRoutes(seg)
	case seg[0] != "_inference":
		return nil
	case len(seg) == 1:
		return map[string]route{http.MethodGet: {handle: a.getEndpoints, action: auth.ActionInferenceGet}}
	case len(seg) == 2 || len(seg) == 3 && seg[2] != "_update" && seg[2] != "_stream":
		return map[string]route{
			http.MethodGet:    {handle: a.getEndpoints, action: auth.ActionInferenceGet},
			http.MethodPut:    {handle: a.putEndpoint, params: timeout, action: auth.ActionInferencePut},
			http.MethodPost:   {handle: a.infer, params: timeout, action: auth.ActionInferencePost},
			http.MethodDelete: {handle: a.deleteEndpoint, params: []string{"force", "dry_run"}, action: auth.ActionInferenceDelete},
		}
	case (len(seg) == 3 || len(seg) == 4) && seg[len(seg)-1] == "_update":
		return map[string]route{http.MethodPut: {handle: a.updateEndpoint, params: masterTimeout, action: auth.ActionInferenceUpdate}}
	case (len(seg) == 3 || len(seg) == 4) && seg[len(seg)-1] == "_stream":
		return map[string]route{http.MethodPost: {handle: a.stream, params: timeout, action: auth.ActionInferencePost}}
	}
	return nil
}

// pathParams applies Elasticsearch's path rule: after _inference, one
// segment is an inference id; two are a task type and an id. The task type
// is parsed by the handler, so that it can report an unknown one.
func (a *API) pathParams(seg []string) pathParams {
	p := pathParams{taskType: config.Any}
	if len(seg) < 2 {
		return p
	}
	rest := seg[1:]
	if n := len(rest); n > 0 && (rest[n-1] == "_update" || rest[n-1] == "_stream") {
		rest = rest[:n-1]
	}
	switch len(rest) {
	case 1:
		p.taskType, p.id = config.Any, rest[0]
	case 2:
		p.taskType, p.id = config.TaskType(rest[0]), rest[1]
	}
	return p
}

// resolveTaskType parses the task type segment of a two-segment path.
func resolveTaskType(p pathParams) (config.TaskType, error) {
	if p.taskType == config.Any {
		return config.Any, nil
	}
	return config.ParseTaskType(string(p.taskType))
}

// checkParams rejects URL parameters the route does not read, as
// Elasticsearch does.
func checkParams(r *http.Request, allowed []string) error {
	var unknown []string
	for name := range r.URL.Query() {
		if !slices.Contains(allowed, name) && !slices.Contains(commonParams, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	noun := "parameter"
	if len(unknown) > 1 {
		noun = "parameters"
	}
	return eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument,
		"request [%s] contains unrecognized %s: [%s]", r.URL.Path, noun, strings.Join(unknown, ", "))
}

// boolParam parses a boolean URL parameter as Elasticsearch's
// paramAsBoolean: absent → def, present but empty → true.
func boolParam(r *http.Request, name string, def bool) (bool, error) {
	q := r.URL.Query()
	if !q.Has(name) {
		return def, nil
	}
	switch v := q.Get(name); v {
	case "", "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument,
			"Failed to parse value [%s] as only [true] or [false] are allowed.", v)
	}
}

// DefaultTimeout is the default of the timeout URL parameter.
const DefaultTimeout = 30 * time.Second

// timeoutParam parses the timeout URL parameter as an Elasticsearch time
// value.
// timeoutParam returns the timeout URL parameter and its text as
// Elasticsearch prints it in timeout errors.
func timeoutParam(r *http.Request) (time.Duration, string, error) {
	q := r.URL.Query()
	if !q.Has("timeout") {
		return DefaultTimeout, "30s", nil
	}
	d, err := ParseTimeValue(q.Get("timeout"), "timeout")
	return d, strings.ToLower(strings.TrimSpace(q.Get("timeout"))), err
}

// readBody reads the request body under the size cap and checks its
// content type as Elasticsearch does.
func (a *API) readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body) // capped by ServeHTTP
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, eserror.New(http.StatusRequestEntityTooLarge, eserror.TypeContentTooLong,
			"request body is too large; the limit is [%d] bytes", a.cfg.MaxBodyBytes)
	case err != nil:
		return nil, eserror.New(http.StatusBadRequest, eserror.TypeParse, "failed to read request body: %s", err.Error())
	}
	if len(body) > 0 {
		// RestController refuses bodies it cannot parse before any handler
		// runs; jetinfer parses JSON only.
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			return nil, eserror.New(http.StatusNotAcceptable, "", "Content-Type header is missing")
		}
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || mt == "application/vnd.elasticsearch+json") {
			return nil, eserror.New(http.StatusNotAcceptable, "", "Content-Type header [%s] is not supported", ct)
		}
	}
	return body, nil
}

// writeJSON writes v with status, honouring ?pretty.
func (a *API) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var body []byte
	var err error
	if _, pretty := r.URL.Query()["pretty"]; pretty {
		body, err = xcontent.MarshalIndent(v)
	} else {
		body, err = xcontent.Marshal(v)
	}
	if err != nil {
		a.log.Error().Err(err).Msg("encode response")
		status, body = http.StatusInternalServerError, mustMarshal(eserror.Internal(err, "failed to encode response"))
	}
	a.writeBody(w, r, status, body)
}

func (a *API) writeBody(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	ct := "application/json"
	if strings.Contains(r.Header.Get("Accept"), "application/vnd.elasticsearch+json") {
		// The official clients ask for the versioned media type; answer in it.
		ct = "application/vnd.elasticsearch+json;compatible-with=9"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
		_, _ = w.Write([]byte("\n"))
	}
}

// writeError writes err in Elasticsearch's error envelope. Errors that are
// not Elasticsearch exceptions are server faults: logged, and sent as 500.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var raw interface {
		HTTPStatus() int
		HTTPBody() []byte
	}
	if errors.As(err, &raw) {
		// An error envelope made by a worker, passed on as it came.
		if rec, ok := w.(*recorder); ok {
			if e, perr := eserror.Parse(raw.HTTPBody()); perr == nil {
				rec.errType = e.Type
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(raw.HTTPStatus())
		_, _ = w.Write(raw.HTTPBody())
		return
	}
	e := a.failed(w, r, err)
	if e.Type == "" { // RestController's plain errors carry no exception type
		writeRawError(w, e.Status, e.Reason)
		return
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		// Elasticsearch's RestResponse drops the product header on both.
		w.Header().Del("X-Elastic-Product")
	}
	a.writeJSON(w, r, e.Status, e)
}

// failed is err as an Elasticsearch exception (a worker's envelope read
// back), recorded for the metrics, logged when it is a server fault, its
// headers (a 401's WWW-Authenticate) set on w: what every route's error
// writer does before writing its own body.
func (a *API) failed(w http.ResponseWriter, r *http.Request, err error) *eserror.Error {
	// A client that went away cut short whatever failed: no server fault to
	// log. It is answered all the same: one that only half-closed (a body
	// shorter than its Content-Length) still reads the answer, and a
	// handler that writes nothing makes Go send an empty 200.
	gone := r.Context().Err() != nil
	if gone {
		a.log.Debug().Err(err).Str("path", r.URL.Path).Msg("client gone")
	}
	var e *eserror.Error
	var raw interface {
		HTTPStatus() int
		HTTPBody() []byte
	}
	if errors.As(err, &raw) {
		var perr error
		if e, perr = eserror.Parse(raw.HTTPBody()); perr != nil {
			e = eserror.Internal(perr, "internal error")
		}
		e.Status = raw.HTTPStatus()
	} else {
		e = eserror.As(err)
	}
	if rec, ok := w.(*recorder); ok {
		rec.errType = e.Type
	}
	if e.Status >= 500 && !gone {
		ev := a.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path)
		if seg, perr := splitPath(r.URL.EscapedPath()); perr == nil && len(seg) > 0 && seg[0] == "_inference" {
			if id := a.pathParams(seg).id; id != "" {
				ev = ev.Str("inference_id", id)
			}
		}
		ev.Msg("request failed")
	}
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	return e
}

// recorder remembers a response's status and, for an error, its type.
type recorder struct {
	http.ResponseWriter
	status      int
	errType     string
	wroteHeader bool
}

func (r *recorder) WriteHeader(status int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// writeRawError writes the flat {"error":"…","status":N} body that
// Elasticsearch's RestController uses outside any handler.
func writeRawError(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(mustMarshal(struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}{reason, status}))
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called on types that always marshal
	}
	return b
}
