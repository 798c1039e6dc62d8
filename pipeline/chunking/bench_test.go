package chunking

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/config"
)

// benchDocument is about 100 KB of markdown-ish prose: headings, paragraphs
// of TEST_TEXT and multilingual text.
func benchDocument() string {
	var b strings.Builder
	for i := 0; b.Len() < 100_000; i++ {
		fmt.Fprintf(&b, "## Section %d\n\n%s\n\n%s\n\n", i, testText, multiLingual[i%len(multiLingual)])
		if i%3 == 0 {
			fmt.Fprintf(&b, "Setext heading %d\n---\n%s\n\n", i, testText[:400])
		}
	}
	return b.String()
}

// BenchmarkSplit chunks a 100 KB document with each strategy.
func BenchmarkSplit(b *testing.B) {
	doc := benchDocument()
	for _, bc := range []struct {
		name string
		s    config.ChunkingSettings
	}{
		{"word-250-100", *config.LegacyChunking()},
		{"sentence-250-1", *config.DefaultChunking()},
		{"recursive-plaintext-250", recursiveSettings(250, plaintextSeparators...)},
		{"recursive-markdown-250", recursiveSettings(250, markdownSeparators...)},
		{"recursive-regex-100", recursiveSettings(100, `\n{2,}`, `(?<=\.)\s+`)},
		{"none", config.ChunkingSettings{Strategy: config.ChunkNone}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			var n int
			for b.Loop() {
				chunks, err := Split(doc, bc.s)
				if err != nil {
					b.Fatal(err)
				}
				n = len(chunks)
			}
			b.ReportMetric(float64(n), "chunks")
		})
	}
}

// BenchmarkSeparators compares the hand-written matchers of the built-in
// separator patterns with regexp2 running the same patterns, on the 100 KB
// document.
func BenchmarkSeparators(b *testing.B) {
	doc := benchDocument()
	for _, pattern := range []string{config.SeparatorParagraph, config.SeparatorLine, config.SeparatorSetextH2} {
		builtin, err := compileSeparator(pattern)
		if err != nil {
			b.Fatal(err)
		}
		generic, err := compileRegexSeparator(pattern)
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range []struct {
			name string
			sep  separator
		}{{"builtin", builtin}, {"regexp2", generic}} {
			b.Run(fmt.Sprintf("%q/%s", pattern, m.name), func(b *testing.B) {
				b.SetBytes(int64(len(doc)))
				deadline := time.Now().Add(time.Hour)
				for b.Loop() {
					if _, err := m.sep.starts(doc, deadline); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
