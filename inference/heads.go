package inference

import (
	"cmp"
	"math"
	"slices"
)

// meanPool averages each row's hidden states over its real tokens
// (attention mask 1), as sentence-transformers' mean pooling does.
// hidden is [rows, seq, dim] row-major.
func meanPool(hidden []float32, rows, seq, dim int, mask []int64) [][]float32 {
	out := make([][]float32, rows)
	sum := make([]float64, dim)
	for r := range rows {
		clear(sum)
		n := 0
		for s := range seq {
			if mask[r*seq+s] == 0 {
				continue
			}
			n++
			h := hidden[(r*seq+s)*dim : (r*seq+s+1)*dim]
			for d, v := range h {
				sum[d] += float64(v)
			}
		}
		vec := make([]float32, dim)
		if n > 0 {
			for d := range vec {
				vec[d] = float32(sum[d] / float64(n))
			}
		}
		out[r] = vec
	}
	return out
}

// clsPool takes each row's first hidden state.
func clsPool(hidden []float32, rows, seq, dim int) [][]float32 {
	out := make([][]float32, rows)
	for r := range rows {
		out[r] = slices.Clone(hidden[r*seq*dim : r*seq*dim+dim])
	}
	return out
}

// lastTokenPool takes each row's last real token's state (mask 1), on
// whichever side the row was padded.
func lastTokenPool(hidden []float32, rows, seq, dim int, mask []int64) [][]float32 {
	out := make([][]float32, rows)
	for r := range rows {
		last := 0
		for s := range seq {
			if mask[r*seq+s] != 0 {
				last = s
			}
		}
		out[r] = slices.Clone(hidden[(r*seq+last)*dim : (r*seq+last+1)*dim])
	}
	return out
}

// Normalize scales v to unit L2 norm in place; a zero vector stays zero.
func Normalize(v []float32) {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}

// WeightedToken is one entry of a sparse embedding.
type WeightedToken struct {
	ID     int64 // its vocabulary id
	Token  string
	Weight float32
}

// SparseEmbedding is a learned sparse representation: vocabulary tokens with
// positive weights, highest first.
type SparseEmbedding struct {
	Tokens []WeightedToken
	// Truncated says the input was cut to the model's maximum length.
	Truncated bool
}

// SparseTerms lists each embedding's tokens, heaviest first (as SparseEmbed sorts them): what
// quantize.SparseAgreement compares.
func SparseTerms(embs []SparseEmbedding) [][]string {
	out := make([][]string, len(embs))
	for i, e := range embs {
		out[i] = make([]string, len(e.Tokens))
		for j, t := range e.Tokens {
			out[i][j] = t.Token
		}
	}
	return out
}

// splade computes SPLADE max pooling for one row of MLM logits
// ([seq, vocab]): per vocabulary entry, the maximum over the row's real
// tokens of log(1 + ReLU(logit)). It returns the non-zero weights by id.
func splade(logits []float32, seq, vocab int, mask []int64) map[int]float32 {
	best := make([]float32, vocab)
	for s := range seq {
		if mask[s] == 0 {
			continue
		}
		row := logits[s*vocab : (s+1)*vocab]
		for v, x := range row {
			// log1p is monotonic, so take the max of the logits first and
			// apply it once per vocabulary entry.
			if x > best[v] {
				best[v] = x
			}
		}
	}
	out := map[int]float32{}
	for v, x := range best {
		if x > 0 {
			out[v] = float32(math.Log1p(float64(x)))
		}
	}
	return out
}

// sortedTokens turns weights by id into tokens, highest weight first (ties
// by id, so the order is deterministic).
func sortedTokens(weights map[int]float32, token func(int64) string) []WeightedToken {
	ids := make([]int, 0, len(weights))
	for id, w := range weights {
		if w > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b int) int {
		if c := cmp.Compare(weights[b], weights[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	out := make([]WeightedToken, len(ids))
	for i, id := range ids {
		out[i] = WeightedToken{ID: int64(id), Token: token(int64(id)), Weight: weights[id]}
	}
	return out
}

func sigmoid(x float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(x))))
}
