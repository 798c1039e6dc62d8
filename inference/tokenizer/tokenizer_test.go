package tokenizer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/sugarme/tokenizer/spm"
)

func tokEncode(t *testing.T, tok *Tokenizer, text string) Encoding {
	t.Helper()
	enc, err := tok.Encode(text)
	if err != nil {
		t.Fatalf("Encode(%q): %v", text, err)
	}
	if len(enc.TypeIDs) != len(enc.IDs) {
		t.Fatalf("Encode(%q): %d ids, %d type ids", text, len(enc.IDs), len(enc.TypeIDs))
	}
	return enc
}

// Expected ids below were read from the vocabularies by hand (bert-base-uncased: [CLS] 101, [SEP] 102,
// [UNK] 100, "cafe" 7668; the test Unigram file: <s> 0, </s> 2, <unk> 3, "▁" 4, <mask> 998; the test BPE file:
// <s> 0, </s> 2, "Ġ" 36, <mask> 1426), and the token strings are asserted alongside so that a failure says what
// was produced. The BPE ones are also what Hugging Face tokenizers 0.22.2 gives.
func TestTokenizerHandChecked(t *testing.T) {
	bert := tokLoad(t, "bert-base-uncased", 512)
	uni := tokLoad(t, "unigram", 512)
	bpe := tokLoad(t, "bpe", 512)
	tests := []struct {
		tok    *Tokenizer
		text   string
		ids    []int64
		tokens []string
	}{
		// BertNormalizer with "strip_accents": null strips accents because it lowercases.
		{bert, "café", []int64{101, 7668, 102}, []string{"[CLS]", "cafe", "[SEP]"}},
		{bert, "ÉCOLE", []int64{101, 12431, 102}, []string{"[CLS]", "ecole", "[SEP]"}},
		{bert, "e\u0301", []int64{101, 1041, 102}, []string{"[CLS]", "e", "[SEP]"}},
		{bert, "Hello, world!", []int64{101, 7592, 1010, 2088, 999, 102},
			[]string{"[CLS]", "hello", ",", "world", "!", "[SEP]"}},
		// Unicode spaces separate words; control and format characters vanish.
		{bert, "hello\u00a0world\u3000\u200b", []int64{101, 7592, 2088, 102}, []string{"[CLS]", "hello", "world", "[SEP]"}},
		{bert, "", []int64{101, 102}, []string{"[CLS]", "[SEP]"}},
		{bert, " \t\n\u00a0", []int64{101, 102}, []string{"[CLS]", "[SEP]"}},
		// A special token typed in the text is that token; lowercase or spaced out it is ordinary text.
		{bert, "[SEP]", []int64{101, 102, 102}, []string{"[CLS]", "[SEP]", "[SEP]"}},
		{bert, "[CLS] hi [MASK]", []int64{101, 101, 7632, 103, 102}, []string{"[CLS]", "[CLS]", "hi", "[MASK]", "[SEP]"}},
		{bert, "[sep]", []int64{101, 1031, 19802, 1033, 102}, []string{"[CLS]", "[", "sep", "]", "[SEP]"}},
		// Each character lowercased on its own, as in Rust: a final capital sigma becomes σ, not ς.
		{bert, "ΟΔΟΣ", []int64{101, 1169, 29722, 29730, 29733, 102}, []string{"[CLS]", "ο", "##δ", "##ο", "##σ", "[SEP]"}},
		// CJK ideographs are words of their own, outside the BMP too.
		{bert, "中文", []int64{101, 1746, 1861, 102}, []string{"[CLS]", "中", "文", "[SEP]"}},
		{bert, "a𠀀b", []int64{101, 1037, 100, 1038, 102}, []string{"[CLS]", "a", "[UNK]", "b", "[SEP]"}},
		// max_input_chars_per_word: 101 characters are one [UNK].
		{bert, strings.Repeat("x", 101), []int64{101, 100, 102}, []string{"[CLS]", "[UNK]", "[SEP]"}},

		{uni, "", []int64{0, 2}, []string{"<s>", "</s>"}},
		{uni, "café", []int64{0, 771, 2}, []string{"<s>", "▁café", "</s>"}},
		{uni, "<s>", []int64{0, 0, 2}, []string{"<s>", "<s>", "</s>"}},
		// <mask> has lstrip: the spaces before it go with it.
		{uni, "x     <mask>", []int64{0, 4, 95, 998, 2}, []string{"<s>", "▁", "x", "<mask>", "</s>"}},
		// Characters without a piece are <unk>, a run of them one <unk>.
		{uni, "😀😀 x", []int64{0, 4, 3, 4, 95, 2}, []string{"<s>", "▁", "<unk>", "▁", "x", "</s>"}},

		{bpe, "", []int64{0, 2}, []string{"<s>", "</s>"}},
		{bpe, "Hello", []int64{0, 1213, 2}, []string{"<s>", "ĠHello", "</s>"}},
		// Byte-level: é is the two characters of its UTF-8 bytes; <mask> has lstrip.
		{bpe, "café <mask>", []int64{0, 559, 1426, 2}, []string{"<s>", "ĠcafÃ©", "<mask>", "</s>"}},
		{bpe, "x     <mask>", []int64{0, 36, 124, 1426, 2}, []string{"<s>", "Ġ", "x", "<mask>", "</s>"}},
		// add_prefix_space applies to every section between added tokens.
		{bpe, "<s>hello</s>", []int64{0, 0, 36, 272, 112, 112, 115, 2, 2},
			[]string{"<s>", "<s>", "Ġ", "he", "l", "l", "o", "</s>", "</s>"}},
	}
	for _, tt := range tests {
		enc := tokEncode(t, tt.tok, tt.text)
		if !slices.Equal(enc.IDs, tt.ids) || !slices.Equal(tokTokens(tt.tok, enc.IDs), tt.tokens) {
			t.Errorf("Encode(%q) = %v %q, want %v %q", tt.text, enc.IDs, tokTokens(tt.tok, enc.IDs), tt.ids, tt.tokens)
		}
		if enc.Truncated {
			t.Errorf("Encode(%q): Truncated", tt.text)
		}
		if slices.ContainsFunc(enc.TypeIDs, func(id int64) bool { return id != 0 }) {
			t.Errorf("Encode(%q): type ids %v, want all 0", tt.text, enc.TypeIDs)
		}
	}
}

func TestTokenizerPairs(t *testing.T) {
	bert := tokLoad(t, "bert-base-uncased", 512)
	enc, err := bert.EncodePair("café", "naïve")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{101, 7668, 102, 15743, 102}; !slices.Equal(enc.IDs, want) {
		t.Errorf("ids %v, want %v", enc.IDs, want)
	}
	if want := []int64{0, 0, 0, 1, 1}; !slices.Equal(enc.TypeIDs, want) {
		t.Errorf("type ids %v, want %v", enc.TypeIDs, want)
	}

	uni := tokLoad(t, "unigram", 512)
	enc, err = uni.EncodePair("", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, 2, 2, 2}; !slices.Equal(enc.IDs, want) || !slices.Equal(enc.TypeIDs, []int64{0, 0, 1, 1}) {
		t.Errorf("empty pair: %v %v, want %v [0 0 1 1]", enc.IDs, enc.TypeIDs, want)
	}

	// RobertaProcessing: <s> A </s> </s> B </s>, every type id 0.
	bpe := tokLoad(t, "bpe", 512)
	enc, err = bpe.EncodePair("Hello", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, 1213, 2, 2, 2}; !slices.Equal(enc.IDs, want) || !slices.Equal(enc.TypeIDs, []int64{0, 0, 0, 0, 0}) {
		t.Errorf("RoBERTa pair: %v %v, want %v [0 0 0 0 0]", enc.IDs, enc.TypeIDs, want)
	}
}

func TestTokenizerTruncation(t *testing.T) {
	letters := func(s string) []string { return strings.Fields(s) }
	tests := []struct {
		name          string
		maxLength     int
		first, second string // second "" and pair false: a single text
		pair          bool
		tokens        []string
		typeIDs       []int64
		truncated     bool
	}{
		{"single fits", 5, "a b c", "", false,
			letters("[CLS] a b c [SEP]"), []int64{0, 0, 0, 0, 0}, false},
		{"single cut", 5, "a b c d e", "", false,
			letters("[CLS] a b c [SEP]"), []int64{0, 0, 0, 0, 0}, true},
		// 5 places for 10 + 2 tokens: the short second text keeps its 2, the first gets the other 3.
		{"pair longer first", 8, "a b c d e f g h i j", "k l", true,
			letters("[CLS] a b c [SEP] k l [SEP]"), []int64{0, 0, 0, 0, 0, 1, 1, 1}, true},
		// Neither fits in half of 5: 2 and 3, the odd place to the longer (second) text.
		{"pair both long", 8, "a b c d e f", "g h i j k l m", true,
			letters("[CLS] a b [SEP] g h i [SEP]"), []int64{0, 0, 0, 0, 1, 1, 1, 1}, true},
		{"pair empty first", 6, "", "a b c d e f", true,
			letters("[CLS] [SEP] a b c [SEP]"), []int64{0, 0, 1, 1, 1, 1}, true},
		// Special tokens only: MaxLength equal to their number leaves no room for text.
		{"no room", 3, "a b", "c", true,
			letters("[CLS] [SEP] [SEP]"), []int64{0, 0, 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tokLoad(t, "bert-base-uncased", tt.maxLength)
			var (
				enc Encoding
				err error
			)
			if tt.pair {
				enc, err = tok.EncodePair(tt.first, tt.second)
			} else {
				enc, err = tok.Encode(tt.first)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tokTokens(tok, enc.IDs); !slices.Equal(got, tt.tokens) || !slices.Equal(enc.TypeIDs, tt.typeIDs) ||
				enc.Truncated != tt.truncated {
				t.Errorf("got %q %v truncated=%v, want %q %v truncated=%v",
					got, enc.TypeIDs, enc.Truncated, tt.tokens, tt.typeIDs, tt.truncated)
			}
		})
	}
}

// The bert-base-uncased file pads and truncates to 128; MaxLength replaces both.
func TestTokenizerMaxLengthOverridesFile(t *testing.T) {
	tok := tokLoad(t, "bert-base-uncased", 512)
	if enc := tokEncode(t, tok, "hello"); len(enc.IDs) != 3 {
		t.Errorf("Encode(hello): %d ids, want 3 (no padding)", len(enc.IDs))
	}
	long := strings.Repeat("word ", 300)
	if enc := tokEncode(t, tok, long); len(enc.IDs) != 302 || enc.Truncated {
		t.Errorf("300 words at MaxLength 512: %d ids truncated=%v, want 302 false", len(enc.IDs), enc.Truncated)
	}
	tok = tokLoad(t, "bert-base-uncased", 16)
	if enc := tokEncode(t, tok, long); len(enc.IDs) != 16 || !enc.Truncated || enc.IDs[15] != 102 {
		t.Errorf("300 words at MaxLength 16: %d ids truncated=%v last %d, want 16 true 102", len(enc.IDs), enc.Truncated, enc.IDs[len(enc.IDs)-1])
	}
}

func TestTokenizerVocabulary(t *testing.T) {
	tests := []struct {
		name      string
		vocabSize int
		padID     int64
		tokens    map[int64]string
	}{
		{"bert-base-uncased", 30522, 0, map[int64]string{0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 7668: "cafe", 2063: "##e"}},
		{"unigram", 999, 1, map[int64]string{0: "<s>", 1: "<pad>", 3: "<unk>", 4: "▁", 998: "<mask>"}},
		{"bpe", 1427, 1, map[int64]string{0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>", 4: "Ā", 36: "Ġ", 1426: "<mask>"}},
	}
	for _, tt := range tests {
		tok := tokLoad(t, tt.name, 128)
		if got := tok.VocabSize(); got != tt.vocabSize {
			t.Errorf("%s: VocabSize %d, want %d", tt.name, got, tt.vocabSize)
		}
		if got := tok.PadID(); got != tt.padID {
			t.Errorf("%s: PadID %d, want %d", tt.name, got, tt.padID)
		}
		for id, want := range tt.tokens {
			if got := tok.Token(id); got != want {
				t.Errorf("%s: Token(%d) = %q, want %q", tt.name, id, got, want)
			}
		}
		for _, id := range []int64{-1, int64(tt.vocabSize), 1 << 40} {
			if got := tok.Token(id); got != "" {
				t.Errorf("%s: Token(%d) = %q, want \"\"", tt.name, id, got)
			}
		}
	}
}

// Invalid UTF-8 is read as U+FFFD per bad byte: BERT drops it, the Unigram file sees an unknown character.
func TestTokenizerInvalidUTF8(t *testing.T) {
	for _, name := range tokTestTokenizers {
		tok := tokLoad(t, name, 128)
		for _, tt := range []struct{ invalid, valid string }{
			{"caf\xe9", "caf\ufffd"},
			{"\xff\xfe", "\ufffd\ufffd"},
			{"a\xe2\x82b", "a\ufffd\ufffdb"},
			{"\xed\xa0\x80x", "\ufffd\ufffd\ufffdx"}, // an encoded surrogate is not UTF-8
		} {
			got, want := tokEncode(t, tok, tt.invalid), tokEncode(t, tok, tt.valid)
			if !slices.Equal(got.IDs, want.IDs) {
				t.Errorf("%s: Encode(%q) = %v, want %v (as %q)", name, tt.invalid, got.IDs, want.IDs, tt.valid)
			}
		}
	}
	if got := toValidUTF8("ok\xffé"); got != "ok\ufffdé" {
		t.Errorf("toValidUTF8 = %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	bertVocab := `{"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3}`
	wordPiece := func(extra string) string {
		return `{"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": ` + bertVocab + `}` + extra + `}`
	}
	tests := []struct {
		name, file, want string
	}{
		{"empty file", ``, "invalid JSON"},
		{"corrupt JSON", `{"model": {`, "invalid JSON"},
		{"trailing data", wordPiece("") + ` {}`, "invalid JSON"},
		{"not an object", `[1, 2]`, "invalid JSON"},
		{"null", `null`, `"model" is missing`},
		{"no model", `{"normalizer": null}`, `"model" is missing`},
		{"model not an object", `{"model": "WordPiece"}`, "model:"},
		{"no model type", `{"model": {"vocab": {}}}`, `"type" is missing`},
		{"BPE dropout", `{"model": {"type": "BPE", "dropout": 0.1, "vocab": {"a": 0}, "merges": []}}`, "dropout"},
		{"BPE without merges", `{"model": {"type": "BPE", "vocab": {"a": 0}}}`, `"merges" is missing`},
		{"BPE bad merge", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]}}`, `"aa" is not in the vocabulary`},
		{"unknown model type", `{"model": {"type": "Tiktoken", "vocab": {}}}`, `unsupported type "Tiktoken"`},
		{"no vocab", `{"model": {"type": "WordPiece"}}`, `"vocab" is missing`},
		{"vocab array", `{"model": {"type": "WordPiece", "vocab": [["a", 0]]}}`, "WordPiece vocab"},
		{"vocab id string", `{"model": {"type": "WordPiece", "vocab": {"[UNK]": "0"}}}`, "WordPiece vocab"},
		{"vocab id negative", `{"model": {"type": "WordPiece", "vocab": {"[UNK]": -1}}}`, "outside"},
		{"vocab id huge", `{"model": {"type": "WordPiece", "vocab": {"[UNK]": 4000000000}}}`, "outside"},
		{"vocab id twice", `{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "b": 0}}}`, "used by both"},
		{"unk missing", `{"model": {"type": "WordPiece", "unk_token": "<unk>", "vocab": {"a": 0}}}`, "not in the vocabulary"},
		{"max chars wrong type", `{"model": {"type": "WordPiece", "max_input_chars_per_word": "100", "vocab": {"[UNK]": 0}}}`, "model:"},
		{"unigram vocab object", `{"model": {"type": "Unigram", "vocab": {"a": 0}}}`, "Unigram vocab"},
		{"unigram entry short", `{"model": {"type": "Unigram", "vocab": [["a"]]}}`, "[piece, score]"},
		{"unigram score string", `{"model": {"type": "Unigram", "vocab": [["a", "x"]]}}`, "score"},
		{"unigram empty", `{"model": {"type": "Unigram", "vocab": []}}`, "empty vocabulary"},
		{"unigram unk_id", `{"model": {"type": "Unigram", "unk_id": 5, "vocab": [["a", -1.0]]}}`, "unk_id 5"},
		{"unknown normalizer", wordPiece(`, "normalizer": {"type": "Nmt"}`), `normalizer: unsupported type "Nmt"`},
		{"normalizer not an object", wordPiece(`, "normalizer": 7`), "normalizer:"},
		{"bad precompiled", wordPiece(`, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "!!"}`), "precompiled_charsmap"},
		{"short precompiled", wordPiece(`, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AAE="}`), "Precompiled"},
		{"bad regex", wordPiece(`, "normalizer": {"type": "Replace", "pattern": {"Regex": "("}, "content": ""}`), "Replace"},
		{"unknown pre-tokenizer", wordPiece(`, "pre_tokenizer": {"type": "CharDelimiterSplit"}`), `pre_tokenizer: unsupported type "CharDelimiterSplit"`},
		{"ByteLevel without add_prefix_space", wordPiece(`, "pre_tokenizer": {"type": "ByteLevel"}`), "add_prefix_space"},
		{"bad metaspace", wordPiece(`, "pre_tokenizer": {"type": "Metaspace", "replacement": "ab"}`), "not one character"},
		{"unknown post-processor", wordPiece(`, "post_processor": {"type": "Roberta"}`), `post_processor: unsupported type "Roberta"`},
		{"bad post-processor in a sequence", wordPiece(`, "post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "BertProcessing"}]}`),
			"Sequence[1]"},
		{"template unknown special", wordPiece(`, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[X]", "type_id": 0}}]}`),
			`special token "[X]"`},
		{"template id out of range", wordPiece(`, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[X]", "type_id": 0}}], "special_tokens": {"[X]": {"id": "[X]", "ids": [99], "tokens": ["[X]"]}}}`),
			"outside the vocabulary"},
		{"bert processing id out of range", wordPiece(`, "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1000]}`),
			"outside the vocabulary"},
		{"added token without id", wordPiece(`, "added_tokens": [{"content": "[X]"}]`), `"id" is missing`},
		{"added token id far", wordPiece(`, "added_tokens": [{"id": 1000000, "content": "[X]"}]`), "beyond the vocabulary"},
		{"added token wrong type", wordPiece(`, "added_tokens": [{"id": 1, "content": 5}]`), "invalid JSON"},
		{"not UTF-8", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"\xff\": 0}}}", "UTF-8"},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("%d.json", i))
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			tok, err := Load(Config{Path: path, MaxLength: 128})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, %v; want an error containing %q", tok, err, tt.want)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, err := Load(Config{Path: filepath.Join(dir, "nope.json"), MaxLength: 128})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want a not-exist error", err)
		}
	})
	for _, maxLength := range []int{0, -1, 1, 2} {
		_, err := Load(Config{Path: tokPath(t, "bert-base-uncased"), MaxLength: maxLength})
		if err == nil {
			t.Errorf("MaxLength %d: no error (a pair needs 3 special tokens)", maxLength)
		}
	}
	if _, err := Load(Config{MaxLength: 128}); err == nil {
		t.Error("no path: no error")
	}
}

// A file that only differs from Hugging Face's defaults in ways sugarme gets wrong still tokenizes like
// tokenizers: another continuing-subword prefix, added tokens with lstrip/rstrip/single_word, a normalized added
// token, Lowercase, Metaspace "first".
func TestTokenizerComponents(t *testing.T) {
	file := `{
  "added_tokens": [
    {"id": 0, "content": "[UNK]", "special": true, "normalized": false},
    {"id": 1, "content": "[CLS]", "special": true, "normalized": false},
    {"id": 2, "content": "[SEP]", "special": true, "normalized": false},
    {"id": 9, "content": "<R>", "rstrip": true, "special": true, "normalized": false},
    {"id": 10, "content": "Lol", "single_word": true, "special": false, "normalized": true}
  ],
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "Lowercase"}, {"type": "Strip", "strip_left": true, "strip_right": true}]},
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}]},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "++", "max_input_chars_per_word": 5,
    "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "ab": 3, "++c": 4, "a": 5, "++b": 6, "lol": 7, "<r>": 8}}
}`
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(Config{Path: path, MaxLength: 64})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text   string
		tokens []string
	}{
		{"ABC", []string{"[CLS]", "ab", "++c", "[SEP]"}},
		{"abcabc", []string{"[CLS]", "[UNK]", "[SEP]"}}, // 6 characters > max_input_chars_per_word
		{"  AB  ", []string{"[CLS]", "ab", "[SEP]"}},
		// rstrip: the spaces after <R> belong to it; raw-text match, so <r> is not it.
		{"a<R>   ab <r>", []string{"[CLS]", "a", "<R>", "ab", "<r>", "[SEP]"}},
		// single_word "Lol" matches, in the lowercased text, where no word character touches it: not in "xlol".
		{"LOL lol,lol xlol", []string{"[CLS]", "Lol", "Lol", "[UNK]", "Lol", "[UNK]", "[SEP]"}},
	}
	for _, tt := range tests {
		enc := tokEncode(t, tok, tt.text)
		if got := tokTokens(tok, enc.IDs); !slices.Equal(got, tt.tokens) {
			t.Errorf("Encode(%q) = %q, want %q", tt.text, got, tt.tokens)
		}
	}
	if tok.VocabSize() != 11 || tok.Token(10) != "Lol" || tok.PadID() != 0 {
		t.Errorf("VocabSize %d, Token(10) %q, PadID %d", tok.VocabSize(), tok.Token(10), tok.PadID())
	}
	// Roberta-style type ids: BertProcessing gives the second text 1.
	enc, err := tok.EncodePair("a", "ab")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(enc.TypeIDs, []int64{0, 0, 0, 1, 1}) {
		t.Errorf("pair type ids %v", enc.TypeIDs)
	}
}

func TestTokenizerMetaspacePrependScheme(t *testing.T) {
	for _, tt := range []struct {
		scheme        prependScheme
		text          string
		origin        bool
		want          []string
		splitDisabled bool
	}{
		{prependAlways, "hello world", false, []string{"▁hello", "▁world"}, false},
		{prependFirst, "hello world", true, []string{"▁hello", "▁world"}, false},
		{prependFirst, "hello world", false, []string{"hello", "▁world"}, false},
		{prependNever, "hello  world", true, []string{"hello", "▁", "▁world"}, false},
		{prependAlways, " hi", true, []string{"▁hi"}, false},
		{prependAlways, "a b", true, []string{"▁a▁b"}, true},
		{prependAlways, "", true, nil, false},
	} {
		m := metaspacePreTokenizer{replacement: '▁', repStr: "▁", scheme: tt.scheme, splitWords: !tt.splitDisabled}
		if got := m.split(nil, tt.text, tt.origin); !slices.Equal(got, tt.want) {
			t.Errorf("%+v: got %q, want %q", tt, got, tt.want)
		}
	}
}

// SentencePiece's nmt_nfkc charsmap (the one of XLM-R and multilingual E5), from sugarme's spm test data; the
// expected strings are SentencePiece's and the spm_precompiled / tokenizers tests'.
func TestTokenizerPrecompiledNormalizer(t *testing.T) {
	p, err := newPrecompiledNormalizer(spm.NmtNfkc())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ in, want string }{
		{"\ufb01", "fi"},
		{"𝔾", "G"},
		{"𝕠", "o"},
		{"\u200d", " "},
		{"™\x1eg", "TMg"}, // expansion followed by removal (tokenizers' precompiled.rs test)
		{"ﬁnancial ＡＢＣ", "financial ABC"},
		{"hello", "hello"},
		{"é", "é"},
		{"\u0627\u0653", "\u0622"}, // a grapheme of two characters that the charsmap composes
		{"เขาไม่ได้พูดสักคำ", "เขาไม\u0e48ได\u0e49พ\u0e39ดส\u0e31กค\u0e4dา"}, // SARA AM decomposed
	} {
		if got := p.normalize(tt.in); got != tt.want {
			t.Errorf("normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// A corrupt trie is never indexed out of range.
	data := slices.Clone(spm.NmtNfkc())
	for i := 4; i < 4000; i += 7 {
		data[i] ^= 0xA5
	}
	if corrupt, err := newPrecompiledNormalizer(data); err == nil {
		_ = corrupt.normalize("ﬁnancial 𝔾 ＡＢＣ é 中文 \u200d")
	}
}

// Our WordPiece matching and sugarme's WordPiece.Tokenize agree on every word of the corpus.
func TestTokenizerWordPieceMatchesSugarme(t *testing.T) {
	tok := tokLoad(t, "bert-base-uncased", 512)
	wp := tok.model.(*wordPieceModel)
	sugar := tokSugarmeWordPiece(t)
	corpus := tokLoadCorpus(t)
	texts := slices.Clone(corpus.Single)
	for _, p := range corpus.Pairs {
		texts = append(texts, p[0], p[1])
	}
	words := 0
	for _, text := range texts {
		for _, w := range (bertPreTokenizer{}).split(nil, tok.normalizer.normalize(text), true) {
			tokCompareWordPiece(t, wp, sugar, w)
			words++
		}
	}
	if words < 1000 {
		t.Fatalf("only %d words compared", words)
	}
}

func tokCompareWordPiece(t *testing.T, wp *wordPieceModel, sugar interface {
	appendIDs([]int64, string) ([]int64, error)
}, word string) {
	t.Helper()
	got, err := wp.appendIDs(nil, word)
	if err != nil {
		t.Fatal(err)
	}
	want, err := sugar.appendIDs(nil, word)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("word %q: ours %v, sugarme %v", word, got, want)
	}
}

// sugarmeWordPieceModel runs sugarme's WordPiece.Tokenize, the reference for our matching.
type sugarmeWordPieceModel struct{ tokenize func(string) ([]int64, error) }

func (m sugarmeWordPieceModel) appendIDs(dst []int64, word string) ([]int64, error) {
	ids, err := m.tokenize(word)
	return append(dst, ids...), err
}

func tokSugarmeWordPiece(t testing.TB) sugarmeWordPieceModel {
	t.Helper()
	var file struct {
		Model hfModel `json:"model"`
	}
	tokLoadJSON(t, tokPath(t, "bert-base-uncased"), &file)
	wp, err := sugarmeWordPiece(file.Model.Vocab, "[UNK]", "##", 100)
	if err != nil {
		t.Fatal(err)
	}
	return sugarmeWordPieceModel{tokenize: func(word string) ([]int64, error) {
		toks, err := wp.Tokenize(word)
		var ids []int64
		for _, tk := range toks {
			ids = append(ids, int64(tk.Id))
		}
		return ids, err
	}}
}

// Many goroutines share one Tokenizer and get what a lone caller gets (run with -race).
func TestTokenizerConcurrentUse(t *testing.T) {
	corpus := tokLoadCorpus(t)
	for _, name := range tokTestTokenizers {
		tok := tokLoad(t, name, 128)
		want := make([]Encoding, len(corpus.Single))
		for i, text := range corpus.Single {
			want[i] = tokEncode(t, tok, text)
		}
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for g := range 8 {
			wg.Go(func() {
				for round := range 3 {
					for k := range corpus.Single {
						i := (k + g*17 + round) % len(corpus.Single) // goroutines at different texts
						got, err := tok.Encode(corpus.Single[i])
						if err == nil && slices.Equal(got.IDs, want[i].IDs) && slices.Equal(got.TypeIDs, want[i].TypeIDs) {
							continue
						}
						select {
						case errs <- fmt.Sprintf("%s, goroutine %d: Encode(%q) = %v, %v; want %v", name, g, corpus.Single[i], got.IDs, err, want[i].IDs):
						default:
						}
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
}

// hostileInputs are long inputs built to hit the tokenizers' worst cases:
// BenchmarkEncodeHostile measures that their cost stays linear in length.
var hostileInputs = map[string]func(n int) string{
	"english":  func(n int) string { return tokRepeatTo("The quick brown fox jumps over the lazy dog. ", n) },
	"one word": func(n int) string { return tokRepeatTo("abcdefghij", n) },
	"100-char words": func(n int) string {
		return tokRepeatTo(strings.Repeat("qx", 50)+" ", n)
	},
	"cjk":       func(n int) string { return tokRepeatTo("中文日本語", n) },
	"combining": func(n int) string { return "a" + tokRepeatTo("\u0301", n) },
	"spaces":    func(n int) string { return tokRepeatTo(" ", n) },
	"specials":  func(n int) string { return tokRepeatTo("[SEP]<mask>", n) },
	"emoji":     func(n int) string { return tokRepeatTo("👨\u200d👩\u200d👧", n) },
	"invalid":   func(n int) string { return tokRepeatTo("\xff\xfe", n) },
	"nul":       func(n int) string { return tokRepeatTo("\x00", n) },
}

// Long and hostile inputs encode to a full-length, truncated encoding.
func TestTokenizerLongInputs(t *testing.T) {
	for _, name := range tokTestTokenizers {
		tok := tokLoad(t, name, 512)
		for kind, gen := range hostileInputs {
			enc, err := tok.EncodePair(gen(200_000), gen(200_000))
			if err != nil {
				t.Fatalf("%s, %s: %v", name, kind, err)
			}
			if len(enc.IDs) > 512 || len(enc.IDs) != len(enc.TypeIDs) {
				t.Errorf("%s, %s: %d ids, %d type ids", name, kind, len(enc.IDs), len(enc.TypeIDs))
			}
		}
	}
}

func tokRepeatTo(s string, n int) string {
	return strings.Repeat(s, n/len(s)+1)[:n]
}

func FuzzTokenize(f *testing.F) {
	corpus := tokLoadCorpus(f)
	for _, text := range corpus.Single {
		f.Add(text, "")
	}
	for _, p := range corpus.Pairs {
		f.Add(p[0], p[1])
	}
	f.Add("\xff\xfe invalid \xc3", "[SEP]<mask>")
	type loaded struct {
		tok         *Tokenizer
		first, last int64
		pairTypeOne bool // the second text of a pair has type id 1 (RoBERTa's are all 0)
	}
	var tokenizers []loaded
	for _, maxLength := range []int{8, 128} {
		tokenizers = append(tokenizers,
			loaded{tokLoad(f, "bert-base-uncased", maxLength), 101, 102, true},
			loaded{tokLoad(f, "unigram", maxLength), 0, 2, true},
			loaded{tokLoad(f, "bpe", maxLength), 0, 2, false})
	}
	sugar := tokSugarmeWordPiece(f)
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, l := range tokenizers {
			single, err := l.tok.Encode(a)
			if err != nil {
				t.Fatalf("Encode(%q): %v", a, err)
			}
			pair, err := l.tok.EncodePair(a, b)
			if err != nil {
				t.Fatalf("EncodePair(%q, %q): %v", a, b, err)
			}
			for _, enc := range []Encoding{single, pair} {
				if len(enc.IDs) != len(enc.TypeIDs) || len(enc.IDs) > l.tok.maxLength || len(enc.IDs) < 2 {
					t.Fatalf("%q, %q: %d ids, %d type ids, MaxLength %d", a, b, len(enc.IDs), len(enc.TypeIDs), l.tok.maxLength)
				}
				if enc.IDs[0] != l.first || enc.IDs[len(enc.IDs)-1] != l.last {
					t.Fatalf("%q, %q: ids %v do not start with %d and end with %d", a, b, enc.IDs, l.first, l.last)
				}
				for _, id := range enc.IDs {
					if id < 0 || id >= int64(l.tok.VocabSize()) {
						t.Fatalf("%q, %q: id %d outside [0, %d)", a, b, id, l.tok.VocabSize())
					}
				}
			}
			if (slices.Index(pair.TypeIDs, 1) < 0) == l.pairTypeOne || slices.ContainsFunc(single.TypeIDs, func(id int64) bool { return id != 0 }) {
				t.Fatalf("%q, %q: type ids %v (single %v)", a, b, pair.TypeIDs, single.TypeIDs)
			}
			// The aligned path: the ids Encode gives up to its limit, offsets inside the text and in order of
			// their starts wherever the normalizer keeps the text's order.
			if valid := toValidUTF8(a); l.tok.maxLength == 128 {
				toks, err := l.tok.Tokenize(valid, true)
				if err != nil {
					t.Fatalf("Tokenize(%q): %v", valid, err)
				}
				if !single.Truncated && len(toks) != len(single.IDs) {
					t.Fatalf("Tokenize(%q): %d tokens, Encode %d", valid, len(toks), len(single.IDs))
				}
				for i, tk := range toks {
					if i < len(single.IDs) && !single.Truncated && tk.ID != single.IDs[i] {
						t.Fatalf("Tokenize(%q): token %d is %d, Encode's %d", valid, i, tk.ID, single.IDs[i])
					}
					if tk.Start < 0 || tk.Start > tk.End || tk.End > len(valid) {
						t.Fatalf("Tokenize(%q): token %d has offsets %d–%d", valid, i, tk.Start, tk.End)
					}
				}
			}
		}
		// Our WordPiece matching against sugarme's on arbitrary words.
		if utf8.ValidString(a) && !strings.ContainsFunc(a, isRegexSpace) {
			tokCompareWordPiece(t, tokenizers[0].tok.model.(*wordPieceModel), sugar, a)
		}
	})
}

// A 4 MB word without spaces is truncated like any long text, and its tokens are those of the whole word: the
// model sees only a clipped prefix (Tokenizer.appendWord), which must not change what is kept.
func TestTokenizerHugeWord(t *testing.T) {
	const maxLength = 128
	word := make([]byte, 4<<20)
	x := uint32(1)
	for i := range word {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		word[i] = 'a' + byte(x%26)
	}
	text := string(word)
	for _, name := range tokTestTokenizers {
		t.Run(name, func(t *testing.T) {
			tok := tokLoad(t, name, maxLength)
			enc := tokEncode(t, tok, text)
			pair, err := tok.EncodePair("short query", text)
			if err != nil {
				t.Fatal(err)
			}
			if name == "bert-base-uncased" {
				// A word over max_input_chars_per_word (100) is one [UNK], however long, as in Hugging Face.
				if !slices.Equal(enc.IDs, []int64{101, 100, 102}) || enc.Truncated {
					t.Fatalf("Encode = %v (truncated %v); want [CLS] [UNK] [SEP]", enc.IDs, enc.Truncated)
				}
				if len(pair.IDs) != 6 || pair.Truncated {
					t.Fatalf("EncodePair = %v (truncated %v)", pair.IDs, pair.Truncated)
				}
				return
			}
			for _, e := range []Encoding{enc, pair} {
				if !e.Truncated || len(e.IDs) != maxLength || len(e.TypeIDs) != maxLength {
					t.Fatalf("%d ids (truncated %v); want %d, truncated", len(e.IDs), e.Truncated, maxLength)
				}
			}
			// The unclipped word through the model directly.
			normalized := text
			if tok.normalizer != nil {
				normalized = tok.normalizer.normalize(text)
			}
			words := tok.preTok.split(nil, normalized, true)
			if len(words) != 1 {
				t.Fatalf("pre-tokenizer made %d words; want 1", len(words))
			}
			full, err := tok.model.appendIDs(nil, words[0])
			if err != nil {
				t.Fatal(err)
			}
			want, _ := tok.post.apply(full[:maxLength-tok.post.added(false)], nil, false)
			if !slices.Equal(enc.IDs, want) {
				t.Fatalf("clipped word's ids differ from the whole word's:\n got %v\nwant %v", enc.IDs, want)
			}
		})
	}
}

// A clipped word that gives too few tokens (here a run of characters the vocabulary lacks, fused into one <unk>)
// is retried longer, so that what follows the run is still seen and the encoding truncated.
func TestTokenizerClipRetry(t *testing.T) {
	tok := tokLoad(t, "unigram", 16)
	text := strings.Repeat("\U0001F9FF", 100_000) + strings.Repeat("ab", 100_000)
	enc := tokEncode(t, tok, text)
	if !enc.Truncated || len(enc.IDs) != 16 {
		t.Fatalf("%d ids (truncated %v); want 16, truncated", len(enc.IDs), enc.Truncated)
	}
	words := tok.preTok.split(nil, tok.normalizer.normalize(text), true)
	full, err := tok.model.appendIDs(nil, words[0])
	if err != nil {
		t.Fatal(err)
	}
	if full[1] != 3 || full[2] == 3 {
		t.Fatalf("whole word %v: want ▁, one fused <unk> (3), then the rest", full[:16])
	}
	if !slices.Equal(enc.IDs[1:15], full[:14]) {
		t.Fatalf("ids %v; whole word %v", enc.IDs[1:15], full[:14])
	}
}
