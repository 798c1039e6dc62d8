// Package benchmark measures jetinfer's throughput, latency and memory on
// synthetic models of real sizes (no pretrained weights are available to
// the project) and prints the tables the README quotes. `jetinfer-bench`
// and the package's Go benchmarks both run it.
package benchmark

import (
	"math/rand/v2"
	"strings"
)

// words is the vocabulary of the synthetic corpus: common English words, a
// few that WordPiece splits, and some non-ASCII ones, so that token counts
// behave like real text.
var words = strings.Fields(`the of and to in is was for on that with as by it at from his an were are which this be has
or had first one their its new after who they have her she two been other when there all during into school time
may years more most only over city some world would where later up such used many can state about national out
known university united then made county american between de however part team under year film south game
high including season several team while group three well american second both series before through since
search relevance embedding vector sparse dense retrieval index query document passage rerank model inference
café naïve résumé zürich são paulo 東京 北京 москва αθήνα unbelievably internationalization tokenization
2024 3.14 #hashtag @mention e-mail self-driving state-of-the-art`)

// Corpus returns n texts of mixed lengths, the same for the same seed: 40%
// short (3–20 words, like queries and titles), 40% medium (20–120 words),
// 20% long (120–400 words, past a 512-token limit now and then).
func Corpus(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 0x6a6574696e666572))
	texts := make([]string, n)
	for i := range texts {
		var length int
		switch p := rng.Float64(); {
		case p < 0.4:
			length = 3 + rng.IntN(18)
		case p < 0.8:
			length = 20 + rng.IntN(101)
		default:
			length = 120 + rng.IntN(281)
		}
		var b strings.Builder
		for w := range length {
			if w > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(12) == 0 {
				b.WriteByte('.')
			}
		}
		texts[i] = b.String()
	}
	return texts
}

// Documents returns n texts of length words each (the sparse benchmark's
// 256-token documents); the model's limit cuts them anyway.
func Documents(n, length int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 0x646f6373))
	docs := make([]string, n)
	for i := range docs {
		var b strings.Builder
		for w := range length {
			if w > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		docs[i] = b.String()
	}
	return docs
}
