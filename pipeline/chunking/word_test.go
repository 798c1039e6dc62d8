package chunking

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/eserror"
)

// Ports of Elasticsearch's WordBoundaryChunkerTests.

func TestWordChunkerExactChunks(t *testing.T) {
	for _, tc := range []struct {
		text          string
		size, overlap int
		want          []string
	}{
		// testPunctuation
		{"Comma, separated", 1, 0, []string{"Comma", ", separated"}},
		{"Mme. Thénardier", 1, 0, []string{"Mme", ". Thénardier"}},
		{"Won't you chunk", 1, 0, []string{"Won't", " you", " chunk"}},
		{"Won't you chunk", 10, 0, []string{"Won't you chunk"}},
		// testEmptyString, testWhitespace, testBlankString
		{"", 10, 5, []string{""}},
		{" ", 10, 5, []string{" "}},
		{"   ", 100, 10, []string{"   "}},
		// testSingleChar
		{"   b", 100, 10, []string{"   b"}},
		{"b", 100, 10, []string{"b"}},
		{". ", 100, 10, []string{". "}},
		{" , ", 100, 10, []string{" , "}},
		{" ,", 100, 10, []string{" ,"}},
		// testSingleSplit
		{testText, 10_000, 0, []string{testText}},
		// The worked example of the content property (size 10, overlap 4).
		{"0 1 2 3 4 5 6 7 8 9 10 11 12 13 14", 10, 4, []string{"0 1 2 3 4 5 6 7 8 9", " 6 7 8 9 10 11 12 13 14"}},
	} {
		t.Run(fmt.Sprintf("%.20q/%d/%d", tc.text, tc.size, tc.overlap), func(t *testing.T) {
			equal(t, "chunks", chunkTexts(t, tc.text, wordSettings(tc.size, tc.overlap)), tc.want)
		})
	}
}

// testSingleCharRepeated
func TestWordChunkerSingleCharRepeated(t *testing.T) {
	input := strings.Repeat("a", 32_000)
	equal(t, "chunks", chunkTexts(t, input, wordSettings(100, 10)), []string{input})
}

// testChunkSizeOnWhiteSpaceNoOverlap
func TestWordChunkerChunkSizeOnWhitespaceNoOverlap(t *testing.T) {
	words := len(strings.Fields(testText))
	for _, size := range []int{10, 20, 100, 300} {
		got := len(mustChunk(t, testText, wordSettings(size, 0)))
		if want := (words + size - 1) / size; got != want {
			t.Errorf("chunk size %d: %d chunks, want %d", size, got, want)
		}
	}
}

// testMultilingual
func TestWordChunkerMultilingual(t *testing.T) {
	for i, input := range multiLingual {
		if n := len(mustChunk(t, input, wordSettings(10, 0))); n <= 1 {
			t.Errorf("input %d: %d chunks, want more than 1", i, n)
		}
	}
}

// expectedNumberOfChunks is the helper of the same name.
func expectedNumberOfChunks(numWords, windowSize, overlap int) int {
	if numWords < windowSize {
		return 1
	}
	remaining := numWords - windowSize
	newPerWindow := windowSize - overlap
	return 1 + (remaining+newPerWindow-1)/newPerWindow
}

// testNumberOfChunks and testNumberOfChunksWithWordBoundaryChunkingSettings
func TestWordChunkerNumberOfChunks(t *testing.T) {
	for _, n := range []int{10, 22, 50, 73, 100} {
		text := numberedWords(n)
		for _, p := range [][2]int{{10, 4}, {10, 2}, {20, 4}, {20, 10}} {
			got := len(mustChunk(t, text, wordSettings(p[0], p[1])))
			if want := expectedNumberOfChunks(n, p[0], p[1]); got != want {
				t.Errorf("%d words, size %d, overlap %d: %d chunks, want %d", n, p[0], p[1], got, want)
			}
		}
	}
}

// testWindowSpanningWithOverlapNumWordsInOverlapSection and
// testWindowSpanning_TextShorterThanWindow
func TestWordChunkerWindowSpanningOverlap(t *testing.T) {
	for _, tc := range []struct{ words, size, overlap, want int }{
		{7, 10, 3, 1}, {8, 10, 3, 1}, {9, 10, 3, 1}, {10, 10, 3, 1}, {11, 10, 3, 2},
		{8, 10, 5, 1},
	} {
		if got := len(mustChunk(t, numberedWords(tc.words), wordSettings(tc.size, tc.overlap))); got != tc.want {
			t.Errorf("%d words, size %d, overlap %d: %d chunks, want %d", tc.words, tc.size, tc.overlap, got, tc.want)
		}
	}
}

// testWindowSpanningWords, for every word count the test draws from
// (4..120): chunk i holds words [i*step, i*step+size), the whitespace before
// its first word included (except in the first chunk).
func TestWordChunkerWindowSpanningWords(t *testing.T) {
	for n := 4; n <= 120; n++ {
		text := strings.TrimRight(numberedWords(n), " ")
		for _, p := range [][2]int{{20, 10}, {10, 4}, {15, 3}} {
			size, overlap := p[0], p[1]
			var want []string
			for start := 0; ; start += size - overlap {
				end := min(start+size, n)
				var b strings.Builder
				if start > 0 {
					b.WriteString(" ")
				}
				for i := start; i < end; i++ {
					fmt.Fprintf(&b, "%d ", i)
				}
				want = append(want, strings.TrimSuffix(b.String(), " "))
				if end == n {
					break
				}
			}
			equal(t, fmt.Sprintf("%d words, size %d, overlap %d", n, size, overlap),
				chunkTexts(t, text, wordSettings(size, overlap)), want)
		}
	}
}

// testInvalidParams
func TestWordChunkerInvalidParams(t *testing.T) {
	for _, tc := range []struct {
		size, overlap int
		want          string
	}{
		{4, 10, "Invalid chunking parameters, overlap [10] must be < chunk size / 2 [4 / 2 = 2]"},
		{10, 6, "Invalid chunking parameters, overlap [6] must be < chunk size / 2 [10 / 2 = 5]"},
		{10, -1, "Invalid chunking parameters, overlap [-1] must be >= 0"},
	} {
		_, err := Split("not evaluated", wordSettings(tc.size, tc.overlap))
		e := eserror.As(err)
		if err == nil || e.Type != eserror.TypeIllegalArgument || e.Status != 400 || e.Reason != tc.want {
			t.Errorf("size %d overlap %d: got %v, want illegal_argument_exception %q", tc.size, tc.overlap, err, tc.want)
		}
	}
}
