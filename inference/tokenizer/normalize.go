package tokenizer

//lint:file-ignore ST1005 errors start with the normalizer type tokenizer.json names ("Precompiled")

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
	"golang.org/x/text/unicode/norm"
)

// The normalizers here are our own rather than sugarme's: sugarme's BertNormalizer turns "strip_accents": null into
// false (café → [UNK] under bert-base-uncased), its clean_text and whitespace handling miss Unicode spaces, and its
// Precompiled normalizer rewrites non-spacing marks into "U+0301" strings. Each type below follows the normalizer of
// the same name in Hugging Face tokenizers (tokenizers/src/normalizers/), on plain strings: we need ids, not the
// offset alignments that NormalizedString tracks.

// textNormalizer is one tokenizer.json "normalizer".
type textNormalizer interface {
	normalize(s string) string
	// normalizeAligned is normalize with the alignments kept (see offsets.go).
	normalizeAligned(a alignedText) alignedText
}

func buildNormalizer(raw json.RawMessage) (textNormalizer, error) {
	if isJSONNull(raw) {
		return nil, nil
	}
	var cfg hfNormalizer
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	switch cfg.Type {
	case "BertNormalizer":
		n := bertNormalizer{cleanText: true, handleChineseChars: true, lowercase: true}
		if cfg.CleanText != nil {
			n.cleanText = *cfg.CleanText
		}
		if cfg.HandleChineseChars != nil {
			n.handleChineseChars = *cfg.HandleChineseChars
		}
		if cfg.Lowercase != nil {
			n.lowercase = *cfg.Lowercase
		}
		// tokenizers: `strip_accents.unwrap_or(lowercase)`: null strips accents exactly when lowercasing.
		n.stripAccents = n.lowercase
		if cfg.StripAccents != nil {
			n.stripAccents = *cfg.StripAccents
		}
		return n, nil
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "StripAccents":
		return stripAccentsNormalizer{}, nil
	case "Strip":
		return stripNormalizer{left: cfg.StripLeft, right: cfg.StripRight}, nil
	case "Prepend":
		if cfg.Prepend == nil {
			return nil, errors.New(`Prepend: "prepend" is missing`)
		}
		return prependNormalizer{prefix: *cfg.Prepend}, nil
	case "Replace":
		return buildReplaceNormalizer(cfg)
	case "ByteLevel":
		return byteLevelNormalizer{}, nil
	case "Precompiled":
		if cfg.PrecompiledCharsmap == nil {
			return nil, errors.New(`Precompiled: "precompiled_charsmap" is missing`)
		}
		data, err := base64.StdEncoding.DecodeString(*cfg.PrecompiledCharsmap)
		if err != nil {
			return nil, fmt.Errorf("Precompiled: precompiled_charsmap: %w", err)
		}
		n, err := newPrecompiledNormalizer(data)
		if err != nil {
			return nil, fmt.Errorf("Precompiled: %w", err)
		}
		return n, nil
	case "Sequence":
		var seq sequenceNormalizer
		for i, sub := range cfg.Normalizers {
			n, err := buildNormalizer(sub)
			if err != nil {
				return nil, fmt.Errorf("Sequence[%d]: %w", i, err)
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		return seq, nil
	case "":
		return nil, errors.New(`"type" is missing`)
	default:
		return nil, fmt.Errorf("unsupported type %q", cfg.Type)
	}
}

func buildReplaceNormalizer(cfg hfNormalizer) (textNormalizer, error) {
	if cfg.Pattern == nil || cfg.Content == nil {
		return nil, errors.New(`Replace: "pattern" and "content" are required`)
	}
	switch {
	case cfg.Pattern.String != nil:
		if *cfg.Pattern.String == "" {
			return nil, errors.New("Replace: empty pattern")
		}
		return replaceNormalizer{literal: *cfg.Pattern.String, with: *cfg.Content}, nil
	case cfg.Pattern.Regex != nil:
		// tokenizers compiles with Oniguruma: the pattern is translated as Split's are (Unicode \s and the like), and
		// what RE2 would run otherwise is refused rather than misapplied.
		translated, err := translateOnig(*cfg.Pattern.Regex)
		if err != nil {
			return nil, fmt.Errorf("Replace: pattern: %w", err)
		}
		re, err := regexp.Compile(translated)
		if err != nil {
			return nil, fmt.Errorf("Replace: pattern: %w", err)
		}
		return replaceNormalizer{re: re, with: *cfg.Content}, nil
	default:
		return nil, errors.New(`Replace: pattern needs "String" or "Regex"`)
	}
}

type sequenceNormalizer []textNormalizer

func (s sequenceNormalizer) normalize(text string) string {
	for _, n := range s {
		text = n.normalize(text)
	}
	return text
}

// bertNormalizer is tokenizers' BertNormalizer (normalizers/bert.rs), steps in its order: clean text, pad Chinese
// characters with spaces, strip accents (NFD, then drop Mn), lowercase.
type bertNormalizer struct {
	cleanText, handleChineseChars, stripAccents, lowercase bool
}

func (n bertNormalizer) normalize(s string) string {
	if n.cleanText || n.handleChineseChars {
		b := make([]byte, 0, len(s)+8)
		for _, r := range s {
			if n.cleanText {
				if r == 0 || r == utf8.RuneError || isBertControl(r) {
					continue
				}
				if isBertWhitespace(r) {
					r = ' '
				}
			}
			if n.handleChineseChars && isChineseChar(r) {
				b = append(b, ' ')
				b = utf8.AppendRune(b, r)
				b = append(b, ' ')
				continue
			}
			b = utf8.AppendRune(b, r)
		}
		s = string(b)
	}
	if n.stripAccents {
		s = stripNonspacingMarks(norm.NFD.String(s))
	}
	if n.lowercase {
		s = lowercase(s)
	}
	return s
}

// isBertWhitespace: tab, newline and carriage return are control characters that BERT counts as whitespace; the
// rest is Rust's char::is_whitespace, the White_Space property.
func isBertWhitespace(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.White_Space, r)
}

// isBertControl is tokenizers' is_control: unicode_categories' is_other(), which is Cc, Cf and Co (it leaves out
// Cn despite its comment), except tab, newline and carriage return.
func isBertControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co)
}

// isChineseChar is the CJK ideograph test of tokenizers' BertNormalizer, code point ranges included: only these
// blocks are split into single characters; Hangul, kana and the like stay words.
func isChineseChar(r rune) bool {
	switch {
	case r >= 0x4E00 && r <= 0x9FFF,
		r >= 0x3400 && r <= 0x4DBF,
		r >= 0x20000 && r <= 0x2A6DF,
		r >= 0x2A700 && r <= 0x2B73F,
		r >= 0x2B740 && r <= 0x2B81F,
		r >= 0x2B920 && r <= 0x2CEAF,
		r >= 0xF900 && r <= 0xFAFF,
		r >= 0x2F800 && r <= 0x2FA1F:
		return true
	}
	return false
}

// stripNonspacingMarks drops Mn characters, as tokenizers' StripAccents does (callers decompose first).
func stripNonspacingMarks(s string) string {
	if !strings.ContainsFunc(s, isNonspacingMark) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isNonspacingMark(r) {
			return -1
		}
		return r
	}, s)
}

func isNonspacingMark(r rune) bool { return unicode.Is(unicode.Mn, r) }

// lowercase maps every character on its own, like tokenizers' NormalizedString::lowercase (Rust's
// char::to_lowercase). Go's unicode.ToLower agrees except for U+0130, whose full lowercase mapping is two
// characters; and, unlike JavaScript's toLowerCase, there is no context-dependent final sigma: "ΟΔΟΣ" → "οδοσ".
func lowercase(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r == '\u0130' {
			b = append(b, "i\u0307"...)
			continue
		}
		b = utf8.AppendRune(b, unicode.ToLower(r))
	}
	return string(b)
}

type unicodeNormalizer struct{ form norm.Form }

func (n unicodeNormalizer) normalize(s string) string { return n.form.String(s) }

type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) string { return lowercase(s) }

// stripAccentsNormalizer is tokenizers' StripAccents: it removes Mn characters and nothing else (no decomposition,
// which files put before it as NFD/NFKD). tokenizers.js removes every \p{M}; we follow the Rust crate.
type stripAccentsNormalizer struct{}

func (stripAccentsNormalizer) normalize(s string) string { return stripNonspacingMarks(s) }

// stripNormalizer is tokenizers' Strip: White_Space at either end.
type stripNormalizer struct{ left, right bool }

func (n stripNormalizer) normalize(s string) string {
	isSpace := func(r rune) bool { return unicode.Is(unicode.White_Space, r) }
	if n.left {
		s = strings.TrimLeftFunc(s, isSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, isSpace)
	}
	return s
}

// prependNormalizer is tokenizers' Prepend, which leaves an empty string empty.
type prependNormalizer struct{ prefix string }

func (n prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return n.prefix + s
}

// byteLevelNormalizer is tokenizers' ByteLevel normalizer: every byte of the text becomes the character GPT-2's
// bytes_to_unicode gives it, as the ByteLevel pre-tokenizer does without splitting.
type byteLevelNormalizer struct{}

func (byteLevelNormalizer) normalize(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteString(byteLevelChars[s[i]])
	}
	return b.String()
}

// normalizeAligned: each byte's character takes the alignment of the character the byte is part of.
func (byteLevelNormalizer) normalizeAligned(a alignedText) alignedText {
	ab := newAlignedBuilder(2 * len(a.s))
	for i := 0; i < len(a.s); i++ {
		ab.write(byteLevelChars[a.s[i]], int(a.lo[i]), int(a.hi[i]))
	}
	return ab.text()
}

// replaceNormalizer is tokenizers' Replace: every non-overlapping match, left to right, becomes content (taken
// literally, no group references).
type replaceNormalizer struct {
	literal string         // a String pattern
	re      *regexp.Regexp // or a Regex one
	with    string
}

func (n replaceNormalizer) normalize(s string) string {
	if n.re != nil {
		return n.re.ReplaceAllLiteralString(s, n.with)
	}
	return strings.ReplaceAll(s, n.literal, n.with)
}

// precompiledNormalizer is SentencePiece's normalizer as tokenizers runs it (normalizers/precompiled.rs with the
// spm_precompiled crate): precompiled_charsmap is [u32 trie size][darts-clone double-array trie][NUL-separated
// replacement strings]. We read the double array ourselves, with bounds checks, instead of through sugarme's
// spm.Precompiled, which indexes without them (a corrupt charsmap would panic mid-request) and whose Normalize
// mangles non-spacing marks.
type precompiledNormalizer struct {
	trie       []uint32
	normalized string
}

func newPrecompiledNormalizer(data []byte) (*precompiledNormalizer, error) {
	if len(data) < 4 {
		return nil, errors.New("charsmap shorter than its header")
	}
	size := binary.LittleEndian.Uint32(data)
	rest := data[4:]
	if size%4 != 0 || uint64(size) > uint64(len(rest)) {
		return nil, fmt.Errorf("charsmap trie size %d does not fit its %d bytes", size, len(rest))
	}
	trie := make([]uint32, size/4)
	for i := range trie {
		trie[i] = binary.LittleEndian.Uint32(rest[4*i:])
	}
	normalized := rest[size:]
	if !utf8.Valid(normalized) {
		return nil, errors.New("charsmap replacement strings are not UTF-8")
	}
	if len(trie) == 0 {
		return nil, errors.New("charsmap has an empty trie")
	}
	return &precompiledNormalizer{trie: trie, normalized: string(normalized)}, nil
}

// transform returns the replacement of the shortest charsmap key that prefixes chunk (spm_precompiled's
// Precompiled::transform takes the first common-prefix result). An empty replacement is a deletion.
func (p *precompiledNormalizer) transform(chunk string) (string, bool) {
	t := p.trie
	pos := dartsOffset(t[0])
	for i := 0; i < len(chunk); i++ {
		c := chunk[i]
		if c == 0 {
			break
		}
		pos ^= uint32(c)
		if uint64(pos) >= uint64(len(t)) {
			return "", false
		}
		unit := t[pos]
		if dartsLabel(unit) != uint32(c) {
			return "", false
		}
		pos ^= dartsOffset(unit)
		if uint64(pos) >= uint64(len(t)) {
			return "", false
		}
		if dartsHasLeaf(unit) {
			start := int(dartsValue(t[pos]))
			if start > len(p.normalized) {
				return "", false
			}
			end := strings.IndexByte(p.normalized[start:], 0)
			if end < 0 {
				end = len(p.normalized) - start
			}
			out := p.normalized[start : start+end]
			if !utf8.ValidString(out) { // a start inside a character: Rust would panic slicing the str
				return "", false
			}
			return out, true
		}
	}
	return "", false
}

func dartsHasLeaf(u uint32) bool  { return (u>>8)&1 == 1 }
func dartsValue(u uint32) uint32  { return u & (1<<31 - 1) }
func dartsLabel(u uint32) uint32  { return u & (1<<31 | 0xFF) }
func dartsOffset(u uint32) uint32 { return (u >> 10) << ((u & (1 << 9)) >> 6) }

func (p *precompiledNormalizer) normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	p.each(s, func(out string, _, _ int) { b.WriteString(out) })
	return b.String()
}

// each calls emit with the normalized form of each unit of s and the unit's byte range.
func (p *precompiledNormalizer) each(s string, emit func(out string, i, j int)) {
	state := -1
	for at, rest := 0, s; rest != ""; {
		var grapheme string
		grapheme, rest, _, state = uniseg.FirstGraphemeClusterInString(rest, state)
		start := at
		at += len(grapheme)
		// Whole graphemes shorter than 6 bytes are looked up first, then each character on its own: SentencePiece's
		// behaviour, reproduced as is by tokenizers ("Yes, this is weird").
		if len(grapheme) < 6 {
			if out, ok := p.transform(grapheme); ok {
				emit(out, start, at)
				continue
			}
		}
		for i := 0; i < len(grapheme); {
			_, size := utf8.DecodeRuneInString(grapheme[i:])
			part := grapheme[i : i+size]
			if out, ok := p.transform(part); ok {
				emit(out, start+i, start+i+size)
			} else {
				emit(part, start+i, start+i+size)
			}
			i += size
		}
	}
}
