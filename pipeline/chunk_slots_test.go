package pipeline

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inference"
)

// Ports of the cases of Elasticsearch's EmbeddingRequestChunkerTests that
// concern chunks, slots and merging (batching and listeners are left to
// the code that sends requests to a model).

// Inputs that do not chunk: testAnyInput_NoopChunker,
// testWhitespaceInput_SentenceChunker, testBlankInput_*,
// testInputThatDoesNotChunk_*, testShortInputsAreSingleBatch,
// testMultipleShortInputsAreSingleBatch.
func TestEmbeddingChunksOfShortInputs(t *testing.T) {
	word, sentence := wordSettings(100, 10), sentenceSettings(250, true)
	none := config.ChunkingSettings{Strategy: config.ChunkNone}
	long := strings.Repeat("random input ", 80)
	for _, tc := range []struct {
		input string
		s     config.ChunkingSettings
	}{
		{long, none}, {"   ", sentence}, {"", word}, {"", sentence},
		{"ABBAABBA", word}, {"ABBAABBA", sentence}, {"one chunk", word},
		{"1st small", word}, {"2nd small", word}, {"3rd small", word},
	} {
		chunks := mustChunk(t, tc.input, tc.s)
		equal(t, fmt.Sprintf("%.10q %s", tc.input, tc.s.Strategy), texts(tc.input, chunks), []string{tc.input})
		equal(t, "slots", ChunkSlots(len(chunks)), []int{0})
	}
}

func passage(prefix string, words int) string {
	var b strings.Builder
	for i := range words {
		fmt.Fprintf(&b, "%s%d ", prefix, i)
	}
	return b.String()
}

// testLongInputChunkedOverMultipleBatches and testMergingListener_Float:
// 105 words in chunks of 20, each chunk but the first starting with the
// space before its first word.
func TestEmbeddingChunksOfLongInput(t *testing.T) {
	text := passage("passage_input", 105)
	chunks := mustChunk(t, text, wordSettings(20, 0))
	if len(chunks) != 6 {
		t.Fatalf("%d chunks, want 6", len(chunks))
	}
	equal(t, "slots", ChunkSlots(6), []int{0, 1, 2, 3, 4, 5})
	for k, c := range SlotChunks(chunks) {
		want := fmt.Sprintf(" passage_input%d ", 20*k)
		if k == 0 {
			want = "passage_input0 "
		}
		if !strings.HasPrefix(c.Text(text), want) {
			t.Errorf("chunk %d: %.40q does not start with %q", k, c.Text(text), want)
		}
	}
}

// testMergingListener_Sparse: 85 words in chunks of 10.
func TestEmbeddingChunksOfLongInputSparse(t *testing.T) {
	text := passage("passage_input", 85)
	got := chunkTexts(t, text, wordSettings(10, 0))
	if len(got) != 9 {
		t.Fatalf("%d chunks, want 9", len(got))
	}
	for k, prefix := range map[int]string{0: "passage_input0 ", 1: " passage_input10 ", 8: " passage_input80 "} {
		if !strings.HasPrefix(got[k], prefix) {
			t.Errorf("chunk %d %q does not start with %q", k, got[k], prefix)
		}
	}
}

// testDoesNotChunkNonTextInputs_*: the text input in chunks of one word.
func TestEmbeddingChunksOneWordEach(t *testing.T) {
	equal(t, "chunks", chunkTexts(t, "text chunks", wordSettings(1, 0)), []string{"text", " chunks"})
}

// testBatchChunksAcrossInputs: an input of n ten-word sentences is n chunks
// with sentence(10, 0).
func TestEmbeddingChunksOfTenWordSentences(t *testing.T) {
	sentence := "Word0 Word1 Word2 Word3 Word4 Word5 Word6 Word7 Word8 Word9."
	for _, n := range []int{3, 1, 4, 200} {
		copies := make([]string, n)
		for i := range copies {
			copies[i] = sentence
		}
		if got := len(mustChunk(t, strings.Join(copies, " "), sentenceSettings(10, false))); got != n {
			t.Errorf("%d sentences: %d chunks", n, got)
		}
	}
}

// testVeryLongInput_Sparse and testVeryLongInput_Float: 200,000 words in
// chunks of 20 are 10,000 chunks (10,002 requests with the two small inputs
// around it), kept as 512 slots of 20 or 19 chunks whose embeddings merge.
func TestEmbeddingChunksOfVeryLongInput(t *testing.T) {
	text := passage("word", 200_000)
	chunks := mustChunk(t, text, wordSettings(20, 0))
	if len(chunks) != 10_000 {
		t.Fatalf("%d chunks, want 10000", len(chunks))
	}
	slots := ChunkSlots(len(chunks))
	slotChunks := SlotChunks(chunks)
	if len(slotChunks) != MaxChunksPerInput || slots[len(slots)-1] != MaxChunksPerInput-1 {
		t.Fatalf("%d slots, last chunk in slot %d", len(slotChunks), slots[len(slots)-1])
	}
	perSlot := make([]int, MaxChunksPerInput)
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
	sparse := make([][]inference.WeightedToken, MaxChunksPerInput)
	dense := make([][]float32, MaxChunksPerInput)
	merged := make([]int, MaxChunksPerInput)
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

func TestChunkSlots(t *testing.T) {
	equal(t, "none", ChunkSlots(0), []int{})
	equal(t, "512", ChunkSlots(512)[511], 511)
	s := ChunkSlots(513)
	equal(t, "513: the first two chunks share slot 0", s[:3], []int{0, 0, 1})
	equal(t, "513: last", s[512], 511)
	s = ChunkSlots(1024)
	equal(t, "1024: pairs", s[:5], []int{0, 0, 1, 1, 2})
}

func TestSlotChunksSpanTheirChunks(t *testing.T) {
	text := strings.Repeat("Wörd 😀 ", 1100)
	chunks := mustChunk(t, text, wordSettings(2, 0)) // 1100 chunks
	slotChunks := SlotChunks(chunks)
	if len(slotChunks) != 512 {
		t.Fatalf("%d slots", len(slotChunks))
	}
	checkChunks(t, text, slotChunks)
	slots := ChunkSlots(len(chunks))
	for j, c := range chunks {
		sc := slotChunks[slots[j]]
		if c.ByteStart < sc.ByteStart || c.ByteEnd > sc.ByteEnd {
			t.Fatalf("chunk %d %+v outside its slot %+v", j, c, sc)
		}
	}
	equal(t, "first slot start", slotChunks[0].Start, 0)
	equal(t, "last slot end", slotChunks[511].End, chunks[len(chunks)-1].End)
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
