package tokenizer

//lint:file-ignore ST1005 errors start with the pre-tokenizer type tokenizer.json names ("Metaspace")

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Pre-tokenizers split a normalized section of text into the words the model sees, following tokenizers'
// pre_tokenizers/ (bert.rs, metaspace.rs, whitespace.rs, byte_level.rs, sequence.rs). sugarme's BertPreTokenizer
// splits on Go's ASCII-only \s, so U+00A0, U+3000 and the like did not separate words; these work on Unicode
// properties.

// preTokenizer appends the words of s to dst. origin reports whether s starts at the very beginning of the input,
// which is what Metaspace's prepend_scheme "first" looks at (tokenizers: offsets_original().0 == 0).
type preTokenizer interface {
	split(dst []string, s string, origin bool) []string
	// splitAligned is split with the alignments kept (see offsets.go).
	splitAligned(dst []alignedText, s alignedText, origin bool) []alignedText
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
	case "ByteLevel":
		// add_prefix_space has no default in tokenizers' deserializer (trim_offsets neither, but it only moves
		// offsets); use_regex defaults to true.
		if cfg.AddPrefixSpace == nil {
			return nil, errors.New(`ByteLevel: "add_prefix_space" is missing`)
		}
		p := byteLevelPreTokenizer{addPrefixSpace: *cfg.AddPrefixSpace, useRegex: true}
		if cfg.UseRegex != nil {
			p.useRegex = *cfg.UseRegex
		}
		return p, nil
	case "Split":
		return buildSplit(cfg)
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
	bertWords(s, func(i, j int) { dst = append(dst, s[i:j]) })
	return dst
}

// bertWords calls word with the byte range of each of BertPreTokenizer's words of s, in order.
func bertWords(s string, word func(i, j int)) {
	start := -1 // start of the current word, -1 outside one
	for i, r := range s {
		switch {
		case unicode.Is(unicode.White_Space, r):
			if start >= 0 {
				word(start, i)
				start = -1
			}
		case isBertPunctuation(r):
			if start >= 0 {
				word(start, i)
				start = -1
			}
			word(i, i+utf8.RuneLen(r))
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		word(start, len(s))
	}
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
	whitespaceSplitWords(s, func(i, j int) { dst = append(dst, s[i:j]) })
	return dst
}

// whitespaceSplitWords calls word with the byte range of each run of s between White_Space characters.
func whitespaceSplitWords(s string, word func(i, j int)) {
	start := -1
	for i, r := range s {
		switch {
		case !isRegexSpace(r) && start < 0:
			start = i
		case isRegexSpace(r) && start >= 0:
			word(start, i)
			start = -1
		}
	}
	if start >= 0 {
		word(start, len(s))
	}
}

// whitespacePreTokenizer is tokenizers' Whitespace, the regex \w+|[^\w\s]+ with Rust regex's Unicode classes:
// runs of word characters and runs of other non-space characters are words.
type whitespacePreTokenizer struct{}

func (whitespacePreTokenizer) split(dst []string, s string, _ bool) []string {
	whitespaceWords(s, func(i, j int) { dst = append(dst, s[i:j]) })
	return dst
}

// whitespaceWords calls word with the byte range of each of Whitespace's words of s.
func whitespaceWords(s string, word func(i, j int)) {
	const (
		none = iota
		wordChars
		other
	)
	start, kind := 0, none
	for i, r := range s {
		k := other
		switch {
		case isRegexSpace(r):
			k = none
		case isRegexWord(r):
			k = wordChars
		}
		if k != kind {
			if kind != none {
				word(start, i)
			}
			start, kind = i, k
		}
	}
	if kind != none {
		word(start, len(s))
	}
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
	m.words(s, func(i, j int) { dst = append(dst, s[i:j]) })
	return dst
}

// words calls word with the byte range of each piece of s cut before every replacement character.
func (m metaspacePreTokenizer) words(s string, word func(i, j int)) {
	start := 0
	for i, r := range s {
		if r == m.replacement && i > start {
			word(start, i)
			start = i
		}
	}
	word(start, len(s))
}

// byteLevelPreTokenizer is tokenizers' ByteLevel pre-tokenizer (GPT-2, RoBERTa): a space is prepended to the
// section unless it starts with one (add_prefix_space), the section is cut into GPT-2's words (use_regex, see
// gpt2WordLen), and every byte of a word becomes the character GPT-2's bytes_to_unicode assigns it, so that the
// BPE model works on bytes spelled as printable characters ("Ġ" for the space).
//
// tokenizers runs this on every split left after the added tokens were cut out (and, in a Sequence, on every
// piece the earlier pre-tokenizers produced), so each of them gets its own prefix space; an empty split stays
// empty (NormalizedString::prepend does nothing on it).
type byteLevelPreTokenizer struct {
	addPrefixSpace, useRegex bool
}

func (p byteLevelPreTokenizer) split(dst []string, s string, _ bool) []string {
	if s == "" {
		return dst
	}
	if p.addPrefixSpace && s[0] != ' ' {
		s = " " + s
	}
	// Map the whole section once, then cut the mapped string where the words of s end.
	mapped := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		mapped = append(mapped, byteLevelChars[s[i]]...)
	}
	text := string(mapped)
	if !p.useRegex {
		return append(dst, text)
	}
	for i, at := 0, 0; i < len(s); {
		n := gpt2WordLen(s, i)
		width := 0
		for j := i; j < i+n; j++ {
			width += len(byteLevelChars[s[j]])
		}
		dst = append(dst, text[at:at+width])
		i, at = i+n, at+width
	}
	return dst
}

// byteLevelChars is GPT-2's bytes_to_unicode (openai/gpt-2 encoder.py, tokenizers' bytes_char), as UTF-8: the
// printable bytes ! … ~, ¡ … ¬ and ® … ÿ stand for themselves, the 68 others, in byte order, for U+0100 onwards
// (the space 0x20 is U+0120 "Ġ", the newline U+010A "Ċ").
var byteLevelChars = func() (table [256]string) {
	n := 0
	for c := range 256 {
		if c >= '!' && c <= '~' || c >= 0xA1 && c <= 0xAC || c >= 0xAE {
			table[c] = string(rune(c))
		} else {
			table[c] = string(rune(256 + n))
			n++
		}
	}
	return table
}()

// gpt2WordLen returns the length in bytes of the word that starts at s[i:] under GPT-2's pattern, which
// tokenizers' ByteLevel runs with Oniguruma (leftmost alternative first, greedy quantifiers, backtracking):
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// Go's regexp has no lookahead, so the alternatives are tried here by hand, in order. Every character is a letter
// (L), a number (N), whitespace (\s, the White_Space property) or other, so some alternative always matches and the
// matches cover the whole string; none is empty. The one alternative that backtracks is \s+(?!\S): a run of
// whitespace followed by a non-space character gives it back its last character (which a following " ?\p{L}+" and
// the like then start with, when it is a space); a run of one such character is \s+ on its own. Each word is
// scanned once, so splitting is linear in the length of s.
func gpt2WordLen(s string, i int) int {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return 3
			}
		}
	}
	// " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional space, then a run of one class.
	start, class := i, gpt2Class(r)
	if r == ' ' && i+1 < len(s) {
		next, _ := utf8.DecodeRuneInString(s[i+1:])
		if c := gpt2Class(next); c != gpt2Space {
			start, class = i+1, c
		}
	}
	if class != gpt2Space {
		end := start
		for end < len(s) {
			r, size := utf8.DecodeRuneInString(s[end:])
			if gpt2Class(r) != class {
				break
			}
			end += size
		}
		return end - i
	}
	// "\s+(?!\S)", else "\s+".
	end, last := i+size, i
	for end < len(s) {
		r, size := utf8.DecodeRuneInString(s[end:])
		if !isRegexSpace(r) {
			break
		}
		last = end
		end += size
	}
	if end == len(s) || last == i {
		return end - i // the run reaches the end, or is a single character
	}
	return last - i
}

type gpt2CharClass uint8

const (
	gpt2Space gpt2CharClass = iota
	gpt2Letter
	gpt2Number
	gpt2Other
)

// gpt2Class sorts a character into the classes of the GPT-2 pattern: \s (White_Space), \p{L}, \p{N}, the rest.
func gpt2Class(r rune) gpt2CharClass {
	if r < utf8.RuneSelf {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			return gpt2Letter
		case r >= '0' && r <= '9':
			return gpt2Number
		case r == ' ' || r >= '\t' && r <= '\r':
			return gpt2Space
		}
		return gpt2Other
	}
	switch {
	case unicode.IsLetter(r):
		return gpt2Letter
	case unicode.IsNumber(r):
		return gpt2Number
	case isRegexSpace(r):
		return gpt2Space
	}
	return gpt2Other
}
