package pipeline

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/pipeline/chunking"
)

// testVeryLongInput_Sparse and testVeryLongInput_Float: 200,000 words in
// chunks of 20 are 10,000 chunks (10,002 requests with the two small inputs
// around it), kept as 512 slots of 20 or 19 chunks whose embeddings merge.
func TestEmbeddingChunksOfVeryLongInput(t *testing.T) {
	text := passage("word", 200_000)
	chunks, err := chunking.Split(text, config.ChunkingSettings{Strategy: config.ChunkWord, MaxChunkSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 10_000 {
		t.Fatalf("%d chunks, want 10000", len(chunks))
	}
	slots := chunking.Slots(len(chunks))
	slotChunks := chunking.SlotChunks(chunks)
	if len(slotChunks) != chunking.MaxChunksPerInput || slots[len(slots)-1] != chunking.MaxChunksPerInput-1 {
		t.Fatalf("%d slots, last chunk in slot %d", len(slotChunks), slots[len(slots)-1])
	}
	perSlot := make([]int, chunking.MaxChunksPerInput)
	for _, s := range slots {
		perSlot[s]++
	}
	if perSlot[0] != 20 || perSlot[511] != 19 {
		t.Errorf("slot sizes %d and %d, want 20 and 19", perSlot[0], perSlot[511])
	}
	first, last := slotChunks[0].Text(text), slotChunks[511].Text(text)
	if !strings.HasPrefix(first, "word0 word1 ") || !strings.HasSuffix(first, " word398 word399") {
		t.Errorf("first slot %.30q...%q", first, first[len(first)-20:])
	}
	if !strings.HasPrefix(last, " word199620 word199621 ") || !strings.HasSuffix(last, " word199998 word199999") {
		t.Errorf("last slot %.30q...%q", last, last[len(last)-20:])
	}

	// Request r (0 the first small input, 1..10000 the chunks, 10001 the
	// last small input) gets weight (r+1)/16384, as the test's fake model
	// answers; merge them per slot in request order.
	weight := func(chunk int) float32 { return float32(chunk+2) / 16384 }
	sparse := make([][]inference.WeightedToken, chunking.MaxChunksPerInput)
	dense := make([][]float32, chunking.MaxChunksPerInput)
	merged := make([]int, chunking.MaxChunksPerInput)
	for j, s := range slots {
		tokens := []inference.WeightedToken{{Token: "word", Weight: weight(j)}}
		vec := []float32{weight(j)}
		if merged[s] == 0 {
			sparse[s], dense[s] = tokens, vec
		} else {
			sparse[s] = MergeSparse(sparse[s], tokens)
			dense[s] = MergeDense(dense[s], merged[s], vec, 1)
		}
		merged[s]++
	}
	equal(t, "first sparse slot", sparse[0], []inference.WeightedToken{{Token: "word", Weight: 21 / 16384.0}})
	equal(t, "last sparse slot", sparse[511], []inference.WeightedToken{{Token: "word", Weight: 10001 / 16384.0}})
	equal(t, "first dense slot", dense[0], []float32{(2 + 21) / (2 * 16384.0)})
	equal(t, "last dense slot", dense[511], []float32{(9983 + 10001) / (2 * 16384.0)})
}

// tokens builds a token list from token, weight pairs.
func tokens(pairs ...any) []inference.WeightedToken {
	var out []inference.WeightedToken
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, inference.WeightedToken{Token: pairs[i].(string), Weight: float32(pairs[i+1].(float64))})
	}
	return out
}

func TestMergeSparse(t *testing.T) {
	a := tokens("a", 0.9, "b", 0.5, "c", 0.1)
	b := tokens("b", 0.7, "d", 0.5, "a", 0.2)
	// Highest weight per token; on equal weights b's token first.
	equal(t, "merged", MergeSparse(a, b), tokens("a", 0.9, "b", 0.7, "d", 0.5, "c", 0.1))
	equal(t, "empty", MergeSparse(nil, b), b)
	got := MergeSparseEmbedding(inference.SparseEmbedding{Tokens: a}, inference.SparseEmbedding{Tokens: b, Truncated: true})
	if !got.Truncated || len(got.Tokens) != 4 {
		t.Errorf("embedding merge %+v", got)
	}
}

func TestMergeDense(t *testing.T) {
	equal(t, "mean of 1 and 3", MergeDense([]float32{1, 2}, 1, []float32{3, 4}, 1), []float32{2, 3})
	// A mean of three merged with one more: weights 3 and 1.
	equal(t, "weighted", MergeDense([]float32{2}, 3, []float32{6}, 1), []float32{3})
}

func passage(prefix string, words int) string {
	var b strings.Builder
	for i := range words {
		fmt.Fprintf(&b, "%s%d ", prefix, i)
	}
	return b.String()
}

func equal[T any](t testing.TB, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}
