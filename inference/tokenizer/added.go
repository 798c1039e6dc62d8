package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Added tokens ([CLS], [SEP], <s>, <mask>, …) are cut out of the text before the model sees it, as tokenizers'
// AddedVocabulary::extract_and_normalize does: tokens with normalized=false are matched in the raw text, then the
// other pieces are normalized and tokens with normalized=true are matched in the normalized text, by their
// normalized content. So a user who types "[SEP]" gets the [SEP] id, exactly as with Hugging Face. sugarme instead
// builds regular expressions (and renumbers added tokens past the model vocabulary, ignoring their ids).

type addedToken struct {
	id                         int64
	content                    string
	singleWord, lstrip, rstrip bool
	normalized                 bool // matched in normalized text, by its normalized content
}

// addedTokenMatcher finds added tokens leftmost-longest and without overlaps, like the LeftmostLongest
// Aho-Corasick automaton of tokenizers, using a byte trie: the sets are small (a handful of special tokens).
type addedTokenMatcher struct {
	tokens []addedToken
	nodes  []addedTrieNode
	first  [256]bool // bytes some pattern starts with, to skip the rest quickly
}

type addedTrieNode struct {
	next  map[byte]int32
	token int32 // index into tokens of the pattern ending here, -1 if none
}

// newAddedTokenMatcher indexes tokens by pattern (their content, or for normalized tokens the normalized content).
// It returns nil when there is nothing to match.
func newAddedTokenMatcher(tokens []addedToken, patterns []string) *addedTokenMatcher {
	m := &addedTokenMatcher{tokens: tokens, nodes: []addedTrieNode{{token: -1}}}
	for i, p := range patterns {
		if p == "" {
			continue // tokenizers skips empty added tokens; an empty pattern would match everywhere
		}
		n := int32(0)
		for j := 0; j < len(p); j++ {
			next, ok := m.nodes[n].next[p[j]]
			if !ok {
				if m.nodes[n].next == nil {
					m.nodes[n].next = make(map[byte]int32)
				}
				next = int32(len(m.nodes))
				m.nodes = append(m.nodes, addedTrieNode{token: -1})
				m.nodes[n].next[p[j]] = next
			}
			n = next
		}
		m.nodes[n].token = int32(i) // a later token with the same pattern wins, as in tokenizers' id map
		m.first[p[0]] = true
	}
	if len(m.nodes) == 1 {
		return nil
	}
	return m
}

// longestAt returns the longest pattern starting at s[i:]: its token index and end, or -1.
func (m *addedTokenMatcher) longestAt(s string, i int) (token, end int) {
	token, end = -1, -1
	n := int32(0)
	for j := i; j < len(s); j++ {
		next, ok := m.nodes[n].next[s[j]]
		if !ok {
			break
		}
		n = next
		if t := m.nodes[n].token; t >= 0 {
			token, end = int(t), j+1
		}
	}
	return token, end
}

// textSegment is a piece of text, or an added token (token >= 0, an index into the matcher's tokens).
type textSegment struct {
	text  string
	start int // byte offset in the string that was split
	token int
}

// split appends the segments of s to dst, following tokenizers' AddedVocabulary::find_matches: a single_word
// token only counts when not glued to word characters, lstrip and rstrip tokens swallow the whitespace beside
// them (it belongs to neither neighbour afterwards). Empty text segments are left out.
func (m *addedTokenMatcher) split(dst []textSegment, s string) []textSegment {
	if m == nil {
		return append(dst, textSegment{text: s, token: -1})
	}
	prev := 0 // end of the last added token
	for i := 0; i < len(s); {
		if !m.first[s[i]] {
			i++
			continue
		}
		tok, end := m.longestAt(s, i)
		if tok < 0 {
			i++
			continue
		}
		t := m.tokens[tok]
		start, stop := i, end
		i = end // matches never overlap, even a discarded one
		if t.singleWord && (start > 0 && endsWithWordChar(s[:start]) || stop < len(s) && startsWithWordChar(s[stop:])) {
			continue
		}
		if t.lstrip {
			start = max(start-trailingSpaceLen(s[:start]), prev)
		}
		if t.rstrip {
			stop += leadingSpaceLen(s[stop:])
			i = stop
		}
		if prev < start {
			dst = append(dst, textSegment{text: s[prev:start], start: prev, token: -1})
		}
		dst = append(dst, textSegment{text: s[start:stop], start: start, token: tok})
		prev = stop
	}
	if prev < len(s) {
		dst = append(dst, textSegment{text: s[prev:], start: prev, token: -1})
	}
	return dst
}

// endsWithWordChar and startsWithWordChar are the \w$ and ^\w tests of tokenizers (Rust regex, Unicode \w).
func endsWithWordChar(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isRegexWord(r)
}

func startsWithWordChar(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isRegexWord(r)
}

// trailingSpaceLen and leadingSpaceLen measure the \s*$ and ^\s* runs (White_Space) in bytes.
func trailingSpaceLen(s string) int {
	n := 0
	for n < len(s) {
		r, size := utf8.DecodeLastRuneInString(s[:len(s)-n])
		if !unicode.Is(unicode.White_Space, r) {
			break
		}
		n += size
	}
	return n
}

func leadingSpaceLen(s string) int {
	n := 0
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		if !unicode.Is(unicode.White_Space, r) {
			break
		}
		n += size
	}
	return n
}
