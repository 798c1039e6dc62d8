package chunking

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Ports of Elasticsearch's SentenceBoundaryChunkerTests and
// ChunkerUtilsTests.

func TestSentenceChunkerTrivialInputs(t *testing.T) {
	long := strings.Repeat("a", 32_000)
	for _, text := range []string{
		"",                             // testEmptyString
		"   ",                          // testBlankString
		"   b", "b", ". ", " , ", " ,", // testSingleChar
		long, // testSingleCharRepeated
	} {
		for _, overlap := range []bool{false, true} {
			equal(t, fmt.Sprintf("%.10q overlap %v", text, overlap),
				chunkTexts(t, text, sentenceSettings(100, overlap)), []string{text})
		}
	}
}

// testChunk_ChunkSizeLargerThanText
func TestSentenceChunkerChunkSizeLargerThanText(t *testing.T) {
	for _, overlap := range []bool{false, true} {
		equal(t, "chunks", chunkTexts(t, testText, sentenceSettings(500, overlap)), []string{testText})
	}
}

// sentenceSizes is the test helper of the same name: words per sentence as
// whitespace and hyphens separate them, "=" not counted.
func sentenceSizes(text string) []int {
	sentences := javaSplit(regexp.MustCompile(`\.\s+`), text)
	sizes := make([]int, len(sentences))
	for i, s := range sentences {
		sizes[i] = len(javaSplit(regexp.MustCompile(`[ \-]+`), strings.ReplaceAll(s, "=", "")))
	}
	return sizes
}

// javaSplit is String.split: trailing empty strings removed.
func javaSplit(re *regexp.Regexp, s string) []string {
	parts := re.Split(s, -1)
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}

// chunkOverlaps is the test helper of the same name.
func chunkOverlaps(sentenceLengths []int, maxWords int, includeOverlap bool) []int {
	maxOverlap := maxWordsInOverlap(maxWords)
	overlaps := []int{0}
	running := 0
	for i, l := range sentenceLengths {
		if running+l > maxWords {
			running = l
			if includeOverlap && i > 0 {
				o := min(maxOverlap, sentenceLengths[i-1])
				overlaps = append(overlaps, o)
				running += o
			} else {
				overlaps = append(overlaps, 0)
			}
		} else {
			running += l
		}
	}
	return overlaps
}

func startsUpper(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsUpper(r)
}

func endsWithPeriod(s string) bool { return strings.HasSuffix(strings.TrimSpace(s), ".") }

// testChunkSplitLargeChunkSizes and
// testChunkSplitLargeChunkSizesWithChunkingSettings
func TestSentenceChunkerLargeChunkSizes(t *testing.T) {
	for _, max := range []int{100, 200} {
		chunks := chunkTexts(t, testText, sentenceSettings(max, false))
		if want := len(chunkOverlaps(sentenceSizes(testText), max, false)); len(chunks) != want {
			t.Errorf("max %d: %d chunks, want %d", max, len(chunks), want)
		}
		for _, c := range chunks {
			if !startsUpper(c) || !endsWithPeriod(c) {
				t.Errorf("max %d: chunk %q is not whole sentences", max, c)
			}
		}
	}
}

// testChunkSplitLargeChunkSizes_withOverlap
func TestSentenceChunkerLargeChunkSizesWithOverlap(t *testing.T) {
	for _, max := range []int{70, 80, 100, 120, 150, 200} {
		chunks := chunkTexts(t, testText, sentenceSettings(max, true))
		overlaps := chunkOverlaps(sentenceSizes(testText), max, true)
		if len(chunks) != len(overlaps) {
			t.Fatalf("max %d: %d chunks, want %d", max, len(chunks), len(overlaps))
		}
		for i, o := range overlaps {
			if o == 0 {
				if !startsUpper(chunks[i]) {
					t.Errorf("max %d: chunk %d %q does not start a sentence", max, i, chunks[i])
				}
			} else if prev := chunks[i-1]; !strings.Contains(chunks[i], prev[len(prev)-20:]) {
				t.Errorf("max %d: chunk %d %q does not repeat the end of %q", max, i, chunks[i], prev)
			}
		}
		if !endsWithPeriod(chunks[0]) || !endsWithPeriod(chunks[len(chunks)-1]) {
			t.Errorf("max %d: first or last chunk does not end a sentence", max)
		}
	}
}

func makeSentence(numWords, index int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SStart%d ", index)
	for i := 1; i < numWords-1; i++ {
		fmt.Fprintf(&b, "%d ", i)
	}
	fmt.Fprintf(&b, "%d. ", numWords-1)
	return b.String()
}

// testWithOverlap_SentencesFitInChunks, for every number of sentences the
// test draws from (2..5).
func TestSentenceChunkerWithOverlapSentencesFitInChunks(t *testing.T) {
	const numChunks, chunkSize = 4, 100
	for numSentences := 2; numSentences <= 5; numSentences++ {
		var b strings.Builder
		starts := make([]int, numChunks)
		sentenceIndex, lastSize := 0, 0
		rough := chunkSize/numSentences - 1
		for range numSentences {
			b.WriteString(makeSentence(rough, sentenceIndex))
			sentenceIndex++
			lastSize = rough
		}
		for i := 1; i < numChunks; i++ {
			starts[i] = sentenceIndex - 1
			for words := lastSize; words+rough < chunkSize; words += rough {
				b.WriteString(makeSentence(rough, sentenceIndex))
				sentenceIndex++
				lastSize = rough
			}
		}
		chunks := chunkTexts(t, b.String(), sentenceSettings(chunkSize, true))
		if len(chunks) != numChunks {
			t.Fatalf("%d sentences: %d chunks, want %d", numSentences, len(chunks), numChunks)
		}
		for i, c := range chunks {
			if !strings.HasPrefix(c, fmt.Sprintf("SStart%d", starts[i])) || !endsWithPeriod(c) {
				t.Errorf("%d sentences: chunk %d %q should be sentences from SStart%d", numSentences, i, c, starts[i])
			}
		}
	}
}

// testChunkSplit_SentencesLongerThanChunkSize: 21, 7 and 4 chunks; a chunk
// that ends inside a sentence has exactly max words.
func TestSentenceChunkerSentencesLongerThanChunkSize(t *testing.T) {
	split := regexp.MustCompile(`[\s\-]+`)
	for _, tc := range []struct{ max, want int }{{10, 21}, {30, 7}, {50, 4}} {
		chunks := chunkTexts(t, testText, sentenceSettings(tc.max, false))
		if len(chunks) != tc.want {
			t.Errorf("max %d: %d chunks, want %d", tc.max, len(chunks), tc.want)
		}
		for _, c := range chunks {
			words := 0
			for _, w := range split.Split(strings.ReplaceAll(strings.TrimSpace(c), "=", ""), -1) {
				if w != "" {
					words++
				}
			}
			if endsWithPeriod(c) {
				if words > tc.max {
					t.Errorf("max %d: chunk %q has %d words", tc.max, c, words)
				}
			} else if words != tc.max {
				t.Errorf("max %d: chunk %q ends inside a sentence with %d words", tc.max, c, words)
			}
		}
	}
}

// testChunkSplit_SentencesLongerThanChunkSize_WithOverlap
func TestSentenceChunkerSentencesLongerThanChunkSizeWithOverlap(t *testing.T) {
	for _, max := range []int{10, 30, 50} {
		chunks := chunkTexts(t, testText, sentenceSettings(max, true))
		if !strings.Contains(chunks[0], "Word segmentation is the problem of dividing") {
			t.Errorf("max %d: first chunk %q", max, chunks[0])
		}
		if last := chunks[len(chunks)-1]; !strings.Contains(last, ", with solidification being a stronger norm.") {
			t.Errorf("max %d: last chunk %q", max, last)
		}
	}
}

// testShortLongShortSentences_WithOverlap
func TestSentenceChunkerShortLongShortSentencesWithOverlap(t *testing.T) {
	var b strings.Builder
	for l, n := range []int{15, 30, 20, 5} {
		fmt.Fprintf(&b, "SStart%d ", l)
		for i := 1; i < n-1; i++ {
			fmt.Fprintf(&b, "%d ", i)
		}
		fmt.Fprintf(&b, "%d. ", n-1)
	}
	c := chunkTexts(t, b.String(), sentenceSettings(40, true))
	if len(c) != 5 {
		t.Fatalf("%d chunks, want 5: %q", len(c), c)
	}
	trim := strings.TrimSpace
	checks := []struct {
		ok   bool
		what string
	}{
		{strings.HasPrefix(trim(c[0]), "SStart0") && strings.HasSuffix(trim(c[0]), "."), "chunk 0 is sentence 0"},
		{strings.HasPrefix(trim(c[1]), "SStart0") && !strings.HasSuffix(trim(c[1]), "."), "chunk 1 repeats sentence 0 and ends inside sentence 1"},
		{strings.HasSuffix(trim(c[2]), "."), "chunk 2 ends a sentence"},
		{strings.HasSuffix(trim(c[3]), "."), "chunk 3 ends a sentence"},
		{strings.HasPrefix(trim(c[4]), "SStart2") && strings.Contains(c[4], "SStart3") && strings.HasSuffix(trim(c[4]), "."), "chunk 4 is sentences 2 and 3"},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s: %q", ch.what, c)
		}
	}
}

// testSkipWords
func TestSkipWords(t *testing.T) {
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "word%d ", i)
	}
	text := b.String()
	ws := segmentWords(text)
	pos := ws.skipWords(0, 3)
	if !strings.HasPrefix(text[pos:], "word3 ") {
		t.Errorf("skip 3 from 0: at %q", text[pos:])
	}
	pos = ws.skipWords(pos+1, 1)
	if !strings.HasPrefix(text[pos:], "word4 ") {
		t.Errorf("skip 1: at %q", text[pos:])
	}
	pos = ws.skipWords(pos+1, 5)
	if !strings.HasPrefix(text[pos:], "word9 ") {
		t.Errorf("skip 5: at %q", text[pos:])
	}
	if pos = ws.skipWords(0, 60); pos != len(text) {
		t.Errorf("skip past the end: %d, want %d", pos, len(text))
	}
}

// ChunkerUtilsTests.testCountWords: each sentence of TEST_TEXT counts its
// whitespace- and hyphen-separated words.
func TestCountWords(t *testing.T) {
	ws := segmentWords(testText)
	want := sentenceSizes(testText)
	ends := sentenceEnds(testText)
	if len(ends) != len(want) {
		t.Fatalf("%d sentences, want %d", len(ends), len(want))
	}
	start := 0
	for i, end := range ends {
		if got := ws.countWords(start, end); got != want[i] {
			t.Errorf("sentence %d: %d words, want %d", i, got, want[i])
		}
		start = end
	}
}

// ChunkerUtilsTests.testCountWords_short and testCountWords_WithSymbols.
func TestCountWordsShortAndSymbols(t *testing.T) {
	text := "This is a short sentence. Followed by another."
	ends := sentenceEnds(text)
	equal(t, "sentence ends", ends, []int{26, len(text)})
	ws := segmentWords(text)
	equal(t, "first sentence", ws.countWords(0, ends[0]), 5)
	equal(t, "second sentence", ws.countWords(ends[0], ends[1]), 3)
	for _, s := range []string{"foo != bar", "foo & bar", "m&s"} {
		equal(t, s, segmentWords(s).countWords(0, len(s)), 2)
	}
}

// Elasticsearch's countWords starts at the boundary before start, so a
// sentence that follows a word without punctuation also counts that word
// (ICU4J gives the same).
func TestCountWordsIncludesTheSegmentBeforeStart(t *testing.T) {
	text := "Hello\nWorld"
	ends := sentenceEnds(text)
	equal(t, "sentence ends", ends, []int{6, 11})
	equal(t, "second sentence", segmentWords(text).countWords(6, 11), 2)
}
