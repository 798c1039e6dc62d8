package openaiapi

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/jetinfer/jetinfer/eserror"
)

func TestParseEmbeddingsRequest(t *testing.T) {
	req, err := ParseEmbeddingsRequest([]byte(`{"model":"e5","input":["a","b"],"encoding_format":"base64","dimensions":8,"user":"u1"}`))
	if err != nil || req.Model != "e5" || len(req.Input) != 2 || req.EncodingFormat != FormatBase64 || req.Dimensions != 8 || req.User != "u1" {
		t.Fatalf("%+v, %v", req, err)
	}
	req, err = ParseEmbeddingsRequest([]byte(`{"model":"e5","input":"one","dimensions":null,"encoding_format":null,"user":null}`))
	if err != nil || len(req.Input) != 1 || req.Input[0] != "one" || req.EncodingFormat != FormatFloat || req.Dimensions != 0 {
		t.Fatalf("%+v, %v", req, err)
	}
	for _, c := range []struct{ body, param, message string }{
		{`[1]`, "", "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"},
		{`{"model":"e5"}`, "input", "'input' is a required property"},
		{`{"model":"","input":"x"}`, "model", "you must provide a model parameter"},
		{`{"model":1,"input":"x"}`, "model", "Invalid type for 'model': expected a string, but got an integer."},
		{`{"model":"e5","input":"x","dimensions":1.5}`, "dimensions", "Invalid type for 'dimensions': expected an integer, but got a decimal."},
		{`{"model":"e5","input":"x","dimensions":0}`, "dimensions", "Invalid value for 'dimensions': 0. It must be at least 1."},
		{`{"model":"e5","input":[]}`, "input", "'$.input' is invalid: the array must not be empty."},
		{`{"model":"e5","input":["a",""]}`, "input", "'$.input[1]' is invalid: an input must not be empty."},
		{`{"model":"e5","input":[[1,2]]}`, "input", "'$.input[0]' is invalid: inputs must be strings (token arrays are not accepted: endpoints tokenize their own input)."},
		{`{"model":"e5","input":{"a":1}}`, "input", "'$.input' is invalid: it must be a string or an array of strings."},
		{`{"zeta":1,"alpha":2,"model":"e5","input":"x"}`, "", "Unrecognized request argument supplied: alpha"},
	} {
		_, err := ParseEmbeddingsRequest([]byte(c.body))
		e, ok := err.(*Error)
		if !ok || e.Status != http.StatusBadRequest || e.Param != c.param || e.Message != c.message || e.Type != TypeInvalidRequest {
			t.Errorf("%s: %#v; want param %q message %q", c.body, err, c.param, c.message)
		}
	}
	many := make([]string, MaxInputs+1)
	for i := range many {
		many[i] = "x"
	}
	body, _ := json.Marshal(map[string]any{"model": "e5", "input": many})
	if _, err := ParseEmbeddingsRequest(body); err == nil || err.Error() != "'$.input' is invalid: at most 2048 inputs are allowed, got 2049." {
		t.Fatalf("2049 inputs: %v", err)
	}
}

func TestEmbeddingsResponse(t *testing.T) {
	vecs := [][]float32{{1, -0.5, 3.25e-7}, {0.1}}
	got := string(EmbeddingsResponse(EmbeddingsRequest{Model: "e5", EncodingFormat: FormatFloat}, vecs, 7))
	want := `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1,-0.5,3.25e-07]},{"object":"embedding","index":1,"embedding":[0.1]}],"model":"e5","usage":{"prompt_tokens":7,"total_tokens":7}}`
	if got != want {
		t.Fatalf("float:\n%s\nwant\n%s", got, want)
	}
	// 1.0 is 0x3f800000, -0.5 0xbf000000: little-endian bytes, base64.
	got = string(EmbeddingsResponse(EmbeddingsRequest{Model: "e5", EncodingFormat: FormatBase64}, [][]float32{{1, -0.5}}, 2))
	want = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AACAPwAAAL8="}],"model":"e5","usage":{"prompt_tokens":2,"total_tokens":2}}`
	if got != want {
		t.Fatalf("base64:\n%s\nwant\n%s", got, want)
	}
}

func TestErrorsFromElasticsearch(t *testing.T) {
	for _, c := range []struct {
		es              *eserror.Error
		typ, code, body string
	}{
		{eserror.New(401, "security_exception", "missing authentication credentials for REST request [/v1/embeddings]"), TypeInvalidRequest, "invalid_api_key",
			`{"error":{"message":"missing authentication credentials for REST request [/v1/embeddings]","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
		{eserror.New(429, "status_exception", "Rejected"), TypeRateLimit, "rate_limit_exceeded", ""},
		{eserror.New(408, "status_exception", "timeout [30s] waiting for inference result"), TypeServer, "", ""},
		{eserror.Internal(nil, "internal error"), TypeServer, "", ""},
	} {
		e := FromES(c.es)
		if e.Status != c.es.Status || e.Type != c.typ || e.Code != c.code || e.Message != c.es.Reason {
			t.Errorf("%v → %+v", c.es, e)
		}
		if c.body != "" {
			if b, _ := json.Marshal(e); string(b) != c.body {
				t.Errorf("body %s; want %s", b, c.body)
			}
		}
	}
}
