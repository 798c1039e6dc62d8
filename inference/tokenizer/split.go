package tokenizer

//lint:file-ignore ST1005 errors start with the pre-tokenizer type tokenizer.json names ("Split")

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// splitPreTokenizer is tokenizers' Split (pre_tokenizers/split.rs with NormalizedString::split): the matches of a
// pattern, a literal string or a regex, cut the text, and the behavior says what becomes of them: Removed drops
// them, Isolated keeps them as words of their own, MergedWithPrevious and MergedWithNext glue each to the word
// before or after it, Contiguous joins runs of matches (and runs of the text between them). invert makes the text
// between the matches the delimiters instead. Qwen, Llama 3 and GPT-4-style tokenizers split with a regex this
// way, Gemma's with a literal space.
type splitPreTokenizer struct {
	find     func(s string, match func(i, j int))
	behavior splitBehavior
	invert   bool
}

type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

func buildSplit(cfg hfPreTokenizer) (preTokenizer, error) {
	p := splitPreTokenizer{invert: cfg.Invert}
	switch cfg.Behavior {
	case "Removed":
		p.behavior = splitRemoved
	case "Isolated":
		p.behavior = splitIsolated
	case "MergedWithPrevious":
		p.behavior = splitMergedWithPrevious
	case "MergedWithNext":
		p.behavior = splitMergedWithNext
	case "Contiguous":
		p.behavior = splitContiguous
	default:
		return nil, fmt.Errorf("Split: unknown behavior %q", cfg.Behavior)
	}
	switch {
	case cfg.Pattern == nil:
		return nil, errors.New(`Split: "pattern" is missing`)
	case cfg.Pattern.String != nil:
		literal := *cfg.Pattern.String
		if literal == "" {
			return nil, errors.New("Split: empty pattern")
		}
		p.find = func(s string, match func(i, j int)) {
			for at := 0; ; {
				k := strings.Index(s[at:], literal)
				if k < 0 {
					return
				}
				match(at+k, at+k+len(literal))
				at += k + len(literal)
			}
		}
	case cfg.Pattern.Regex != nil:
		re, err := compileOnigRegex(*cfg.Pattern.Regex)
		if err != nil {
			return nil, fmt.Errorf("Split: pattern: %w", err)
		}
		p.find = re.findAll
	default:
		return nil, errors.New(`Split: pattern needs "String" or "Regex"`)
	}
	return p, nil
}

func (p splitPreTokenizer) split(dst []string, s string, _ bool) []string {
	p.words(s, func(i, j int) { dst = append(dst, s[i:j]) })
	return dst
}

func (p splitPreTokenizer) splitAligned(dst []alignedText, a alignedText, _ bool) []alignedText {
	p.words(a.s, func(i, j int) { dst = append(dst, a.slice(i, j)) })
	return dst
}

// words calls word with the byte range of each piece of s, as NormalizedString::split folds the pattern's
// matches (Pattern::find_matches: every match, and every stretch between two, in order) under the behavior.
// Empty pieces are dropped.
func (p splitPreTokenizer) words(s string, word func(i, j int)) {
	type piece struct {
		i, j    int
		isMatch bool
	}
	var pieces []piece
	prev := 0
	p.find(s, func(i, j int) {
		if prev != i {
			pieces = append(pieces, piece{prev, i, p.invert})
		}
		pieces = append(pieces, piece{i, j, !p.invert})
		prev = j
	})
	if prev != len(s) {
		pieces = append(pieces, piece{prev, len(s), p.invert})
	}
	var out []piece // the pieces kept; isMatch now means "remove"
	switch p.behavior {
	case splitRemoved:
		out = pieces
	case splitIsolated:
		for _, pc := range pieces {
			out = append(out, piece{pc.i, pc.j, false})
		}
	case splitContiguous:
		previous := false
		for _, pc := range pieces {
			if pc.isMatch == previous && len(out) > 0 {
				out[len(out)-1].j = pc.j
			} else {
				out = append(out, piece{pc.i, pc.j, false})
			}
			previous = pc.isMatch
		}
	case splitMergedWithPrevious:
		previous := false
		for _, pc := range pieces {
			if pc.isMatch && !previous && len(out) > 0 {
				out[len(out)-1].j = pc.j
			} else {
				out = append(out, piece{pc.i, pc.j, false})
			}
			previous = pc.isMatch
		}
	case splitMergedWithNext:
		previous := false
		for k := len(pieces) - 1; k >= 0; k-- {
			pc := pieces[k]
			if pc.isMatch && !previous && len(out) > 0 {
				out[len(out)-1].i = pc.i
			} else {
				out = append(out, piece{pc.i, pc.j, false})
			}
			previous = pc.isMatch
		}
		for l, r := 0, len(out)-1; l < r; l, r = l+1, r-1 {
			out[l], out[r] = out[r], out[l]
		}
	}
	for _, pc := range out {
		if !pc.isMatch && pc.j > pc.i {
			word(pc.i, pc.j)
		}
	}
}

// onigRegex runs a tokenizer.json regex as tokenizers does with Oniguruma, on Go's RE2. The two agree on what
// these patterns use (alternation tried leftmost first, greedy quantifiers, \p{L}-style classes, (?i:…)) except
// for two things, handled here:
//
//   - \s, \S, \d and \w are Unicode classes in Oniguruma (White_Space, Nd, word characters), ASCII in RE2: they are
//     spelled out as Unicode classes before compiling.
//   - RE2 has no lookaround. The one lookahead these patterns use, \s+(?!\S) (GPT-2, GPT-4, Llama 3, Qwen: a run
//     of whitespace, less its last character when a non-space follows), is one alternative matched by code; any
//     other lookaround, atomic group or possessive quantifier is refused rather than misapplied.
//
// Each match is found by trying the alternatives in order at each position, as a backtracking engine does; RE2
// runs each try in linear time, so no pattern backtracks catastrophically.
type onigRegex struct {
	// alternatives are the top-level alternatives in order; nil marks the \s+(?!\S) one.
	alternatives []*regexp.Regexp
	// any finds where the next match can start: every alternative, the lookahead one as \s+.
	any *regexp.Regexp
}

// onigWhiteSpace is the White_Space property, Oniguruma's \s, as the body of a character class.
const onigWhiteSpace = `\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

// onigWord is Oniguruma's Unicode \w as a class body: letters, letter numbers, marks, decimal numbers, connector
// punctuation and the joiners (as isRegexWord).
const onigWord = `\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}`

const lookaheadSpaces = `\s+(?!\S)`

func compileOnigRegex(pattern string) (*onigRegex, error) {
	alts, err := topLevelAlternatives(pattern)
	if err != nil {
		return nil, err
	}
	re := &onigRegex{}
	var anyParts []string
	for _, alt := range alts {
		if alt == lookaheadSpaces {
			re.alternatives = append(re.alternatives, nil)
			anyParts = append(anyParts, `[`+onigWhiteSpace+`]+`)
			continue
		}
		translated, err := translateOnig(alt)
		if err != nil {
			return nil, err
		}
		compiled, err := regexp.Compile(`^(?:` + translated + `)`)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", alt, err)
		}
		re.alternatives = append(re.alternatives, compiled)
		anyParts = append(anyParts, `(?:`+translated+`)`)
	}
	if re.any, err = regexp.Compile(strings.Join(anyParts, "|")); err != nil {
		return nil, err
	}
	return re, nil
}

// topLevelAlternatives cuts pattern at the | outside groups and classes.
func topLevelAlternatives(pattern string) ([]string, error) {
	var alts []string
	depth, inClass, start := 0, false, 0
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if i+1 < len(pattern) && pattern[i+1] == ']' { // a ] first in a class is a literal
				i++
			}
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			alts = append(alts, pattern[start:i])
			start = i + 1
		}
	}
	if depth != 0 || inClass {
		return nil, fmt.Errorf("%q: unbalanced group or class", pattern)
	}
	return append(alts, pattern[start:]), nil
}

// translateOnig rewrites Oniguruma's Unicode shorthand classes for RE2 and refuses what RE2 would run otherwise
// than Oniguruma: lookaround, atomic groups, possessive quantifiers, anchors (a match is tried at each position of
// the text as the start of a string), flags that reach past a group, nested classes and class intersections.
func translateOnig(pattern string) (string, error) {
	unsupported := func(what string) (string, error) {
		return "", fmt.Errorf("%q: %s is not supported (of lookarounds, only the alternative %s is)", pattern, what, lookaheadSpaces)
	}
	for _, construct := range []string{"(?=", "(?!", "(?<=", "(?<!", "(?>", "++", "*+", "?+", "&&"} {
		if strings.Contains(pattern, construct) {
			return unsupported(construct)
		}
	}
	var b strings.Builder
	inClass := false
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == '\\' && i+1 < len(pattern):
			e := pattern[i+1]
			i++
			if strings.IndexByte("AzZbBGK", e) >= 0 {
				return unsupported("the anchor \\" + string(e))
			}
			var body string
			negated := false
			switch e {
			case 's':
				body = onigWhiteSpace
			case 'S':
				body, negated = onigWhiteSpace, true
			case 'd':
				body = `\p{Nd}`
			case 'D':
				body, negated = `\p{Nd}`, true
			case 'w':
				body = onigWord
			case 'W':
				body, negated = onigWord, true
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
				continue
			}
			switch {
			case inClass && negated:
				return "", fmt.Errorf("%q: \\%c inside a character class is not supported", pattern, e)
			case inClass:
				b.WriteString(body)
			case negated:
				b.WriteString("[^" + body + "]")
			default:
				b.WriteString("[" + body + "]")
			}
		case inClass:
			switch c {
			case ']':
				inClass = false
			case '[':
				return unsupported("a class inside a class")
			}
			b.WriteByte(c)
		case c == '^' || c == '$':
			return unsupported("the anchor " + string(c))
		case c == '(' && strings.HasPrefix(pattern[i:], "(?") && !strings.HasPrefix(pattern[i:], "(?:") && !strings.HasPrefix(pattern[i:], "(?i:"):
			return unsupported("the group or flags " + pattern[i:min(len(pattern), i+4)])
		case c == '[':
			inClass = true
			b.WriteByte(c)
			if i+1 < len(pattern) && pattern[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(pattern) && pattern[i+1] == ']' {
				b.WriteByte(']')
				i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// findAll calls match with each match of the regex in s, left to right, as Oniguruma's search does: at the
// leftmost position where some alternative matches, the first alternative that does. An empty match is reported
// too (it cuts the text there) and the search goes on one character further.
func (re *onigRegex) findAll(s string, match func(i, j int)) {
	for at := 0; at <= len(s); {
		loc := re.any.FindStringIndex(s[at:])
		if loc == nil {
			return
		}
		at += loc[0] // no match can start before
		end, ok := re.matchAt(s, at)
		if ok {
			match(at, end)
		}
		if ok && end > at {
			at = end
			continue
		}
		// An empty match, or the superset matched here but no alternative does (the lookahead one refused): the
		// next match starts after this character.
		if at == len(s) {
			return
		}
		_, n := utf8.DecodeRuneInString(s[at:])
		at += n
	}
}

// matchAt returns the end of the match that starts at s[at:], if any.
func (re *onigRegex) matchAt(s string, at int) (int, bool) {
	for _, alt := range re.alternatives {
		if alt == nil {
			if end, ok := lookaheadSpacesAt(s, at); ok {
				return end, true
			}
			continue
		}
		if loc := alt.FindStringIndex(s[at:]); loc != nil {
			return at + loc[1], true
		}
	}
	return 0, false
}

// lookaheadSpacesAt matches \s+(?!\S) at s[at:]: the whitespace run there, less its last character when a
// non-space follows it (the run must then be two characters at least).
func lookaheadSpacesAt(s string, at int) (int, bool) {
	end, last, runes := at, at, 0
	for end < len(s) {
		r, n := utf8.DecodeRuneInString(s[end:])
		if !isRegexSpace(r) {
			break
		}
		last, end, runes = end, end+n, runes+1
	}
	switch {
	case runes == 0:
		return 0, false
	case end == len(s):
		return end, true
	case runes >= 2:
		return last, true
	}
	return 0, false
}
