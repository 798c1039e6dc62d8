package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

type tokOffset struct {
	token      string
	start, end int
}

func tokOffsets(t *testing.T, tok *Tokenizer, text string, special bool) []tokOffset {
	t.Helper()
	toks, err := tok.Tokenize(text, special)
	if err != nil {
		t.Fatalf("Tokenize(%q): %v", text, err)
	}
	out := make([]tokOffset, len(toks))
	for i, tk := range toks {
		out[i] = tokOffset{tok.Token(tk.ID), tk.Start, tk.End}
		if tk.Special {
			out[i].start, out[i].end = -1, -1
		}
	}
	return out
}

// Known answers, after Hugging Face tokenizers' offsets (byte offsets of the original text, accents and case
// included; special tokens have none).
func TestTokenizeOffsetsBert(t *testing.T) {
	tok := tokLoad(t, "bert-base-uncased", 512)
	for _, tt := range []struct {
		text string
		want []tokOffset
	}{
		// É is two bytes: "Héllo" is bytes 0–6, and the token hello covers all of it.
		{"Héllo, world!", []tokOffset{{"[CLS]", -1, -1}, {"hello", 0, 6}, {",", 6, 7}, {"world", 8, 13}, {"!", 13, 14}, {"[SEP]", -1, -1}}},
		{"unaffable", []tokOffset{{"[CLS]", -1, -1}, {"una", 0, 3}, {"##ffa", 3, 6}, {"##ble", 6, 9}, {"[SEP]", -1, -1}}},
		// A CJK ideograph is a word of its own; the spaces put around it are not in its offsets.
		{"a中b", []tokOffset{{"[CLS]", -1, -1}, {"a", 0, 1}, {"中", 1, 4}, {"b", 4, 5}, {"[SEP]", -1, -1}}},
		// A control character is dropped; the words around it keep their places.
		{"x\u200by", []tokOffset{{"[CLS]", -1, -1}, {"x", 0, 1}, {"##y", 4, 5}, {"[SEP]", -1, -1}}},
		// [SEP] typed in the text is an added token found in it, not a special token of the template.
		{"[SEP] a", []tokOffset{{"[CLS]", -1, -1}, {"[SEP]", 0, 5}, {"a", 6, 7}, {"[SEP]", -1, -1}}},
		{"", []tokOffset{{"[CLS]", -1, -1}, {"[SEP]", -1, -1}}},
	} {
		if got := tokOffsets(t, tok, tt.text, true); !slices.Equal(got, tt.want) {
			t.Errorf("Tokenize(%q) =\n %v\nwant\n %v", tt.text, got, tt.want)
		}
	}
	if got := tokOffsets(t, tok, "Héllo", false); !slices.Equal(got, []tokOffset{{"hello", 0, 6}}) {
		t.Errorf("without special tokens: %v", got)
	}
}

// The byte offsets of text-embeddings-inference's own tokenizer test (core/src/tokenization.rs, BAAI/bge-m3, an
// XLM-R Unigram tokenizer with Metaspace): the ▁ that Metaspace prepends stands for the first character (0–3), the
// piece after it starts at 0 too. The vocabulary here is a small one with the pieces that segmentation needs.
func TestTokenizeOffsetsMetaspacePrepend(t *testing.T) {
	file := `{
  "added_tokens": [
    {"id": 0, "content": "<s>", "special": true, "normalized": false},
    {"id": 1, "content": "<pad>", "special": true, "normalized": false},
    {"id": 2, "content": "</s>", "special": true, "normalized": false},
    {"id": 3, "content": "<unk>", "special": true, "normalized": false}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [0]}, "</s>": {"id": "</s>", "ids": [2]}}},
  "model": {"type": "Unigram", "unk_id": 3, "vocab": [["<s>", 0], ["<pad>", 0], ["</s>", 0], ["<unk>", 0],
    ["▁", -1], ["这是一个", -2], ["文本", -2], ["向量化", -2], ["的", -2], ["测试", -2], ["句子", -2],
    ["这", -9], ["是", -9], ["一", -9], ["个", -9], ["文", -9], ["本", -9], ["向", -9], ["量", -9], ["化", -9],
    ["测", -9], ["试", -9], ["句", -9], ["子", -9], ["▁world", -3], ["hello", -3]]}
}`
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(Config{Path: path, MaxLength: 512})
	if err != nil {
		t.Fatal(err)
	}
	want := []tokOffset{{"<s>", -1, -1}, {"▁", 0, 3}, {"这是一个", 0, 12}, {"文本", 12, 18}, {"向量化", 18, 27},
		{"的", 27, 30}, {"测试", 30, 36}, {"句子", 36, 42}, {"</s>", -1, -1}}
	if got := tokOffsets(t, tok, "这是一个文本向量化的测试句子", true); !slices.Equal(got, want) {
		t.Errorf("got\n %v\nwant\n %v", got, want)
	}
	// A ▁ that replaced a space stands for that space.
	want = []tokOffset{{"▁", 0, 1}, {"hello", 0, 5}, {"▁world", 5, 11}}
	if got := tokOffsets(t, tok, "hello world", false); !slices.Equal(got, want) {
		t.Errorf("got\n %v\nwant\n %v", got, want)
	}
}

// RoBERTa-style byte-level BPE: the leading Ġ of a word is trimmed off its offsets (trim_offsets), a character
// split over several byte tokens gives each of them the whole character.
func TestTokenizeOffsetsByteLevel(t *testing.T) {
	tok := tokLoad(t, "bpe", 512)
	got := tokOffsets(t, tok, "Hello world", true)
	if len(got) < 4 || got[0].start != -1 || got[len(got)-1].start != -1 {
		t.Fatalf("got %v", got)
	}
	words := got[1 : len(got)-1]
	var rebuilt []string
	for _, w := range words {
		rebuilt = append(rebuilt, "Hello world"[w.start:w.end])
	}
	// The word pieces cover the text's words without their spaces, in order.
	if strings.Join(rebuilt, "") != "Helloworld" {
		t.Errorf("offsets %v cover %q", words, rebuilt)
	}
	got = tokOffsets(t, tok, "é", false)
	for _, g := range got {
		if g.start != 0 || g.end != 2 {
			t.Errorf("Tokenize(é) = %v: every token of the character covers bytes 0–2", got)
		}
	}
}

func TestTokenizeRefusesInvalidUTF8(t *testing.T) {
	tok := tokLoad(t, "bert-base-uncased", 512)
	if _, err := tok.Tokenize("a\xffb", true); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("err = %v", err)
	}
}

func TestEncodeKeepingEnd(t *testing.T) {
	tok := tokLoad(t, "bert-base-uncased", 5)
	enc, err := tok.EncodeKeeping("one two three four five", KeepEnd)
	if err != nil {
		t.Fatal(err)
	}
	if got := tokTokens(tok, enc.IDs); !slices.Equal(got, []string{"[CLS]", "three", "four", "five", "[SEP]"}) || !enc.Truncated {
		t.Errorf("KeepEnd: %q truncated=%v", got, enc.Truncated)
	}
	// A pair: the longer text is cut first, at its start.
	enc, err = tok.EncodePairKeeping("a", "one two three", KeepEnd)
	if err != nil {
		t.Fatal(err)
	}
	if got := tokTokens(tok, enc.IDs); !slices.Equal(got, []string{"[CLS]", "a", "[SEP]", "three", "[SEP]"}) {
		t.Errorf("pair KeepEnd: %q", got)
	}
}

// Every token's ids and offsets equal those of Hugging Face tokenizers' Rust crate (testdata/*/offsets.json, written
// by scripts/golden/rust.mjs) over the whole corpus. The golden offsets count characters, as the crate's Encoding
// char offsets: ours are mapped from bytes the way the crate maps them (tokCharOffsets).
func TestTokenizeOffsetsGolden(t *testing.T) {
	corpus := tokLoadCorpus(t)
	for _, name := range tokGoldenTokenizers {
		t.Run(name, func(t *testing.T) {
			var golden struct {
				Cases []struct {
					Single  int       `json:"single"`
					IDs     []int64   `json:"ids"`
					Offsets []*[2]int `json:"offsets"` // null for a special token
				} `json:"cases"`
			}
			tokLoadJSON(t, filepath.Join("testdata", name, "offsets.json"), &golden)
			if len(golden.Cases) != len(corpus.Single) {
				t.Fatalf("offsets.json has %d cases, want %d: regenerate it (scripts/golden)", len(golden.Cases), len(corpus.Single))
			}
			tok := tokLoad(t, name, 1<<20)
			passed := 0
			for _, c := range golden.Cases {
				text := corpus.Single[c.Single]
				got, err := tok.Tokenize(text, true)
				if err != nil {
					t.Errorf("%q: %v", text, err)
					continue
				}
				got = tokCharOffsets(text, got)
				want := make([]TokenOffsets, len(c.IDs))
				for i, id := range c.IDs {
					want[i] = TokenOffsets{ID: id, Special: c.Offsets[i] == nil}
					if o := c.Offsets[i]; o != nil {
						want[i].Start, want[i].End = o[0], o[1]
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("%q:\n got  %v\n want %v\n tokens %q", text, got, want, tokTokens(tok, c.IDs))
					continue
				}
				passed++
			}
			t.Logf("%s: %d/%d texts with Hugging Face's ids and offsets", name, passed, len(golden.Cases))
		})
	}
}

// tokCharOffsets maps byte offsets to character offsets as tokenizers' BytesToCharOffsetConverter does: each byte to
// the index of the character it is part of; an end at the text's end to one past the character before it.
func tokCharOffsets(text string, toks []TokenOffsets) []TokenOffsets {
	charOf := make([]int, len(text))
	n := 0
	for i, r := range text {
		for j := i; j < i+utf8.RuneLen(r) && j < len(text); j++ {
			charOf[j] = n
		}
		n++
	}
	out := make([]TokenOffsets, len(toks))
	for i, t := range toks {
		out[i] = t
		if t.Special || t.Start >= len(text) {
			continue
		}
		out[i].Start = charOf[t.Start]
		if t.End < len(text) {
			out[i].End = charOf[t.End]
		} else {
			out[i].End = charOf[len(text)-1] + 1
		}
	}
	return out
}

// The ByteLevel normalizer is the ByteLevel pre-tokenizer's byte mapping without its split: with it and no
// pre-tokenizer, the test BPE model gives the ids and offsets it gives with a ByteLevel pre-tokenizer that neither
// splits nor adds a space.
func TestByteLevelNormalizer(t *testing.T) {
	var file map[string]any
	tokLoadJSON(t, tokPath(t, "bpe"), &file)
	variant := func(normalizer, pre any) *Tokenizer {
		file["normalizer"], file["pre_tokenizer"], file["post_processor"] = normalizer, pre, nil
		data, err := json.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "tokenizer.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tok, err := Load(Config{Path: path, MaxLength: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	norm := variant(map[string]any{"type": "ByteLevel"}, nil)
	pre := variant(nil, map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false})
	for _, text := range tokLoadCorpus(t).Single {
		if !utf8.ValidString(text) {
			continue
		}
		a, errA := norm.Tokenize(text, false)
		b, errB := pre.Tokenize(text, false)
		if errA != nil || errB != nil || !slices.Equal(a, b) {
			t.Fatalf("%q: normalizer %v (%v), pre-tokenizer %v (%v)", text, a, errA, b, errB)
		}
	}
	if got := tokTokens(norm, tokEncode(t, norm, "héllo").IDs); strings.Join(got, "") != "hÃ©llo" {
		t.Errorf("héllo: %q", got)
	}
}
