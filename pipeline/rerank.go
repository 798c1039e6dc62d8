package pipeline

import (
	"context"
	"errors"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/pipeline/chunking"
)

// rerankChunked scores each document by its best chunk, as Elasticsearch's
// RerankRequestChunker does for long_document_strategy chunk: documents are
// split into chunking.RerankSettings' sentence chunks, the first maxChunks
// of each kept (nil: all), and every chunk is scored in one engine call.
// Elasticsearch keeps the first chunks too (an early version merged the
// rest into the last one kept; its current source truncates).
func rerankChunked(ctx context.Context, m *inference.Model, query string, docs []string, maxChunks *int, ro inference.RunOptions) ([]float32, error) {
	settings := chunking.RerankSettings(query)
	var texts []string
	var owner []int
	for i, doc := range docs {
		chunks, err := chunking.Split(doc, settings)
		if err != nil {
			return nil, err
		}
		if maxChunks != nil && len(chunks) > *maxChunks {
			chunks = chunks[:*maxChunks]
		}
		for _, c := range chunks {
			texts = append(texts, c.Text(doc))
			owner = append(owner, i)
		}
	}
	scores, err := m.RerankWith(ctx, query, texts, ro)
	var tl *inference.TooLongError
	if errors.As(err, &tl) {
		tl.Input = owner[tl.Input] // the document, not the chunk
	}
	if err != nil {
		return nil, err
	}
	return bestPerDocument(owner, scores, len(docs)), nil
}

// bestPerDocument is each document's best chunk score, owner[j] being the
// document of chunk j: what RerankRequestChunker keeps when it ranks the
// chunks and takes the first of each document.
func bestPerDocument(owner []int, scores []float32, docs int) []float32 {
	best := make([]float32, docs)
	seen := make([]bool, docs)
	for j, s := range scores {
		if d := owner[j]; !seen[d] || s > best[d] {
			best[d], seen[d] = s, true
		}
	}
	return best
}
