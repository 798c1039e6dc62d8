package quantize

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// The bounds an int8 model must keep against its float model on the same texts (issue 11's targets), one per
// task: the measure and the worst value accepted.
const (
	// MinCosineBound is the lowest cosine between a text's int8 and float dense embeddings.
	MinCosineBound = 0.99
	// TopOverlapBound is the lowest mean share of each text's TopTerms heaviest sparse terms that both keep.
	TopOverlapBound = 0.9
	// SpearmanBound is the lowest rank correlation of a query's rerank scores over the same documents.
	SpearmanBound = 0.98
	// TopTerms is how many of a sparse embedding's heaviest terms TopOverlap compares.
	TopTerms = 20
)

// Agreement is how closely a quantized model's outputs follow the float model's on the same inputs.
type Agreement struct {
	// Measure names the figure: "min_cosine", "top20_overlap" or "spearman".
	Measure string  `json:"measure"`
	Value   float64 `json:"value"`
	Bound   float64 `json:"bound"`
	// Inputs is how many texts (or documents) were compared.
	Inputs int `json:"inputs"`
}

// Holds reports whether the figure is within its bound.
func (a Agreement) Holds() bool { return a.Value >= a.Bound }

func (a Agreement) String() string {
	rel := "within"
	if !a.Holds() {
		rel = "beyond"
	}
	return fmt.Sprintf("%s %.6f over %d inputs, %s the bound %g", a.Measure, a.Value, a.Inputs, rel, a.Bound)
}

// DenseAgreement is the lowest cosine between each pair of embeddings; a pair with a NaN agrees not at all.
func DenseAgreement(float, int8 [][]float32) Agreement {
	worst := 1.0
	for i := range float {
		c := Cosine(float[i], int8[i])
		if math.IsNaN(c) {
			c = 0
		}
		worst = min(worst, c)
	}
	return Agreement{Measure: "min_cosine", Value: worst, Bound: MinCosineBound, Inputs: len(float)}
}

// SparseAgreement is the mean overlap of each text's TopTerms heaviest terms; each list holds a text's terms,
// heaviest first.
func SparseAgreement(float, int8 [][]string) Agreement {
	return Agreement{Measure: fmt.Sprintf("top%d_overlap", TopTerms), Value: TopOverlap(float, int8, TopTerms),
		Bound: TopOverlapBound, Inputs: len(float)}
}

// RerankAgreement is the Spearman correlation of one query's scores over the same documents.
func RerankAgreement(float, int8 []float32) Agreement {
	return Agreement{Measure: "spearman", Value: Spearman(float, int8), Bound: SpearmanBound, Inputs: len(float)}
}

// Cosine is the cosine of the angle between a and b, in float64.
func Cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		if na == nb {
			return 1 // both zero: the same vector
		}
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// TopOverlap is the mean share of each text's k first terms (its heaviest) that both lists have among their k
// first; a text with no terms in a counts as agreeing only when b has none either.
func TopOverlap(a, b [][]string, k int) float64 {
	if len(a) == 0 {
		return 1
	}
	var sum float64
	for i := range a {
		ta, tb := a[i][:min(k, len(a[i]))], b[i][:min(k, len(b[i]))]
		if len(ta) == 0 {
			if len(tb) == 0 {
				sum++
			}
			continue
		}
		shared := 0
		for _, t := range tb {
			if slices.Contains(ta, t) {
				shared++
			}
		}
		sum += float64(shared) / float64(max(len(ta), len(tb)))
	}
	return sum / float64(len(a))
}

// Spearman is the rank correlation of two score lists; tied scores share their mean rank and the correlation is
// Pearson's over the ranks, so ties cannot inflate it.
func Spearman(a, b []float32) float64 {
	ra, rb := ranks(a), ranks(b)
	var ma, mb float64
	for i := range ra {
		ma += ra[i] / float64(len(ra))
		mb += rb[i] / float64(len(rb))
	}
	var cov, va, vb float64
	for i := range ra {
		cov += (ra[i] - ma) * (rb[i] - mb)
		va += (ra[i] - ma) * (ra[i] - ma)
		vb += (rb[i] - mb) * (rb[i] - mb)
	}
	if va == 0 || vb == 0 {
		if va == vb {
			return 1 // both constant: the same (lack of) order
		}
		return 0
	}
	return cov / math.Sqrt(va*vb)
}

// ranks gives each value its rank from 0, ties their mean rank.
func ranks(v []float32) []float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(x, y int) int { return cmp.Compare(v[x], v[y]) })
	r := make([]float64, len(v))
	for start := 0; start < len(idx); {
		end := start + 1
		for end < len(idx) && v[idx[end]] == v[idx[start]] {
			end++
		}
		mean := float64(start+end-1) / 2
		for _, i := range idx[start:end] {
			r[i] = mean
		}
		start = end
	}
	return r
}
