package chunking

// wordPos is WordBoundaryChunker.ChunkPosition: a chunk and the words it
// counted, overlap included.
type wordPos struct {
	span
	words int
}

// wordChunkPositions is WordBoundaryChunker.chunkPositions over s (whose
// segmentation is ws): windows of chunkSize words that advance by
// chunkSize-overlap words. A chunk ends at the end of its last word; the
// whitespace and punctuation after it start the next chunk. The parameters
// must have passed checkWordParams.
func wordChunkPositions(s string, ws *wordSegs, chunkSize, overlap int) []wordPos {
	var out []wordPos
	sizeLessOverlap := chunkSize - overlap
	count, sinceMark := 0, 0
	nextWindowStart, windowStart := 0, 0
	for k := 1; k <= ws.last(); k++ {
		if !ws.isWord(k) {
			continue
		}
		boundary := ws.bounds[k]
		count++
		sinceMark++
		if count >= chunkSize {
			out = append(out, wordPos{span{windowStart, boundary}, count})
			count = overlap
			if overlap == 0 {
				nextWindowStart = boundary
			}
			windowStart = nextWindowStart
		}
		if sinceMark == sizeLessOverlap {
			nextWindowStart = boundary
			sinceMark = 0
		}
	}
	// The last, shorter chunk; when the text ended exactly on a window the
	// count equals the overlap and there is nothing new, unless no chunk
	// was made at all.
	if count > overlap || len(out) == 0 {
		out = append(out, wordPos{span{windowStart, len(s)}, count})
	}
	return out
}
