package inference

import (
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/jetinfer/jetinfer/inference/tokenizer"
)

func TestPlanBatches(t *testing.T) {
	lengths := []int{5, 100, 7, 98, 6, 50, 3}
	got := planBatches(lengths, BatchConfig{MaxTokens: 200, MaxRows: 3})
	// Longest first: 100 and 98 fill 200 tokens; 50 is alone (7 is too much
	// shorter to pad to 50); 7, 6, 5 fill the 3 rows; 3 is left.
	want := [][]int{{1, 3}, {5}, {2, 4, 0}, {6}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("planBatches = %v; want %v", got, want)
	}
	// An input over the budget runs alone; empty input plans nothing.
	if got := planBatches([]int{300, 10}, BatchConfig{MaxTokens: 200, MaxRows: 8}); !reflect.DeepEqual(got, [][]int{{0}, {1}}) {
		t.Errorf("over-budget planBatches = %v", got)
	}
	if got := planBatches(nil, DefaultBatch()); len(got) != 0 {
		t.Errorf("planBatches(nil) = %v", got)
	}
}

func TestPad(t *testing.T) {
	encs := []tokenizer.Encoding{{IDs: []int64{101, 7, 102}, TypeIDs: []int64{0, 0, 0}}, {IDs: []int64{101, 102}, TypeIDs: []int64{0, 1}}}
	in := pad(encs, 9, padLayout{types: true})
	if in.rows != 2 || in.seq != 3 ||
		!reflect.DeepEqual(in.ids, []int64{101, 7, 102, 101, 102, 9}) ||
		!reflect.DeepEqual(in.mask, []int64{1, 1, 1, 1, 1, 0}) ||
		!reflect.DeepEqual(in.types, []int64{0, 0, 0, 0, 1, 0}) || in.positions != nil {
		t.Errorf("pad = %+v", in)
	}
	if noTypes := pad([]tokenizer.Encoding{{IDs: []int64{1}}}, 0, padLayout{}); noTypes.types != nil {
		t.Errorf("pad without types has types %v", noTypes.types)
	}
	// Left, with positions: the shorter row's tokens at its end, counted from 0.
	in = pad(encs, 9, padLayout{positions: true, left: true})
	if !reflect.DeepEqual(in.ids, []int64{101, 7, 102, 9, 101, 102}) ||
		!reflect.DeepEqual(in.mask, []int64{1, 1, 1, 0, 1, 1}) ||
		!reflect.DeepEqual(in.positions, []int64{0, 1, 2, 0, 0, 1}) || in.types != nil {
		t.Errorf("pad left = %+v", in)
	}
	in = pad(encs, 9, padLayout{positions: true})
	if !reflect.DeepEqual(in.positions, []int64{0, 1, 2, 0, 1, 0}) {
		t.Errorf("pad right positions = %v", in.positions)
	}
}

func TestLastTokenPool(t *testing.T) {
	// Two rows of three positions, dim 2: the first padded on the right, the second on the left.
	hidden := []float32{1, 1, 2, 2, 9, 9, 8, 8, 3, 3, 4, 4}
	got := lastTokenPool(hidden, 2, 3, 2, []int64{1, 1, 0, 0, 1, 1})
	if !reflect.DeepEqual(got, [][]float32{{2, 2}, {4, 4}}) {
		t.Errorf("lastTokenPool = %v", got)
	}
}

func TestPooling(t *testing.T) {
	// rows 2, seq 3, dim 2; row 1 has one padded position.
	hidden := []float32{1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 1000, 1000}
	mask := []int64{1, 1, 1, 1, 1, 0}
	if got, want := meanPool(hidden, 2, 3, 2, mask), [][]float32{{3, 4}, {20, 30}}; !reflect.DeepEqual(got, want) {
		t.Errorf("meanPool = %v; want %v", got, want)
	}
	if got, want := clsPool(hidden, 2, 3, 2), [][]float32{{1, 2}, {10, 20}}; !reflect.DeepEqual(got, want) {
		t.Errorf("clsPool = %v; want %v", got, want)
	}
	v := []float32{3, 4}
	Normalize(v)
	if v[0] != 0.6 || v[1] != 0.8 {
		t.Errorf("normalize = %v", v)
	}
	zero := []float32{0, 0}
	Normalize(zero)
	if zero[0] != 0 || zero[1] != 0 {
		t.Errorf("Normalize(zero) = %v", zero)
	}
}

func TestSigmoid(t *testing.T) {
	if got := sigmoid(0); got != 0.5 {
		t.Errorf("sigmoid(0) = %v", got)
	}
}

func TestSplade(t *testing.T) {
	// seq 3 (last padded), vocab 4.
	logits := []float32{
		1, -2, 0, 0.5,
		3, -1, 0, 0.25,
		100, 100, 100, 100, // padding: must not count
	}
	got := splade(logits, 3, 4, []int64{1, 1, 0})
	want := map[int]float32{0: float32(math.Log1p(3)), 3: float32(math.Log1p(0.5))}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("splade = %v; want %v", got, want)
	}
	tokens := sortedTokens(map[int]float32{2: 0.5, 1: 0.9, 3: 0.5}, func(id int64) string { return []string{"a", "b", "c", "d"}[id] })
	if want := []WeightedToken{{1, "b", 0.9}, {2, "c", 0.5}, {3, "d", 0.5}}; !reflect.DeepEqual(tokens, want) {
		t.Errorf("sortedTokens = %v; want %v", tokens, want)
	}
}

// FuzzHeads checks pooling and SPLADE on arbitrary activations: no panic,
// masked positions never count, unit vectors come out of normalize, and no
// weight is zero, negative or NaN.
func FuzzHeads(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(3), uint8(2))
	f.Add([]byte{0, 0, 0, 0}, uint8(2), uint8(2))
	f.Add([]byte{255, 128, 7}, uint8(1), uint8(3))
	f.Fuzz(func(t *testing.T, raw []byte, seqB, dimB uint8) {
		seq, dim := int(seqB%8)+1, int(dimB%8)+1
		if len(raw) < seq*dim+seq {
			return
		}
		hidden := make([]float32, seq*dim)
		for i := range hidden {
			hidden[i] = float32(int(raw[i])-128) / 16
		}
		mask := make([]int64, seq)
		for i := range mask {
			mask[i] = int64(raw[seq*dim+i] % 2)
		}
		mean := meanPool(hidden, 1, seq, dim, mask)[0]
		Normalize(mean)
		var ss float64
		for _, v := range mean {
			if math.IsNaN(float64(v)) {
				t.Fatal("NaN in pooled vector")
			}
			ss += float64(v) * float64(v)
		}
		if ss != 0 && math.Abs(ss-1) > 1e-5 {
			t.Fatalf("normalized vector has squared norm %v", ss)
		}
		// Changing masked positions changes nothing.
		changed := slices.Clone(hidden)
		for s := range seq {
			if mask[s] == 0 {
				for d := range dim {
					changed[s*dim+d] = 1e6
				}
			}
		}
		again := meanPool(changed, 1, seq, dim, mask)[0]
		Normalize(again)
		if !slices.Equal(mean, again) {
			t.Fatal("masked positions changed the mean")
		}
		w1, w2 := splade(hidden, seq, dim, mask), splade(changed, seq, dim, mask)
		if !reflect.DeepEqual(w1, w2) {
			t.Fatal("masked positions changed the sparse weights")
		}
		for id, w := range w1 {
			if !(w > 0) || id < 0 || id >= dim {
				t.Fatalf("weight %v for id %d", w, id)
			}
		}
	})
}
