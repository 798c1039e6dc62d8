package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/orttest"
	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// testRuntime is this test binary's ONNX Runtime environment, owned by
// TestMain.
var testRuntime *inference.Runtime

func TestMain(m *testing.M) {
	os.Exit(orttest.Run(m, "..", func(rt *inference.Runtime) { testRuntime = rt }))
}

func TestResponseBodies(t *testing.T) {
	if got, want := string(denseResponse([][]float32{{3, 0.1, -1e-5}, {}})), `{"text_embedding":[{"embedding":[3.0,0.1,-1.0E-5]},{"embedding":[]}]}`; got != want {
		t.Errorf("denseResponse = %s; want %s", got, want)
	}
	sparse := []inference.SparseEmbedding{{Tokens: []inference.WeightedToken{{Token: "caf\"é", Weight: 1.5}, {Token: "##s", Weight: 0.25}}, Truncated: true}, {}}
	if got, want := string(sparseResponse(sparse)), `{"sparse_embedding":[{"is_truncated":true,"embedding":{"caf\"é":1.5,"##s":0.25}},{"is_truncated":false,"embedding":{}}]}`; got != want {
		t.Errorf("sparseResponse = %s; want %s", got, want)
	}
}

// loadTiny writes a tiny synthetic model with bert-base-uncased's tokenizer
// and loads it.
func loadTiny(t *testing.T, head synthbert.Head, jetinferJSON string) *inference.Model {
	t.Helper()
	sb, err := synthbert.New(synthbert.Config{VocabSize: 30522, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 32,
		TypeVocabSize: 2, NumLabels: 1, Head: head, Seed: 11, WeightScale: 0.2, LayerNormEps: 1e-12})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := sb.WriteONNX(filepath.Join(dir, artifact.ONNXFile)); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile("../inference/tokenizer/testdata/bert-base-uncased/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{artifact.TokenizerFile: tok, artifact.ConfigFile: []byte(jetinferJSON)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := inference.LoadModel(context.Background(), testRuntime, dir, inference.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestInferTextEmbedding(t *testing.T) {
	m := loadTiny(t, synthbert.HeadHidden, `{"task_type":"text_embedding","max_sequence_length":32,"prefix_strings":{"search":"query: "}}`)
	ep := config.Endpoint{TaskType: config.TextEmbedding}
	res, err := Infer(context.Background(), m, ep, inferapi.Request{Input: []string{"first", "second text"}, InputType: inferapi.InputSearch}, inferapi.Options{})
	body := res.Body
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		TextEmbedding []struct{ Embedding []float32 } `json:"text_embedding"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	want, err := m.Embed(context.Background(), []string{"first", "second text"}, inference.InputSearch)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TextEmbedding) != 2 {
		t.Fatalf("%d embeddings; want 2", len(resp.TextEmbedding))
	}
	for i := range want {
		for d := range want[i] {
			// The shortest float text reads back as the same float32.
			if resp.TextEmbedding[i].Embedding[d] != want[i][d] {
				t.Fatalf("input %d dim %d = %v; want %v (search prefix applied)", i, d, resp.TextEmbedding[i].Embedding[d], want[i][d])
			}
		}
	}
}

func TestInferSparseEmbedding(t *testing.T) {
	m := loadTiny(t, synthbert.HeadMaskedLM, `{"task_type":"sparse_embedding","max_sequence_length":32}`)
	long := strings.Repeat("many words ", 40)
	res, err := Infer(context.Background(), m, config.Endpoint{TaskType: config.SparseEmbedding}, inferapi.Request{Input: []string{"short", long}}, inferapi.Options{})
	body := res.Body
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		SparseEmbedding []struct {
			IsTruncated bool               `json:"is_truncated"`
			Embedding   map[string]float32 `json:"embedding"`
		} `json:"sparse_embedding"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	want, err := m.SparseEmbed(context.Background(), []string{"short", long}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.SparseEmbedding) != 2 || resp.SparseEmbedding[0].IsTruncated || !resp.SparseEmbedding[1].IsTruncated {
		t.Fatalf("sparse response %s", body)
	}
	for i := range want {
		if len(resp.SparseEmbedding[i].Embedding) != len(want[i].Tokens) {
			t.Fatalf("input %d: %d tokens; want %d", i, len(resp.SparseEmbedding[i].Embedding), len(want[i].Tokens))
		}
		for _, wt := range want[i].Tokens {
			if resp.SparseEmbedding[i].Embedding[wt.Token] != wt.Weight {
				t.Fatalf("input %d token %q = %v; want %v", i, wt.Token, resp.SparseEmbedding[i].Embedding[wt.Token], wt.Weight)
			}
		}
	}
}

func TestInferRerank(t *testing.T) {
	m := loadTiny(t, synthbert.HeadClassifier, `{"task_type":"rerank","max_sequence_length":32}`)
	docs := []string{"one doc", "another document", "a third", "the fourth one"}
	query := "which document?"
	scores, err := m.Rerank(context.Background(), query, docs)
	if err != nil {
		t.Fatal(err)
	}
	two := 2
	type ranked struct {
		Index          int     `json:"index"`
		RelevanceScore float32 `json:"relevance_score"`
		Text           *string `json:"text"`
	}
	for _, tc := range []struct {
		name     string
		endpoint *config.RerankTaskSettings
		req      inferapi.Request
		results  int
		withText bool
	}{
		{"endpoint default returns documents, top_n clamps", &config.RerankTaskSettings{ReturnDocuments: true}, inferapi.Request{Input: docs, Query: &query, TopN: &two}, 2, true},
		{"request turns documents off", &config.RerankTaskSettings{ReturnDocuments: true}, inferapi.Request{Input: docs, Query: &query, ReturnDocuments: new(bool)}, 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Infer(context.Background(), m, config.Endpoint{TaskType: config.Rerank, TaskSettings: tc.endpoint}, tc.req, inferapi.Options{})
			body := res.Body
			if err != nil {
				t.Fatal(err)
			}
			var resp struct{ Rerank []ranked }
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if len(resp.Rerank) != tc.results {
				t.Fatalf("%d results; want %d: %s", len(resp.Rerank), tc.results, body)
			}
			for i, r := range resp.Rerank {
				if r.RelevanceScore != scores[r.Index] {
					t.Errorf("result %d: index %d score %v; the model scored it %v", i, r.Index, r.RelevanceScore, scores[r.Index])
				}
				if i > 0 && r.RelevanceScore > resp.Rerank[i-1].RelevanceScore {
					t.Errorf("results not sorted by score: %s", body)
				}
				if (r.Text != nil) != tc.withText || (r.Text != nil && *r.Text != docs[r.Index]) {
					t.Errorf("result %d text = %v", i, r.Text)
				}
			}
		})
	}
}
