package chunking

// sentenceChunks is SentenceBoundaryChunker.chunk: sentences are packed
// greedily while the chunk stays within maxWords words. With
// includePrevious (sentence_overlap 1) each new chunk starts with the
// previous sentence, cut to its last min(maxWords/2, 20) words when both
// would not fit. A sentence (with its overlap) longer than maxWords is split
// on word boundaries with an overlap of min(20, (maxWords-1)/2) words.
func sentenceChunks(s string, maxWords int, includePrevious bool) []span {
	ws := segmentWords(s)
	var chunks []span
	chunkStart, chunkEnd, sentenceStart, chunkWords := 0, 0, 0, 0
	prevSentenceWords, prevSentenceStart := 0, 0

	for _, sentenceEnd := range sentenceEnds(s) {
		sentenceWords := ws.countWords(sentenceStart, sentenceEnd)

		if chunkWords+sentenceWords > maxWords {
			// Over the limit: close the chunk before this sentence.
			nextChunkWords := sentenceWords
			if chunkWords > 0 {
				chunks = append(chunks, span{chunkStart, chunkEnd})
				if includePrevious {
					if prevSentenceWords+sentenceWords > maxWords {
						skip := numWordsToSkipInPreviousSentence(prevSentenceWords, maxWords)
						chunkStart = ws.skipWords(prevSentenceStart, skip)
						chunkWords = prevSentenceWords - skip + sentenceWords
					} else {
						chunkWords = prevSentenceWords + sentenceWords
						chunkStart = prevSentenceStart
					}
					nextChunkWords = chunkWords
				} else {
					chunkStart = chunkEnd
					chunkWords = sentenceWords
				}
			}

			if nextChunkWords > maxWords {
				// This sentence (and its overlap) alone is too long:
				// split it on word boundaries.
				sub := s[chunkStart:sentenceEnd]
				splits := wordChunkPositions(sub, segmentWords(sub), maxWords, min(20, (maxWords-1)/2))
				last := len(splits) - 1
				for _, sp := range splits[:last] {
					chunks = append(chunks, span{chunkStart + sp.start, chunkStart + sp.end})
				}
				// The last split is partly filled: the next chunk
				// starts with it.
				chunkStart += splits[last].start
				chunkWords = splits[last].words
			}
		} else {
			chunkWords += sentenceWords
		}

		if includePrevious {
			prevSentenceStart = sentenceStart
			prevSentenceWords = sentenceWords
		}
		sentenceStart = sentenceEnd
		chunkEnd = sentenceEnd
	}

	if chunkWords > 0 {
		chunks = append(chunks, span{chunkStart, len(s)})
	}
	if len(chunks) == 0 {
		// Nothing to count: the whole input is one chunk.
		chunks = append(chunks, span{0, len(s)})
	}
	return chunks
}

// maxWordsInOverlap is how many words of the previous sentence a chunk
// repeats at most.
func maxWordsInOverlap(maxWords int) int { return min(maxWords/2, 20) }

func numWordsToSkipInPreviousSentence(prevSentenceWords, maxWords int) int {
	if m := maxWordsInOverlap(maxWords); prevSentenceWords > m {
		return prevSentenceWords - m
	}
	return 0
}
