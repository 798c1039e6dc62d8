package rerankapi

import (
	"encoding/json"
	"testing"
)

func TestParseRequest(t *testing.T) {
	req, err := ParseRequest([]byte(`{"model":"r","query":"q","documents":["a",{"text":"b"}],"top_n":1,"return_documents":true,"max_tokens_per_doc":512}`))
	if err != nil || req.Model != "r" || req.Query != "q" || len(req.Documents) != 2 || req.Documents[1] != "b" || req.TopN != 1 || !req.ReturnDocuments {
		t.Fatalf("%+v, %v", req, err)
	}
	if req, err := ParseRequest([]byte(`{"model":"r","query":"q","documents":["a"],"top_n":null,"return_documents":null}`)); err != nil || req.TopN != 0 || req.ReturnDocuments {
		t.Fatalf("nulls: %+v, %v", req, err)
	}
	for _, c := range []struct{ body, message string }{
		{`"x"`, "invalid request: the body must be a JSON object"},
		{`{"query":"q","documents":["a"]}`, "invalid request: model must be specified"},
		{`{"model":"r","documents":["a"]}`, "invalid request: query must not be empty"},
		{`{"model":"r","query":"q"}`, "invalid request: list of documents must not be empty"},
		{`{"model":"r","query":"q","documents":[1]}`, "invalid request: documents[0] must be a string or an object with a text field"},
		{`{"model":"r","query":"q","documents":"a"}`, "invalid request: documents must be an array of strings"},
		{`{"model":"r","query":"q","documents":["a"],"top_n":-1}`, "invalid request: top_n must be greater than 0, got -1"},
		{`{"model":"r","query":"q","documents":["a"],"return_documents":"yes"}`, "invalid request: return_documents has the wrong type"},
		{`{"model":"r","query":"q","documents":["a"],"b":1,"a":2}`, "invalid request: unknown field: parameter a is not a valid field"},
	} {
		_, err := ParseRequest([]byte(c.body))
		if e, ok := err.(*Error); !ok || e.Status != 400 || e.Message != c.message {
			t.Errorf("%s: %v; want %q", c.body, err, c.message)
		}
	}
}

func TestRankedAndResponse(t *testing.T) {
	results, err := Ranked([]byte(`{"rerank":[{"index":2,"relevance_score":0.75,"text":"c"},{"index":0,"relevance_score":0.25,"text":"a"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := string(Response("id1", "r", "2", results))
	want := `{"id":"id1","model":"r","results":[{"index":2,"relevance_score":0.75,"document":{"text":"c"}},{"index":0,"relevance_score":0.25,"document":{"text":"a"}}],"meta":{"api_version":{"version":"2"},"billed_units":{"search_units":1}}}`
	if got != want {
		t.Fatalf("%s\nwant\n%s", got, want)
	}
	results, _ = Ranked([]byte(`{"rerank":[{"index":1,"relevance_score":0.5}]}`))
	if b, _ := json.Marshal(results); string(b) != `[{"index":1,"relevance_score":0.5}]` {
		t.Fatalf("without documents: %s", b)
	}
}
