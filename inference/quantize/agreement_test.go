package quantize

import (
	"math"
	"testing"
)

func TestAgreementMeasures(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b []float32
		want float64
	}{
		{"same order", []float32{1, 2, 3, 4}, []float32{10, 20, 30, 40}, 1},
		{"reversed", []float32{1, 2, 3, 4}, []float32{4, 3, 2, 1}, -1},
		// One swap of neighbours among 4: 1 − 6·2/(4·15) = 0.8.
		{"one swap", []float32{1, 2, 3, 4}, []float32{1, 3, 2, 4}, 0.8},
		// Ties share a rank: all ties against an order is no correlation, not a perfect one.
		{"constant against order", []float32{5, 5, 5, 5}, []float32{1, 2, 3, 4}, 0},
		{"both constant", []float32{5, 5, 5}, []float32{2, 2, 2}, 1},
	} {
		if got := Spearman(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: spearman = %v, want %v", c.name, got, c.want)
		}
	}

	if got := TopOverlap([][]string{{"a", "b"}, {}}, [][]string{{"b", "c"}, {}}, 2); got != 0.75 {
		t.Errorf("overlap = %v, want (0.5 + 1)/2", got)
	}
	// Only the k heaviest count, and a text that lost all its terms shares none.
	if got := TopOverlap([][]string{{"a", "b", "c"}, {"x"}}, [][]string{{"a", "c", "b"}, {}}, 2); got != 0.25 {
		t.Errorf("overlap = %v, want (0.5 + 0)/2", got)
	}

	if got := Cosine([]float32{1, 0}, []float32{0, 2}); got != 0 {
		t.Errorf("cosine of orthogonal vectors = %v", got)
	}
	if got := Cosine([]float32{3, 4}, []float32{6, 8}); math.Abs(got-1) > 1e-15 {
		t.Errorf("cosine of parallel vectors = %v", got)
	}
	d := DenseAgreement([][]float32{{1, 0}, {1, 1}}, [][]float32{{1, 0}, {1, 0}})
	if math.Abs(d.Value-math.Sqrt(0.5)) > 1e-12 || d.Holds() || d.Inputs != 2 || d.Measure != "min_cosine" {
		t.Errorf("dense agreement %+v", d)
	}
	if got := d.String(); got != "min_cosine 0.707107 over 2 inputs, beyond the bound 0.99" {
		t.Errorf("String() = %q", got)
	}
	// NaN outputs: no agreement (and a value a manifest can hold).
	if n := DenseAgreement([][]float32{{1, 0}}, [][]float32{{float32(math.NaN()), 0}}); n.Value != 0 {
		t.Errorf("NaN embeddings agree %v", n.Value)
	}
}
