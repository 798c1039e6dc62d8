package pipeline

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
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
	sparse := []inference.SparseEmbedding{{Tokens: []inference.WeightedToken{{ID: 7, Token: "caf\"é", Weight: 1.5}, {ID: 1012, Token: "##s", Weight: 0.25}}, Truncated: true}, {}}
	if got, want := string(sparseResponse(sparse, false)), `{"sparse_embedding":[{"is_truncated":true,"embedding":{"caf\"é":1.5,"##s":0.25}},{"is_truncated":false,"embedding":{}}]}`; got != want {
		t.Errorf("sparseResponse = %s; want %s", got, want)
	}
	if got, want := string(sparseResponse(sparse, true)), `{"sparse_embedding":[{"is_truncated":true,"embedding":{"7":1.5,"1012":0.25}},{"is_truncated":false,"embedding":{}}]}`; got != want {
		t.Errorf("sparseResponse by id = %s; want %s", got, want)
	}
}

// loadTiny writes a tiny synthetic model with bert-base-uncased's tokenizer
// and loads it.
func loadTiny(t *testing.T, head synthbert.Head, jetinferJSON string) *inference.Model {
	t.Helper()
	return loadTinyWith(t, head, map[string]string{artifact.ConfigFile: jetinferJSON})
}

// loadTinyWith is loadTiny with the artifact's JSON files given by name.
func loadTinyWith(t *testing.T, head synthbert.Head, files map[string]string) *inference.Model {
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
	if err := os.WriteFile(filepath.Join(dir, artifact.TokenizerFile), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
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

func denseVectors(t *testing.T, res inferapi.Result, err error) [][]float32 {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		TextEmbedding []struct{ Embedding []float32 } `json:"text_embedding"`
	}
	if err := json.Unmarshal(res.Body, &resp); err != nil {
		t.Fatalf("%v: %s", err, res.Body)
	}
	out := make([][]float32, len(resp.TextEmbedding))
	for i, e := range resp.TextEmbedding {
		out[i] = e.Embedding
	}
	return out
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// The options of the other APIs' routes (TEI's normalize, truncate,
// truncation_direction and prompt_name) on a dense model.
func TestInferDenseOptions(t *testing.T) {
	m := loadTinyWith(t, synthbert.HeadHidden, map[string]string{
		artifact.ConfigFile:                 `{"task_type":"text_embedding","max_sequence_length":32}`,
		"modules.json":                      `[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"","type":"sentence_transformers.models.Normalize"}]`,
		"config_sentence_transformers.json": `{"prompts":{"query":"query: ","passage":"passage: "}}`,
	})
	ctx := context.Background()
	ep := config.Endpoint{TaskType: config.TextEmbedding}
	in := inferapi.Request{Input: []string{"first", "second text"}}
	run := func(req inferapi.Request, opts inferapi.Options) [][]float32 {
		res, err := Infer(ctx, m, ep, req, opts)
		return denseVectors(t, res, err)
	}
	normalized := run(in, inferapi.Options{})
	no := false
	raw := run(in, inferapi.Options{Normalize: &no})
	for i := range raw {
		n := norm(raw[i])
		if math.Abs(n-1) < 1e-3 || math.Abs(norm(normalized[i])-1) > 1e-5 {
			t.Fatalf("input %d: raw norm %v, normalized norm %v", i, n, norm(normalized[i]))
		}
		for d := range raw[i] {
			if got := float64(raw[i][d]) / n; math.Abs(got-float64(normalized[i][d])) > 1e-6 {
				t.Fatalf("input %d dim %d: raw/|raw| = %v, normalized %v", i, d, got, normalized[i][d])
			}
		}
	}
	// Dimensions without normalization: the first values, as they are.
	cut := run(in, inferapi.Options{Normalize: &no, Dimensions: 8})
	if len(cut[0]) != 8 || !slices.Equal(cut[0], raw[0][:8]) {
		t.Errorf("dimensions 8 unnormalized = %v; want %v", cut[0], raw[0][:8])
	}

	// A prompt by name is the text put before the input.
	prompted := run(in, inferapi.Options{Prompt: "query"})
	explicit := run(inferapi.Request{Input: []string{"query: first", "query: second text"}}, inferapi.Options{})
	if !slices.Equal(prompted[1], explicit[1]) || slices.Equal(prompted[1], normalized[1]) {
		t.Errorf("prompt query: %v; want %v", prompted[1][:4], explicit[1][:4])
	}
	_, err := Infer(ctx, m, ep, in, inferapi.Options{Prompt: "document"})
	if want := "`default-prompt-name` is set to `document` but it was not found in the Sentence Transformers prompts. Available prompts: [\"passage\", \"query\"]"; err == nil || eserror.As(err).Reason != want {
		t.Errorf("unknown prompt: %v; want %s", err, want)
	}

	// 40 × "many words" is 80 tokens, 82 with [CLS] and [SEP]: refused
	// under truncate false, its last 30 tokens kept under direction left.
	long := strings.Repeat("many words ", 40)
	_, err = Infer(ctx, m, ep, inferapi.Request{Input: []string{"short", long}}, inferapi.Options{Truncation: inferapi.TruncateRefuse})
	if want := "`inputs` must have less than 32 tokens. Given: 82"; err == nil || eserror.As(err).Status != 400 || eserror.As(err).Reason != want {
		t.Errorf("truncation none: %v; want 400 %s", err, want)
	}
	// TEI's bound on characters: 32 tokens × 250.
	huge := strings.Repeat("x", 8001)
	for _, opts := range []inferapi.Options{{Truncation: inferapi.TruncateRefuse}, {Tokenize: true}} {
		_, err = Infer(ctx, m, ep, inferapi.Request{Input: []string{huge}}, opts)
		if want := "`inputs` must have less than 8000 characters. Given: 8001"; err == nil || eserror.As(err).Reason != want {
			t.Errorf("%+v: %v; want %s", opts, err, want)
		}
	}
	if cut := cutBytes("aé"+strings.Repeat("b", 10), 2); cut != "a" {
		t.Errorf("cutBytes inside a character: %q", cut)
	}
	left := run(inferapi.Request{Input: []string{"first " + long}}, inferapi.Options{Truncation: inferapi.TruncateKeepEnd})
	tail := run(inferapi.Request{Input: []string{strings.Repeat("many words ", 15)}}, inferapi.Options{})
	right := run(inferapi.Request{Input: []string{"first " + long}}, inferapi.Options{})
	if !slices.Equal(left[0], tail[0]) || slices.Equal(left[0], right[0]) {
		t.Errorf("truncation start: not the embedding of the text's last 30 tokens")
	}
}

func TestInferSparseIDsAndRerankScores(t *testing.T) {
	ctx := context.Background()
	sm := loadTiny(t, synthbert.HeadMaskedLM, `{"task_type":"sparse_embedding","max_sequence_length":32}`)
	embs, err := sm.SparseEmbed(ctx, []string{"short text"}, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Infer(ctx, sm, config.Endpoint{TaskType: config.SparseEmbedding}, inferapi.Request{Input: []string{"short text"}}, inferapi.Options{SparseIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	var sparse struct {
		SparseEmbedding []struct{ Embedding map[string]float32 } `json:"sparse_embedding"`
	}
	if err := json.Unmarshal(res.Body, &sparse); err != nil {
		t.Fatal(err)
	}
	got := sparse.SparseEmbedding[0].Embedding
	if len(got) != len(embs[0].Tokens) || len(got) == 0 {
		t.Fatalf("%d weights by id; want %d", len(got), len(embs[0].Tokens))
	}
	for _, wt := range embs[0].Tokens {
		if got[strconv.FormatInt(wt.ID, 10)] != wt.Weight || sm.Token(wt.ID) != wt.Token {
			t.Fatalf("id %d (%q): %v; want %v", wt.ID, wt.Token, got[strconv.FormatInt(wt.ID, 10)], wt.Weight)
		}
	}

	rm := loadTiny(t, synthbert.HeadClassifier, `{"task_type":"rerank","max_sequence_length":32}`)
	query, docs := "which?", []string{"one doc", "another document"}
	logits, err := rm.Rerank(ctx, query, docs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scores string
		want   func(float32) float32
	}{
		{inferapi.ScoresRaw, func(x float32) float32 { return x }},
		{inferapi.ScoresSigmoid, func(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }},
	} {
		res, err := Infer(ctx, rm, config.Endpoint{TaskType: config.Rerank}, inferapi.Request{Input: docs, Query: &query}, inferapi.Options{Scores: tc.scores})
		if err != nil {
			t.Fatal(err)
		}
		var ranked struct {
			Rerank []struct {
				Index int     `json:"index"`
				Score float32 `json:"relevance_score"`
			}
		}
		if err := json.Unmarshal(res.Body, &ranked); err != nil {
			t.Fatal(err)
		}
		for _, r := range ranked.Rerank {
			if want := tc.want(logits[r.Index]); r.Score != want {
				t.Errorf("scores %s, document %d: %v; want %v", tc.scores, r.Index, r.Score, want)
			}
		}
	}
}

func TestInferTokenize(t *testing.T) {
	m := loadTinyWith(t, synthbert.HeadHidden, map[string]string{
		artifact.ConfigFile:                 `{"task_type":"text_embedding","max_sequence_length":8}`,
		"modules.json":                      `[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"}]`,
		"config_sentence_transformers.json": `{"prompts":{"query":"query: "}}`,
	})
	// Never truncated: more tokens than the model's 8.
	res, err := Infer(context.Background(), m, config.Endpoint{TaskType: config.TextEmbedding},
		inferapi.Request{Input: []string{"Héllo, world! one two three four"}}, inferapi.Options{Tokenize: true, SpecialTokens: true, Prompt: "query"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"tokens":[[{"id":101,"text":"[CLS]","special":true},{"id":23032,"text":"query","start":0,"end":5},` +
		`{"id":1024,"text":":","start":5,"end":6},{"id":7592,"text":"Héllo","start":7,"end":13},{"id":1010,"text":",","start":13,"end":14},` +
		`{"id":2088,"text":"world","start":15,"end":20},{"id":999,"text":"!","start":20,"end":21},{"id":2028,"text":"one","start":22,"end":25},` +
		`{"id":2048,"text":"two","start":26,"end":29},{"id":2093,"text":"three","start":30,"end":35},{"id":2176,"text":"four","start":36,"end":40},` +
		`{"id":102,"text":"[SEP]","special":true}]]}`
	if string(res.Body) != want {
		t.Errorf("tokenize =\n%s\nwant\n%s", res.Body, want)
	}
}
