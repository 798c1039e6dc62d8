package chunking

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// Word and sentence segmentation for the chunkers.
//
// Elasticsearch segments with ICU's BreakIterator (Locale.ROOT): word
// boundaries per UAX #29 and a word counted when the segment's rule status
// is not WORD_NONE, i.e. the segment holds letters, digits, kana or
// ideographs; sentences per UAX #29. Here uniseg finds the UAX #29
// boundaries, isWordSegment gives the statuses, and splitLikeICU and
// sentenceEnds correct the few places where ICU's root rules (or uniseg)
// differ. Checked against ICU4J running Elasticsearch's chunkers on
// thousands of random texts mixing Latin, Cyrillic, Greek, Hebrew, Arabic,
// Hangul, digits, punctuation, emoji and all line terminators: the same
// boundaries, statuses and chunks. The differences that remain:
//
//   - ICU splits runs of Han, Hiragana and Katakana with its CJ dictionary,
//     and Thai, Lao, Khmer and Myanmar with theirs, into dictionary words.
//     uniseg has no dictionaries: each ideograph, each Hiragana letter and
//     each Thai/Lao/Khmer/Myanmar grapheme cluster is a word here (Katakana
//     runs stay one word, UAX #29 rule WB13). So such text counts more words
//     than in Elasticsearch (Japanese about 1.6x, Chinese 1.7x, Thai 3.3x
//     on sample texts) and its chunks hold less text: never more, so they
//     stay within a model's input length wherever Elasticsearch's do. Only
//     a long Katakana compound, which ICU's dictionary may split, counts
//     fewer words here (one).
//   - uniseg follows Unicode 15.0 and ICU its own Unicode version; they
//     may differ on characters added or reclassified since.

// wordSegs is the UAX #29 word segmentation of a string.
type wordSegs struct {
	// bounds are the byte offsets of the boundaries: 0, ..., len(s).
	bounds []int
	// cum[k] is how many of the segments ending at bounds[1..k] are
	// words; cum[0] = 0. The segment ending at bounds[k] is a word when
	// cum[k] > cum[k-1]: ICU's rule status of boundary k.
	cum []int
}

func segmentWords(s string) *wordSegs {
	ws := &wordSegs{bounds: make([]int, 1, len(s)/3+2), cum: make([]int, 1, len(s)/3+2)}
	pos, n, state := 0, 0, -1
	rest := s
	add := func(seg string) {
		pos += len(seg)
		if isWordSegment(seg) {
			n++
		}
		ws.bounds = append(ws.bounds, pos)
		ws.cum = append(ws.cum, n)
	}
	for len(rest) > 0 {
		var seg string
		seg, rest, state = uniseg.FirstWordInString(rest, state)
		splitLikeICU(seg, add)
	}
	return ws
}

// splitLikeICU passes on a uniseg word segment, cut where ICU's root rules
// break and UAX #29's do not:
//   - ICU handles Hangul syllables as a dictionary script, not as ALetter:
//     a run of them is one word, joined to nothing else ("API를" is two
//     words, "A.한" three segments). The rest of the segment is segmented
//     again on its own.
//   - ICU takes the colons out of MidLetter (as CLDR does): "a:b" is
//     three segments there, one in UAX #29. A colon inside a segment can
//     only be such a MidLetter.
func splitLikeICU(seg string, add func(string)) {
	if !isWordSegment(seg) {
		add(seg)
		return
	}
	if !strings.ContainsFunc(seg, isHangulSyllable) || !strings.ContainsFunc(seg, func(r rune) bool {
		return !isHangulSyllable(r) && !isExtendOrFormat(r)
	}) {
		splitColons(seg, add)
		return
	}
	start, inHangul := 0, false
	flush := func(end int) {
		part := seg[start:end]
		start = end
		if part == "" {
			return
		}
		if inHangul {
			add(part)
			return
		}
		for state := -1; part != ""; {
			var sub string
			sub, part, state = uniseg.FirstWordInString(part, state)
			splitColons(sub, add)
		}
	}
	for i, r := range seg {
		if isExtendOrFormat(r) || i == 0 {
			inHangul = inHangul || i == 0 && isHangulSyllable(r)
			continue
		}
		if h := isHangulSyllable(r); h != inHangul {
			flush(i)
			inHangul = h
		}
	}
	flush(len(seg))
}

func isHangulSyllable(r rune) bool { return 0xAC00 <= r && r <= 0xD7A3 }

// splitColons cuts a word segment around its colons.
func splitColons(seg string, add func(string)) {
	for isWordSegment(seg) {
		i := strings.IndexAny(seg, ":\uFE55\uFF1A")
		if i < 0 {
			break
		}
		if i > 0 {
			add(seg[:i])
		}
		// The colon keeps the extending characters after it.
		_, size := utf8.DecodeRuneInString(seg[i:])
		j := i + size
		for j < len(seg) {
			r, size := utf8.DecodeRuneInString(seg[j:])
			if !isExtendOrFormat(r) {
				break
			}
			j += size
		}
		add(seg[i:j])
		seg = seg[j:]
	}
	if seg != "" {
		add(seg)
	}
}

func isExtendOrFormat(r rune) bool {
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc, unicode.Cf)
}

// last is the index of the final boundary (len(s)); 0 for "".
func (ws *wordSegs) last() int { return len(ws.bounds) - 1 }

// isWord reports ICU's "rule status != WORD_NONE" for boundary k.
func (ws *wordSegs) isWord(k int) bool { return k > 0 && ws.cum[k] > ws.cum[k-1] }

// preceding is ICU's BreakIterator.preceding(offset) as the chunkers use
// it: the index of the last boundary before offset, or of boundary 0 when
// offset is 0 (ICU then stays on 0, whose status is WORD_NONE).
func (ws *wordSegs) preceding(offset int) int {
	k := sort.SearchInts(ws.bounds, offset) // first bound >= offset
	if k == 0 {
		return 0
	}
	return k - 1
}

// countWords is ChunkerUtils.countWords(start, end): from preceding(start)
// it counts the word statuses of every boundary up to end. Like
// Elasticsearch it includes the status of the boundary preceding(start)
// lands on, which is the segment before start: a sentence that follows a
// word without punctuation ("Hello\nWorld") counts that word too.
func (ws *wordSegs) countWords(start, end int) int {
	p := ws.preceding(start)
	m := sort.Search(len(ws.bounds), func(i int) bool { return ws.bounds[i] > end }) - 1
	if m < p {
		return 0
	}
	if p == 0 {
		return ws.cum[m]
	}
	return ws.cum[m] - ws.cum[p-1]
}

// skipWords is SentenceBoundaryChunker.skipWords: from preceding(start) it
// walks boundaries until numWords word statuses were seen and returns the
// boundary after the last of them (len(s) when the text ends first).
func (ws *wordSegs) skipWords(start, numWords int) int {
	k := ws.preceding(start)
	count := 0
	for k <= ws.last() && count < numWords {
		if ws.isWord(k) {
			count++
		}
		k++
	}
	if k > ws.last() {
		return ws.bounds[ws.last()]
	}
	return ws.bounds[k]
}

// sentenceEnds are the UAX #29 sentence boundaries after 0 (ICU's
// getSentenceInstance next() values): empty for "".
//
// uniseg v0.4.7 breaks in two places UAX #29 (and ICU) does not: between
// CR and LF after a sentence terminator ("Hi.\r\n", rule SB3), and before
// the paragraph separator that follows "!" or "?" and spaces ("Hi! \n",
// rule SB10). Both are breaks right before a paragraph separator (\n, \r,
// U+0085, U+2028, U+2029), which UAX #29 only allows after another one
// (SB4), never after \r when the separator is \n; such boundaries are
// dropped, which joins the separator to its sentence as ICU does.
func sentenceEnds(s string) []int {
	var ends []int
	pos, state := 0, -1
	rest := s
	for len(rest) > 0 {
		var seg string
		seg, rest, state = uniseg.FirstSentenceInString(rest, state)
		pos += len(seg)
		if pos < len(s) && strayBreakBeforeParaSep(s, pos) {
			continue
		}
		ends = append(ends, pos)
	}
	return ends
}

// strayBreakBeforeParaSep reports a boundary at pos (0 < pos < len(s))
// that UAX #29 does not allow: before a paragraph separator that does not
// follow one, or between \r and \n.
func strayBreakBeforeParaSep(s string, pos int) bool {
	next, _ := utf8.DecodeRuneInString(s[pos:])
	if !isParaSep(next) {
		return false
	}
	prev, _ := utf8.DecodeLastRuneInString(s[:pos])
	return !isParaSep(prev) || prev == '\r' && next == '\n'
}

func isParaSep(r rune) bool {
	return r == '\n' || r == '\r' || r == '\u0085' || r == '\u2028' || r == '\u2029'
}

// isWordSegment reports whether a word segment holds a letter, digit, kana
// or ideograph: what gives it a rule status other than WORD_NONE in ICU.
// ICU also gives a word status to a run of two or more connectors ("__",
// rule WB13a), though not to a single one, and none to a segment that ends
// in ZWJ and an emoji (rule WB3c, whose status is WORD_NONE), letters before them or not.
func isWordSegment(seg string) bool {
	for rest := seg; ; {
		i := strings.Index(rest, "\u200d")
		if i < 0 {
			break
		}
		rest = rest[i+len("\u200d"):]
		if r, _ := utf8.DecodeRuneInString(rest); rest != "" && isPictographic(r) {
			return false
		}
	}
	connectors := 0
	for i := 0; i < len(seg); {
		c := seg[i]
		if c < utf8.RuneSelf {
			switch {
			case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9':
				return true
			case c == '_':
				connectors++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(seg[i:])
		if wordRune(r) {
			return true
		}
		if unicode.Is(unicode.Pc, r) || r == '\u202F' {
			connectors++
		}
		i += size
	}
	return connectors >= 2
}

// isPictographic approximates Extended_Pictographic (emoji): the symbols
// that WB3c joins to a preceding ZWJ.
func isPictographic(r rune) bool {
	return r >= 0x1F000 && r <= 0x1FFFD || r == 0x203C || r == 0x2049 ||
		unicode.Is(unicode.So, r) && !wordRune(r)
}

// wordRune approximates the UAX #29 word-break classes that ICU gives a
// word status: ALetter, Hebrew_Letter, Numeric, Katakana, and the
// dictionary scripts (Ideographic, Hiragana, South-East Asian letters).
// Those are letters, decimal digits, letter numbers and the alphabetic
// symbols (circled letters), plus a few modifier symbols and punctuation
// that UAX #29 makes ALetter.
func wordRune(r rune) bool {
	if unicode.Is(notALetter, r) {
		return false
	}
	if unicode.IsLetter(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Nl, r) {
		return true
	}
	if unicode.IsMark(r) {
		return false
	}
	return unicode.Is(unicode.Other_Alphabetic, r) || unicode.Is(aLetterExtra, r)
}

// aLetterExtra are the ALetter, Numeric and Katakana code points of
// WordBreakProperty.txt (Unicode 15.0) that are neither letters, digits nor
// alphabetic. aLetterExtra and notALetter were checked against uniseg's
// tables: with them wordRune matches those classes (plus the dictionary
// scripts) for every code point.
var aLetterExtra = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x02C2, Hi: 0x02C5, Stride: 1},
		{Lo: 0x02D2, Hi: 0x02D7, Stride: 1},
		{Lo: 0x02DE, Hi: 0x02DF, Stride: 1},
		{Lo: 0x02E5, Hi: 0x02EB, Stride: 1},
		{Lo: 0x02ED, Hi: 0x02ED, Stride: 1},
		{Lo: 0x02EF, Hi: 0x02FF, Stride: 1},
		{Lo: 0x055A, Hi: 0x055C, Stride: 1},
		{Lo: 0x055E, Hi: 0x055E, Stride: 1},
		{Lo: 0x058A, Hi: 0x058A, Stride: 1},
		{Lo: 0x05F3, Hi: 0x05F3, Stride: 1},
		{Lo: 0x066B, Hi: 0x066B, Stride: 1},
		{Lo: 0x309B, Hi: 0x309C, Stride: 1},
		{Lo: 0x30A0, Hi: 0x30A0, Stride: 1},
		{Lo: 0x32D0, Hi: 0x32FE, Stride: 1},
		{Lo: 0x3300, Hi: 0x3357, Stride: 1},
		{Lo: 0xA708, Hi: 0xA716, Stride: 1},
		{Lo: 0xA720, Hi: 0xA721, Stride: 1},
		{Lo: 0xA789, Hi: 0xA78A, Stride: 1},
		{Lo: 0xAB5B, Hi: 0xAB5B, Stride: 1},
	},
}

// notALetter are letters or alphabetic symbols that UAX #29 classes as
// Extend or Extended_Pictographic (emoji such as U+24C2 and U+1F170).
var notALetter = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x24C2, Hi: 0x24C2, Stride: 1},
		{Lo: 0xFF9E, Hi: 0xFF9F, Stride: 1},
	},
	R32: []unicode.Range32{
		{Lo: 0x1F170, Hi: 0x1F171, Stride: 1},
		{Lo: 0x1F17E, Hi: 0x1F17F, Stride: 1},
	},
}
