package inferapi

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
)

func ptr[T any](v T) *T { return &v }

func TestParseRequestAccepts(t *testing.T) {
	tests := []struct {
		body string
		want Request
	}{
		{`{"input":"one"}`, Request{Input: []string{"one"}, InputType: InputUnspecified}},
		{`{"input":["a","",5,true,1.50]}`, Request{Input: []string{"a", "", "5", "true", "1.5"}, InputType: InputUnspecified}},
		{`{"input":[]}`, Request{Input: []string{}, InputType: InputUnspecified}},
		{`{"input":["d1","d2"],"query":"q","top_n":"3","return_documents":"false"}`,
			Request{Input: []string{"d1", "d2"}, Query: ptr("q"), TopN: ptr(3), ReturnDocuments: ptr(false), InputType: InputUnspecified}},
		{`{"input":"x","top_n":1.9}`, Request{Input: []string{"x"}, TopN: ptr(1), InputType: InputUnspecified}},
		{`{"input":"x","input_type":" Search "}`, Request{Input: []string{"x"}, InputType: InputSearch}},
		{`{"input":"x","input_type":"ingest","timeout":"5s","task_settings":{"return_documents":true}}`,
			Request{Input: []string{"x"}, InputType: InputIngest, TaskSettings: map[string]any{"return_documents": true}}},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			got, err := ParseRequest([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRequest = %+v; want %+v", got, tt.want)
			}
		})
	}
}

// parseRejects are bodies Elasticsearch's parser refuses, with its errors.
var parseRejects = []struct {
	body, typ, reason, cause string
}{
	{"", "parse_exception", "request body is required", ""},
	{`{"input":"x","foo":1}`, "x_content_parse_exception", "[1:14] [cluster:internal/xpack/inference] unknown field [foo]", ""},
	{`{"input":5}`, "x_content_parse_exception", "[1:10] [cluster:internal/xpack/inference] input doesn't support values of type: VALUE_NUMBER", ""},
	{`{"input":null}`, "x_content_parse_exception", "[1:10] [cluster:internal/xpack/inference] input doesn't support values of type: VALUE_NULL", ""},
	{`{"input":[{"a":1}]}`, "x_content_parse_exception", "[1:10] [cluster:internal/xpack/inference] input doesn't support values of type: START_OBJECT", ""},
	{`{"input":"x","query":7}`, "x_content_parse_exception", "[1:22] [cluster:internal/xpack/inference] query doesn't support values of type: VALUE_NUMBER", ""},
	{`{"input":"x",` + "\n" + `"top_n":"x"}`, "x_content_parse_exception", "[2:9] [cluster:internal/xpack/inference] failed to parse field [top_n]", `For input string: "x"`},
	{`{"input":"x","return_documents":"yes"}`, "x_content_parse_exception", "[1:33] [cluster:internal/xpack/inference] failed to parse field [return_documents]",
		"Failed to parse value [yes] as only [true] or [false] are allowed."},
	{`{"input":"x","input_type":"foo"}`, "x_content_parse_exception", "[1:27] [cluster:internal/xpack/inference] failed to parse field [input_type]",
		"No enum constant org.elasticsearch.inference.InputType.FOO"},
	{`{"input":"x","input_type":"internal_ingest"}`, "x_content_parse_exception", "[1:27] [cluster:internal/xpack/inference] failed to parse field [input_type]",
		"Unrecognized input_type [internal_ingest]"},
	{`{"input":"x","task_settings":[]}`, "x_content_parse_exception", "[1:30] [cluster:internal/xpack/inference] task_settings doesn't support values of type: START_ARRAY", ""},
	{`["x"]`, "x_content_parse_exception", "[1:1] [cluster:internal/xpack/inference] Expected START_OBJECT but was: START_ARRAY", ""},
	{`{"input":"x"`, "x_content_parse_exception", "[1:13] Unexpected end-of-input", "Unexpected end-of-input"},
	{`{"input":"x","input":"y"}`, "x_content_parse_exception", "[1:14] Duplicate field 'input'", "Duplicate field 'input'"},
}

func TestParseRequestRejects(t *testing.T) {
	for _, tt := range parseRejects {
		t.Run(tt.body, func(t *testing.T) {
			_, err := ParseRequest([]byte(tt.body))
			var e *eserror.Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseRequest error = %v; want %s", err, tt.typ)
			}
			if e.Status != 400 || e.Type != tt.typ || e.Reason != tt.reason {
				t.Fatalf("ParseRequest error = %d %s %q; want 400 %s %q", e.Status, e.Type, e.Reason, tt.typ, tt.reason)
			}
			gotCause := ""
			if e.Cause != nil {
				gotCause = e.Cause.Reason
			}
			if gotCause != tt.cause {
				t.Errorf("cause = %q; want %q", gotCause, tt.cause)
			}
		})
	}
}

func TestRequestValidate(t *testing.T) {
	input := []string{"x"}
	tests := []struct {
		name   string
		req    Request
		task   config.TaskType
		reason string // "" means valid
	}{
		{"no input", Request{}, config.Any, "Field [input] cannot be null"},
		{"empty input", Request{Input: []string{}}, config.TextEmbedding, "Field [input] cannot be an empty array"},
		{"rerank without query", Request{Input: input}, config.Rerank, "Field [query] cannot be null for task type [rerank]"},
		{"rerank empty query", Request{Input: input, Query: ptr("")}, config.Rerank, "Field [query] cannot be empty for task type [rerank]"},
		{"return_documents on embeddings", Request{Input: input, ReturnDocuments: ptr(true), TopN: ptr(1)}, config.SparseEmbedding,
			"Field [return_documents] cannot be specified for task type [sparse_embedding]"},
		{"top_n on embeddings", Request{Input: input, TopN: ptr(1)}, config.TextEmbedding, "Field [top_n] cannot be specified for task type [text_embedding]"},
		{"input_type on sparse", Request{Input: input, InputType: InputSearch}, config.SparseEmbedding,
			"Field [input_type] cannot be specified for task type [sparse_embedding]"},
		{"input_type on rerank", Request{Input: input, Query: ptr("q"), InputType: InputIngest}, config.Rerank,
			"Field [input_type] cannot be specified for task type [rerank]"},
		{"negative top_n", Request{Input: input, Query: ptr("q"), TopN: ptr(-1)}, config.Rerank, "Field [top_n] must not be negative"},
		{"input_type on text embedding", Request{Input: input, InputType: InputSearch}, config.TextEmbedding, ""},
		{"anything goes without a task type", Request{Input: input, InputType: InputSearch, TopN: ptr(2)}, config.Any, ""},
		{"unspecified input_type on sparse", Request{Input: input, InputType: InputUnspecified}, config.SparseEmbedding, ""},
		{"rerank", Request{Input: input, Query: ptr("q"), TopN: ptr(0), ReturnDocuments: ptr(false)}, config.Rerank, ""},
		{"rerank task setting of the wrong type", Request{Input: input, Query: ptr("q"), TaskSettings: map[string]any{"return_documents": "yes"}}, config.Rerank,
			"!field [return_documents] is not of the expected type. The value [yes] cannot be converted to a [Boolean]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate(tt.task)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Validate = %v; want nil", err)
				}
				return
			}
			// A leading "!" marks a validation_exception rather than an
			// action_request_validation_exception.
			typ, reason := eserror.TypeActionRequestValidation, tt.reason
			if r, ok := strings.CutPrefix(reason, "!"); ok {
				typ, reason = eserror.TypeValidation, r
			}
			var e *eserror.Error
			want := "Validation Failed: 1: " + reason + ";"
			if !errors.As(err, &e) || e.Type != typ || e.Reason != want || e.Status != 400 {
				t.Fatalf("Validate = %v; want %s %q", err, typ, want)
			}
		})
	}
}

// FuzzParseRequest checks that no body makes the parser panic, and that
// every failure is a 400 Elasticsearch exception, never a server fault.
func FuzzParseRequest(f *testing.F) {
	for _, tt := range parseRejects {
		f.Add([]byte(tt.body))
	}
	f.Add([]byte(`{"input":["a","b"],"query":"q","top_n":2,"return_documents":true,"input_type":"search","task_settings":{"a":[1,{"b":null}]}}`))
	f.Add([]byte("{\"input\":\"\xff\xfe\u0000\"}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseRequest(body)
		if err != nil {
			var e *eserror.Error
			if !errors.As(err, &e) || e.Status != 400 {
				t.Fatalf("ParseRequest(%q) error = %v; want a 400 exception", body, err)
			}
			return
		}
		for _, task := range []config.TaskType{config.Any, config.TextEmbedding, config.SparseEmbedding, config.Rerank} {
			if err := req.Validate(task); err != nil {
				var e *eserror.Error
				if !errors.As(err, &e) || e.Status != 400 {
					t.Fatalf("Validate(%s) error = %v; want a 400 exception", task, err)
				}
			}
		}
	})
}

func TestReturnDocumentsPrecedence(t *testing.T) {
	off, on := &config.RerankTaskSettings{ReturnDocuments: false}, &config.RerankTaskSettings{ReturnDocuments: true}
	tests := []struct {
		name     string
		req      Request
		endpoint *config.RerankTaskSettings
		want     bool
	}{
		{"nothing set", Request{}, nil, true},
		{"endpoint", Request{}, off, false},
		{"request task settings beat the endpoint", Request{TaskSettings: map[string]any{"return_documents": true}}, off, true},
		{"top-level beats task settings", Request{ReturnDocuments: ptr(false), TaskSettings: map[string]any{"return_documents": true}}, on, false},
		{"non-boolean task setting is ignored", Request{TaskSettings: map[string]any{"return_documents": "yes"}}, off, false},
	}
	for _, tt := range tests {
		if got := tt.req.IncludeDocuments(tt.endpoint); got != tt.want {
			t.Errorf("%s: IncludeDocuments = %v; want %v", tt.name, got, tt.want)
		}
	}
}
