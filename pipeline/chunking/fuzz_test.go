package chunking

import (
	"sort"
	"testing"
	"unicode/utf8"

	"github.com/jetinfer/jetinfer/config"
)

var fuzzSeparators = [][]string{
	plaintextSeparators,
	markdownSeparators,
	{`\n\n`, `\n`, `\.\s`},
	{`(?<=[.!?])\s+`, `^#`, `$`},
	{"", "#"},
}

// FuzzSplit checks the invariants of every strategy on any text: no
// panic or error for valid settings; offsets in bounds, on rune boundaries
// and consistent with the UTF-16 ones; the chunks cover the text from 0 to
// its end (the word chunker: its last word) in order without gaps; and they tile it exactly (no overlap)
// where Elasticsearch's chunkers make none: word chunks with overlap 0 and
// sentence chunks without sentence overlap and max <= 2 words (longer
// sentences are split with an overlap of min(20, (max-1)/2) words, and the
// recursive chunker's backup sentence chunker does the same).
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		"", " ", "a", testText, multiLingual[2], "Hello\nWorld", "a. b\r\nc.\r\nd\u2028e.\u0085f",
		"# H\nText.\n\nH2\n---\nMore 😀 text! Yes? No.", "\xff\xfe invalid \xe2\x82 utf8.", "日本語のテキスト。한국어 API를.",
	} {
		f.Add(s, uint8(0), uint8(3), uint8(1))
		f.Add(s, uint8(1), uint8(2), uint8(0))
		f.Add(s, uint8(2), uint8(5), uint8(1))
	}
	f.Fuzz(func(t *testing.T, text string, strategy, size, extra uint8) {
		maxSize := 1 + int(size%40)
		var s config.ChunkingSettings
		switch strategy % 4 {
		case 0:
			s = wordSettings(maxSize, int(extra)%(maxSize/2+1))
		case 1:
			s = sentenceSettings(maxSize, extra%2 == 1)
		case 2:
			s = recursiveSettings(maxSize, fuzzSeparators[int(extra)%len(fuzzSeparators)]...)
		case 3:
			s = config.ChunkingSettings{Strategy: config.ChunkNone}
		}
		chunks, err := Split(text, s)
		if err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		checkChunks(t, text, chunks)
		for i, c := range chunks {
			for _, off := range []int{c.ByteStart, c.ByteEnd} {
				if off < len(text) && !utf8.RuneStart(text[off]) && utf8.ValidString(text) {
					t.Fatalf("chunk %d %+v not on a rune boundary", i, c)
				}
			}
		}
		last := chunks[len(chunks)-1].ByteEnd
		if s.Strategy == config.ChunkWord && last < len(text) {
			// Like Elasticsearch's, the word chunker leaves out what
			// follows the last full window when it has no words
			// ("a b." in chunks of 1 is "a", " b").
			ws := segmentWords(text)
			if ws.cum[ws.last()] != ws.cum[sort.SearchInts(ws.bounds, last)] {
				t.Fatalf("%+v: words after the last chunk %+v", s, chunks[len(chunks)-1])
			}
			last = len(text)
		}
		if chunks[0].ByteStart != 0 || last != len(text) {
			t.Fatalf("%+v: chunks %+v do not span the text (len %d)", s, chunks, len(text))
		}
		tile := s.Strategy == config.ChunkWord && s.Overlap == 0 ||
			s.Strategy == config.ChunkSentence && s.SentenceOverlap == 0 && s.MaxChunkSize <= 2
		for i := 1; i < len(chunks); i++ {
			prev, c := chunks[i-1], chunks[i]
			if c.ByteStart > prev.ByteEnd {
				t.Fatalf("%+v: gap between chunks %d %+v and %d %+v", s, i-1, prev, i, c)
			}
			if c.ByteStart < prev.ByteStart || c.ByteEnd < prev.ByteEnd {
				t.Fatalf("%+v: chunk %d %+v goes back from %+v", s, i, c, prev)
			}
			if tile && c.ByteStart != prev.ByteEnd {
				t.Fatalf("%+v: chunks %d %+v and %d %+v overlap", s, i-1, prev, i, c)
			}
		}
	})
}
