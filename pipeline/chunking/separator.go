package chunking

import (
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"

	"github.com/jetinfer/jetinfer/config"
)

// Separators of the recursive chunker are Java regexes that Elasticsearch
// compiles with Pattern.MULTILINE and runs with Matcher.find() over a region
// of the input (opaque, anchoring bounds: the region is matched as if it
// were the whole text). Only the start of each match matters: it begins the
// next piece.
//
// Three kinds of matcher, picked per pattern:
//   - The lookaround patterns of the built-in separator groups
//     (plaintext's "(?<!\n)\n\n(?!\n)" and "(?<!\n)\n(?!\n)", markdown's
//     setext headings "\n^(?!\s*$).*\n-{1,}\n" and "...={1,}\n") are
//     matched by hand-written scanners that follow java.util.regex exactly
//     (its line terminators \n, \r, U+0085, U+2028, U+2029 for ., ^ and $;
//     its ASCII \s): linear, and no timeout needed.
//   - A pattern without regex metacharacters (markdown's "\n# " ...) is a
//     literal and is found with strings.Index.
//   - Any other (user-supplied) pattern runs on regexp2, a backtracking
//     engine with lookarounds and backreferences, after javaToRegexp2 has
//     made ., ^, $, \s, \h, \v, \R and \Q...\E mean what they mean in Java.
//     Backtracking can take exponential time, so matching is bounded by
//     separatorTimeBudget per Split call.
//
// Known differences from Java for user patterns: possessive quantifiers
// (a*+) do not compile; class intersections ([a-z&&[^e]]) and negated
// nested classes keep .NET's meaning; \p{...} names follow .NET (\p{IsGreek}
// is a block, Java's \p{Alpha}-style POSIX names are unknown); unknown
// escapes such as \y are taken literally instead of refused; after an empty
// match the search moves on by one code point, not one UTF-16 unit, so no
// chunk starts inside a surrogate pair.
type separator interface {
	// starts returns, in order, the byte offsets in s at which Java's
	// Matcher.find() reports successive matches.
	starts(s string, deadline time.Time) ([]int, error)
}

func compileSeparator(pattern string) (separator, error) {
	switch pattern {
	case config.SeparatorParagraph:
		return newlineRun(2), nil
	case config.SeparatorLine:
		return newlineRun(1), nil
	case config.SeparatorSetextH2:
		return setextHeading('-'), nil
	case config.SeparatorSetextH1:
		return setextHeading('='), nil
	}
	if !strings.ContainsAny(pattern, `\^$.|?*+()[]{}`) {
		return literal(pattern), nil
	}
	return compileRegexSeparator(pattern)
}

func compileRegexSeparator(pattern string) (*regexSeparator, error) {
	re, err := regexp2.Compile(javaToRegexp2(pattern), regexp2.Multiline|regexp2.RE2)
	if err != nil {
		return nil, illegalArgument("Invalid chunk separator regex [%s]: %s", pattern, err.Error())
	}
	return &regexSeparator{re: re}, nil
}

// newlineRun matches a run of exactly n newlines that is not part of a
// longer run: (?<!\n)\n{n}(?!\n).
type newlineRun int

func (n newlineRun) starts(s string, _ time.Time) ([]int, error) {
	var out []int
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '\n')
		if j < 0 {
			break
		}
		start := i + j
		end := start
		for end < len(s) && s[end] == '\n' {
			end++
		}
		if end-start == int(n) {
			out = append(out, start)
		}
		i = end
	}
	return out, nil
}

// literal matches a pattern without metacharacters.
type literal string

func (l literal) starts(s string, _ time.Time) ([]int, error) {
	var out []int
	if l == "" {
		// Java's empty match at every position, moving on one character.
		for i := range s {
			out = append(out, i)
		}
		return append(out, len(s)), nil
	}
	for i := 0; i <= len(s); {
		j := strings.Index(s[i:], string(l))
		if j < 0 {
			break
		}
		out = append(out, i+j)
		i += j + len(l)
	}
	return out, nil
}

// setextHeading matches markdown's "\n^(?!\s*$).*\n-{1,}\n" (or with =):
// a newline, a line that is not blank, a newline, a run of the underline
// character and a newline. With Java's semantics the regex has only one
// possible match from a given newline: . stops at the first line
// terminator, which must be the \n before the underline, and the underline
// run must be followed directly by \n.
type setextHeading byte

func (u setextHeading) starts(s string, _ time.Time) ([]int, error) {
	var out []int
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if end, ok := u.matchAt(s, i); ok {
			out = append(out, i)
			i = end
		} else {
			i++
		}
	}
	return out, nil
}

// matchAt matches at s[i] == '\n' and returns the end of the match.
func (u setextHeading) matchAt(s string, i int) (int, bool) {
	lineStart := i + 1
	// ^ (MULTILINE) after \n: anywhere but at the end of the input.
	if lineStart == len(s) {
		return 0, false
	}
	// (?!\s*$): Java's \s is [ \t\n\x0B\f\r]; $ matches before a line
	// terminator (not between \r and \n) and at the end. Inside a run of
	// \s, only \r or \n can be followed by $; after the run, the end of the
	// input or a terminator that is not \s.
	k := lineStart
	for k < len(s) && isJavaSpace(s[k]) {
		if s[k] == '\r' || s[k] == '\n' {
			return 0, false
		}
		k++
	}
	if k == len(s) || startsWithLineTerminator(s[k:]) {
		return 0, false
	}
	// .* up to the first line terminator, which has to be \n.
	t := k
	for t < len(s) && !startsWithLineTerminator(s[t:]) {
		_, size := utf8.DecodeRuneInString(s[t:])
		t += size
	}
	if t == len(s) || s[t] != '\n' {
		return 0, false
	}
	// \n, then at least one underline character, then \n.
	r := t + 1
	for r < len(s) && s[r] == byte(u) {
		r++
	}
	if r == t+1 || r == len(s) || s[r] != '\n' {
		return 0, false
	}
	return r + 1, true
}

func isJavaSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\x0B' || c == '\f' || c == '\r'
}

// startsWithLineTerminator reports Java's line terminators: \n, \r,
// U+0085, U+2028, U+2029.
func startsWithLineTerminator(s string) bool {
	switch {
	case s == "":
		return false
	case s[0] == '\n' || s[0] == '\r':
		return true
	case strings.HasPrefix(s, "\u0085"), strings.HasPrefix(s, "\u2028"), strings.HasPrefix(s, "\u2029"):
		return true
	}
	return false
}

// regexSeparator is a user-supplied pattern on regexp2. It belongs to one
// Split call: MatchTimeout is set before each match.
type regexSeparator struct {
	re *regexp2.Regexp
}

func (r *regexSeparator) starts(s string, deadline time.Time) ([]int, error) {
	runes := []rune(s)
	var out []int
	runeIdx, bytePos := 0, 0
	var m *regexp2.Match
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return nil, r.timeout()
		}
		r.re.MatchTimeout = remaining
		var err error
		if m == nil {
			m, err = r.re.FindRunesMatch(runes)
		} else {
			m, err = r.re.FindNextMatch(m)
		}
		if err != nil {
			return nil, r.timeout()
		}
		if m == nil {
			return out, nil
		}
		// Rune index to byte offset; invalid bytes are one rune each, as
		// in the []rune conversion.
		for runeIdx < m.Index {
			_, size := utf8.DecodeRuneInString(s[bytePos:])
			bytePos += size
			runeIdx++
		}
		out = append(out, bytePos)
	}
}

// errSeparatorTimeout is returned by starts when the deadline passes; the
// chunker turns it into the client's error.
var errSeparatorTimeout = errors.New("separator regex exceeded its time budget")

func (r *regexSeparator) timeout() error { return errSeparatorTimeout }

// Java's meaning of constructs that .NET (regexp2) reads differently.
const (
	javaLineTerminators = `\n\r\u0085\u2028\u2029`
	javaDot             = `[^` + javaLineTerminators + `]`
	// ^ with MULTILINE: at the start, or after a line terminator but not
	// between \r and \n; never at the end of the input.
	javaCaret = `(?:\A|(?<=[\n\u0085\u2028\u2029])|(?<=\r)(?!\n))(?!\z)`
	// $ with MULTILINE: before a line terminator but not between \r and
	// \n, or at the end.
	javaDollar      = `(?:(?=[\r\u0085\u2028\u2029])|(?<!\r)(?=\n)|\z)`
	javaSpaceChars  = ` \t\n\x0B\f\r`
	javaHSpaceChars = ` \t\xA0\u1680\u180E\u2000-\u200A\u202F\u205F\u3000`
	javaVSpaceChars = `\n\x0B\f\r\x85\u2028\u2029`
)

// javaToRegexp2 rewrites a Java regex (compiled with MULTILINE) into
// regexp2's .NET syntax with the same meaning for the constructs where the
// two differ and that separators plausibly use. Inline flags that change
// them ((?s), (?m), (?d)) leave the affected constructs to regexp2;
// (?x) leaves the whole pattern as it is.
func javaToRegexp2(p string) string {
	flags := inlineFlags(p)
	if strings.ContainsRune(flags, 'x') {
		return p
	}
	keepDot := strings.ContainsRune(flags, 's')
	keepAnchors := strings.ContainsAny(flags, "md")

	rs := []rune(p)
	var b strings.Builder
	// classes is a stack of open character classes; true marks a nested
	// union class whose brackets were dropped.
	var classes []bool
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		inClass := len(classes) > 0
		switch {
		case c == '\\' && i+1 < len(rs):
			i++
			switch n := rs[i]; {
			case n == 'Q':
				end := i + 1
				for end < len(rs) && !(rs[end] == '\\' && end+1 < len(rs) && rs[end+1] == 'E') {
					end++
				}
				for _, q := range rs[i+1 : end] {
					writeLiteral(&b, q)
				}
				i = end + 1 // the E of \E (or past the end)
			case n == 's' && !inClass:
				b.WriteString(`[` + javaSpaceChars + `]`)
			case n == 's':
				b.WriteString(javaSpaceChars)
			case n == 'S' && !inClass:
				b.WriteString(`[^` + javaSpaceChars + `]`)
			case n == 'h' && !inClass:
				b.WriteString(`[` + javaHSpaceChars + `]`)
			case n == 'h':
				b.WriteString(javaHSpaceChars)
			case n == 'H' && !inClass:
				b.WriteString(`[^` + javaHSpaceChars + `]`)
			case n == 'v' && !inClass:
				b.WriteString(`[` + javaVSpaceChars + `]`)
			case n == 'v':
				b.WriteString(javaVSpaceChars)
			case n == 'V' && !inClass:
				b.WriteString(`[^` + javaVSpaceChars + `]`)
			case n == 'R' && !inClass:
				b.WriteString(`(?>\r\n|[` + javaVSpaceChars + `])`)
			default:
				b.WriteRune('\\')
				b.WriteRune(n)
			}
		case c == '[':
			if inClass && (i+1 >= len(rs) || rs[i+1] != '^') {
				// A nested union: its members join the outer class.
				classes = append(classes, true)
				continue
			}
			classes = append(classes, false)
			b.WriteRune('[')
			if i+1 < len(rs) && rs[i+1] == '^' {
				i++
				b.WriteRune('^')
			}
			if i+1 < len(rs) && rs[i+1] == ']' {
				// A ] first in a class is a literal.
				i++
				b.WriteString(`\]`)
			}
		case c == ']' && inClass:
			dropped := classes[len(classes)-1]
			classes = classes[:len(classes)-1]
			if !dropped {
				b.WriteRune(']')
			}
		case inClass:
			b.WriteRune(c)
		case c == '.' && !keepDot:
			b.WriteString(javaDot)
		case c == '^' && !keepAnchors:
			b.WriteString(javaCaret)
		case c == '$' && !keepAnchors:
			b.WriteString(javaDollar)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// writeLiteral writes r so that it matches itself, in or out of a class.
func writeLiteral(b *strings.Builder, r rune) {
	if strings.ContainsRune(`\^$.|?*+()[]{}-#`, r) {
		b.WriteRune('\\')
	}
	switch r {
	case '\n':
		b.WriteString(`\n`)
	case '\r':
		b.WriteString(`\r`)
	case '\t':
		b.WriteString(`\t`)
	case ' ':
		b.WriteString(`\x20`)
	default:
		b.WriteRune(r)
	}
}

// inlineFlags collects the letters of the pattern's inline flag groups,
// (?flags) and (?flags:...), outside classes and escapes.
func inlineFlags(p string) string {
	var flags strings.Builder
	depth := 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			if strings.HasPrefix(p[i:], `\Q`) {
				end := strings.Index(p[i+2:], `\E`)
				if end < 0 {
					return flags.String()
				}
				i += 2 + end + 1
			} else {
				i++
			}
		case c == '[':
			depth++
		case c == ']' && depth > 0:
			depth--
		case c == '(' && depth == 0 && strings.HasPrefix(p[i:], "(?"):
			j := i + 2
			for j < len(p) && (p[j] == '-' || 'a' <= p[j] && p[j] <= 'z' || 'A' <= p[j] && p[j] <= 'Z') {
				j++
			}
			if j > i+2 && j < len(p) && (p[j] == ')' || p[j] == ':') {
				flags.WriteString(p[i+2 : j])
			}
		}
	}
	return flags.String()
}
