package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// bpeTestFile is a tokenizer.json around a BPE model: WhitespaceSplit pre-tokenizer (unless pre is given), no
// normalizer, no post-processor. model holds the BPE fields other than "type".
func bpeTestFile(t testing.TB, model map[string]any, pre any) string {
	t.Helper()
	m := map[string]any{"type": "BPE"}
	for k, v := range model {
		m[k] = v
	}
	if pre == nil {
		pre = map[string]any{"type": "WhitespaceSplit"}
	}
	data, err := json.Marshal(map[string]any{"model": m, "pre_tokenizer": pre})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func bpeTestLoad(t testing.TB, model map[string]any) (*Tokenizer, error) {
	t.Helper()
	return Load(Config{Path: bpeTestFile(t, model, nil), MaxLength: 512})
}

// bpeTokens encodes text and returns the token strings (no post-processor: no special tokens).
func bpeTokens(t *testing.T, tok *Tokenizer, text string) []string {
	t.Helper()
	enc, err := tok.Encode(text)
	if err != nil {
		t.Fatalf("Encode(%q): %v", text, err)
	}
	return tokTokens(tok, enc.IDs)
}

type bpeCase struct {
	text string
	want []string
}

func bpeCheck(t *testing.T, name string, model map[string]any, cases []bpeCase) {
	t.Helper()
	tok, err := bpeTestLoad(t, model)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, c := range cases {
		if got := bpeTokens(t, tok, c.text); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("%s: %q → %q, want %q", name, c.text, got, c.want)
		}
	}
}

// The expected tokens in the tests below are those of Hugging Face tokenizers 0.22.2 (the Rust crate) for the same
// models, checked when the tests were written.

var bpeTestVocab = map[string]int{"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "abc": 6, "aa": 7, "aaaa": 8}

// Lowest rank first, leftmost first among equal ranks, new pairs formed by a merge considered in turn.
var bpeTestMerges = []string{"b c", "a b", "a bc", "a a", "aa aa"}

var bpeTestPriorityCases = []bpeCase{
	{"abc", []string{"abc"}}, // b c (rank 0) before a b (rank 1), then a bc
	{"abab", []string{"ab", "ab"}},
	{"aaa", []string{"aa", "a"}}, // the leftmost a a first
	{"aaaaa", []string{"aaaa", "a"}},
	{"cab", []string{"c", "ab"}},
	{"abcx", []string{"abc", "<unk>"}},
	{"xxab", []string{"<unk>", "<unk>", "ab"}},
}

func TestBPEMergesBothFormats(t *testing.T) {
	var pairs [][]string
	for _, m := range bpeTestMerges {
		pairs = append(pairs, strings.Split(m, " "))
	}
	bpeCheck(t, "legacy strings", map[string]any{"vocab": bpeTestVocab, "merges": bpeTestMerges, "unk_token": "<unk>"},
		bpeTestPriorityCases)
	bpeCheck(t, "pairs", map[string]any{"vocab": bpeTestVocab, "merges": pairs, "unk_token": "<unk>"}, bpeTestPriorityCases)
	// merges.txt's "#version" line is skipped, and does not count as a rank.
	bpeCheck(t, "version line", map[string]any{"vocab": bpeTestVocab, "unk_token": "<unk>",
		"merges": append([]string{"#version: 0.2"}, bpeTestMerges...)}, bpeTestPriorityCases)
	// A pair listed twice takes its last rank (tokenizers fills a hash map in order): "a a" ranks after "a b" here.
	bpeCheck(t, "repeated merge", map[string]any{"vocab": bpeTestVocab, "unk_token": "<unk>",
		"merges": []string{"a a", "a b", "b c", "a a", "a bc"}},
		[]bpeCase{{"aab", []string{"a", "ab"}}, {"aabc", []string{"a", "ab", "c"}}})
}

// The golden BPE file (pairs) and the same file with legacy merges give the same ids on the whole corpus.
func TestBPELegacyMergesGolden(t *testing.T) {
	data, err := os.ReadFile(tokPath(t, "bpe"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	model := file["model"].(map[string]any)
	pairs := model["merges"].([]any)
	if len(pairs) < 300 {
		t.Fatalf("%d merges", len(pairs))
	}
	legacy := []string{"#version: 0.2"}
	for _, p := range pairs {
		pair := p.([]any)
		legacy = append(legacy, pair[0].(string)+" "+pair[1].(string))
	}
	model["merges"] = legacy
	data, err = json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	legacyTok, err := Load(Config{Path: path, MaxLength: 512})
	if err != nil {
		t.Fatal(err)
	}
	tok := tokLoad(t, "bpe", 512)
	corpus := tokLoadCorpus(t)
	for _, text := range corpus.Single {
		want, got := tokEncode(t, tok, text), tokEncode(t, legacyTok, text)
		if !slices.Equal(got.IDs, want.IDs) {
			t.Errorf("%q: legacy merges %v, pairs %v", text, got.IDs, want.IDs)
		}
	}
}

func TestBPEUnknown(t *testing.T) {
	model := func(extra map[string]any) map[string]any {
		m := map[string]any{"vocab": bpeTestVocab, "merges": bpeTestMerges}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	bpeCheck(t, "fuse_unk", model(map[string]any{"unk_token": "<unk>", "fuse_unk": true}), []bpeCase{
		{"abcx", []string{"abc", "<unk>"}},
		{"xxab", []string{"<unk>", "ab"}},
		{"xaxxb", []string{"<unk>", "a", "<unk>", "b"}},
	})
	bpeCheck(t, "no fuse_unk", model(map[string]any{"unk_token": "<unk>"}), []bpeCase{
		{"xaxxb", []string{"<unk>", "a", "<unk>", "<unk>", "b"}},
	})
	// Without unk_token an unknown character is dropped, and the characters around it can merge.
	bpeCheck(t, "no unk_token", model(nil), []bpeCase{{"xaxxb", []string{"ab"}}, {"x", nil}})

	// An unk_token that is not in the vocabulary fails the first text that needs it, as in tokenizers.
	tok, err := bpeTestLoad(t, model(map[string]any{"unk_token": "<missing>"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := bpeTokens(t, tok, "ab"); !slices.Equal(got, []string{"ab"}) {
		t.Errorf("ab → %q", got)
	}
	if _, err := tok.Encode("abx"); err == nil || !strings.Contains(err.Error(), `unk_token "<missing>"`) {
		t.Errorf("Encode(abx): err = %v, want the missing unk_token", err)
	}
}

func TestBPEByteFallback(t *testing.T) {
	// é is C3 A9, both present; 中 is E4 B8 AD, AD missing.
	vocab := map[string]int{"<unk>": 0, "a": 1, "<0xC3>": 2, "<0xA9>": 3, "<0xE4>": 4, "<0xB8>": 5, "<0x23>": 6, "##a": 7}
	model := func(extra map[string]any) map[string]any {
		m := map[string]any{"vocab": vocab, "merges": []string{}, "unk_token": "<unk>", "byte_fallback": true}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	bpeCheck(t, "byte_fallback", model(nil), []bpeCase{
		{"aé", []string{"a", "<0xC3>", "<0xA9>"}},
		{"é", []string{"<0xC3>", "<0xA9>"}},
		// Not every byte of 中 has a token: <unk>.
		{"a中", []string{"a", "<unk>"}},
		{"中中a", []string{"<unk>", "<unk>", "a"}},
		// tokenizers adds the bytes of é before the <unk> still pending for 中.
		{"中é", []string{"<0xC3>", "<0xA9>", "<unk>"}},
	})
	bpeCheck(t, "byte_fallback fuse_unk", model(map[string]any{"fuse_unk": true}), []bpeCase{
		{"中中a", []string{"<unk>", "a"}},
		{"中é中", []string{"<0xC3>", "<0xA9>", "<unk>"}},
	})
	bpeCheck(t, "no byte_fallback", model(map[string]any{"byte_fallback": false}), []bpeCase{
		{"aé", []string{"a", "<unk>"}},
	})
	// The bytes are those of the string looked up: "##é" after the first character.
	bpeCheck(t, "byte_fallback with prefix", model(map[string]any{"continuing_subword_prefix": "##"}), []bpeCase{
		{"aé", []string{"a", "<0x23>", "<0x23>", "<0xC3>", "<0xA9>"}},
		{"éa", []string{"<0xC3>", "<0xA9>", "##a"}},
	})
}

func TestBPEPrefixSuffixIgnoreMerges(t *testing.T) {
	vocab := map[string]int{"<unk>": 0, "a": 1, "##b": 2, "##c": 3, "ab": 4, "abc": 5, "b": 6, "##c</w>": 7, "c</w>": 8,
		"a</w>": 9, "abc</w>": 10}
	// continuing_subword_prefix: characters after the first are looked up as "##x"; a merge drops the prefix of its
	// right token.
	bpeCheck(t, "prefix", map[string]any{"vocab": vocab, "unk_token": "<unk>", "continuing_subword_prefix": "##",
		"merges": [][]string{{"a", "##b"}, {"ab", "##c"}}}, []bpeCase{
		{"ab", []string{"ab"}},
		{"abc", []string{"abc"}},
		{"abcb", []string{"abc", "##b"}},
		{"ba", []string{"b", "<unk>"}},
	})
	// end_of_word_suffix: the last character is looked up as "x</w>".
	bpeCheck(t, "suffix", map[string]any{"vocab": vocab, "unk_token": "<unk>", "end_of_word_suffix": "</w>",
		"merges": []string{}}, []bpeCase{
		{"a", []string{"a</w>"}},
		{"ac", []string{"a", "c</w>"}},
		{"ca", []string{"<unk>", "a</w>"}},
	})
	bpeCheck(t, "prefix and suffix", map[string]any{"vocab": vocab, "unk_token": "<unk>",
		"continuing_subword_prefix": "##", "end_of_word_suffix": "</w>",
		"merges": [][]string{{"a", "##b"}, {"ab", "##c</w>"}}}, []bpeCase{
		{"abc", []string{"abc</w>"}},
		{"ab", []string{"a", "<unk>"}}, // "##b</w>" is not in the vocabulary
		{"a", []string{"a</w>"}},
	})

	// ignore_merges: a word in the vocabulary is one token, whatever the merges.
	vocab = map[string]int{"<unk>": 0, "a": 1, "b": 2, "c": 3, "abc": 4, "ab": 5}
	bpeCheck(t, "ignore_merges", map[string]any{"vocab": vocab, "unk_token": "<unk>", "ignore_merges": true,
		"merges": []string{"a b"}}, []bpeCase{
		{"abc", []string{"abc"}},
		{"abcc", []string{"ab", "c", "c"}},
	})
	bpeCheck(t, "merges", map[string]any{"vocab": vocab, "unk_token": "<unk>", "merges": []string{"a b"}}, []bpeCase{
		{"abc", []string{"ab", "c"}},
	})
}

func TestBPEDropout(t *testing.T) {
	for _, dropout := range []any{nil, 0, 0.0} {
		model := map[string]any{"vocab": bpeTestVocab, "merges": bpeTestMerges, "dropout": dropout}
		if _, err := bpeTestLoad(t, model); err != nil {
			t.Errorf("dropout %v: %v", dropout, err)
		}
	}
	// tokenizers accepts these and then merges at random (or, at 1, never); we are deterministic and refuse them.
	for _, dropout := range []any{0.1, 0.5, 1, -1, 2} {
		model := map[string]any{"vocab": bpeTestVocab, "merges": bpeTestMerges, "dropout": dropout}
		if _, err := bpeTestLoad(t, model); err == nil || !strings.Contains(err.Error(), "dropout") {
			t.Errorf("dropout %v: err = %v, want a dropout error", dropout, err)
		}
	}
}

func TestBPELoadErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		model map[string]any
		want  string
	}{
		{"no merges", map[string]any{"vocab": bpeTestVocab}, `"merges" is missing`},
		{"null merges", map[string]any{"vocab": bpeTestVocab, "merges": nil}, `"merges" is missing`},
		{"merges object", map[string]any{"vocab": bpeTestVocab, "merges": map[string]any{}}, "merges"},
		{"three tokens", map[string]any{"vocab": bpeTestVocab, "merges": []string{"a b c"}}, "one space"},
		{"one token", map[string]any{"vocab": bpeTestVocab, "merges": []string{"ab"}}, "one space"},
		{"two spaces", map[string]any{"vocab": bpeTestVocab, "merges": []string{"a  b"}}, "one space"},
		{"triple", map[string]any{"vocab": bpeTestVocab, "merges": [][]string{{"a", "b", "c"}}}, "[left, right]"},
		{"mixed formats", map[string]any{"vocab": bpeTestVocab, "merges": []any{"a b", []string{"b", "c"}}}, "merges"},
		{"token not in vocabulary", map[string]any{"vocab": bpeTestVocab, "merges": []string{"a x"}}, `"x" is not in the vocabulary`},
		{"merged token not in vocabulary", map[string]any{"vocab": bpeTestVocab, "merges": []string{"b b"}}, `"bb" is not in the vocabulary`},
		{"right token shorter than prefix", map[string]any{"vocab": bpeTestVocab, "merges": []string{"a b"},
			"continuing_subword_prefix": "##"}, "shorter than continuing_subword_prefix"},
		{"vocab array", map[string]any{"vocab": []any{"a"}, "merges": []string{}}, "BPE vocab"},
		{"vocab hole", map[string]any{"vocab": map[string]int{"a": 0, "b": 2}, "merges": []string{}}, "outside"},
		{"fuse_unk not a bool", map[string]any{"vocab": bpeTestVocab, "merges": []string{}, "fuse_unk": "yes"}, "model:"},
		{"dropout not a number", map[string]any{"vocab": bpeTestVocab, "merges": []string{}, "dropout": "0"}, "model:"},
	} {
		if _, err := bpeTestLoad(t, tt.model); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	// ByteLevel's add_prefix_space has no default in tokenizers.
	path := bpeTestFile(t, map[string]any{"vocab": bpeTestVocab, "merges": []string{}}, map[string]any{"type": "ByteLevel"})
	if _, err := Load(Config{Path: path, MaxLength: 16}); err == nil || !strings.Contains(err.Error(), "add_prefix_space") {
		t.Errorf("ByteLevel without add_prefix_space: err = %v", err)
	}
}

// byteLevelWords runs the ByteLevel pre-tokenizer on one section.
func byteLevelWords(s string, addPrefixSpace, useRegex bool) []string {
	return byteLevelPreTokenizer{addPrefixSpace: addPrefixSpace, useRegex: useRegex}.split(nil, s, true)
}

// The expected words are those of GPT-2's pattern as tokenizers runs it (Oniguruma: \s is White_Space).
func TestByteLevelPreTokenizer(t *testing.T) {
	for _, tt := range []struct {
		text   string
		prefix bool
		want   []string
	}{
		// tokenizers' own pre_tokenization test (byte_level.rs).
		{"Hello my friend, how is your day going?", false,
			[]string{"Hello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?"}},
		{"Hello my friend", true, []string{"ĠHello", "Ġmy", "Ġfriend"}},
		{" Hello", true, []string{"ĠHello"}}, // starts with a space already
		{"", true, nil},                      // nothing to prepend to
		// A run of whitespace before a word gives its last character to the word (\s+(?!\S) backtracks); at the
		// end it stays whole; a single character before a word is \s+ on its own.
		{"a   b", false, []string{"a", "ĠĠ", "Ġb"}},
		{"a  ", false, []string{"a", "ĠĠ"}},
		{"a \t\nb", false, []string{"a", "Ġĉ", "Ċ", "b"}},
		{"\u00a0\u00a0x", true, []string{"ĠÂł", "Âł", "x"}},
		{"a\u3000 b", false, []string{"a", "ãĢĢ", "Ġb"}},
		// Lower-case contractions only; after a space the apostrophe is punctuation.
		{"I'm we're they've I'd you'll it's don't", false,
			[]string{"I", "'m", "Ġwe", "'re", "Ġthey", "'ve", "ĠI", "'d", "Ġyou", "'ll", "Ġit", "'s", "Ġdon", "'t"}},
		{"IT'S 's 'sa ''s", false, []string{"IT", "'", "S", "Ġ'", "s", "Ġ'", "sa", "Ġ''", "s"}},
		// Letters, numbers (any \p{N}) and the rest are separate runs, each with at most one space before it.
		{"abc123 45x ½Ⅻ!!", false, []string{"abc", "123", "Ġ45", "x", "ĠÂ½âħ«", "!!"}},
		{"café", false, []string{"cafÃ©"}},
		{"cafe\u0301s", false, []string{"cafe", "Ìģ", "s"}}, // a combining mark is neither L nor N
		{"😀 😀x", false, []string{"ðŁĺĢ", "ĠðŁĺĢ", "x"}},
		// U+0085 is whitespace and U+FEFF is not (JavaScript's \s has it the other way round).
		{"x \u0085\u0085y", false, []string{"x", "ĠÂħ", "Âħ", "y"}},
		{"x \ufeff\ufeffy", false, []string{"x", "Ġï»¿ï»¿", "y"}},
	} {
		if got := byteLevelWords(tt.text, tt.prefix, true); !slices.Equal(got, tt.want) {
			t.Errorf("%q (add_prefix_space %v): %q, want %q", tt.text, tt.prefix, got, tt.want)
		}
	}
	// use_regex false: the section is one word.
	if got, want := byteLevelWords("a b\nc", true, false), []string{"ĠaĠbĊc"}; !slices.Equal(got, want) {
		t.Errorf("use_regex false: %q, want %q", got, want)
	}
}

// GPT-2's bytes_to_unicode: a bijection of the bytes onto 256 characters, the printable ones unchanged.
func TestByteLevelChars(t *testing.T) {
	seen := map[string]bool{}
	for c, s := range byteLevelChars {
		r, size := utf8.DecodeRuneInString(s)
		if size != len(s) || r > 0x143 || seen[s] {
			t.Errorf("byte %#x → %q", c, s)
		}
		seen[s] = true
	}
	for c, want := range map[byte]string{0: "Ā", ' ': "Ġ", '\n': "Ċ", '!': "!", '~': "~", 0x7F: "ġ", 0xA0: "ł", 0xAD: "Ń",
		0xA1: "¡", 0xFF: "ÿ"} {
		if got := byteLevelChars[c]; got != want {
			t.Errorf("byte %#x → %q, want %q", c, got, want)
		}
	}
}

// gpt2WordLen agrees with a literal backtracking reading of the pattern, each alternative an anchored Go regexp
// tried in order and \s+(?!\S) tried at every length from the longest down, on random strings of the characters
// that matter.
func TestGPT2SplitMatchesPattern(t *testing.T) {
	alternatives := []*regexp.Regexp{}
	for _, alt := range []string{`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`, ` ?\pL+`, ` ?\pN+`, ` ?[^\s\pL\pN]+`} {
		alternatives = append(alternatives, regexp.MustCompile(`^(?:`+alt+`)`))
	}
	// Go's \s is ASCII only; the pattern's is White_Space.
	for i, re := range alternatives {
		alternatives[i] = regexp.MustCompile(strings.ReplaceAll(re.String(), `\s`, `\x{9}-\x{d}\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}`))
	}
	spaces := regexp.MustCompile(`^[\x{9}-\x{d}\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]+`)
	reference := func(s string) int {
		for _, re := range alternatives {
			if m := re.FindString(s); m != "" {
				return len(m)
			}
		}
		run := spaces.FindString(s)
		for n := len(run); n > 0; {
			if n == len(s) || isRegexSpace([]rune(s[n:])[0]) {
				return n // \s+(?!\S)
			}
			_, size := utf8.DecodeLastRuneInString(run[:n])
			n -= size
		}
		return len(run) // \s+
	}
	alphabet := []string{" ", " ", " ", "\t", "\n", "\u00a0", "\u0085", "\ufeff", "\u3000", "'", "'", "s", "r", "e", "l",
		"v", "m", "d", "S", "a", "é", "\u0301", "中", "1", "½", "!", ",", "😀", "\u200d", "\x00", "\x1c"}
	seed := uint32(1)
	for range 20000 {
		var b strings.Builder
		seed = seed*1664525 + 1013904223
		for n := 1 + seed>>28; n > 0; n-- {
			seed = seed*1664525 + 1013904223
			b.WriteString(alphabet[int(seed>>16)%len(alphabet)])
		}
		s := b.String()
		for i := 0; i < len(s); {
			got, want := gpt2WordLen(s, i), reference(s[i:])
			if got != want {
				t.Fatalf("%q at %d: word %q, want %q", s, i, s[i:i+got], s[i:i+want])
			}
			i += got
		}
	}
}

// Sequence [ByteLevel, TemplateProcessing] is the template (ByteLevel only trims offsets); ByteLevel alone adds
// nothing and keeps type id 1 for the second text, as no post-processor.
func TestBPEPostProcessors(t *testing.T) {
	data, err := os.ReadFile(tokPath(t, "bpe"))
	if err != nil {
		t.Fatal(err)
	}
	load := func(post string) *Tokenizer {
		var file map[string]json.RawMessage
		if err := json.Unmarshal(data, &file); err != nil {
			t.Fatal(err)
		}
		file["post_processor"] = json.RawMessage(post)
		out, err := json.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "tokenizer.json")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		tok, err := Load(Config{Path: path, MaxLength: 16})
		if err != nil {
			t.Fatalf("%s: %v", post, err)
		}
		return tok
	}
	byteLevel := `{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}`
	template := `{"type": "TemplateProcessing",
		"single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
		"pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
			{"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
		"special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}`
	roberta := tokLoad(t, "bpe", 16)
	sequence := load(`{"type": "Sequence", "processors": [` + byteLevel + `, ` + template + `]}`)
	plain := load(byteLevel)
	corpus := tokLoadCorpus(t)
	for _, p := range corpus.Pairs {
		want, err := roberta.EncodePair(p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		got, err := sequence.EncodePair(p[0], p[1])
		if err != nil || !slices.Equal(got.IDs, want.IDs) || !slices.Equal(got.TypeIDs, want.TypeIDs) || got.Truncated != want.Truncated {
			t.Errorf("Sequence[ByteLevel, Template] %q: %v %v %v, want %v %v", p, got.IDs, got.TypeIDs, err, want.IDs, want.TypeIDs)
		}
	}
	enc, err := plain.EncodePair("Hello", "world")
	if err != nil {
		t.Fatal(err)
	}
	if got := tokTokens(plain, enc.IDs); len(got) < 2 || got[0] == "<s>" || !slices.Equal(enc.TypeIDs[len(enc.TypeIDs)-1:], []int64{1}) {
		t.Errorf("ByteLevel post-processor: %q %v", got, enc.TypeIDs)
	}
	var twoTemplates = `{"type": "Sequence", "processors": [` + template + `, ` + template + `]}`
	var file map[string]json.RawMessage
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	file["post_processor"] = json.RawMessage(twoTemplates)
	out, _ := json.Marshal(file)
	path := filepath.Join(t.TempDir(), "two.json")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(Config{Path: path, MaxLength: 16}); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Errorf("two templates in a Sequence: err = %v", err)
	}
}

// Inputs of 100 KB without spaces are one word each for the BPE model: with the golden file, and with merges that
// chain 16 deep (a a → aa, aa aa → aaaa, …), each must take well under 100 ms (the bound here is looser, for a
// shared machine; the times are logged). The merge loop is O(n log n) in the word.
func TestBPEHostileInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	vocab := map[string]int{"<unk>": 0}
	var merges [][]string
	add := func(s string) {
		if _, ok := vocab[s]; !ok {
			vocab[s] = len(vocab)
		}
	}
	for _, c := range []string{"a", "b"} {
		add(c)
		for tok, k := c, 0; k < 16; k, tok = k+1, tok+tok {
			merges = append(merges, []string{tok, tok})
			add(tok + tok)
		}
	}
	add("ab")
	merges = append(merges, []string{"a", "b"})
	path := bpeTestFile(t, map[string]any{"vocab": vocab, "merges": merges, "unk_token": "<unk>"},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false})
	deep, err := Load(Config{Path: path, MaxLength: 512})
	if err != nil {
		t.Fatal(err)
	}
	if got := bpeTokens(t, deep, strings.Repeat("a", 1<<10)); !slices.Equal(got, []string{strings.Repeat("a", 1<<10)}) {
		t.Fatalf("1024 a: %d tokens", len(got))
	}
	inputs := map[string]string{
		"a":       tokRepeatTo("a", 100_000),
		"ab":      tokRepeatTo("ab", 100_000),
		"english": tokRepeatTo("thequickbrownfoxjumpsoverthelazydog", 100_000),
		"cjk":     tokRepeatTo("中文日本語", 100_000),
		"digits":  tokRepeatTo("1234567890", 100_000),
		"punct":   tokRepeatTo("!?.,;:", 100_000),
		"emoji":   tokRepeatTo("😀", 100_000),
		"spaces":  tokRepeatTo(" \t\u00a0", 100_000),
		"invalid": tokRepeatTo("\xff", 100_000), // 100,000 U+FFFD: 300,000 bytes, one symbol each
	}
	for name, tok := range map[string]*Tokenizer{"bpe": tokLoad(t, "bpe", 512), "deep merges": deep} {
		for kind, text := range inputs {
			if _, err := tok.Encode(text); err != nil {
				t.Fatalf("%s, 100 KB %s: %v", name, kind, err)
			}
		}
	}
}

// A merge table from random merges, checked against a plain reference: repeatedly merge the lowest-ranked pair,
// leftmost first, rescanning the whole word each time (quadratic, but obviously right).
func TestBPEMatchesReference(t *testing.T) {
	seed := uint32(7)
	next := func(n int) int {
		seed = seed*1664525 + 1013904223
		return int(seed>>8) % n
	}
	for round := range 20 {
		vocab := map[string]int{}
		var tokens []string
		add := func(s string) {
			if _, ok := vocab[s]; !ok {
				vocab[s] = len(vocab)
				tokens = append(tokens, s)
			}
		}
		for _, c := range "abcd" {
			add(string(c))
		}
		var merges [][]string
		rank := map[[2]string]int{}
		for range 30 {
			l, r := tokens[next(len(tokens))], tokens[next(len(tokens))]
			merges = append(merges, []string{l, r})
			rank[[2]string{l, r}] = len(merges) - 1 // a repeated pair keeps its last rank
			add(l + r)
		}
		tok, err := bpeTestLoad(t, map[string]any{"vocab": vocab, "merges": merges})
		if err != nil {
			t.Fatal(err)
		}
		for range 100 {
			var word []string
			for n := 1 + next(12); n > 0; n-- {
				word = append(word, string("abcd"[next(4)]))
			}
			text := strings.Join(word, "")
			for {
				best, bestRank := -1, 0
				for i := 0; i+1 < len(word); i++ {
					if r, ok := rank[[2]string{word[i], word[i+1]}]; ok && (best < 0 || r < bestRank) {
						best, bestRank = i, r
					}
				}
				if best < 0 {
					break
				}
				word = slices.Replace(word, best, best+2, word[best]+word[best+1])
			}
			if got := bpeTokens(t, tok, text); !slices.Equal(got, word) {
				t.Fatalf("round %d, %q: %q, want %q (merges %q)", round, text, got, word, merges)
			}
		}
	}
}

func ExampleTokenizer_bpe() {
	tok, err := Load(Config{Path: filepath.Join("testdata", "bpe", "tokenizer.json"), MaxLength: 16})
	if err != nil {
		panic(err)
	}
	enc, err := tok.EncodePair("Hello world", "it's")
	if err != nil {
		panic(err)
	}
	for _, id := range enc.IDs {
		fmt.Print(tok.Token(id), " ")
	}
	fmt.Println(enc.TypeIDs)
	// Output: <s> ĠHello Ġworld </s> </s> Ġit ' s </s> [0 0 0 0 0 0 0 0 0]
}
