package pipeline

import "github.com/jetinfer/jetinfer/inference"

// The model-independent rules of Elasticsearch's EmbeddingRequestChunker:
// every chunk of an input is embedded, but at most MaxChunksPerInput results
// are kept per input. When an input has more chunks, consecutive chunks
// share a result slot: the slot's offsets span them and their embeddings
// are merged.

// MaxChunksPerInput is EmbeddingRequestChunker.MAX_CHUNKS.
const MaxChunksPerInput = 512

// ChunkSlots maps each of an input's n chunks to its result slot: chunk j
// to j when n <= MaxChunksPerInput, else to j*MaxChunksPerInput/n, so
// that every slot gets n/MaxChunksPerInput chunks, give or take one.
func ChunkSlots(n int) []int {
	slots := make([]int, n)
	for j := range slots {
		if n <= MaxChunksPerInput {
			slots[j] = j
		} else {
			slots[j] = j * MaxChunksPerInput / n
		}
	}
	return slots
}

// SlotChunks returns the offsets of the result slots of chunks (as ChunkText
// returned them): a slot spans from the start of its first chunk to the
// end of its last.
func SlotChunks(chunks []Chunk) []Chunk {
	var out []Chunk
	for j, slot := range ChunkSlots(len(chunks)) {
		c := chunks[j]
		if slot == len(out) {
			out = append(out, c)
			continue
		}
		out[slot].End, out[slot].ByteEnd = c.End, c.ByteEnd
	}
	return out
}

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
