package teiapi

import (
	"net/http"
	"testing"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
)

func TestParseEmbedRequest(t *testing.T) {
	req, err := ParseEmbedRequest([]byte(`{"inputs":["a","b"],"truncate":false,"truncation_direction":"left","prompt_name":"query","normalize":false,"dimensions":8,"unknown":1}`))
	if err != nil || len(req.Inputs) != 2 || req.Truncate == nil || *req.Truncate || !req.TruncateLeft || req.PromptName != "query" || req.Normalize || req.Dimensions != 8 {
		t.Fatalf("%+v, %v", req, err)
	}
	// truncate false wins over the direction: the input is refused, not cut.
	if opts := req.Options.Inference(); opts.Truncation != inferapi.TruncateRefuse || opts.Prompt != "query" {
		t.Errorf("options %+v", opts)
	}
	req, err = ParseEmbedRequest([]byte(`{"inputs":"one","truncate":null,"prompt_name":null,"dimensions":null}`))
	if err != nil || len(req.Inputs) != 1 || req.Truncate != nil || !req.Normalize || req.Dimensions != 0 || req.Options.Inference() != (inferapi.Options{}) {
		t.Fatalf("defaults: %+v, %v", req, err)
	}
	req, _ = ParseEmbedRequest([]byte(`{"inputs":"one","truncation_direction":"Left"}`))
	if opts := req.Options.Inference(); opts.Truncation != inferapi.TruncateKeepEnd {
		t.Errorf("direction Left: %+v", opts)
	}
	for _, c := range []struct {
		body   string
		status int
		typ    string
		msg    string
	}{
		{`{"inputs":`, 400, TypeValidation, "Failed to parse the request body as JSON: unexpected end of JSON input"},
		{`{"inputs":"x","normalize":null}`, 422, TypeValidation, "Failed to deserialize the JSON body into the target type: normalize: invalid type: null, expected a boolean"},
		{`{"inputs":"x","truncate":"yes"}`, 422, TypeValidation, "Failed to deserialize the JSON body into the target type: truncate: invalid type: string, expected bool"},
		{`{"inputs":"x","dimensions":-1}`, 422, TypeValidation, "Failed to deserialize the JSON body into the target type: dimensions: invalid value: integer `-1`, expected usize"},
		{`{"inputs":{"a":1}}`, 422, TypeValidation, "Failed to deserialize the JSON body into the target type: inputs: data did not match any variant of untagged enum Input"},
		{`{"inputs":[[101,102]]}`, 422, TypeValidation, "Input validation error: token ids as `inputs` are not supported: send texts"},
		{`{"inputs":["a",""]}`, 400, TypeEmpty, "Input validation error: `inputs` cannot be empty"},
	} {
		_, err := ParseEmbedRequest([]byte(c.body))
		e, ok := err.(*Error)
		if !ok || e.Status != c.status || e.Type != c.typ || e.Message != c.msg {
			t.Errorf("%s: %#v; want %d %s %q", c.body, err, c.status, c.typ, c.msg)
		}
	}
}

func TestParseRerankAndTokenizeRequests(t *testing.T) {
	req, err := ParseRerankRequest([]byte(`{"query":"q","texts":["a","b"],"raw_scores":true,"return_text":true,"truncate":true}`))
	if err != nil || req.Query != "q" || len(req.Texts) != 2 || !req.RawScores || !req.ReturnText || req.Truncate == nil || !*req.Truncate {
		t.Fatalf("%+v, %v", req, err)
	}
	for body, msg := range map[string]string{
		`{"texts":["a"]}`:                            "Failed to deserialize the JSON body into the target type: missing field `query`",
		`{"query":"q"}`:                              "Failed to deserialize the JSON body into the target type: missing field `texts`",
		`{"query":"q","texts":"a"}`:                  "Failed to deserialize the JSON body into the target type: texts: invalid type: expected a sequence of strings",
		`{"query":"q","texts":[]}`:                   "`texts` cannot be empty",
		`{"query":"q","texts":["a"],"raw_scores":1}`: "Failed to deserialize the JSON body into the target type: raw_scores: invalid type: 1, expected a boolean",
	} {
		if _, err := ParseRerankRequest([]byte(body)); err == nil || err.Error() != msg {
			t.Errorf("%s: %v; want %s", body, err, msg)
		}
	}
	treq, err := ParseTokenizeRequest([]byte(`{"inputs":["a"],"prompt_name":"p"}`))
	if err != nil || !treq.AddSpecialTokens || treq.PromptName != "p" || len(treq.Inputs) != 1 {
		t.Fatalf("%+v, %v", treq, err)
	}
	treq, err = ParseTokenizeRequest([]byte(`{"inputs":"a","add_special_tokens":false}`))
	if err != nil || treq.AddSpecialTokens {
		t.Fatalf("%+v, %v", treq, err)
	}
}

func TestResponses(t *testing.T) {
	dense, err := EmbedResponse([]byte(`{"text_embedding":[{"embedding":[1.0,-0.5,3.25E-7]},{"embedding":[0.1]}]}`), 2)
	if want := `[[1,-0.5,3.25e-7],[0.1]]`; err != nil || string(dense) != want {
		t.Errorf("embed = %s, %v; want %s", dense, err, want)
	}
	if _, err := EmbedResponse([]byte(`{"text_embedding":[{"embedding":[1.0]}]}`), 2); err == nil || err.Error() != "1 embeddings for 2 inputs" {
		t.Errorf("embed of the wrong count: %v", err)
	}
	sparse, err := SparseResponse([]byte(`{"sparse_embedding":[{"is_truncated":false,"embedding":{"2054":0.5,"7":1.25,"100":0.125}},{"is_truncated":false,"embedding":{}}]}`))
	if want := `[[{"index":7,"value":1.25},{"index":100,"value":0.125},{"index":2054,"value":0.5}],[]]`; err != nil || string(sparse) != want {
		t.Errorf("sparse = %s, %v; want %s", sparse, err, want)
	}
	if _, err := SparseResponse([]byte(`{"sparse_embedding":[{"embedding":{"hello":1.0}}]}`)); err == nil {
		t.Error("a sparse body keyed by token, not id, was read as ids")
	}
	// Best first; a tie puts the later text first, as TEI's reversed stable sort.
	ranked, err := RerankResponse([]byte(`{"rerank":[{"index":0,"relevance_score":0.5,"text":"a<b"},{"index":2,"relevance_score":0.5,"text":"c"},{"index":1,"relevance_score":0.9,"text":"b"}]}`))
	if want := `[{"index":1,"text":"b","score":0.9},{"index":2,"text":"c","score":0.5},{"index":0,"text":"a<b","score":0.5}]`; err != nil || string(ranked) != want {
		t.Errorf("rerank = %s, %v; want %s", ranked, err, want)
	}
	ranked, _ = RerankResponse([]byte(`{"rerank":[{"index":0,"relevance_score":0.25}]}`))
	if want := `[{"index":0,"score":0.25}]`; string(ranked) != want {
		t.Errorf("rerank without texts = %s; want %s", ranked, want)
	}
	toks, err := TokenizeResponse([]byte(`{"tokens":[[{"id":101,"text":"[CLS]","special":true},{"id":7,"text":"&","start":0,"end":1}]]}`))
	if want := `[[{"id":101,"text":"[CLS]","special":true,"start":null,"stop":null},{"id":7,"text":"&","special":false,"start":0,"stop":1}]]`; err != nil || string(toks) != want {
		t.Errorf("tokenize = %s, %v; want %s", toks, err, want)
	}
}

func TestFromES(t *testing.T) {
	for _, c := range []struct {
		es         *eserror.Error
		status     int
		typ, error string
	}{
		{eserror.BadRequest("`inputs` must have less than 512 tokens. Given: 600"), 422, TypeValidation, "Input validation error: `inputs` must have less than 512 tokens. Given: 600"},
		{eserror.New(http.StatusNotFound, eserror.TypeResourceNotFound, "Inference endpoint not found [x]"), 404, TypeValidation, "Inference endpoint not found [x]"},
		{eserror.BadRequest(inferapi.ErrDimensionsTooLarge, 384, 512), 422, TypeValidation, "Input validation error: `dimensions` should be smaller than the maximum embedding dimension."},
		{eserror.New(http.StatusTooManyRequests, eserror.TypeStatus, "queue full"), 429, TypeOverloaded, "Model is overloaded: queue full"},
		{eserror.New(http.StatusConflict, eserror.TypeStatus, "not allocated"), 503, TypeUnhealthy, "not allocated"},
		{eserror.New(http.StatusRequestTimeout, eserror.TypeStatus, "timeout"), 503, TypeUnhealthy, "timeout"},
		{eserror.New(http.StatusInternalServerError, eserror.TypeStatus, "boom"), 424, TypeBackend, "Backend error: boom"},
		{eserror.New(http.StatusNotAcceptable, "", "Content-Type header is missing"), 415, TypeValidation, "Expected request with `Content-Type: application/json`"},
		{eserror.New(http.StatusUnauthorized, eserror.TypeSecurity, "missing authentication credentials"), 401, TypeValidation, "missing authentication credentials"},
	} {
		e := FromES(c.es)
		if e.Status != c.status || e.Type != c.typ || e.Message != c.error {
			t.Errorf("%d %s: %+v; want %d %s %q", c.es.Status, c.es.Reason, e, c.status, c.typ, c.error)
		}
	}
	if got := string(batchTooLarge(3000).Body()); got != `{"error":"batch size 3000 > maximum allowed batch size 2048","error_type":"Validation"}` {
		t.Errorf("body %s", got)
	}
}
