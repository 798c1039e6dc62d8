// Package chunking splits an input into the chunks Elasticsearch's chunkers
// make, ported from x-pack/plugin/core/.../inference/chunking:
// WordBoundaryChunker, SentenceBoundaryChunker, RecursiveChunker and
// NoopChunker, with ChunkerUtils' word counting, and maps an input's chunks
// to its result slots as EmbeddingRequestChunker does. Word and sentence
// boundaries come from segment.go, separators from separator.go. It is pure
// Go: nothing here needs a model.
package chunking

import (
	"net/http"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
)

// Chunk is a span of an input. Start and End are UTF-16 code-unit offsets,
// the Java String indices that Elasticsearch reports as chunk offsets
// (a character outside the BMP counts 2); ByteStart and ByteEnd index the
// Go string and always fall on rune boundaries.
type Chunk struct {
	Start, End         int
	ByteStart, ByteEnd int
}

// Text returns the chunk's text out of the input it was made from.
func (c Chunk) Text(input string) string { return input[c.ByteStart:c.ByteEnd] }

// separatorTimeBudget bounds the time one Split call spends matching
// user-supplied separator regexes (the built-in separator groups and plain
// literals are matched in linear time and need none). Elasticsearch bounds
// the same thing by the characters a regex may read (10x the input).
const separatorTimeBudget = 2 * time.Second

// span is a chunk in byte offsets of the string it was made from.
type span struct{ start, end int }

// Split splits text as Elasticsearch's chunker for s.Strategy does:
// word (WordBoundaryChunker: MaxChunkSize words, Overlap words shared by
// neighbours), sentence (SentenceBoundaryChunker: whole sentences up to
// MaxChunkSize words, the previous sentence repeated when SentenceOverlap
// is 1), recursive (RecursiveChunker: split on Separators in turn, falling
// back to sentences) or none (the whole text). Every strategy returns at
// least one chunk; "" gives one empty chunk.
//
// Errors are 400 illegal_argument_exceptions: parameters the chunker
// refuses (as Elasticsearch's "Invalid chunking parameters, ..."), an
// unknown strategy, a separator that is not a valid regex or that ran out
// of time. A separator regex is compiled only when the text needs it, as in
// Elasticsearch.
func Split(text string, s config.ChunkingSettings) ([]Chunk, error) {
	return splitWithBudget(text, s, separatorTimeBudget)
}

// splitWithBudget is Split with the separator time budget as a parameter.
func splitWithBudget(text string, s config.ChunkingSettings, budget time.Duration) ([]Chunk, error) {
	var spans []span
	switch s.Strategy {
	case config.ChunkNone:
		spans = []span{{0, len(text)}}
	case config.ChunkWord:
		if err := checkWordParams(s.MaxChunkSize, s.Overlap); err != nil {
			return nil, err
		}
		for _, p := range wordChunkPositions(text, segmentWords(text), s.MaxChunkSize, s.Overlap) {
			spans = append(spans, p.span)
		}
	case config.ChunkSentence:
		if err := checkMaxChunkSize(s.MaxChunkSize); err != nil {
			return nil, err
		}
		spans = sentenceChunks(text, s.MaxChunkSize, s.SentenceOverlap > 0)
	case config.ChunkRecursive:
		if err := checkMaxChunkSize(s.MaxChunkSize); err != nil {
			return nil, err
		}
		separators := s.Separators
		if separators == nil {
			// RecursiveChunkingSettings' default.
			separators, _ = config.SeparatorGroup("plaintext")
		}
		var err error
		spans, err = recursiveChunks(text, separators, s.MaxChunkSize, budget)
		if err != nil {
			return nil, err
		}
	default:
		return nil, illegalArgument("Invalid chunkingStrategy %s", s.Strategy)
	}
	return toChunks(text, spans), nil
}

func illegalArgument(format string, args ...any) *eserror.Error {
	return eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument, format, args...)
}

func checkMaxChunkSize(size int) error {
	if size < 1 {
		return illegalArgument("Invalid chunking parameters, max_chunk_size [%d] must be > 0", size)
	}
	return nil
}

// checkWordParams has WordBoundaryChunker's checks and messages.
func checkWordParams(size, overlap int) error {
	if err := checkMaxChunkSize(size); err != nil {
		return err
	}
	if overlap > 0 && overlap > size/2 {
		return illegalArgument("Invalid chunking parameters, overlap [%d] must be < chunk size / 2 [%d / 2 = %d]", overlap, size, size/2)
	}
	if overlap < 0 {
		return illegalArgument("Invalid chunking parameters, overlap [%d] must be >= 0", overlap)
	}
	return nil
}

// toChunks adds the UTF-16 offsets to byte spans.
func toChunks(text string, spans []span) []Chunk {
	offsets := make([]int, 0, 2*len(spans))
	for _, sp := range spans {
		offsets = append(offsets, sp.start, sp.end)
	}
	slices.Sort(offsets)
	offsets = slices.Compact(offsets)
	units := make([]int, len(offsets))
	pos, u := 0, 0
	for i, off := range offsets {
		u += utf16Len(text[pos:off])
		pos = off
		units[i] = u
	}
	chunks := make([]Chunk, len(spans))
	for i, sp := range spans {
		s, _ := slices.BinarySearch(offsets, sp.start)
		e, _ := slices.BinarySearch(offsets, sp.end)
		chunks[i] = Chunk{Start: units[s], End: units[e], ByteStart: sp.start, ByteEnd: sp.end}
	}
	return chunks
}

// utf16Len is the length of s as a Java String: runes outside the BMP are
// surrogate pairs; an invalid byte decodes to U+FFFD, one unit.
func utf16Len(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			n++
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
		i += size
	}
	return n
}
