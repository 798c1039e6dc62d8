// Package openaiapi is OpenAI's embeddings and models API as jetinfer
// serves it over its endpoints (POST /v1/embeddings, GET /v1/models): the
// request with OpenAI's validation, the response bodies, and OpenAI's error
// envelope, into which Elasticsearch's errors are translated. The model of
// a request is an inference id. It is pure Go; the HTTP API routes to it.
package openaiapi

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/jetinfer/jetinfer/eserror"
)

// MaxInputs bounds the inputs of one embeddings request, as OpenAI's API
// reference does ("any array must be 2048 dimensions or less").
const MaxInputs = 2048

// Encoding formats of an embeddings request.
const (
	FormatFloat  = "float"
	FormatBase64 = "base64"
)

// EmbeddingsRequest is a POST /v1/embeddings body.
type EmbeddingsRequest struct {
	Input []string
	Model string
	// EncodingFormat is FormatFloat or FormatBase64 (little-endian
	// float32s, which the Python SDK asks for by default).
	EncodingFormat string
	// Dimensions, when positive, truncates each embedding.
	Dimensions int
	User       string
}

// embeddingsFields are the fields of an embeddings request, in the order
// they are checked.
var embeddingsFields = []string{"model", "input", "encoding_format", "dimensions", "user"}

// ParseEmbeddingsRequest decodes and validates a POST /v1/embeddings body.
// Token-array inputs are refused: endpoints take text.
func ParseEmbeddingsRequest(body []byte) (EmbeddingsRequest, error) {
	req := EmbeddingsRequest{EncodingFormat: FormatFloat}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return req, invalid("", "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
	}
	// Unknown fields first, then the fields in a fixed order: the same
	// body always gets the same error.
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(embeddingsFields, name) {
			return req, invalid("", fmt.Sprintf("Unrecognized request argument supplied: %s", name))
		}
	}
	for _, name := range embeddingsFields {
		raw, ok := fields[name]
		if !ok || name != "input" && name != "model" && isNull(raw) {
			continue // null is the default of an optional field
		}
		var err error
		switch name {
		case "input":
			req.Input, err = parseInput(raw)
		case "model":
			err = unmarshalField(raw, name, "string", &req.Model)
		case "encoding_format":
			err = unmarshalField(raw, name, "string", &req.EncodingFormat)
			if err == nil && req.EncodingFormat != FormatFloat && req.EncodingFormat != FormatBase64 {
				err = invalid(name, fmt.Sprintf("'%s' is not one of ['float', 'base64'] - 'encoding_format'", req.EncodingFormat))
			}
		case "dimensions":
			err = unmarshalField(raw, name, "integer", &req.Dimensions)
			if err == nil && req.Dimensions < 1 {
				err = invalid(name, fmt.Sprintf("Invalid value for 'dimensions': %d. It must be at least 1.", req.Dimensions))
			}
		case "user":
			err = unmarshalField(raw, name, "string", &req.User)
		}
		if err != nil {
			return req, err
		}
	}
	if _, ok := fields["model"]; !ok || req.Model == "" {
		return req, invalid("model", "you must provide a model parameter")
	}
	if _, ok := fields["input"]; !ok {
		return req, invalid("input", "'input' is a required property")
	}
	return req, nil
}

func parseInput(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, invalid("input", "'$.input' is invalid: an input must not be empty.")
		}
		return []string{one}, nil
	}
	var many []json.RawMessage
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, invalid("input", "'$.input' is invalid: it must be a string or an array of strings.")
	}
	if len(many) == 0 {
		return nil, invalid("input", "'$.input' is invalid: the array must not be empty.")
	}
	if len(many) > MaxInputs {
		return nil, invalid("input", fmt.Sprintf("'$.input' is invalid: at most %d inputs are allowed, got %d.", MaxInputs, len(many)))
	}
	out := make([]string, len(many))
	for i, m := range many {
		if err := json.Unmarshal(m, &out[i]); err != nil || isNull(m) {
			return nil, invalid("input", fmt.Sprintf("'$.input[%d]' is invalid: inputs must be strings (token arrays are not accepted: endpoints tokenize their own input).", i))
		}
		if out[i] == "" {
			return nil, invalid("input", fmt.Sprintf("'$.input[%d]' is invalid: an input must not be empty.", i))
		}
	}
	return out, nil
}

func unmarshalField(raw json.RawMessage, name, kind string, v any) error {
	if err := json.Unmarshal(raw, v); err != nil || isNull(raw) {
		return invalid(name, fmt.Sprintf("Invalid type for '%s': expected %s, but got %s.", name, article(kind), jsonKind(raw)))
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func article(kind string) string {
	if kind == "integer" {
		return "an integer"
	}
	return "a " + kind
}

// jsonKind names a JSON value's type as OpenAI's messages do.
func jsonKind(raw json.RawMessage) string {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "a string"
	case '[':
		return "an array"
	case '{':
		return "an object"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(b, ".eE") {
		return "a decimal"
	}
	return "an integer"
}

// EmbeddingsResponse is the body answering req with one vector per input
// and the tokens the model read.
func EmbeddingsResponse(req EmbeddingsRequest, vecs [][]float32, tokens int) []byte {
	b := []byte(`{"object":"list","data":[`)
	for i, v := range vecs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		if req.EncodingFormat == FormatBase64 {
			raw := make([]byte, 4*len(v))
			for j, x := range v {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(x))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, x := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	model, _ := json.Marshal(req.Model)
	b = append(b, model...)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	return append(b, "}}"...)
}

// Model is one entry of GET /v1/models: an inference endpoint.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// NewModel describes an endpoint as a model.
func NewModel(inferenceID string) Model {
	return Model{ID: inferenceID, Object: "model", OwnedBy: "jetinfer"}
}

// ModelList is the body of GET /v1/models.
func ModelList(models []Model) []byte {
	if models == nil {
		models = []Model{}
	}
	b, _ := json.Marshal(struct {
		Object string  `json:"object"`
		Data   []Model `json:"data"`
	}{"list", models})
	return b
}

// Error is an error in OpenAI's envelope:
// {"error":{"message":…,"type":…,"param":…,"code":…}}.
type Error struct {
	Status  int
	Message string
	Type    string
	// Param and Code are null when empty.
	Param, Code string
}

// Types of Error.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeServer         = "server_error"
	TypeRateLimit      = "rate_limit_error"
)

func (e *Error) Error() string { return e.Message }

// MarshalJSON writes the envelope.
func (e *Error) MarshalJSON() ([]byte, error) {
	null := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	type body struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	return json.Marshal(struct {
		Error body `json:"error"`
	}{body{e.Message, e.Type, null(e.Param), null(e.Code)}})
}

func invalid(param, message string) *Error {
	return &Error{Status: http.StatusBadRequest, Message: message, Type: TypeInvalidRequest, Param: param}
}

// ModelNotFound is OpenAI's answer for a model that does not exist.
func ModelNotFound(model string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model)}
}

// NotEmbeddings answers a request for embeddings from an endpoint of
// another task.
func NotEmbeddings(model, taskType string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Param: "model", Code: "model_not_supported",
		Message: fmt.Sprintf("The model `%s` does not support embeddings: its task type is [%s], not [text_embedding].", model, taskType)}
}

// FromES translates an Elasticsearch error: the status and the reason are
// kept, the type and code are OpenAI's for that status.
func FromES(e *eserror.Error) *Error {
	out := &Error{Status: e.Status, Message: e.Reason, Type: TypeInvalidRequest}
	if e.Cause != nil && e.Cause.Reason != "" {
		out.Message += ": " + e.Cause.Reason
	}
	switch {
	case e.Status == http.StatusUnauthorized:
		out.Code = "invalid_api_key"
	case e.Status == http.StatusForbidden:
		out.Code = "insufficient_permissions"
	case e.Status == http.StatusNotFound:
		out.Code = "model_not_found"
	case e.Status == http.StatusRequestEntityTooLarge:
		out.Code = "request_too_large"
	case e.Status == http.StatusTooManyRequests:
		out.Type, out.Code = TypeRateLimit, "rate_limit_exceeded"
	case e.Status >= 500 || e.Status == http.StatusRequestTimeout:
		out.Type = TypeServer
	}
	return out
}
