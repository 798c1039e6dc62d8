package tokenizer

import (
	"fmt"
	"testing"
)

// BenchmarkEncode encodes the corpus texts (mixed: English, accents, CJK, emoji, control characters, long words)
// one at a time, and reports tokens per second.
func BenchmarkEncode(b *testing.B) {
	corpus := tokLoadCorpus(b)
	for _, name := range tokGoldenTokenizers {
		b.Run(name, func(b *testing.B) {
			tok := tokLoad(b, name, 512)
			var bytes int64
			for _, text := range corpus.Single {
				bytes += int64(len(text))
			}
			b.SetBytes(bytes)
			tokens := 0
			for b.Loop() {
				for _, text := range corpus.Single {
					enc, err := tok.Encode(text)
					if err != nil {
						b.Fatal(err)
					}
					tokens += len(enc.IDs)
				}
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkEncodeLong encodes a 100 KB English text, truncated to 512 tokens.
func BenchmarkEncodeLong(b *testing.B) {
	text := tokRepeatTo("The quick brown fox jumps over the lazy dog. Elasticsearch stores documents. ", 100_000)
	for _, name := range tokTestTokenizers {
		b.Run(name, func(b *testing.B) {
			tok := tokLoad(b, name, 512)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if _, err := tok.Encode(text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeHostile encodes the hostile inputs at 50 KB and 200 KB: the
// time per byte must stay flat (linear cost) from one size to the other.
func BenchmarkEncodeHostile(b *testing.B) {
	for _, name := range tokTestTokenizers {
		for kind, gen := range hostileInputs {
			for _, size := range []int{50_000, 200_000} {
				text := gen(size)
				b.Run(fmt.Sprintf("%s/%s/%dKB", name, kind, size/1000), func(b *testing.B) {
					tok := tokLoad(b, name, 512)
					b.SetBytes(int64(len(text)))
					for b.Loop() {
						if _, err := tok.EncodePair(text, text); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
