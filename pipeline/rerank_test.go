package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference/synthbert"
	"github.com/jetinfer/jetinfer/pipeline/chunking"
)

// TestBestPerDocument: RerankRequestChunkerTests' cases, a document scored
// by its first, middle or last chunk.
func TestBestPerDocument(t *testing.T) {
	for _, c := range []struct {
		owner  []int
		scores []float32
		want   []float32
	}{
		{[]int{0, 0, 0}, []float32{1, 0.5, 0.3}, []float32{1}},
		{[]int{0, 0, 0}, []float32{0.5, 1, 0.5}, []float32{1}},
		{[]int{0, 0, 0}, []float32{0.5, 0.3, 1}, []float32{1}},
		{[]int{0, 1, 1, 1}, []float32{0.2, -3, 0.7, 0.1}, []float32{0.2, 0.7}},
		{[]int{0, 0, 1, 1}, []float32{-2, -1, -5, -4}, []float32{-1, -4}},
	} {
		if got := bestPerDocument(c.owner, c.scores, len(c.want)); !slices.Equal(got, c.want) {
			t.Errorf("owners %v scores %v: %v; want %v", c.owner, c.scores, got, c.want)
		}
	}
}

// TestInferRerankChunked: with long_document_strategy chunk each document
// ranks by the model's best score among its chunks (the chunks
// Elasticsearch makes for the query), and max_chunks_per_doc keeps the
// first ones.
func TestInferRerankChunked(t *testing.T) {
	m := loadTiny(t, synthbert.HeadClassifier, `{"task_type":"rerank","max_sequence_length":32}`)
	ctx := context.Background()
	const sentence = "This is a test sentence that has ten total words. "
	// A hundred sentences of ten words; from the second chunk on they
	// speak of the fox, so that chunks read differently even where the
	// model truncates them.
	var long strings.Builder
	for i := range 100 {
		if i < 30 {
			fmt.Fprintf(&long, "Sentence number %d is here and it has ten words. ", i)
		} else {
			fmt.Fprintf(&long, "Sentence %d: the quick fox jumps over the dog. ", i)
		}
	}
	docs := []string{"a short document about a fox.", long.String(), strings.Repeat(sentence, 3)}
	query := "where does the fox jump?"
	// The model's own scores of every chunk, chunked independently.
	best := func(maxChunks int) []float32 {
		out := make([]float32, len(docs))
		for i, d := range docs {
			chunks, err := chunking.Split(d, chunking.RerankSettings(query))
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 && len(chunks) != 3 {
				t.Fatalf("the long document has %d chunks; want 3", len(chunks))
			}
			var texts []string
			for _, c := range chunks[:min(len(chunks), maxChunks)] {
				texts = append(texts, c.Text(d))
			}
			scores, err := m.Rerank(ctx, query, texts)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = slices.Max(scores)
		}
		return out
	}
	one := 1
	for _, c := range []struct {
		maxChunks *int
		want      []float32
	}{{nil, best(3)}, {&one, best(1)}} {
		ep := config.Endpoint{TaskType: config.Rerank, ServiceSettings: config.ServiceSettings{
			ModelID: config.ModelRerankV1, LongDocumentStrategy: config.LongDocumentChunk, MaxChunksPerDoc: c.maxChunks}}
		res, err := Infer(ctx, m, ep, inferapi.Request{Input: docs, Query: &query}, inferapi.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Rerank []struct {
				Index int     `json:"index"`
				Score float32 `json:"relevance_score"`
				Text  string  `json:"text"`
			} `json:"rerank"`
		}
		if err := json.Unmarshal(res.Body, &resp); err != nil || len(resp.Rerank) != len(docs) {
			t.Fatalf("%s: %v", res.Body, err)
		}
		for i, r := range resp.Rerank {
			if r.Score != c.want[r.Index] || r.Text != docs[r.Index] || i > 0 && r.Score > resp.Rerank[i-1].Score {
				t.Fatalf("max chunks %v: result %d = %+v; want document %d's best chunk score %v, the whole document, in order", c.maxChunks, i, r, r.Index, c.want[r.Index])
			}
		}
	}
	// The best chunk is not the first: the test tells the two strategies apart.
	if all, first := best(3), best(1); all[1] == first[1] {
		t.Fatalf("the long document's best chunk is its first (%v): the test proves nothing", all[1])
	}
}
