// Package inferapi is the contract of POST _inference that the HTTP API,
// the NATS protocol and the pipeline share: the request body (parsed and
// validated with Elasticsearch's rules and texts), its splitting into parts
// small enough for one message, and the merging and ranking of the parts'
// responses. It is pure Go and links no model runtime, so that every
// process that only speaks the API stays free of ONNX Runtime.
package inferapi

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/xcontent"
)

// InputType says what the input is for; E5 models prefix it differently.
type InputType string

// Input types accepted from clients, as Elasticsearch's InputType.
const (
	InputUnspecified    InputType = "unspecified"
	InputIngest         InputType = "ingest"
	InputSearch         InputType = "search"
	InputClassification InputType = "classification"
	InputClustering     InputType = "clustering"
)

// Request is a POST _inference body.
type Request struct {
	Input     []string  `json:"input"`
	Query     *string   `json:"query,omitempty"`
	InputType InputType `json:"input_type,omitempty"`
	// TaskSettings are per-request task settings; for rerank,
	// return_documents in them is honoured.
	TaskSettings    map[string]any `json:"task_settings,omitempty"`
	ReturnDocuments *bool          `json:"return_documents,omitempty"`
	TopN            *int           `json:"top_n,omitempty"`
}

// parserName is the name of Elasticsearch's InferenceAction request parser;
// it appears in every body parse error.
const parserName = "cluster:internal/xpack/inference"

func fieldTypeError(obj *xcontent.Object, field string, v any) error {
	return xcontent.ParseError(obj.ValuePos(field),
		fmt.Sprintf("[%s] %s doesn't support values of type: %s", parserName, field, xcontent.TokenName(v)), nil)
}

func fieldParseError(obj *xcontent.Object, field string, cause *eserror.Error) error {
	return xcontent.ParseError(obj.ValuePos(field),
		fmt.Sprintf("[%s] failed to parse field [%s]", parserName, field), cause)
}

// ParseRequest decodes a POST _inference body strictly, as Elasticsearch's
// ObjectParser does: unknown fields and wrongly typed values are
// x_content_parse_exceptions that name their position.
func ParseRequest(body []byte) (Request, error) {
	if err := config.RequireBody(body); err != nil {
		return Request{}, err
	}
	obj, err := xcontent.ParseNamed(body, parserName)
	if err != nil {
		return Request{}, err
	}
	req := Request{InputType: InputUnspecified}
	for _, field := range obj.Keys() {
		v, _ := obj.Get(field)
		var err error
		switch field {
		case "input":
			req.Input, err = parseInput(obj, v)
		case "query":
			s, ok := v.(string)
			if !ok {
				return Request{}, fieldTypeError(obj, field, v)
			}
			req.Query = &s
		case "input_type":
			s, ok := v.(string)
			if !ok {
				return Request{}, fieldTypeError(obj, field, v)
			}
			req.InputType, err = parseInputType(s)
			if err != nil {
				return Request{}, fieldParseError(obj, field, eserror.As(err))
			}
		case "task_settings":
			ts, ok := v.(*xcontent.Object)
			if !ok {
				return Request{}, fieldTypeError(obj, field, v)
			}
			req.TaskSettings = toMap(ts)
		case "return_documents":
			b, perr := parseBool(v)
			if perr != nil {
				return Request{}, fieldParseError(obj, field, perr)
			}
			req.ReturnDocuments = &b
		case "top_n":
			n, perr := parseInt(v)
			if perr != nil {
				return Request{}, fieldParseError(obj, field, perr)
			}
			req.TopN = &n
		case "timeout":
			// Accepted for compatibility; the ?timeout URL parameter wins, as
			// in Elasticsearch.
			if _, ok := v.(string); !ok {
				return Request{}, fieldTypeError(obj, field, v)
			}
		default:
			return Request{}, xcontent.ParseError(obj.KeyPos(field),
				fmt.Sprintf("[%s] unknown field [%s]", parserName, field), nil)
		}
		if err != nil {
			return Request{}, err
		}
	}
	return req, nil
}

// parseInput accepts a string or an array of scalars, as ObjectParser's
// declareStringArray does (numbers and booleans become their text).
func parseInput(obj *xcontent.Object, v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			switch e.(type) {
			case string, json.Number, bool:
				out[i] = xcontent.JavaValue(e)
			default:
				return nil, fieldTypeError(obj, "input", e)
			}
		}
		return out, nil
	}
	return nil, fieldTypeError(obj, "input", v)
}

func parseInputType(s string) (InputType, error) {
	norm := strings.ToLower(strings.TrimSpace(s))
	switch InputType(norm) {
	case InputUnspecified, InputIngest, InputSearch, InputClassification, InputClustering:
		return InputType(norm), nil
	case "internal_ingest", "internal_search":
		return "", eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument, "Unrecognized input_type [%s]", s)
	}
	return "", eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument,
		"No enum constant org.elasticsearch.inference.InputType.%s", strings.ToUpper(strings.TrimSpace(s)))
}

func parseBool(v any) (bool, *eserror.Error) {
	switch v := v.(type) {
	case bool:
		return v, nil
	case string:
		switch v {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument,
		"Failed to parse value [%s] as only [true] or [false] are allowed.", xcontent.JavaValue(v))
}

// parseInt accepts what Jackson's getIntValue with coercion accepts: JSON
// numbers (truncated) and numeric strings.
func parseInt(v any) (int, *eserror.Error) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument, "Current token (%s) not numeric, can not use numeric value accessors", xcontent.TokenName(v))
	}
	if i, err := strconv.ParseInt(s, 10, 32); err == nil {
		return int(i), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) <= math.MaxInt32 {
		return int(f), nil
	}
	return 0, eserror.New(http.StatusBadRequest, "number_format_exception", "For input string: \"%s\"", xcontent.JavaValue(v))
}

func toMap(o *xcontent.Object) map[string]any {
	m := make(map[string]any, len(o.Keys()))
	for _, k := range o.Keys() {
		v, _ := o.Get(k)
		m[k] = plain(v)
	}
	return m
}

func plain(v any) any {
	switch v := v.(type) {
	case *xcontent.Object:
		return toMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = plain(e)
		}
		return out
	}
	return v
}

// Validate applies Elasticsearch's InferenceAction.Request.validate for a
// request addressed to task (config.Any when the URL names no task type).
// Like Elasticsearch it reports the first failing check only.
func (r Request) Validate(task config.TaskType) error {
	fail := func(format string, args ...any) error {
		return eserror.Validation(eserror.TypeActionRequestValidation, fmt.Sprintf(format, args...))
	}
	switch {
	case r.Input == nil:
		return fail("Field [input] cannot be null")
	case len(r.Input) == 0:
		return fail("Field [input] cannot be an empty array")
	}
	if task == config.Rerank {
		switch {
		case r.Query == nil:
			return fail("Field [query] cannot be null for task type [%s]", task)
		case *r.Query == "":
			return fail("Field [query] cannot be empty for task type [%s]", task)
		}
	}
	if task != config.Rerank && task != config.Any {
		if r.ReturnDocuments != nil {
			return fail("Field [return_documents] cannot be specified for task type [%s]", task)
		}
		if r.TopN != nil {
			return fail("Field [top_n] cannot be specified for task type [%s]", task)
		}
	}
	if task != config.TextEmbedding && task != config.Any && r.InputType != InputUnspecified && r.InputType != "" {
		return fail("Field [input_type] cannot be specified for task type [%s]", task)
	}
	if r.TopN != nil && *r.TopN < 0 {
		// Elasticsearch fails such a request with a 500 from List.subList.
		return fail("Field [top_n] must not be negative")
	}
	if v, ok := r.TaskSettings["return_documents"]; ok {
		// Elasticsearch's rerank task settings silently turn a wrongly typed
		// value into true; the endpoint's PUT refuses it, and so does this.
		if _, isBool := v.(bool); !isBool {
			return eserror.Validation(eserror.TypeValidation,
				fmt.Sprintf("field [return_documents] is not of the expected type. The value [%s] cannot be converted to a [Boolean]", xcontent.JavaValue(v)))
		}
	}
	return nil
}

// IncludeDocuments decides whether rerank results carry the document text,
// with Elasticsearch's precedence: the request's return_documents, then
// the request's task_settings.return_documents, then the endpoint's task
// settings, then true.
func (r Request) IncludeDocuments(endpoint *config.RerankTaskSettings) bool {
	if r.ReturnDocuments != nil {
		return *r.ReturnDocuments
	}
	if b, ok := r.TaskSettings["return_documents"].(bool); ok {
		return b
	}
	if endpoint != nil {
		return endpoint.ReturnDocuments
	}
	return true
}
