package chunking

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
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
		equal(t, "slots", Slots(len(chunks)), []int{0})
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
	equal(t, "slots", Slots(6), []int{0, 1, 2, 3, 4, 5})
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

func TestSlots(t *testing.T) {
	equal(t, "none", Slots(0), []int{})
	equal(t, "512", Slots(512)[511], 511)
	s := Slots(513)
	equal(t, "513: the first two chunks share slot 0", s[:3], []int{0, 0, 1})
	equal(t, "513: last", s[512], 511)
	s = Slots(1024)
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
	slots := Slots(len(chunks))
	for j, c := range chunks {
		sc := slotChunks[slots[j]]
		if c.ByteStart < sc.ByteStart || c.ByteEnd > sc.ByteEnd {
			t.Fatalf("chunk %d %+v outside its slot %+v", j, c, sc)
		}
	}
	equal(t, "first slot start", slotChunks[0].Start, 0)
	equal(t, "last slot end", slotChunks[511].End, chunks[len(chunks)-1].End)
}
