package tokenizer

import (
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Offsets: Tokenize gives every token the byte range of the input it stands for, as Hugging Face tokenizers'
// Encoding offsets do. tokenizers keeps, for every byte of a NormalizedString, the range of the original it came
// from, and every normalizer and pre-tokenizer step carries those alignments along. Encode has no use for them and
// stays on plain strings (it is the hot path); Tokenize runs the same steps on an alignedText, which keeps that
// range per byte. Each step below produces exactly the string its plain version does (the golden tests hold
// Tokenize's ids equal to Hugging Face's, as Encode's) and aligns what it writes as NormalizedString::transform does
// (tokenizer/normalizer.rs): a unit of n characters written as m, the first min(n, m) in order take the alignments
// of the characters they replace, the last of them also swallows the rest when m < n, and the characters beyond
// n are inserted, taking the alignment of the character before them. A token's offsets are its first byte's start
// and its last byte's end. TestTokenizeOffsetsGolden compares them with the Rust crate's.

// alignedText is a string and, for each of its bytes, the byte range [lo, hi) of the original input it comes from.
type alignedText struct {
	s      string
	lo, hi []int32
}

// newAlignedText aligns s to itself, shifted by base: every byte of a character to the whole character.
func newAlignedText(s string, base int) alignedText {
	a := alignedText{s: s, lo: make([]int32, len(s)), hi: make([]int32, len(s))}
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		for j := i; j < i+n; j++ {
			a.lo[j], a.hi[j] = int32(base+i), int32(base+i+n)
		}
		i += n
	}
	return a
}

// span returns the original range of a.s[i:j], which must not be empty: its first byte's start, its last byte's
// end (NormalizedString::convert_offsets).
func (a alignedText) span(i, j int) (lo, hi int) {
	return int(a.lo[i]), int(a.hi[j-1])
}

// slice is a.s[i:j] with its alignments.
func (a alignedText) slice(i, j int) alignedText {
	return alignedText{s: a.s[i:j], lo: a.lo[i:j], hi: a.hi[i:j]}
}

// alignedBuilder writes an alignedText piece by piece.
type alignedBuilder struct {
	b      strings.Builder
	lo, hi []int32
}

func newAlignedBuilder(size int) *alignedBuilder {
	ab := &alignedBuilder{lo: make([]int32, 0, size), hi: make([]int32, 0, size)}
	ab.b.Grow(size)
	return ab
}

// write appends out, every byte of it aligned to the original range [lo, hi).
func (ab *alignedBuilder) write(out string, lo, hi int) {
	ab.b.WriteString(out)
	for range len(out) {
		ab.lo, ab.hi = append(ab.lo, int32(lo)), append(ab.hi, int32(hi))
	}
}

// copy appends a's bytes [i, j) with their own alignments.
func (ab *alignedBuilder) copy(a alignedText, i, j int) {
	ab.b.WriteString(a.s[i:j])
	ab.lo, ab.hi = append(ab.lo, a.lo[i:j]...), append(ab.hi, a.hi[i:j]...)
}

func (ab *alignedBuilder) text() alignedText {
	return alignedText{s: ab.b.String(), lo: ab.lo, hi: ab.hi}
}

// mapUnits cuts a.s into units (next returns the length of the one at the start of its argument, at least 1) and
// writes f of each, aligned as transform aligns a unit's replacement (see the top of this file).
func mapUnits(a alignedText, next func(string) int, f func(string) string) alignedText {
	ab := newAlignedBuilder(len(a.s))
	for i := 0; i < len(a.s); {
		n := max(1, min(next(a.s[i:]), len(a.s)-i))
		unit := a.s[i : i+n]
		out := f(unit)
		if out == unit {
			ab.copy(a, i, i+n)
		} else {
			ab.replace(a, i, unit, out)
		}
		i += n
	}
	return ab.text()
}

// replace writes out in place of unit, which starts at a.s[at:]: its k-th character takes the alignment of the
// unit's k-th, those beyond the unit's length that of the unit's last.
func (ab *alignedBuilder) replace(a alignedText, at int, unit, out string) {
	in := at // the unit's character that out's next one replaces
	for _, r := range out {
		if in < at+len(unit) {
			ab.write(string(r), int(a.lo[in]), int(a.hi[in]))
			_, n := utf8.DecodeRuneInString(a.s[in:])
			in += n
			continue
		}
		ab.write(string(r), int(a.lo[in-1]), int(a.hi[in-1]))
	}
}

func nextRune(s string) int {
	_, n := utf8.DecodeRuneInString(s)
	return n
}

// mapRunes is mapUnits one character at a time.
func mapRunes(a alignedText, f func(r rune) string) alignedText {
	return mapUnits(a, nextRune, func(unit string) string {
		r, _ := utf8.DecodeRuneInString(unit)
		return f(r)
	})
}

// The normalizers' aligned steps.

func (n bertNormalizer) normalizeAligned(a alignedText) alignedText {
	if n.cleanText || n.handleChineseChars {
		a = mapRunes(a, func(r rune) string {
			if n.cleanText {
				if r == 0 || r == utf8.RuneError || isBertControl(r) {
					return ""
				}
				if isBertWhitespace(r) {
					r = ' '
				}
			}
			if n.handleChineseChars && isChineseChar(r) {
				return " " + string(r) + " "
			}
			return string(r)
		})
	}
	if n.stripAccents {
		a = unicodeNormalizer{norm.NFD}.normalizeAligned(a)
		a = stripAccentsNormalizer{}.normalizeAligned(a)
	}
	if n.lowercase {
		a = lowercaseNormalizer{}.normalizeAligned(a)
	}
	return a
}

// normalizeAligned normalizes one segment at a time (the norm package's boundaries): the same string as the whole
// at once, each segment aligned to what it was made of.
func (n unicodeNormalizer) normalizeAligned(a alignedText) alignedText {
	return mapUnits(a, func(s string) int { return n.form.NextBoundaryInString(s, true) }, n.form.String)
}

func (lowercaseNormalizer) normalizeAligned(a alignedText) alignedText {
	return mapRunes(a, func(r rune) string { return lowercase(string(r)) })
}

func (stripAccentsNormalizer) normalizeAligned(a alignedText) alignedText {
	return mapRunes(a, func(r rune) string {
		if isNonspacingMark(r) {
			return ""
		}
		return string(r)
	})
}

func (n stripNormalizer) normalizeAligned(a alignedText) alignedText {
	isSpace := func(r rune) bool { return unicode.Is(unicode.White_Space, r) }
	i, j := 0, len(a.s)
	if n.left {
		i = len(a.s) - len(strings.TrimLeftFunc(a.s, isSpace))
	}
	if n.right {
		j = i + len(strings.TrimRightFunc(a.s[i:], isSpace))
	}
	return a.slice(i, j)
}

// normalizeAligned: the prefix is aligned to the first character (NormalizedString::prepend).
func (n prependNormalizer) normalizeAligned(a alignedText) alignedText {
	if a.s == "" {
		return a
	}
	ab := newAlignedBuilder(len(n.prefix) + len(a.s))
	ab.write(n.prefix, int(a.lo[0]), int(a.hi[0]))
	ab.copy(a, 0, len(a.s))
	return ab.text()
}

func (n replaceNormalizer) normalizeAligned(a alignedText) alignedText {
	var matches [][]int
	if n.re != nil {
		matches = n.re.FindAllStringIndex(a.s, -1)
	} else {
		for i := 0; i <= len(a.s)-len(n.literal); {
			k := strings.Index(a.s[i:], n.literal)
			if k < 0 {
				break
			}
			matches = append(matches, []int{i + k, i + k + len(n.literal)})
			i += k + len(n.literal)
		}
	}
	// NormalizedString::replace removes the match and inserts the content: every character of it takes the
	// alignment of the byte before, the match's last (nothing before the text's start: 0, 0).
	ab := newAlignedBuilder(len(a.s))
	prev := 0
	for _, m := range matches {
		ab.copy(a, prev, m[0])
		switch {
		case m[1] > 0:
			ab.write(n.with, int(a.lo[m[1]-1]), int(a.hi[m[1]-1]))
		case len(a.s) > 0: // an empty match at the start: the section's own start
			ab.write(n.with, int(a.lo[0]), int(a.lo[0]))
		default:
			ab.write(n.with, 0, 0)
		}
		prev = m[1]
	}
	ab.copy(a, prev, len(a.s))
	return ab.text()
}

func (p *precompiledNormalizer) normalizeAligned(a alignedText) alignedText {
	ab := newAlignedBuilder(len(a.s))
	p.each(a.s, func(out string, i, j int) {
		if out == a.s[i:j] {
			ab.copy(a, i, j)
		} else {
			ab.replace(a, i, a.s[i:j], out)
		}
	})
	return ab.text()
}

func (s sequenceNormalizer) normalizeAligned(a alignedText) alignedText {
	for _, n := range s {
		a = n.normalizeAligned(a)
	}
	return a
}

// The pre-tokenizers' aligned splits.

func (seq sequencePreTokenizer) splitAligned(dst []alignedText, a alignedText, origin bool) []alignedText {
	words := []alignedText{a}
	for _, p := range seq {
		var next []alignedText
		for i, w := range words {
			next = p.splitAligned(next, w, origin && i == 0 && strings.HasPrefix(a.s, w.s))
		}
		words = next
	}
	return append(dst, words...)
}

func (p bertPreTokenizer) splitAligned(dst []alignedText, a alignedText, _ bool) []alignedText {
	bertWords(a.s, func(i, j int) { dst = append(dst, a.slice(i, j)) })
	return dst
}

func (whitespaceSplitPreTokenizer) splitAligned(dst []alignedText, a alignedText, _ bool) []alignedText {
	whitespaceSplitWords(a.s, func(i, j int) { dst = append(dst, a.slice(i, j)) })
	return dst
}

func (whitespacePreTokenizer) splitAligned(dst []alignedText, a alignedText, _ bool) []alignedText {
	whitespaceWords(a.s, func(i, j int) { dst = append(dst, a.slice(i, j)) })
	return dst
}

// splitAligned: a replacement character stands for the space it replaced; a prepended one is aligned to the first
// character.
func (m metaspacePreTokenizer) splitAligned(dst []alignedText, a alignedText, origin bool) []alignedText {
	if a.s == "" {
		return dst
	}
	a = mapRunes(a, func(r rune) string {
		if r == ' ' {
			return m.repStr
		}
		return string(r)
	})
	if !strings.HasPrefix(a.s, m.repStr) && (m.scheme == prependAlways || m.scheme == prependFirst && origin) {
		ab := newAlignedBuilder(len(m.repStr) + len(a.s))
		ab.write(m.repStr, int(a.lo[0]), int(a.hi[0]))
		ab.copy(a, 0, len(a.s))
		a = ab.text()
	}
	if !m.splitWords {
		return append(dst, a)
	}
	m.words(a.s, func(i, j int) { dst = append(dst, a.slice(i, j)) })
	return dst
}

// splitAligned: each byte's character is aligned to that byte's range (so to the whole character it is part of),
// the prefix space to the first character.
func (p byteLevelPreTokenizer) splitAligned(dst []alignedText, a alignedText, _ bool) []alignedText {
	if a.s == "" {
		return dst
	}
	if p.addPrefixSpace && a.s[0] != ' ' {
		ab := newAlignedBuilder(len(a.s) + 1)
		ab.write(" ", int(a.lo[0]), int(a.hi[0]))
		ab.copy(a, 0, len(a.s))
		a = ab.text()
	}
	at := make([]int, len(a.s)+1) // where the characters of each byte start in the mapped text
	ab := newAlignedBuilder(2 * len(a.s))
	for i := 0; i < len(a.s); i++ {
		at[i] = ab.b.Len()
		ab.write(byteLevelChars[a.s[i]], int(a.lo[i]), int(a.hi[i]))
	}
	at[len(a.s)] = ab.b.Len()
	mapped := ab.text()
	if !p.useRegex {
		return append(dst, mapped)
	}
	for i := 0; i < len(a.s); {
		n := gpt2WordLen(a.s, i)
		dst = append(dst, mapped.slice(at[i], at[i+n]))
		i += n
	}
	return dst
}

// TokenOffsets is one token of Tokenize.
type TokenOffsets struct {
	ID int64
	// Special marks a token the post-processor's template added ([CLS], </s>): it stands for no text, and Start
	// and End are 0.
	Special bool
	// Start and End are the byte range of the input the token stands for.
	Start, End int
}

// Tokenize returns the tokens of text with their offsets, as Hugging Face tokenizers' encode with offsets does,
// and without truncation: every token of the text, with the template's special tokens when special is true. The
// ids are those Encode gives, before truncation. text must be valid UTF-8 (offsets count its bytes).
func (t *Tokenizer) Tokenize(text string, special bool) (toks []TokenOffsets, err error) {
	defer func() {
		if r := recover(); r != nil {
			toks, err = nil, fmt.Errorf("%w: %v", ErrInternal, r)
		}
	}()
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenizer: the text is not valid UTF-8")
	}
	var seq []TokenOffsets
	var values []string // per token of seq, the added tokens' matched text
	var words []alignedText
	var pieces []wordPiece
	for _, seg := range t.rawAdded.split(nil, text) {
		if seg.token >= 0 {
			// Its offsets cover the whitespace lstrip and rstrip swallowed, and so does its value.
			seq = append(seq, TokenOffsets{ID: t.rawAdded.tokens[seg.token].id, Start: seg.start, End: seg.start + len(seg.text)})
			values = append(values, seg.text)
			continue
		}
		normalized := newAlignedText(seg.text, seg.start)
		if t.normalizer != nil {
			normalized = t.normalizer.normalizeAligned(normalized)
		}
		for _, sub := range t.normAdded.split(nil, normalized.s) {
			if sub.token >= 0 {
				lo, hi := normalized.span(sub.start, sub.start+len(sub.text))
				seq = append(seq, TokenOffsets{ID: t.normAdded.tokens[sub.token].id, Start: lo, End: hi})
				values = append(values, sub.text)
				continue
			}
			if sub.text == "" {
				continue
			}
			section := normalized.slice(sub.start, sub.start+len(sub.text))
			words = words[:0]
			if t.preTok != nil {
				words = t.preTok.splitAligned(words, section, seg.start == 0 && sub.start == 0)
			} else {
				words = append(words, section)
			}
			for _, w := range words {
				if pieces, err = t.model.appendPieces(pieces[:0], w.s); err != nil {
					return nil, fmt.Errorf("tokenizer: %w", err)
				}
				for _, p := range pieces {
					lo, hi := w.span(p.start, p.end)
					seq = append(seq, TokenOffsets{ID: p.id, Start: lo, End: hi})
					values = append(values, "")
				}
			}
		}
	}
	if t.post.trim != nil {
		// The value of an added token found in the text is what it matched there (tokenizers'
		// AddedVocabulary::split_with_indices), of the others their vocabulary string.
		t.post.trim.apply(seq, func(i int) string {
			if values[i] != "" {
				return values[i]
			}
			return t.Token(seq[i].ID)
		})
	}
	if !special {
		return seq, nil
	}
	for _, part := range t.post.single {
		if part.special == nil {
			toks = append(toks, seq...)
			continue
		}
		for _, id := range part.special {
			toks = append(toks, TokenOffsets{ID: id, Special: true})
		}
	}
	return toks, nil
}

// Count returns the tokens of one text, or of a pair of texts, with the special tokens and without truncation.
func (t *Tokenizer) Count(texts ...string) (int, error) {
	if len(texts) == 0 || len(texts) > 2 || len(texts) == 2 && !t.post.hasPair {
		return 0, fmt.Errorf("tokenizer: cannot count %d texts", len(texts))
	}
	n := t.post.added(len(texts) == 2)
	for _, text := range texts {
		ids, err := t.encodeSequence(text, math.MaxInt-1)
		if err != nil {
			return 0, fmt.Errorf("tokenizer: %w", err)
		}
		n += len(ids)
	}
	return n, nil
}

// wordPiece is one token of a word and the bytes of the word it covers.
type wordPiece struct {
	id         int64
	start, end int
}

// trimOffsets is the offset trimming of tokenizers' ByteLevel post-processor and RobertaProcessing (trim_offsets,
// processors/byte_level.rs process_offsets): a token's offsets leave out the spaces (Ġ or whitespace) its string
// starts or ends with, except the one space add_prefix_space put before the first word.
type trimOffsets struct {
	addPrefixSpace bool
}

func (tr *trimOffsets) apply(toks []TokenOffsets, value func(i int) string) {
	space := []rune(byteLevelChars[' '])[0]
	isSpace := func(r rune) bool { return r == space || unicode.IsSpace(r) }
	for i := range toks {
		t := &toks[i]
		v := value(i)
		leading := 0
		for _, r := range v {
			if !isSpace(r) {
				break
			}
			leading++
		}
		trailing := 0
		for j := len(v); j > 0; {
			r, n := utf8.DecodeLastRuneInString(v[:j])
			if !isSpace(r) {
				break
			}
			trailing++
			j -= n
		}
		// Counted in characters, applied to byte offsets, as tokenizers does (the spaces are one byte each).
		if leading > 0 {
			if (i == 0 || t.Start == 0) && tr.addPrefixSpace && leading == 1 {
				leading = 0
			}
			t.Start = min(t.Start+leading, t.End)
		}
		if trailing > 0 && t.End >= trailing {
			t.End = max(t.End-trailing, t.Start)
		}
	}
}
