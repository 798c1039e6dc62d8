package chunking

import (
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
)

func TestRerankSettings(t *testing.T) {
	for _, c := range []struct {
		query string
		words int
	}{
		// 512 - 3 tokens, 0.75 words each.
		{"", 381},
		// 10 words are ceil(13.33) = 14 tokens: (509 - 14) × 0.75.
		{testSentence, 371},
		// A query of 400 words leaves less than half: half it is.
		{strings.Repeat("word ", 400), 192},
	} {
		got := RerankSettings(c.query)
		if want := (config.ChunkingSettings{Strategy: config.ChunkSentence, MaxChunkSize: c.words, SentenceOverlap: 1}); got.Strategy != want.Strategy ||
			got.MaxChunkSize != want.MaxChunkSize || got.SentenceOverlap != want.SentenceOverlap {
			t.Errorf("query of %d bytes: %+v; want %+v", len(c.query), got, want)
		}
	}
}

// TestRerankChunkCounts: the chunk counts RerankRequestChunkerTests asserts
// for its generated documents of testSentence (its TEST_SENTENCE too) (ten sentences of ten words need none; a
// hundred make three chunks).
func TestRerankChunkCounts(t *testing.T) {
	for _, c := range []struct{ sentences, chunks int }{{10, 1}, {20, 1}, {100, 3}, {105, 3}} {
		doc := strings.Repeat(testSentence, c.sentences)
		chunks, err := Split(doc, RerankSettings(testSentence))
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) != c.chunks {
			t.Errorf("%d sentences: %d chunks; want %d", c.sentences, len(chunks), c.chunks)
		}
		if c.chunks == 1 && chunks[0].Text(doc) != doc {
			t.Errorf("%d sentences: one chunk that is not the document", c.sentences)
		}
	}
}
