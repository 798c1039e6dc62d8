package inferapi

import (
	"encoding/json"
	"testing"

	"github.com/jetinfer/jetinfer/config"
)

func TestSplitRequest(t *testing.T) {
	q, yes := "q", true
	topN := 2
	req := Request{Input: []string{"aa", "bbbb", "c", "ddddddddd", "e"}, Query: &q, TopN: &topN, ReturnDocuments: &yes, InputType: InputUnspecified}
	if got := SplitRequest(req, 5, 100); len(got) != 1 || got[0].TopN != &topN {
		t.Fatalf("a request that fits was split: %+v", got)
	}
	parts := SplitRequest(req, 2, 6)
	var got [][]string
	for _, p := range parts {
		got = append(got, p.Input)
		if p.TopN != nil || p.ReturnDocuments == nil || *p.ReturnDocuments || p.Query != &q {
			t.Errorf("rerank part %+v: want the query, no top_n, no documents", p)
		}
	}
	// At most 2 inputs and 6 bytes a part; a larger input is a part alone.
	want := [][]string{{"aa", "bbbb"}, {"c"}, {"ddddddddd"}, {"e"}}
	if js, wjs := mustJSON(got), mustJSON(want); js != wjs {
		t.Fatalf("parts %s; want %s", js, wjs)
	}
	dense := Request{Input: []string{"a", "b", "c"}}
	for _, p := range SplitRequest(dense, 1, 100) {
		if p.ReturnDocuments != nil {
			t.Errorf("embedding part got return_documents")
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestMergeResponses(t *testing.T) {
	ep := config.Endpoint{TaskType: config.TextEmbedding}
	got, err := MergeResponses(ep, Request{}, Options{}, [][]byte{[]byte(`{"text_embedding":[{"embedding":[1.0]}]}`), []byte(`{"text_embedding":[]}`), []byte(`{"text_embedding":[{"embedding":[2.0]},{"embedding":[3.0]}]}`)})
	if want := `{"text_embedding":[{"embedding":[1.0]},{"embedding":[2.0]},{"embedding":[3.0]}]}`; err != nil || string(got) != want {
		t.Fatalf("dense merge = %s, %v; want %s", got, err, want)
	}
	if _, err := MergeResponses(ep, Request{}, Options{}, [][]byte{[]byte(`{"sparse_embedding":[]}`), []byte(`{"text_embedding":[]}`)}); err == nil {
		t.Fatal("merged a part of another task type")
	}
	// The tokens of a tokenize request split in parts, whatever the task.
	got, err = MergeResponses(config.Endpoint{TaskType: config.Rerank}, Request{}, Options{Tokenize: true},
		[][]byte{[]byte(`{"tokens":[[{"id":1,"text":"a"}]]}`), []byte(`{"tokens":[[{"id":2,"text":"b"}],[]]}`)})
	if want := `{"tokens":[[{"id":1,"text":"a"}],[{"id":2,"text":"b"}],[]]}`; err != nil || string(got) != want {
		t.Fatalf("tokens merge = %s, %v; want %s", got, err, want)
	}
	q := "q"
	two := 2
	req := Request{Input: []string{"d0", "d1", "d2", "d3"}, Query: &q, TopN: &two}
	parts := [][]byte{
		[]byte(`{"rerank":[{"index":1,"relevance_score":0.5},{"index":0,"relevance_score":-1.0}]}`),
		[]byte(`{"rerank":[{"index":0,"relevance_score":0.75},{"index":1,"relevance_score":0.5}]}`),
	}
	got, err = MergeResponses(config.Endpoint{TaskType: config.Rerank}, req, Options{}, parts)
	// Ties keep input order, as Rank does on the whole request.
	if want := `{"rerank":[{"index":2,"relevance_score":0.75,"text":"d2"},{"index":1,"relevance_score":0.5,"text":"d1"}]}`; err != nil || string(got) != want {
		t.Fatalf("rerank merge = %s, %v; want %s", got, err, want)
	}
}
