package inference

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Pre-tokenizers split a normalized section of text into the words the model sees, following tokenizers'
// pre_tokenizers/ (bert.rs, metaspace.rs, whitespace.rs, sequence.rs). sugarme's BertPreTokenizer splits on Go's
// ASCII-only \s, so U+00A0, U+3000 and the like did not separate words; these work on Unicode properties.

// preTokenizer appends the words of s to dst. origin reports whether s starts at the very beginning of the input,
// which is what Metaspace's prepend_scheme "first" looks at (tokenizers: offsets_original().0 == 0).
type preTokenizer interface {
	split(dst []string, s string, origin bool) []string
}

func buildPreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	if isJSONNull(raw) {
		return nil, nil
	}
	var cfg hfPreTokenizer
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	switch cfg.Type {
	case "BertPreTokenizer":
		return bertPreTokenizer{}, nil
	case "Whitespace":
		return whitespacePreTokenizer{}, nil
	case "WhitespaceSplit":
		return whitespaceSplitPreTokenizer{}, nil
	case "Metaspace":
		return buildMetaspace(cfg)
	case "Sequence":
		var seq sequencePreTokenizer
		for i, sub := range cfg.Pretokenizers {
			p, err := buildPreTokenizer(sub)
			if err != nil {
				return nil, fmt.Errorf("Sequence[%d]: %w", i, err)
			}
			if p != nil {
				seq = append(seq, p)
			}
		}
		return seq, nil
	case "":
		return nil, errors.New(`"type" is missing`)
	default:
		return nil, fmt.Errorf("unsupported type %q", cfg.Type)
	}
}

func buildMetaspace(cfg hfPreTokenizer) (preTokenizer, error) {
	m := metaspacePreTokenizer{replacement: '▁', scheme: prependAlways, splitWords: true}
	if cfg.Replacement != nil {
		r, size := utf8.DecodeRuneInString(*cfg.Replacement)
		if size == 0 || size != len(*cfg.Replacement) {
			return nil, fmt.Errorf("Metaspace: replacement %q is not one character", *cfg.Replacement)
		}
		m.replacement = r
	}
	if cfg.PrependScheme != nil {
		switch *cfg.PrependScheme {
		case "always":
			m.scheme = prependAlways
		case "first":
			m.scheme = prependFirst
		case "never":
			m.scheme = prependNever
		default:
			return nil, fmt.Errorf("Metaspace: unknown prepend_scheme %q", *cfg.PrependScheme)
		}
	}
	// Older files say add_prefix_space instead; false means never (tokenizers' Metaspace deserializer).
	if cfg.AddPrefixSpace != nil && !*cfg.AddPrefixSpace {
		m.scheme = prependNever
	}
	if cfg.Split != nil {
		m.splitWords = *cfg.Split
	}
	m.repStr = string(m.replacement)
	return m, nil
}

type sequencePreTokenizer []preTokenizer

func (seq sequencePreTokenizer) split(dst []string, s string, origin bool) []string {
	words := []string{s}
	for _, p := range seq {
		var next []string
		for i, w := range words {
			// Only the first piece can still start at the input's beginning (an approximation of tokenizers'
			// original offsets that is exact unless a normalizer dropped leading characters).
			next = p.split(next, w, origin && i == 0 && strings.HasPrefix(s, w))
		}
		words = next
	}
	return append(dst, words...)
}

// bertPreTokenizer is tokenizers' BertPreTokenizer: whitespace (removed) separates words, and every punctuation
// character is a word of its own.
type bertPreTokenizer struct{}

func (bertPreTokenizer) split(dst []string, s string, _ bool) []string {
	start := -1 // start of the current word, -1 outside one
	for i, r := range s {
		switch {
		case unicode.Is(unicode.White_Space, r):
			if start >= 0 {
				dst = append(dst, s[start:i])
				start = -1
			}
		case isBertPunctuation(r):
			if start >= 0 {
				dst = append(dst, s[start:i])
				start = -1
			}
			dst = append(dst, s[i:i+utf8.RuneLen(r)])
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		dst = append(dst, s[start:])
	}
	return dst
}

// isBertPunctuation is tokenizers' is_bert_punc: ASCII punctuation (which includes symbols such as $ + < = > ^ `
// | ~) or a Unicode P* character.
func isBertPunctuation(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= '!' && r <= '/' || r >= ':' && r <= '@' || r >= '[' && r <= '`' || r >= '{' && r <= '~'
	}
	return unicode.IsPunct(r)
}

// whitespaceSplitPreTokenizer is tokenizers' WhitespaceSplit: words are the runs between White_Space characters.
type whitespaceSplitPreTokenizer struct{}

func (whitespaceSplitPreTokenizer) split(dst []string, s string, _ bool) []string {
	for w := range strings.FieldsFuncSeq(s, isRegexSpace) {
		dst = append(dst, w)
	}
	return dst
}

// whitespacePreTokenizer is tokenizers' Whitespace, the regex \w+|[^\w\s]+ with Rust regex's Unicode classes:
// runs of word characters and runs of other non-space characters are words.
type whitespacePreTokenizer struct{}

func (whitespacePreTokenizer) split(dst []string, s string, _ bool) []string {
	const (
		none = iota
		word
		other
	)
	start, kind := 0, none
	for i, r := range s {
		k := other
		switch {
		case isRegexSpace(r):
			k = none
		case isRegexWord(r):
			k = word
		}
		if k != kind {
			if kind != none {
				dst = append(dst, s[start:i])
			}
			start, kind = i, k
		}
	}
	if kind != none {
		dst = append(dst, s[start:])
	}
	return dst
}

// isRegexSpace is \s of Rust's regex crate: the White_Space property.
func isRegexSpace(r rune) bool { return unicode.Is(unicode.White_Space, r) }

// isRegexWord is \w of Rust's regex crate: Alphabetic, M, Nd, Pc and Join_Control.
func isRegexWord(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	}
	return unicode.IsLetter(r) || unicode.In(r, unicode.Nl, unicode.Other_Alphabetic, unicode.M, unicode.Nd,
		unicode.Pc, unicode.Join_Control)
}

type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

// metaspacePreTokenizer is tokenizers' Metaspace: spaces become the replacement character (▁), one is prepended
// per prepend_scheme, and with split the text is cut before every replacement character (MergedWithNext).
type metaspacePreTokenizer struct {
	replacement rune
	repStr      string
	scheme      prependScheme
	splitWords  bool
}

func (m metaspacePreTokenizer) split(dst []string, s string, origin bool) []string {
	if s == "" {
		// NormalizedString::prepend does nothing on an empty string, and empty splits are dropped.
		return dst
	}
	// Only the ASCII space is replaced (NormalizedString::replace(' ', …)), not other whitespace.
	s = strings.ReplaceAll(s, " ", m.repStr)
	if !strings.HasPrefix(s, m.repStr) &&
		(m.scheme == prependAlways || m.scheme == prependFirst && origin) {
		s = m.repStr + s
	}
	if !m.splitWords {
		return append(dst, s)
	}
	start := 0
	for i, r := range s {
		if r == m.replacement && i > start {
			dst = append(dst, s[start:i])
			start = i
		}
	}
	return append(dst, s[start:])
}
