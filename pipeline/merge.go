package pipeline

import "github.com/jetinfer/jetinfer/inference"

// Merging the embeddings of the chunks that share a result slot
// (chunking.Slots), as Elasticsearch's EmbeddingRequestChunker does.

// MergeDense merges two dense embeddings of a slot, a the mean of aCount
// chunk embeddings and b of bCount, into the mean of all of them, with
// float32 arithmetic as TextEmbeddingFloatResults.Embedding.merge does:
// (aCount*a[i] + bCount*b[i]) / (aCount+bCount). a and b have the same
// length. The result is new; its count is aCount+bCount.
func MergeDense(a []float32, aCount int, b []float32, bCount int) []float32 {
	out := make([]float32, len(a))
	na, nb, n := float32(aCount), float32(bCount), float32(aCount+bCount)
	for i := range out {
		// The conversions keep each product rounded to float32, as in
		// Java, instead of fused into a multiply-add.
		out[i] = (float32(na*a[i]) + float32(nb*b[i])) / n
	}
	return out
}

// MergeSparse merges two sparse embeddings of a slot, each sorted by
// descending weight, as SparseEmbeddingResults.Embedding.merge does: the
// two lists are merged by weight (on equal weights b's token comes first)
// and only the first, highest, occurrence of each token is kept. The
// result is sorted by descending weight.
func MergeSparse(a, b []inference.WeightedToken) []inference.WeightedToken {
	out := make([]inference.WeightedToken, 0, max(len(a), len(b)))
	seen := make(map[string]struct{}, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var t inference.WeightedToken
		switch {
		case i == len(a):
			t = b[j]
			j++
		case j == len(b):
			t = a[i]
			i++
		case a[i].Weight > b[j].Weight:
			t = a[i]
			i++
		default:
			t = b[j]
			j++
		}
		if _, dup := seen[t.Token]; !dup {
			seen[t.Token] = struct{}{}
			out = append(out, t)
		}
	}
	return out
}

// MergeSparseEmbedding merges two sparse embeddings of a slot with
// MergeSparse; the result is truncated when either input was.
func MergeSparseEmbedding(a, b inference.SparseEmbedding) inference.SparseEmbedding {
	return inference.SparseEmbedding{Tokens: MergeSparse(a.Tokens, b.Tokens), Truncated: a.Truncated || b.Truncated}
}
