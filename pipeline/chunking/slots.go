package chunking

// The model-independent rules of Elasticsearch's EmbeddingRequestChunker:
// every chunk of an input is embedded, but at most MaxChunksPerInput results
// are kept per input. When an input has more chunks, consecutive chunks
// share a result slot: the slot's offsets span them and their embeddings
// are merged.

// MaxChunksPerInput is EmbeddingRequestChunker.MAX_CHUNKS.
const MaxChunksPerInput = 512

// Slots maps each of an input's n chunks to its result slot: chunk j
// to j when n <= MaxChunksPerInput, else to j*MaxChunksPerInput/n, so
// that every slot gets n/MaxChunksPerInput chunks, give or take one.
func Slots(n int) []int {
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

// SlotChunks returns the offsets of the result slots of chunks (as Split
// returned them): a slot spans from the start of its first chunk to the
// end of its last.
func SlotChunks(chunks []Chunk) []Chunk {
	var out []Chunk
	for j, slot := range Slots(len(chunks)) {
		c := chunks[j]
		if slot == len(out) {
			out = append(out, c)
			continue
		}
		out[slot].End, out[slot].ByteEnd = c.End, c.ByteEnd
	}
	return out
}
