package chunking

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
)

// Ports of Elasticsearch's RecursiveChunkerTests. Where the Java test draws
// separators at random (2 or 3 of TEST_SEPARATORS), every ordered choice is
// tested.

const testSentence = "This is a test sentence that has ten total words. "

var testSeparators = []string{"\n", "\f", "\t", "#"}

// separatorChoices are all ordered choices of 2 and 3 of testSeparators.
func separatorChoices() [][]string {
	var out [][]string
	for _, a := range testSeparators {
		for _, b := range testSeparators {
			if b == a {
				continue
			}
			out = append(out, []string{a, b})
			for _, c := range testSeparators {
				if c != a && c != b {
					out = append(out, []string{a, b, c})
				}
			}
		}
	}
	return out
}

// generateTestText is the test helper of the same name.
func generateTestText(numSentences int, splitters ...string) string {
	var b strings.Builder
	for i := range numSentences {
		b.WriteString(testSentence)
		if i < numSentences-1 {
			b.WriteString(splitters[i])
		}
	}
	return b.String()
}

// chunkOffsets renders [(start,end)...] lists.
func spans(bounds ...int) string {
	parts := make([]string, len(bounds)-1)
	for i := range parts {
		parts[i] = fmt.Sprintf("%d,%d", bounds[i], bounds[i+1])
	}
	return strings.Join(parts, ";")
}

func TestRecursiveChunker(t *testing.T) {
	L := len(testSentence)
	for _, seps := range separatorChoices() {
		name := fmt.Sprintf("%q", seps)
		t.Run(name, func(t *testing.T) {
			check := func(what, input string, max int, want string) {
				t.Helper()
				got := offsets(mustChunk(t, input, recursiveSettings(max, seps...)))
				if got != want {
					t.Errorf("%s: got %s, want %s", what, got, want)
				}
			}
			s0, s1 := seps[0], seps[1]
			check("testChunkEmptyInput", "", 10, "0,0")
			check("testChunkSingleCharacterInput", "x", 10, "0,1")
			short := strings.Repeat("a", 9)
			check("testChunkInputShorterThanMaxChunkSize", short, 10, "0,9")

			in := generateTestText(2, s0)
			check("testChunkInputRequiresOneSplitWithoutMerges", in, 10, spans(0, L, len(in)))

			in = generateTestText(3, s0, s0)
			check("testChunkInputRequiresOneSplitWithMerges", in, 20, spans(0, 2*L+len(s0), len(in)))

			in = generateTestText(4, s1, s0, s1)
			check("testChunkInputRequiresMultipleSplitsWithoutMerges", in, 15,
				spans(0, L, 2*L+len(s1), 3*L+len(s0)+len(s1), len(in)))
			check("testChunkInputRequiresMultipleSplitsWithMerges", in, 25, spans(0, 2*L+len(s1), len(in)))

			in = generateTestText(4, "", s0, "")
			check("testChunkInputRequiresBackupChunkingStrategy", in, 10, spans(0, L, 2*L, 3*L+len(s0), len(in)))

			if len(seps) == 3 {
				s2 := seps[2]
				in = generateTestText(5, s1, s0, s2, s1)
				check("testChunkInputDoesNotSplitWhenNoLongerExceedingMaxChunkSize", in, 25,
					spans(0, 2*L+len(s1), 4*L+len(s1)+len(s0)+len(s2), len(in)))
			}

			// testChunkLongDocument: one chunk per sentence, each with the
			// separator before it.
			r := rand.New(rand.NewPCG(uint64(len(name)), 1))
			n := 50 + r.IntN(51)
			splitters := make([]string, n-1)
			for i := range splitters {
				splitters[i] = seps[r.IntN(len(seps))]
			}
			in = generateTestText(n, splitters...)
			bounds := []int{0}
			for i := range n {
				l := L
				if i > 0 {
					l += len(splitters[i-1])
				}
				bounds = append(bounds, bounds[len(bounds)-1]+l)
			}
			check("testChunkLongDocument", in, 15, spans(bounds...))
		})
	}
}

// testChunkWithRegexSeparator
func TestRecursiveChunkerRegexSeparator(t *testing.T) {
	L := len(testSentence)
	in := generateTestText(4, "\n", "\n", "\n\n")
	got := offsets(mustChunk(t, in, recursiveSettings(10, `(?<!\n)\n(?!\n)`, `(?<!\n)\n\n(?!\n)`)))
	equal(t, "chunks", got, spans(0, L, 2*L+1, 3*L+2, len(in)))
}

// testMarkdownChunking: every header leading, every header as a
// splitter.
func TestRecursiveChunkerMarkdown(t *testing.T) {
	L := len(testSentence)
	headers := []string{"# Header\n", "## Header\n", "### Header\n", "#### Header\n", "##### Header\n", "###### Header\n", "Header\n-\n", "Header\n=\n"}
	numSentences := 2*len(headers) + 1
	splitters := make([]string, numSentences-1)
	for i := range splitters {
		splitters[i] = "\n" + headers[(3*i+1)%len(headers)]
	}
	for _, leading := range headers {
		in := leading + generateTestText(numSentences, splitters...)
		bounds := []int{0}
		for i := range numSentences {
			l := L
			if i == 0 {
				l += len(leading)
			} else {
				l += len(splitters[i-1])
			}
			bounds = append(bounds, bounds[len(bounds)-1]+l)
		}
		got := offsets(mustChunk(t, in, recursiveSettings(15, markdownSeparators...)))
		if want := spans(bounds...); got != want {
			t.Errorf("leading %q:\n got %s\nwant %s", leading, got, want)
		}
	}
}

// markdownSeparators is SeparatorGroup.MARKDOWN.
var markdownSeparators = []string{"\n# ", "\n## ", "\n### ", "\n#### ", "\n##### ", "\n###### ", `\n^(?!\s*$).*\n-{1,}\n`, `\n^(?!\s*$).*\n={1,}\n`}

// plaintextSeparators is SeparatorGroup.PLAINTEXT.
var plaintextSeparators = []string{`(?<!\n)\n\n(?!\n)`, `(?<!\n)\n(?!\n)`}

// testChunkWithManyNonMatchingSeparators
func TestRecursiveChunkerManyNonMatchingSeparators(t *testing.T) {
	var seps []string
	for i := range 50 {
		seps = append(seps, fmt.Sprintf("NON_MATCHING_SEPARATOR_%d", i))
	}
	in := generateTestText(2, "")
	equal(t, "chunks", offsets(mustChunk(t, in, recursiveSettings(10, seps...))), spans(0, len(testSentence), len(in)))
}

// testChunkOrderingIsPreservedWhenChunksResolveAtDifferentDepths
func TestRecursiveChunkerOrderingAtDifferentDepths(t *testing.T) {
	var seps []string
	for _, group := range []struct {
		prefix string
		then   string
	}{{"NON_MATCHING_A_", "\n"}, {"NON_MATCHING_B_", "\t"}, {"NON_MATCHING_C_", ""}} {
		for i := range 10 {
			seps = append(seps, fmt.Sprintf("%s%d", group.prefix, i))
		}
		if group.then != "" {
			seps = append(seps, group.then)
		}
	}
	L := len(testSentence)
	in := generateTestText(3, "\t", "\n")
	equal(t, "chunks", offsets(mustChunk(t, in, recursiveSettings(10, seps...))), spans(0, L, 2*L+1, len(in)))
}

// The built-in groups' scanners against java.util.regex: expected offsets
// come from Elasticsearch's RecursiveChunker run with ICU4J and the JDK.
func TestRecursiveChunkerBuiltInGroupsMatchJava(t *testing.T) {
	p := "First paragraph has a few words.\nIt has two lines.\n\nSecond paragraph 😀 is here.\nAnd more text follows it.\n\n\nThird after three newlines.\nEnd."
	m := "# Title\nIntro text here.\n\n## Part one\nSome words in part one.\nSetext Heading\n---\nBody of setext part.\n  \n---\nNot a heading above.\nOther\r\n===\nCRLF heading."
	for _, tc := range []struct {
		text string
		s    config.ChunkingSettings
		want string
	}{
		{p, recursiveSettings(6, plaintextSeparators...), "0,32;32,50;50,80;80,109;109,136;136,141"},
		{p, recursiveSettings(10, plaintextSeparators...), "0,50;50,80;80,136;136,141"},
		{m, recursiveSettings(4, markdownSeparators...), "0,25;25,38;38,56;51,61;61,81;81,109;109,130;130,154"},
		{m, recursiveSettings(10, markdownSeparators...), "0,25;25,61;61,109;109,154"},
	} {
		equal(t, fmt.Sprintf("%.20q", tc.text), offsets(mustChunk(t, tc.text, tc.s)), tc.want)
	}
}

// User regexes keep Java's meaning of ^, $, . and \s around \r\n, U+2028
// and U+0085 (expected offsets from the JDK).
func TestRecursiveChunkerJavaRegexSemantics(t *testing.T) {
	q := "a. b\r\nc.\r\nd\u2028e.\u0085f g h. i"
	for _, tc := range []struct{ sep, want string }{
		{`$`, "0,1;1,4;4,8;8,11;11,14;14,16;16,18;18,20;20,23"},
		{`^`, "0,1;1,6;6,10;10,12;12,15;15,16;16,18;18,20;20,23"},
		{`.$`, "0,3;3,6;6,7;7,10;10,12;12,13;13,16;16,18;18,22;22,23"},
		{`^.`, "0,1;1,6;6,10;10,12;12,15;15,16;16,18;18,20;20,23"},
		{`\s`, "0,2;2,4;4,5;5,8;8,9;9,12;12,15;15,16;16,18;18,21;21,23"},
		{`\.\s`, "0,1;1,6;6,7;7,12;12,15;15,16;16,18;18,20;20,23"},
		{`(?<=\.)\s*`, "0,2;2,6;6,8;8,12;12,14;14,16;16,18;18,21;21,23"},
	} {
		equal(t, tc.sep, offsets(mustChunk(t, q, recursiveSettings(1, tc.sep))), tc.want)
	}
}

func TestJavaToRegexp2(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`\n\n`, `\n\n`},
		{`a.b`, `a` + javaDot + `b`},
		{`[.^$]`, `[.^$]`},
		{`[]a]`, `[\]a]`},
		{`[^]a]`, `[^\]a]`},
		{`[a[bc]]`, `[abc]`},
		{`\Q.*\E+`, `\.\*+`},
		{`\s[\s]`, `[` + javaSpaceChars + `][` + javaSpaceChars + `]`},
		{`(?s).^`, `(?s).` + javaCaret},
		{`(?m)^$.`, `(?m)^$` + javaDot},
		{`(?x) . # c`, `(?x) . # c`},
		{`\.\$\^`, `\.\$\^`},
	} {
		equal(t, tc.in, javaToRegexp2(tc.in), tc.want)
	}
}

func TestSeparatorErrors(t *testing.T) {
	text := generateTestText(3, "\n", "\n")
	// A pattern is compiled only when the text needs it, as in
	// Elasticsearch: a short text never reaches it.
	if _, err := Split("short", recursiveSettings(10, "(")); err != nil {
		t.Errorf("short text: %v", err)
	}
	_, err := Split(text, recursiveSettings(10, "("))
	if e := eserror.As(err); err == nil || e.Status != 400 || e.Type != eserror.TypeIllegalArgument ||
		!strings.HasPrefix(e.Reason, "Invalid chunk separator regex [(]") {
		t.Errorf("invalid regex: %v", err)
	}
}

// A catastrophically backtracking separator fails with a 400 after the time
// budget instead of holding the worker.
func TestSeparatorTimeout(t *testing.T) {
	text := strings.Repeat("a", 40) + " and ten more words to exceed the limit of this chunk!"
	_, err := splitWithBudget(text, recursiveSettings(10, `(a+)+$`), 300*time.Millisecond)
	if e := eserror.As(err); err == nil || e.Status != 400 || !strings.Contains(e.Reason, "has exceeded the time limit") {
		t.Fatalf("got %v", err)
	}
}

// The hand-written matchers of the built-in patterns agree with regexp2
// running the patterns through javaToRegexp2 (which itself follows Java).
func TestBuiltInMatchersAgreeWithRegexp2(t *testing.T) {
	texts := []string{
		"", "\n", "\n\n", "a\nb\n\nc\n\n\nd", "x\n\n", "\n\nx",
		"\nHeader\n---\nBody", "\nHeader\n=\nBody\n", "\n  \n---\n", "\n\t\n-\n", "\nH\r\n-\n", "\nH\u2028x\n-\n",
		"\nA\n-\n\nB\n==\n", "\nA\n-\nB\n-\n", "\nA\n-x\n", "\n", "\nA\n", "\nA\n-", "\n\u0085\n-\n", "\n \u00a0x\n-\n",
	}
	for _, pattern := range []string{config.SeparatorParagraph, config.SeparatorLine, config.SeparatorSetextH2, config.SeparatorSetextH1} {
		builtin, err := compileSeparator(pattern)
		if err != nil {
			t.Fatal(err)
		}
		generic, err := compileRegexSeparator(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range texts {
			deadline := time.Now().Add(time.Minute) // only bounds a hang
			want, err1 := generic.starts(s, deadline)
			got, err2 := builtin.starts(s, deadline)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			equal(t, fmt.Sprintf("%q on %q", pattern, s), got, want)
		}
	}
}
