package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/synthbert"
	"github.com/jetinfer/jetinfer/pipeline/chunking"
)

// chunkedJSON is ChunkedInfer's body read back; Embeddings is a
// map[string]float32 (sparse) or []float32 (dense).
type chunkedJSON[E any] struct {
	InferenceID   string                   `json:"inference_id"`
	ModelSettings map[string]any           `json:"model_settings"`
	Chunking      *config.ChunkingSettings `json:"-"`
	RawChunking   json.RawMessage          `json:"chunking_settings"`
	Chunks        [][]struct {
		Start      int `json:"start_offset"`
		End        int `json:"end_offset"`
		Embeddings E   `json:"embeddings"`
	} `json:"chunks"`
}

func TestChunkedBody(t *testing.T) {
	dense := [][]chunkResult{{{start: 0, end: 5, dense: []float32{3, 0.1, -1e-5}}, {start: 3, end: 9, dense: []float32{0, 1, 2}}}, {}}
	denseWriter := bodyWriter{inferenceID: "my-e5", ms: modelSettings{taskType: config.TextEmbedding, dimensions: 3, similarity: "cosine"},
		chunking: &config.ChunkingSettings{Strategy: config.ChunkWord, MaxChunkSize: 10, Overlap: 5}}
	got, err := denseWriter.write(dense, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"inference_id":"my-e5","model_settings":{"service":"elasticsearch","task_type":"text_embedding","dimensions":3,"similarity":"cosine","element_type":"float"},` +
		`"chunking_settings":{"strategy":"word","max_chunk_size":10,"overlap":5},` +
		`"chunks":[[{"start_offset":0,"end_offset":5,"embeddings":[3.0,0.1,-1.0E-5]},{"start_offset":3,"end_offset":9,"embeddings":[0.0,1.0,2.0]}],[]]}`
	if string(got) != want {
		t.Errorf("dense body\n got %s\nwant %s", got, want)
	}
	// Bounded: writing stops at the first chunk past the bound.
	denseWriter.maxBytes = int64(len(want)) - 10
	if _, err := denseWriter.write(dense, nil); eserror.As(err).Status != 413 ||
		eserror.As(err).Reason != fmt.Sprintf("the result of more than [%d] bytes is larger than the largest message the NATS server accepts [%d bytes]", len(want)-len(`],[]]}`), len(want)-10) {
		t.Errorf("a body past its bound: %v", err)
	}

	sparse := [][]chunkResult{{{start: 0, end: 31, sparse: inference.SparseEmbedding{Tokens: []inference.WeightedToken{{Token: "caf\"é", Weight: 2.13}, {Token: "<b>", Weight: 0.5}}}}},
		{{start: 0, end: 0}}}
	got, err = bodyWriter{inferenceID: ".elser-2-elasticsearch", ms: modelSettings{taskType: config.SparseEmbedding}}.write(sparse, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = `{"inference_id":".elser-2-elasticsearch","model_settings":{"service":"elasticsearch","task_type":"sparse_embedding"},` +
		`"chunks":[[{"start_offset":0,"end_offset":31,"embeddings":{"caf\"é":2.13,"<b>":0.5}}],[{"start_offset":0,"end_offset":0,"embeddings":{}}]]}`
	if string(got) != want {
		t.Errorf("sparse body\n got %s\nwant %s", got, want)
	}
}

func TestChunkedInferRerank(t *testing.T) {
	if _, err := ChunkedInfer(context.Background(), nil, config.Endpoint{TaskType: config.Rerank}, []string{"x"}, inferapi.InputIngest); err == nil {
		t.Fatal("rerank endpoint chunked without error")
	}
}

func words(n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = []string{"alpha", "beta", "gamma", "delta", "river", "stone", "café", "𝄞note"}[i%8] + fmt.Sprint(i%7)
	}
	return strings.Join(w, " ")
}

func TestChunkedInferSparse(t *testing.T) {
	m := loadTiny(t, synthbert.HeadMaskedLM, `{"task_type":"sparse_embedding","max_sequence_length":32}`)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		chunking *config.ChunkingSettings
		input    string
		chunks   int // 0: more than one
	}{
		{"word", &config.ChunkingSettings{Strategy: config.ChunkWord, MaxChunkSize: 10, Overlap: 5}, words(40), 0},
		{"none", &config.ChunkingSettings{Strategy: config.ChunkNone}, words(40), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := config.Endpoint{InferenceID: "elser", TaskType: config.SparseEmbedding, Chunking: tc.chunking}
			inputs := []string{tc.input, "short one"}
			body, err := ChunkedInfer(ctx, m, ep, inputs, inferapi.InputIngest)
			if err != nil {
				t.Fatal(err)
			}
			var resp chunkedJSON[map[string]float32]
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			wantChunking, _ := json.Marshal(tc.chunking)
			if resp.InferenceID != "elser" || string(resp.RawChunking) != string(wantChunking) ||
				len(resp.ModelSettings) != 2 || resp.ModelSettings["service"] != "elasticsearch" || resp.ModelSettings["task_type"] != "sparse_embedding" {
				t.Fatalf("header of %s", body)
			}
			if len(resp.Chunks) != len(inputs) {
				t.Fatalf("%d chunk arrays; want %d", len(resp.Chunks), len(inputs))
			}
			for i, in := range inputs {
				want, err := chunking.Split(in, *tc.chunking)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 && (tc.chunks == 0 && len(want) < 2 || tc.chunks > 0 && len(want) != tc.chunks) {
					t.Fatalf("chunking.Split made %d chunks", len(want))
				}
				got := resp.Chunks[i]
				if len(got) != len(want) {
					t.Fatalf("input %d: %d chunks; want %d", i, len(got), len(want))
				}
				texts := make([]string, len(want))
				for j, c := range want {
					texts[j] = c.Text(in)
				}
				embs, err := m.SparseEmbed(ctx, texts, "")
				if err != nil {
					t.Fatal(err)
				}
				for j, c := range want {
					if got[j].Start != c.Start || got[j].End != c.End {
						t.Errorf("input %d chunk %d offsets %d-%d; want %d-%d", i, j, got[j].Start, got[j].End, c.Start, c.End)
					}
					if len(got[j].Embeddings) != len(embs[j].Tokens) {
						t.Fatalf("input %d chunk %d: %d tokens; want %d", i, j, len(got[j].Embeddings), len(embs[j].Tokens))
					}
					for _, wt := range embs[j].Tokens {
						if g, ok := got[j].Embeddings[wt.Token]; !ok || g != wt.Weight {
							t.Fatalf("input %d chunk %d token %q = %v; want %v", i, j, wt.Token, g, wt.Weight)
						}
					}
				}
			}
		})
	}
}

func TestChunkedInferDense(t *testing.T) {
	m := loadTiny(t, synthbert.HeadHidden, `{"task_type":"text_embedding","max_sequence_length":32,"prefix_strings":{"ingest":"passage: ","search":"query: "}}`)
	ctx := context.Background()
	settings := &config.ChunkingSettings{Strategy: config.ChunkSentence, MaxChunkSize: 20, SentenceOverlap: 1}
	ep := config.Endpoint{InferenceID: "e5", TaskType: config.TextEmbedding, Chunking: settings,
		ServiceSettings: config.ServiceSettings{Similarity: "dot_product"}}
	var sb strings.Builder
	for i := range 12 {
		fmt.Fprintf(&sb, "Sentence number %d talks about the river and the stone. ", i)
	}
	inputs := []string{sb.String(), "One short sentence."}
	body, err := ChunkedInfer(ctx, m, ep, inputs, inferapi.InputIngest)
	if err != nil {
		t.Fatal(err)
	}
	var resp chunkedJSON[[]float32]
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	ms := resp.ModelSettings
	if ms["task_type"] != "text_embedding" || ms["dimensions"] != float64(m.Spec().Dimensions) || ms["similarity"] != "dot_product" || ms["element_type"] != "float" {
		t.Fatalf("model_settings %v", ms)
	}
	for i, in := range inputs {
		want, err := chunking.Split(in, *settings)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && len(want) < 2 {
			t.Fatalf("chunking.Split made %d chunks", len(want))
		}
		texts := make([]string, len(want))
		for j, c := range want {
			texts[j] = c.Text(in)
		}
		vecs, err := m.Embed(ctx, texts, inference.InputIngest)
		if err != nil {
			t.Fatal(err)
		}
		noPrefix, err := m.Embed(ctx, texts[:1], "")
		if err != nil {
			t.Fatal(err)
		}
		if equalFloats(noPrefix[0], vecs[0]) {
			t.Fatal("the ingest prefix changes nothing; the test cannot tell")
		}
		got := resp.Chunks[i]
		if len(got) != len(want) {
			t.Fatalf("input %d: %d chunks; want %d", i, len(got), len(want))
		}
		for j, c := range want {
			if got[j].Start != c.Start || got[j].End != c.End || !equalFloats(got[j].Embeddings, vecs[j]) {
				t.Errorf("input %d chunk %d: %d-%d %v; want %d-%d %v", i, j, got[j].Start, got[j].End, got[j].Embeddings, c.Start, c.End, vecs[j])
			}
		}
	}

	// Without a similarity of its own the endpoint reports the model's.
	ep.ServiceSettings.Similarity = ""
	body, err = ChunkedInfer(ctx, m, ep, inputs[1:], inferapi.InputSearch)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.ModelSettings["similarity"] != m.Spec().Similarity {
		t.Fatalf("similarity %v; want the model's %q (%v)", resp.ModelSettings["similarity"], m.Spec().Similarity, err)
	}
}

func TestChunkedInferMaxChunks(t *testing.T) {
	m := loadTiny(t, synthbert.HeadHidden, `{"task_type":"text_embedding","max_sequence_length":32}`)
	ctx := context.Background()
	settings := &config.ChunkingSettings{Strategy: config.ChunkWord, MaxChunkSize: 10, Overlap: 5}
	ep := config.Endpoint{InferenceID: "dense", TaskType: config.TextEmbedding, Chunking: settings}
	long := words(3000)
	body, err := ChunkedInfer(ctx, m, ep, []string{"a few words", long}, inferapi.InputUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	var resp chunkedJSON[[]float32]
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	chunks, err := chunking.Split(long, *settings)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) <= chunking.MaxChunksPerInput {
		t.Fatalf("%d chunks; the test needs more than %d", len(chunks), chunking.MaxChunksPerInput)
	}
	if len(resp.Chunks) != 2 || len(resp.Chunks[0]) != 1 || len(resp.Chunks[1]) != chunking.MaxChunksPerInput {
		t.Fatalf("stored chunks per input: %d arrays", len(resp.Chunks))
	}
	texts := make([]string, len(chunks))
	for j, c := range chunks {
		texts[j] = c.Text(long)
	}
	vecs, err := m.Embed(ctx, texts, "")
	if err != nil {
		t.Fatal(err)
	}
	slots := chunking.SlotChunks(chunks)
	merged := make([][]float32, len(slots))
	counts := make([]int, len(slots))
	for j, s := range chunking.Slots(len(chunks)) {
		if counts[s] == 0 {
			merged[s] = vecs[j]
		} else {
			merged[s] = MergeDense(merged[s], counts[s], vecs[j], 1)
		}
		counts[s]++
	}
	sawMerged := false
	for s, c := range slots {
		got := resp.Chunks[1][s]
		if got.Start != c.Start || got.End != c.End {
			t.Errorf("slot %d offsets %d-%d; want %d-%d", s, got.Start, got.End, c.Start, c.End)
		}
		if !equalFloats(got.Embeddings, merged[s]) {
			t.Fatalf("slot %d (%d chunks) embedding %v; want %v", s, counts[s], got.Embeddings, merged[s])
		}
		sawMerged = sawMerged || counts[s] > 1
	}
	if !sawMerged {
		t.Fatal("no slot merged chunks")
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestChunkedInferDocsResultBound: a document whose stored chunks could not
// fit in the result bound fails with 413 before anything is embedded (the
// nil model would panic if it ran); the bound counts each chunk at its
// smallest, so one that fits is not refused.
func TestChunkedInferDocsResultBound(t *testing.T) {
	ep := config.Endpoint{InferenceID: "elser", TaskType: config.SparseEmbedding, Chunking: &config.ChunkingSettings{Strategy: config.ChunkNone}}
	empty := make([]string, 1000)
	_, err := ChunkedInferDocs(context.Background(), nil, ep, [][]string{{"fits"}, empty}, inferapi.InputIngest, 40_000)
	e := eserror.As(err)
	const want = "the result of [1000] inputs and [1000] chunks would take at least [50000] bytes, more than the largest message the NATS server accepts [40000 bytes]"
	if e.Status != 413 || e.Type != eserror.TypeContentTooLong || e.Reason != want {
		t.Fatalf("error %d %s %q; want 413 %s %q", e.Status, e.Type, e.Reason, eserror.TypeContentTooLong, want)
	}
	if got := minResultBytes(1, 384); got != 50+768 {
		t.Errorf("least bytes of one 384-dimension chunk = %d; want %d", got, 50+768)
	}
}
