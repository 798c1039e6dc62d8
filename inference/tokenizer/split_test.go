package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

func splitWith(t *testing.T, pattern hfPattern, behavior string, invert bool) splitPreTokenizer {
	t.Helper()
	p, err := buildSplit(hfPreTokenizer{Type: "Split", Pattern: &pattern, Behavior: behavior, Invert: invert})
	if err != nil {
		t.Fatal(err)
	}
	return p.(splitPreTokenizer)
}

// The five behaviors, as tokenizers' own tests of Split (pre_tokenizers/split.rs) give them.
func TestSplitBehaviors(t *testing.T) {
	words := `\w+|[^\w\s]+`
	for _, tt := range []struct {
		behavior string
		invert   bool
		pattern  hfPattern
		want     []string
	}{
		// invert: the words are kept, the spaces between them are the delimiters.
		{"Removed", true, hfPattern{Regex: &words}, []string{"How", "are", "you", "doing", "?"}},
		{"Isolated", true, hfPattern{Regex: &words}, []string{"How", " ", "are", " ", "you", " ", "doing", "?"}},
		{"MergedWithPrevious", true, hfPattern{Regex: &words}, []string{"How ", "are ", "you ", "doing", "?"}},
		{"MergedWithNext", true, hfPattern{Regex: &words}, []string{"How", " are", " you", " doing", "?"}},
		{"Contiguous", true, hfPattern{Regex: &words}, []string{"How", " ", "are", " ", "you", " ", "doing?"}},
		{"Removed", false, hfPattern{Regex: &words}, []string{" ", " ", " "}},
		{"MergedWithPrevious", false, hfPattern{String: new(string)}, nil},
	} {
		if tt.pattern.String != nil {
			*tt.pattern.String = " "
			tt.want = []string{"How ", "are ", "you ", "doing?"}
		}
		p := splitWith(t, tt.pattern, tt.behavior, tt.invert)
		if got := p.split(nil, "How are you doing?", true); !slices.Equal(got, tt.want) {
			t.Errorf("%s invert=%v: %q; want %q", tt.behavior, tt.invert, got, tt.want)
		}
	}
}

// The pre-tokenizer regexes of GPT-2, GPT-4 (cl100k, which Llama 3 shares) and Qwen, with Oniguruma's Unicode \s
// and the \s+(?!\S) lookahead.
func TestSplitOnigurumaPatterns(t *testing.T) {
	gpt2 := `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	cl100k := `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	for _, tt := range []struct {
		pattern, text string
		want          []string
	}{
		// The lookahead gives the last space of a run to the word after it.
		{gpt2, "Hello   world  ", []string{"Hello", "  ", " world", "  "}},
		{gpt2, "a \u0085\u0085b", []string{"a", " \u0085", "\u0085", "b"}}, // U+0085 is White_Space
		{gpt2, "a \ufeffb", []string{"a", " \ufeff", "b"}},                 // U+FEFF is not
		{gpt2, "I'm 12345 years", []string{"I", "'m", " 12345", " years"}},
		{cl100k, "I'M 12345 years!\n\nOK", []string{"I", "'M", " ", "123", "45", " years", "!\n\n", "OK"}},
		{cl100k, "x  \n  y", []string{"x", "  \n", " ", " y"}},
	} {
		p := splitWith(t, hfPattern{Regex: &tt.pattern}, "Isolated", false)
		got := p.split(nil, tt.text, true)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: %q; want %q", tt.text, got, tt.want)
		}
		if strings.Join(got, "") != tt.text {
			t.Errorf("%q: the words do not cover the text", tt.text)
		}
	}
}

func TestSplitRefusesWhatRE2CannotRun(t *testing.T) {
	for _, pattern := range []string{`(?<=a)b`, `a(?=b)`, `(?>ab)`, `a++`, `[^\S]`, `\p{L}+(?!\S)`, `(a`,
		`^a`, `a$`, `\bword`, `(?i)a|b`, `[a[b]]`, `[a-z&&[^aeiou]]`, `(?P<x>a)`} {
		if _, err := compileOnigRegex(pattern); err == nil {
			t.Errorf("%q compiled", pattern)
		}
	}
	for _, raw := range []string{`{"type":"Split","pattern":{"String":""},"behavior":"Isolated"}`,
		`{"type":"Split","pattern":{"String":"x"},"behavior":"Sideways"}`, `{"type":"Split","behavior":"Isolated"}`} {
		if _, err := buildPreTokenizer([]byte(raw)); err == nil {
			t.Errorf("%s built", raw)
		}
	}
}

// A text the pattern matches once, at its end: found by one search, not one try per position.
func TestSplitLongTextWithOneMatch(t *testing.T) {
	pattern := `\p{N}+`
	p := splitWith(t, hfPattern{Regex: &pattern}, "Isolated", false)
	text := strings.Repeat("abc ", 1<<18) + "42"
	got := p.split(nil, text, true)
	if len(got) != 2 || got[1] != "42" {
		t.Fatalf("%d words, last %q", len(got), got[len(got)-1])
	}
}

// An empty match cuts the text where it is, as Oniguruma's find_iter reports it; \w takes letter numbers.
func TestSplitEmptyMatchesAndWordClass(t *testing.T) {
	spaces := `\s*`
	p := splitWith(t, hfPattern{Regex: &spaces}, "Isolated", false)
	if got := p.split(nil, "ab c", true); !slices.Equal(got, []string{"a", "b", " ", "c"}) {
		t.Errorf("empty matches: %q", got)
	}
	words := `\w+`
	p = splitWith(t, hfPattern{Regex: &words}, "Removed", true)
	if got := p.split(nil, "Ⅻ〇 x", true); !slices.Equal(got, []string{"Ⅻ〇", "x"}) {
		t.Errorf("letter numbers: %q", got)
	}
}
