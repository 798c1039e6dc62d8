package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// The types in this file mirror the parts of Hugging Face's tokenizer.json that the tokenizer uses. The whole file
// is decoded into them before anything else happens: a value of the wrong JSON type, a missing required field or a
// component type we do not implement becomes an error here, so that nothing later ever sees a file it cannot
// handle.

// hfTokenizerFile is the top level of tokenizer.json. "truncation", "padding" and "decoder" are not decoded into
// components: Config.MaxLength replaces the file's truncation and padding is never applied (padding is read
// only for its pad id), and we never decode ids back to text.
type hfTokenizerFile struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         json.RawMessage `json:"model"`
	Padding       *hfPadding      `json:"padding"`
}

type hfAddedToken struct {
	ID         *int64 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	// Normalized defaults to !Special when absent, as in transformers' AddedToken.
	Normalized *bool `json:"normalized"`
	Special    bool  `json:"special"`
}

type hfPadding struct {
	PadID    *int64 `json:"pad_id"`
	PadToken string `json:"pad_token"`
}

// hfModel holds the fields of the three model types we support; Vocab is an object (WordPiece, BPE) or an array
// of [piece, score] pairs (Unigram) and is decoded once the type is known, as are BPE's merges ("a b" strings or
// [a, b] pairs).
type hfModel struct {
	Type string `json:"type"`

	// WordPiece and BPE.
	UnkToken                *string `json:"unk_token"`
	ContinuingSubwordPrefix *string `json:"continuing_subword_prefix"`

	// WordPiece.
	MaxInputCharsPerWord *int `json:"max_input_chars_per_word"`

	// Unigram and BPE.
	ByteFallback bool `json:"byte_fallback"`

	// Unigram.
	UnkID *int `json:"unk_id"`

	// BPE.
	Dropout         *float64        `json:"dropout"`
	EndOfWordSuffix *string         `json:"end_of_word_suffix"`
	FuseUnk         bool            `json:"fuse_unk"`
	IgnoreMerges    bool            `json:"ignore_merges"`
	Merges          json.RawMessage `json:"merges"`

	Vocab json.RawMessage `json:"vocab"`
}

type hfNormalizer struct {
	Type string `json:"type"`

	// BertNormalizer. Absent fields take the defaults of tokenizers' BertNormalizer::default().
	CleanText          *bool `json:"clean_text"`
	HandleChineseChars *bool `json:"handle_chinese_chars"`
	StripAccents       *bool `json:"strip_accents"`
	Lowercase          *bool `json:"lowercase"`

	// Sequence.
	Normalizers []json.RawMessage `json:"normalizers"`

	// Replace.
	Pattern *hfPattern `json:"pattern"`
	Content *string    `json:"content"`

	// Prepend.
	Prepend *string `json:"prepend"`

	// Strip.
	StripLeft  bool `json:"strip_left"`
	StripRight bool `json:"strip_right"`

	// Precompiled.
	PrecompiledCharsmap *string `json:"precompiled_charsmap"`
}

type hfPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type hfPreTokenizer struct {
	Type string `json:"type"`

	// Metaspace and ByteLevel.
	AddPrefixSpace *bool `json:"add_prefix_space"`

	// Metaspace.
	Replacement   *string `json:"replacement"`
	PrependScheme *string `json:"prepend_scheme"`
	Split         *bool   `json:"split"`

	// ByteLevel (its trim_offsets is the post-processor's business).
	UseRegex *bool `json:"use_regex"`

	// Split.
	Pattern  *hfPattern `json:"pattern"`
	Behavior string     `json:"behavior"`
	Invert   bool       `json:"invert"`

	// Sequence.
	Pretokenizers []json.RawMessage `json:"pretokenizers"`
}

type hfPostProcessor struct {
	Type string `json:"type"`

	// TemplateProcessing.
	Single        []hfTemplatePiece            `json:"single"`
	Pair          []hfTemplatePiece            `json:"pair"`
	SpecialTokens map[string]hfTemplateSpecial `json:"special_tokens"`

	// BertProcessing and RobertaProcessing: ["[SEP]", 102].
	Sep *hfTokenAndID `json:"sep"`
	Cls *hfTokenAndID `json:"cls"`

	// ByteLevel and RobertaProcessing: both true when absent (their Default).
	TrimOffsets    *bool `json:"trim_offsets"`
	AddPrefixSpace *bool `json:"add_prefix_space"`

	// Sequence.
	Processors []json.RawMessage `json:"processors"`
}

// trimOffsets is the offset trimming the post-processor asks for, nil for none.
func (cfg hfPostProcessor) trimOffsets() *trimOffsets {
	if cfg.TrimOffsets != nil && !*cfg.TrimOffsets {
		return nil
	}
	return &trimOffsets{addPrefixSpace: cfg.AddPrefixSpace == nil || *cfg.AddPrefixSpace}
}

type hfTemplatePiece struct {
	SpecialToken *struct {
		ID     string `json:"id"`
		TypeID int64  `json:"type_id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID     string `json:"id"`
		TypeID int64  `json:"type_id"`
	} `json:"Sequence"`
}

type hfTemplateSpecial struct {
	ID  string  `json:"id"`
	IDs []int64 `json:"ids"`
}

// hfTokenAndID is the [token, id] pair of BertProcessing and RobertaProcessing.
type hfTokenAndID struct {
	Token string
	ID    int64
}

func (p *hfTokenAndID) UnmarshalJSON(data []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if len(raw) != 2 {
		return fmt.Errorf("want [token, id], got %d elements", len(raw))
	}
	if err := json.Unmarshal(raw[0], &p.Token); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if err := json.Unmarshal(raw[1], &p.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	return nil
}

// hfUnigramPiece is one [piece, score] entry of a Unigram vocabulary.
type hfUnigramPiece struct {
	Piece string
	Score float64
}

func (p *hfUnigramPiece) UnmarshalJSON(data []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if len(raw) != 2 {
		return fmt.Errorf("want [piece, score], got %d elements", len(raw))
	}
	if err := json.Unmarshal(raw[0], &p.Piece); err != nil {
		return fmt.Errorf("piece: %w", err)
	}
	if err := json.Unmarshal(raw[1], &p.Score); err != nil {
		return fmt.Errorf("score: %w", err)
	}
	if math.IsNaN(p.Score) || math.IsInf(p.Score, 0) {
		return fmt.Errorf("score of %q is not finite", p.Piece)
	}
	return nil
}

// isJSONNull reports whether a component is absent or null; both mean "no such component" in tokenizer.json.
func isJSONNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// decodeStrict decodes one JSON value, refusing trailing data.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// parseTokenizerFile decodes and checks the top level of tokenizer.json.
func parseTokenizerFile(data []byte) (*hfTokenizerFile, *hfModel, error) {
	if !utf8.Valid(data) {
		return nil, nil, errors.New("file is not valid UTF-8")
	}
	var f hfTokenizerFile
	if err := decodeStrict(data, &f); err != nil {
		return nil, nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if isJSONNull(f.Model) {
		return nil, nil, errors.New(`"model" is missing`)
	}
	var m hfModel
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return nil, nil, fmt.Errorf("model: %w", err)
	}
	switch m.Type {
	case "WordPiece", "Unigram", "BPE":
	case "":
		return nil, nil, errors.New(`model: "type" is missing`)
	default:
		return nil, nil, fmt.Errorf("model: unsupported type %q (supported: WordPiece, Unigram, BPE)", m.Type)
	}
	if isJSONNull(m.Vocab) {
		return nil, nil, errors.New(`model: "vocab" is missing`)
	}
	for i, at := range f.AddedTokens {
		if at.ID == nil {
			return nil, nil, fmt.Errorf("added_tokens[%d] (%q): \"id\" is missing", i, at.Content)
		}
		if *at.ID < 0 {
			return nil, nil, fmt.Errorf("added_tokens[%d] (%q): negative id %d", i, at.Content, *at.ID)
		}
	}
	return &f, &m, nil
}
