// Package teiapi is Hugging Face Text Embeddings Inference's HTTP API (TEI,
// huggingface/text-embeddings-inference router/src/http) as jetinfer serves
// it over one endpoint: each endpoint is a TEI server under its own base
// URL, /tei/<inference_id>. It has the requests with their validation, the
// responses built from the Elasticsearch bodies the pipeline answers with,
// and TEI's error body {"error", "error_type"} with TEI's statuses. It is
// pure Go; the HTTP API routes to it.
package teiapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
)

// MaxClientBatchSize bounds the inputs of one request, as TEI's
// --max-client-batch-size does (TEI's default is 32; jetinfer takes as many
// as its OpenAI route).
const MaxClientBatchSize = 2048

// Options are the fields shared by /embed, /embed_sparse and /rerank that
// change how inputs are read.
type Options struct {
	// Truncate, when false, refuses an input longer than the model's limit;
	// when nil, the server's default (auto-truncate, on) applies.
	Truncate *bool
	// TruncateLeft keeps the end of a long input (truncation_direction Left).
	TruncateLeft bool
	// PromptName names one of the model's prompts.
	PromptName string
}

// Inference returns the inferapi options these ask for.
func (o Options) Inference() inferapi.Options {
	var opts inferapi.Options
	switch {
	case o.Truncate != nil && !*o.Truncate:
		opts.Truncation = inferapi.TruncateRefuse
	case o.TruncateLeft:
		opts.Truncation = inferapi.TruncateKeepEnd
	}
	opts.Prompt = o.PromptName
	return opts
}

// EmbedRequest is a POST /embed body.
type EmbedRequest struct {
	Inputs []string
	Options
	// Normalize (default true) scales each embedding to unit length.
	Normalize bool
	// Dimensions, when positive, keeps that many values of each embedding.
	Dimensions int
}

// EmbedSparseRequest is a POST /embed_sparse body.
type EmbedSparseRequest struct {
	Inputs []string
	Options
}

// RerankRequest is a POST /rerank body.
type RerankRequest struct {
	Query string
	Texts []string
	Options
	// RawScores gives the model's logits instead of their sigmoid.
	RawScores bool
	// ReturnText puts each text in its result.
	ReturnText bool
}

// TokenizeRequest is a POST /tokenize body.
type TokenizeRequest struct {
	Inputs []string
	// AddSpecialTokens (default true) adds the template's special tokens.
	AddSpecialTokens bool
	PromptName       string
}

// The request bodies as TEI declares them (serde: unknown fields are
// ignored, optional fields may be null).
type (
	embedBody struct {
		Inputs              json.RawMessage `json:"inputs"`
		Truncate            *bool           `json:"truncate"`
		TruncationDirection *string         `json:"truncation_direction"`
		PromptName          *string         `json:"prompt_name"`
		Normalize           json.RawMessage `json:"normalize"`
		Dimensions          *int            `json:"dimensions"`
	}
	embedSparseBody struct {
		Inputs              json.RawMessage `json:"inputs"`
		Truncate            *bool           `json:"truncate"`
		TruncationDirection *string         `json:"truncation_direction"`
		PromptName          *string         `json:"prompt_name"`
	}
	rerankBody struct {
		Query               *string         `json:"query"`
		Texts               json.RawMessage `json:"texts"`
		Truncate            *bool           `json:"truncate"`
		TruncationDirection *string         `json:"truncation_direction"`
		RawScores           json.RawMessage `json:"raw_scores"`
		ReturnText          json.RawMessage `json:"return_text"`
	}
	tokenizeBody struct {
		Inputs           json.RawMessage `json:"inputs"`
		AddSpecialTokens json.RawMessage `json:"add_special_tokens"`
		PromptName       *string         `json:"prompt_name"`
	}
)

// ParseEmbedRequest decodes and validates a POST /embed body.
func ParseEmbedRequest(body []byte) (EmbedRequest, error) {
	var b embedBody
	if err := decode(body, &b); err != nil {
		return EmbedRequest{}, err
	}
	req := EmbedRequest{Normalize: true}
	var err error
	if req.Inputs, err = inputs(b.Inputs); err != nil {
		return req, err
	}
	if req.Options, err = options(b.Truncate, b.TruncationDirection, b.PromptName); err != nil {
		return req, err
	}
	if req.Normalize, err = boolField(b.Normalize, "normalize", true); err != nil {
		return req, err
	}
	if b.Dimensions != nil {
		if *b.Dimensions < 0 {
			return req, deserialize(fmt.Sprintf("dimensions: invalid value: integer `%d`, expected usize", *b.Dimensions))
		}
		if *b.Dimensions == 0 {
			return req, validation("`dimensions` should be positive")
		}
		req.Dimensions = *b.Dimensions
	}
	return req, nil
}

// ParseEmbedSparseRequest decodes and validates a POST /embed_sparse body.
func ParseEmbedSparseRequest(body []byte) (EmbedSparseRequest, error) {
	var b embedSparseBody
	if err := decode(body, &b); err != nil {
		return EmbedSparseRequest{}, err
	}
	var req EmbedSparseRequest
	var err error
	if req.Inputs, err = inputs(b.Inputs); err != nil {
		return req, err
	}
	req.Options, err = options(b.Truncate, b.TruncationDirection, b.PromptName)
	return req, err
}

// ParseRerankRequest decodes and validates a POST /rerank body.
func ParseRerankRequest(body []byte) (RerankRequest, error) {
	var b rerankBody
	if err := decode(body, &b); err != nil {
		return RerankRequest{}, err
	}
	var req RerankRequest
	switch {
	case b.Query == nil:
		return req, deserialize("missing field `query`")
	case b.Texts == nil:
		return req, deserialize("missing field `texts`")
	}
	req.Query = *b.Query
	if err := json.Unmarshal(b.Texts, &req.Texts); err != nil || isNull(b.Texts) {
		return req, deserialize("texts: invalid type: expected a sequence of strings")
	}
	var err error
	if req.Options, err = options(b.Truncate, b.TruncationDirection, nil); err != nil {
		return req, err
	}
	if req.RawScores, err = boolField(b.RawScores, "raw_scores", false); err != nil {
		return req, err
	}
	if req.ReturnText, err = boolField(b.ReturnText, "return_text", false); err != nil {
		return req, err
	}
	switch {
	case len(req.Texts) == 0:
		return req, empty("`texts` cannot be empty")
	case len(req.Texts) > MaxClientBatchSize:
		return req, batchTooLarge(len(req.Texts))
	}
	return req, nil
}

// ParseTokenizeRequest decodes and validates a POST /tokenize body.
func ParseTokenizeRequest(body []byte) (TokenizeRequest, error) {
	var b tokenizeBody
	if err := decode(body, &b); err != nil {
		return TokenizeRequest{}, err
	}
	var req TokenizeRequest
	var err error
	if req.Inputs, err = inputs(b.Inputs); err != nil {
		return req, err
	}
	if req.AddSpecialTokens, err = boolField(b.AddSpecialTokens, "add_special_tokens", true); err != nil {
		return req, err
	}
	if b.PromptName != nil {
		o, err := options(nil, nil, b.PromptName)
		if err != nil {
			return req, err
		}
		req.PromptName = o.PromptName
	}
	return req, nil
}

// decode reads a JSON object into v, with axum's statuses: a body that is
// not JSON is a 400, JSON of the wrong shape a 422.
func decode(body []byte, v any) error {
	if !json.Valid(body) {
		var probe any
		err := json.Unmarshal(body, &probe)
		return &Error{Status: http.StatusBadRequest, Type: TypeValidation,
			Message: "Failed to parse the request body as JSON: " + err.Error()}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return deserialize(fmt.Sprintf("%s: invalid type: %s, expected %s", te.Field, te.Value, te.Type))
		}
		return deserialize("invalid type: expected a JSON object")
	}
	return nil
}

// inputs reads TEI's Input: a string or an array of strings. TEI also
// takes token ids, which jetinfer's pipeline, fed texts, does not.
func inputs(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, deserialize("missing field `inputs`")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil && !isNull(raw) {
		if one == "" {
			return nil, empty("Input validation error: `inputs` cannot be empty")
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || isNull(raw) {
		var ids []json.RawMessage
		if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 && isNumberOrArray(ids[0]) {
			return nil, validation("token ids as `inputs` are not supported: send texts")
		}
		return nil, deserialize("inputs: data did not match any variant of untagged enum Input")
	}
	switch {
	case len(many) == 0:
		return nil, empty("Input validation error: `inputs` cannot be empty")
	case len(many) > MaxClientBatchSize:
		return nil, batchTooLarge(len(many))
	}
	for _, s := range many {
		if s == "" {
			return nil, empty("Input validation error: `inputs` cannot be empty")
		}
	}
	return many, nil
}

func isNumberOrArray(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && (t[0] == '[' || t[0] == '-' || t[0] >= '0' && t[0] <= '9')
}

func options(truncate *bool, direction, prompt *string) (Options, error) {
	o := Options{Truncate: truncate}
	if direction != nil {
		switch *direction {
		case "Left", "left":
			o.TruncateLeft = true
		case "Right", "right":
		default:
			return o, deserialize(fmt.Sprintf("truncation_direction: unknown variant `%s`, expected one of `Left`, `left`, `Right`, `right`", *direction))
		}
	}
	if prompt != nil {
		if len(*prompt) > maxPromptName {
			return o, validation(fmt.Sprintf("`prompt_name` must be at most %d bytes", maxPromptName))
		}
		o.PromptName = *prompt
	}
	return o, nil
}

// maxPromptName bounds a prompt name, which travels in a NATS header.
const maxPromptName = 256

// boolField reads a bool that has a default: absent is the default, null
// is refused (serde's default only fills a missing field).
func boolField(raw json.RawMessage, name string, def bool) (bool, error) {
	if raw == nil {
		return def, nil
	}
	var v bool
	if err := json.Unmarshal(raw, &v); err != nil || isNull(raw) {
		return def, deserialize(fmt.Sprintf("%s: invalid type: %s, expected a boolean", name, bytes.TrimSpace(raw)))
	}
	return v, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// EmbedResponse turns an Elasticsearch text_embedding response to inputs
// texts into /embed's body: one array of floats per input.
func EmbedResponse(esBody []byte, inputs int) ([]byte, error) {
	vecs, err := inferapi.DenseVectors(esBody)
	if err == nil && len(vecs) != inputs {
		err = fmt.Errorf("%d embeddings for %d inputs", len(vecs), inputs)
	}
	if err != nil {
		return nil, err
	}
	return Encode(vecs), nil
}

// Encode writes v as TEI's JSON: serde_json leaves <, > and & as they are,
// where encoding/json would escape them.
func Encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("teiapi: %T does not encode: %v", v, err)) // our own types: cannot happen
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// SparseValue is one weight of a sparse embedding: a vocabulary id and its
// value.
type SparseValue struct {
	Index int64   `json:"index"`
	Value float32 `json:"value"`
}

// SparseResponse turns an Elasticsearch sparse_embedding response keyed by
// vocabulary id (inferapi.Options.SparseIDs) into /embed_sparse's body:
// the non-zero values of each input by increasing index.
func SparseResponse(esBody []byte) ([]byte, error) {
	var resp struct {
		SparseEmbedding []struct {
			Embedding map[string]float32 `json:"embedding"`
		} `json:"sparse_embedding"`
	}
	if err := json.Unmarshal(esBody, &resp); err != nil {
		return nil, fmt.Errorf("read sparse_embedding response: %w", err)
	}
	out := make([][]SparseValue, len(resp.SparseEmbedding))
	for i, e := range resp.SparseEmbedding {
		out[i] = make([]SparseValue, 0, len(e.Embedding))
		for key, v := range e.Embedding {
			id, err := strconv.ParseInt(key, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("sparse_embedding key %q is not a vocabulary id", key)
			}
			out[i] = append(out[i], SparseValue{Index: id, Value: v})
		}
		slices.SortFunc(out[i], func(a, b SparseValue) int { return cmp.Compare(a.Index, b.Index) })
	}
	return Encode(out), nil
}

// Rank is one text's place in /rerank's body.
type Rank struct {
	Index int     `json:"index"`
	Text  *string `json:"text,omitempty"`
	Score float32 `json:"score"`
}

// RerankResponse turns an Elasticsearch rerank response (every text, with
// its text when returnText) into /rerank's body: best first, and, as TEI
// sorts, a tie puts the later text first.
func RerankResponse(esBody []byte) ([]byte, error) {
	var resp struct {
		Rerank []struct {
			Index          int     `json:"index"`
			RelevanceScore float32 `json:"relevance_score"`
			Text           *string `json:"text"`
		} `json:"rerank"`
	}
	if err := json.Unmarshal(esBody, &resp); err != nil {
		return nil, fmt.Errorf("read rerank response: %w", err)
	}
	ranks := make([]Rank, len(resp.Rerank))
	for i, r := range resp.Rerank {
		ranks[i] = Rank{Index: r.Index, Text: r.Text, Score: r.RelevanceScore}
	}
	slices.SortFunc(ranks, func(a, b Rank) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(b.Index, a.Index))
	})
	return Encode(ranks), nil
}

// SimpleToken is one token in /tokenize's body: start and stop are byte
// offsets of the input (null for a special token), text the input there
// (the token itself for a special one).
type SimpleToken struct {
	ID      int64  `json:"id"`
	Text    string `json:"text"`
	Special bool   `json:"special"`
	Start   *int   `json:"start"`
	Stop    *int   `json:"stop"`
}

// TokenizeResponse turns an inferapi.TokenizeResponse body into
// /tokenize's.
func TokenizeResponse(body []byte) ([]byte, error) {
	var resp inferapi.TokenizeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("read tokenize response: %w", err)
	}
	out := make([][]SimpleToken, len(resp.Tokens))
	for i, seq := range resp.Tokens {
		out[i] = make([]SimpleToken, len(seq))
		for j, t := range seq {
			out[i][j] = SimpleToken{ID: t.ID, Text: t.Text, Special: t.Special, Start: t.Start, Stop: t.End}
		}
	}
	return Encode(out), nil
}

// Info is /info's body, TEI's fields in TEI's order.
type Info struct {
	ModelID               string         `json:"model_id"`
	ModelSHA              *string        `json:"model_sha"`
	ModelDType            string         `json:"model_dtype"`
	ServedModelName       string         `json:"served_model_name"`
	ModelType             map[string]any `json:"model_type"`
	MaxConcurrentRequests int            `json:"max_concurrent_requests"`
	MaxInputLength        int            `json:"max_input_length"`
	MaxBatchTokens        int            `json:"max_batch_tokens"`
	MaxBatchRequests      *int           `json:"max_batch_requests"`
	MaxClientBatchSize    int            `json:"max_client_batch_size"`
	AutoTruncate          bool           `json:"auto_truncate"`
	TokenizationWorkers   int            `json:"tokenization_workers"`
	Version               string         `json:"version"`
	SHA                   *string        `json:"sha"`
	DockerLabel           *string        `json:"docker_label"`
}

// ModelType is Info's model_type for a task type and a model description:
// an embedding model with its pooling, or a reranker (one label).
func ModelType(taskType string, d inferapi.ModelDescription) map[string]any {
	if taskType == "rerank" {
		return map[string]any{"reranker": map[string]any{
			"id2label": map[string]string{"0": "LABEL_0"}, "label2id": map[string]int{"LABEL_0": 0},
		}}
	}
	return map[string]any{"embedding": map[string]string{"pooling": d.Pooling}}
}

// The values of ErrorType (TEI's enum, serialized as declared).
const (
	TypeUnhealthy  = "Unhealthy"
	TypeBackend    = "Backend"
	TypeOverloaded = "Overloaded"
	TypeValidation = "Validation"
	TypeTokenizer  = "Tokenizer"
	TypeEmpty      = "Empty"
)

// Error is an error in TEI's body, {"error":…,"error_type":…}.
type Error struct {
	Status  int
	Type    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Body is the error's JSON body.
func (e *Error) Body() []byte {
	return Encode(struct {
		Error     string `json:"error"`
		ErrorType string `json:"error_type"`
	}{e.Message, e.Type})
}

func validation(message string) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Type: TypeValidation, Message: "Input validation error: " + message}
}

func empty(message string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: TypeEmpty, Message: message}
}

// deserialize is axum's answer to JSON of the wrong shape.
func deserialize(detail string) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Type: TypeValidation,
		Message: "Failed to deserialize the JSON body into the target type: " + detail}
}

func batchTooLarge(n int) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Type: TypeValidation,
		Message: fmt.Sprintf("batch size %d > maximum allowed batch size %d", n, MaxClientBatchSize)}
}

// NotTask answers a route used on an endpoint of another task, as TEI
// answers a model of another type: a 424 backend error in its words.
func NotTask(route string) *Error {
	msg := map[string]string{
		"embed":        "Model is not an embedding model",
		"embed_sparse": "Model is not an embedding model with SPLADE pooling",
		"rerank":       "model is not a re-ranker model",
	}[route]
	return &Error{Status: http.StatusFailedDependency, Type: TypeBackend, Message: "Backend error: " + msg}
}

// UnsupportedMediaType is axum's answer to a body that is not JSON.
func UnsupportedMediaType() *Error {
	return &Error{Status: http.StatusUnsupportedMediaType, Type: TypeValidation,
		Message: "Expected request with `Content-Type: application/json`"}
}

// FromES translates an Elasticsearch error into TEI's statuses: a bad
// request is a 422 validation error (in TEI's words when the pipeline
// words it so), a deployment that cannot take it 429 or 503, a failure of
// the model 424; authentication, authorization and missing endpoints keep
// their status.
func FromES(e *eserror.Error) *Error {
	msg := e.Reason
	if e.Cause != nil && e.Cause.Reason != "" {
		msg += ": " + e.Cause.Reason
	}
	switch s := e.Status; {
	case s == http.StatusBadRequest && inferapi.IsDimensionsTooLarge(e.Reason):
		return validation("`dimensions` should be smaller than the maximum embedding dimension.")
	case s == http.StatusBadRequest:
		return validation(msg)
	case s == http.StatusNotAcceptable:
		return UnsupportedMediaType()
	case s == http.StatusTooManyRequests:
		return &Error{Status: s, Type: TypeOverloaded, Message: "Model is overloaded: " + msg}
	case s == http.StatusConflict || s == http.StatusServiceUnavailable || s == http.StatusRequestTimeout:
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeUnhealthy, Message: msg}
	case s >= 500:
		return &Error{Status: http.StatusFailedDependency, Type: TypeBackend, Message: "Backend error: " + msg}
	default:
		return &Error{Status: s, Type: TypeValidation, Message: msg}
	}
}
