package pipeline

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inference/synthbert"
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
	got, err := MergeResponses(ep, Request{}, [][]byte{[]byte(`{"text_embedding":[{"embedding":[1.0]}]}`), []byte(`{"text_embedding":[]}`), []byte(`{"text_embedding":[{"embedding":[2.0]},{"embedding":[3.0]}]}`)})
	if want := `{"text_embedding":[{"embedding":[1.0]},{"embedding":[2.0]},{"embedding":[3.0]}]}`; err != nil || string(got) != want {
		t.Fatalf("dense merge = %s, %v; want %s", got, err, want)
	}
	if _, err := MergeResponses(ep, Request{}, [][]byte{[]byte(`{"sparse_embedding":[]}`), []byte(`{"text_embedding":[]}`)}); err == nil {
		t.Fatal("merged a part of another task type")
	}
	q := "q"
	two := 2
	req := Request{Input: []string{"d0", "d1", "d2", "d3"}, Query: &q, TopN: &two}
	parts := [][]byte{
		[]byte(`{"rerank":[{"index":1,"relevance_score":0.5},{"index":0,"relevance_score":-1.0}]}`),
		[]byte(`{"rerank":[{"index":0,"relevance_score":0.75},{"index":1,"relevance_score":0.5}]}`),
	}
	got, err = MergeResponses(config.Endpoint{TaskType: config.Rerank}, req, parts)
	// Ties keep input order, as Rank does on the whole request.
	if want := `{"rerank":[{"index":2,"relevance_score":0.75,"text":"d2"},{"index":1,"relevance_score":0.5,"text":"d1"}]}`; err != nil || string(got) != want {
		t.Fatalf("rerank merge = %s, %v; want %s", got, err, want)
	}
}

// TestSplitEqualsWhole: a request answered in parts and merged equals the
// whole request answered at once (to float noise from other batch shapes).
func TestSplitEqualsWhole(t *testing.T) {
	ctx := context.Background()
	inputs := []string{"the river", "a stone in the river", "birds", "the bank of the river is steep", "mud", "x"}
	q := "river"
	for _, tc := range []struct {
		head synthbert.Head
		cfg  string
		ep   config.Endpoint
		req  Request
	}{
		{synthbert.HeadHidden, `{"task_type":"text_embedding","max_sequence_length":32}`, config.Endpoint{TaskType: config.TextEmbedding}, Request{Input: inputs}},
		{synthbert.HeadClassifier, `{"task_type":"rerank","max_sequence_length":32}`, config.Endpoint{TaskType: config.Rerank}, Request{Input: inputs, Query: &q}},
	} {
		m := loadTiny(t, tc.head, tc.cfg)
		whole, err := Infer(ctx, m, tc.ep, tc.req)
		if err != nil {
			t.Fatal(err)
		}
		var answers [][]byte
		for _, p := range SplitRequest(tc.req, 4, 12) {
			a, err := Infer(ctx, m, tc.ep, p)
			if err != nil {
				t.Fatal(err)
			}
			answers = append(answers, a)
		}
		if len(answers) < 2 {
			t.Fatalf("%d parts", len(answers))
		}
		merged, err := MergeResponses(tc.ep, tc.req, answers)
		if err != nil {
			t.Fatal(err)
		}
		if !closeJSON(t, merged, whole) {
			t.Errorf("%s: merged %s\nwhole %s", tc.ep.TaskType, merged, whole)
		}
	}
}

// closeJSON compares JSON bodies number by number to 1e-5.
func closeJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	var eq func(x, y any) bool
	eq = func(x, y any) bool {
		switch yv := y.(type) {
		case float64:
			xv, ok := x.(float64)
			return ok && xv-yv < 1e-5 && yv-xv < 1e-5
		case []any:
			xv, ok := x.([]any)
			if !ok || len(xv) != len(yv) {
				return false
			}
			for i := range yv {
				if !eq(xv[i], yv[i]) {
					return false
				}
			}
			return true
		case map[string]any:
			xv, ok := x.(map[string]any)
			if !ok || len(xv) != len(yv) {
				return false
			}
			for k := range yv {
				if !eq(xv[k], yv[k]) {
					return false
				}
			}
			return true
		}
		return x == y
	}
	return eq(x, y)
}

// TestRunnerIngest: documents embedded together give the bodies each gets
// alone; input types are kept apart; rerank documents are ranked.
func TestRunnerIngest(t *testing.T) {
	ctx := context.Background()
	m := loadTiny(t, synthbert.HeadHidden, `{"task_type":"text_embedding","max_sequence_length":32,"prefix_strings":{"ingest":"passage: ","search":"query: "}}`)
	ep := config.Endpoint{InferenceID: "e5", TaskType: config.TextEmbedding,
		Chunking: &config.ChunkingSettings{Strategy: config.ChunkWord, MaxChunkSize: 10, Overlap: 2}}
	long := strings.Repeat("words flow down the river to the sea ", 6)
	docs := []Request{
		{Input: []string{long, "short"}, InputType: InputIngest},
		{Input: []string{"a search text"}, InputType: InputSearch},
		{Input: []string{"another document here"}, InputType: InputIngest},
	}
	bodies, err := Runner{Model: m, Endpoint: ep}.Ingest(ctx, docs)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range docs {
		alone, err := ChunkedInfer(ctx, m, ep, d.Input, d.InputType)
		if err != nil {
			t.Fatal(err)
		}
		if !closeJSON(t, bodies[i], alone) {
			t.Errorf("document %d: together %s\nalone %s", i, bodies[i], alone)
		}
	}
	rm := loadTiny(t, synthbert.HeadClassifier, `{"task_type":"rerank","max_sequence_length":32}`)
	q := "river"
	rep := config.Endpoint{InferenceID: "r", TaskType: config.Rerank}
	rdocs := []Request{{Input: []string{"sea", "river bank"}, Query: &q}}
	got, err := Runner{Model: rm, Endpoint: rep}.Ingest(ctx, rdocs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Infer(ctx, rm, rep, rdocs[0])
	if err != nil || string(got[0]) != string(want) {
		t.Fatalf("rerank document %s, %v; want %s", got[0], err, want)
	}
}
