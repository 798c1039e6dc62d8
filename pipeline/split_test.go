package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference/synthbert"
	"github.com/jetinfer/jetinfer/pipeline/chunking"
)

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
		req  inferapi.Request
	}{
		{synthbert.HeadHidden, `{"task_type":"text_embedding","max_sequence_length":32}`, config.Endpoint{TaskType: config.TextEmbedding}, inferapi.Request{Input: inputs}},
		{synthbert.HeadClassifier, `{"task_type":"rerank","max_sequence_length":32}`, config.Endpoint{TaskType: config.Rerank}, inferapi.Request{Input: inputs, Query: &q}},
	} {
		m := loadTiny(t, tc.head, tc.cfg)
		whole, err := Infer(ctx, m, tc.ep, tc.req, inferapi.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var answers [][]byte
		for _, p := range inferapi.SplitRequest(tc.req, 4, 12) {
			a, err := Infer(ctx, m, tc.ep, p, inferapi.Options{})
			if err != nil {
				t.Fatal(err)
			}
			answers = append(answers, a.Body)
		}
		if len(answers) < 2 {
			t.Fatalf("%d parts", len(answers))
		}
		merged, err := inferapi.MergeResponses(tc.ep, tc.req, inferapi.Options{}, answers)
		if err != nil {
			t.Fatal(err)
		}
		if !closeJSON(t, merged, whole.Body) {
			t.Errorf("%s: merged %s\nwhole %s", tc.ep.TaskType, merged, whole.Body)
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

// TestRunnerIngest: documents embedded together (in one engine call or
// several) give the bodies each gets alone; input types are kept apart;
// rerank documents are ranked.
func TestRunnerIngest(t *testing.T) {
	ctx := context.Background()
	m := loadTiny(t, synthbert.HeadHidden, `{"task_type":"text_embedding","max_sequence_length":32,"prefix_strings":{"ingest":"passage: ","search":"query: "}}`)
	ep := config.Endpoint{InferenceID: "e5", TaskType: config.TextEmbedding,
		Chunking: &config.ChunkingSettings{Strategy: config.ChunkWord, MaxChunkSize: 10, Overlap: 2}}
	long := strings.Repeat("words flow down the river to the sea ", 6)
	// More chunks than one engine call takes: the documents are embedded
	// in several calls.
	many := make([]string, maxChunksPerCall/3)
	for i := range many {
		many[i] = fmt.Sprintf("input %d of a document with many inputs", i)
	}
	docs := []inferapi.Request{
		{Input: []string{long, "short"}, InputType: inferapi.InputIngest},
		{Input: []string{"a search text"}, InputType: inferapi.InputSearch},
		{Input: many, InputType: inferapi.InputIngest},
		{Input: many, InputType: inferapi.InputIngest},
		{Input: many, InputType: inferapi.InputIngest},
		{Input: []string{"another document here"}, InputType: inferapi.InputIngest},
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
	rdocs := []inferapi.Request{{Input: []string{"sea", "river bank"}, Query: &q}}
	got, err := Runner{Model: rm, Endpoint: rep}.Ingest(ctx, rdocs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Infer(ctx, rm, rep, rdocs[0], inferapi.Options{})
	if err != nil || string(got[0]) != string(want.Body) {
		t.Fatalf("rerank document %s, %v; want %s", got[0], err, want.Body)
	}
}

// TestRunnerInputErrors: one input of a document that panics while it is
// chunked gets its own error in "input_errors" and no chunks; the
// document's other inputs keep exactly the chunks they get alone. An
// ordinary error fails the whole document (it may pass on another
// attempt), and a document whose every input panics panics as a whole,
// for the consumer to turn into its error result.
func TestRunnerInputErrors(t *testing.T) {
	ctx := context.Background()
	m := loadTiny(t, synthbert.HeadHidden, `{"task_type":"text_embedding","max_sequence_length":32}`)
	ep := config.Endpoint{InferenceID: "e5", TaskType: config.TextEmbedding,
		Chunking: &config.ChunkingSettings{Strategy: config.ChunkWord, MaxChunkSize: 10, Overlap: 2}}
	r := Runner{Model: m, Endpoint: ep, split: func(in string, s config.ChunkingSettings) ([]chunking.Chunk, error) {
		switch in {
		case "poison":
			var none []chunking.Chunk
			_ = none[len(in)] // a real runtime panic: index out of range
		case "broken":
			return nil, errors.New("the chunker failed")
		}
		return chunking.Split(in, s)
	}}
	long := strings.Repeat("words flow down the river to the sea ", 4)
	bodies, err := r.Ingest(ctx, []inferapi.Request{{Input: []string{long, "poison", "third input"}, InputType: inferapi.InputIngest}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Chunks      []json.RawMessage `json:"chunks"`
		InputErrors json.RawMessage   `json:"input_errors"`
	}
	if err := json.Unmarshal(bodies[0], &got); err != nil {
		t.Fatalf("%s: %v", bodies[0], err)
	}
	if len(got.Chunks) != 3 {
		t.Fatalf("%d chunk arrays, want 3: %s", len(got.Chunks), bodies[0])
	}
	for i, in := range map[int]string{0: long, 2: "third input"} {
		alone, err := ChunkedInfer(ctx, m, ep, []string{in}, inferapi.InputIngest)
		if err != nil {
			t.Fatal(err)
		}
		var want struct {
			Chunks []json.RawMessage `json:"chunks"`
		}
		if err := json.Unmarshal(alone, &want); err != nil {
			t.Fatal(err)
		}
		if !closeJSON(t, got.Chunks[i], want.Chunks[0]) {
			t.Errorf("input %d: %s\nalone %s", i, got.Chunks[i], want.Chunks[0])
		}
	}
	if string(got.Chunks[1]) != "[]" {
		t.Errorf("failed input 1 has chunks %s", got.Chunks[1])
	}
	const wantErrors = `[{"input":1,"error":{"root_cause":[{"type":"status_exception","reason":"inference failed on an internal error"}],"type":"status_exception","reason":"inference failed on an internal error",` +
		`"caused_by":{"type":"illegal_state_exception","reason":"runtime error: index out of range [6] with length 0"}},"status":500}]`
	if string(got.InputErrors) != wantErrors {
		t.Errorf("input_errors %s\nwant %s", got.InputErrors, wantErrors)
	}
	// An error, not a panic: the document fails as a whole, and so it does
	// beside a panicking input.
	for _, inputs := range [][]string{{"broken", "fine"}, {"poison", "broken", "fine"}} {
		if _, err := r.Ingest(ctx, []inferapi.Request{{Input: inputs, InputType: inferapi.InputIngest}}); err == nil || !strings.Contains(err.Error(), "the chunker failed") {
			t.Errorf("%q: error %v; want the chunker's", inputs, err)
		}
	}

	defer func() {
		if p := recover(); p == nil {
			t.Error("a document whose every input panics did not panic")
		}
	}()
	_, _ = r.Ingest(ctx, []inferapi.Request{{Input: []string{"poison", "poison"}, InputType: inferapi.InputIngest}})
}
