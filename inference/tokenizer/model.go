package tokenizer

//lint:file-ignore ST1005 errors start with the model type tokenizer.json names ("Unigram")

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// subwordModel turns one pre-tokenized word into ids.
type subwordModel interface {
	appendIDs(dst []int64, word string) ([]int64, error)
	// appendPieces is appendIDs with the bytes of the word each token covers (for offsets).
	appendPieces(dst []wordPiece, word string) ([]wordPiece, error)
	// vocab returns the model's id → token table (holes are "").
	vocab() []string
	// maxPieceBytes bounds the bytes of a word that one token covers, runs of unknown characters apart, for
	// clipping long words (see Tokenizer.appendWord); 0: the model's words are never clipped.
	maxPieceBytes() int
}

// wordPieceModel is tokenizers' models/wordpiece: greedy longest match from the start of the word, pieces after
// the first looked up with the continuing-subword prefix ("##"), the whole word [UNK] when some position has no
// piece or the word is longer than max_input_chars_per_word characters.
//
// It is ours rather than sugarme's: sugarme's WordPiece gives the same ids, but its Tokenize tries every end
// position from the end of the word down, formatting a new string (fmt.Sprintf) for each: cubic in the word length,
// 2 ms for one 100-character word that only single characters match, so 2 s for 100 KB of such words. The matching
// below walks a sorted index instead (see prefixIndex): at each position no deeper than the longest vocabulary
// entry, so linear in the word. Tests check it against sugarme's Tokenize (loaded by pretrained.FromReader, in
// tokenizer_sugarme_test.go) on every corpus word and on fuzzed words.
type wordPieceModel struct {
	unkID    int64
	maxChars int
	whole    prefixIndex // every vocabulary entry, for the first piece of a word
	cont     prefixIndex // entries with the prefix, prefix removed, for the pieces after it
	tokens   []string
}

func (m *wordPieceModel) appendIDs(dst []int64, word string) ([]int64, error) {
	return wordPieceAppend(m, dst, word, pieceID), nil
}

func (m *wordPieceModel) appendPieces(dst []wordPiece, word string) ([]wordPiece, error) {
	return wordPieceAppend(m, dst, word, newWordPiece), nil
}

// pieceID and newWordPiece make the token a model appends: its id alone, or a wordPiece.
func pieceID(id int64, _, _ int) int64          { return id }
func newWordPiece(id int64, i, j int) wordPiece { return wordPiece{id: id, start: i, end: j} }

func wordPieceAppend[T any](m *wordPieceModel, dst []T, word string, token func(id int64, i, j int) T) []T {
	if utf8.RuneCountInString(word) > m.maxChars {
		return append(dst, token(m.unkID, 0, len(word)))
	}
	start := len(dst)
	for pos := 0; pos < len(word); {
		index := &m.whole
		if pos > 0 {
			index = &m.cont
		}
		id, n := index.longest(word[pos:])
		if n == 0 {
			return append(dst[:start], token(m.unkID, 0, len(word)))
		}
		dst = append(dst, token(int64(id), pos, pos+n))
		pos += n
	}
	return dst
}

func (m *wordPieceModel) vocab() []string { return m.tokens }

// maxPieceBytes is 0: WordPiece needs no clipping, and must not have it, as a word longer than
// max_input_chars_per_word is one [UNK] however long (found by a rune count, linear and allocation-free), and any
// other word is at most that many characters.
func (m *wordPieceModel) maxPieceBytes() int { return 0 }

// loadWordPiece reads and checks the WordPiece section of the file and indexes its vocabulary. sugarme is not used
// here: its pretrained.FromReader type-asserts every field (a wrong JSON type panics) and log.Fatals on some inputs,
// and the vocabulary it would read is the one decoded here; it is only the tests' reference for the matching
// (sugarme_test.go).
func loadWordPiece(m *hfModel) (*wordPieceModel, error) {
	var vocab map[string]int64
	if err := json.Unmarshal(m.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("WordPiece vocab: %w", err)
	}
	tokens, err := denseVocab(vocab)
	if err != nil {
		return nil, fmt.Errorf("WordPiece vocab: %w", err)
	}
	unk := "[UNK]" // tokenizers' WordPiece default
	if m.UnkToken != nil {
		unk = *m.UnkToken
	}
	unkID, ok := vocab[unk]
	if !ok {
		// tokenizers would fail on the first unknown word (MissingUnkToken); refuse the file instead.
		return nil, fmt.Errorf("WordPiece: unk_token %q is not in the vocabulary", unk)
	}
	prefix := "##"
	if m.ContinuingSubwordPrefix != nil {
		prefix = *m.ContinuingSubwordPrefix
	}
	maxChars := 100
	if m.MaxInputCharsPerWord != nil {
		maxChars = *m.MaxInputCharsPerWord
	}
	if maxChars < 0 {
		return nil, fmt.Errorf("WordPiece: negative max_input_chars_per_word %d", maxChars)
	}

	model := &wordPieceModel{unkID: unkID, maxChars: maxChars, tokens: tokens}
	var whole, cont []prefixEntry
	for id, tok := range tokens {
		whole = append(whole, prefixEntry{tok, int32(id)})
		if suffix, ok := strings.CutPrefix(tok, prefix); ok && suffix != "" {
			cont = append(cont, prefixEntry{suffix, int32(id)})
		}
	}
	model.whole, model.cont = newPrefixIndex(whole), newPrefixIndex(cont)
	return model, nil
}

// denseVocab checks that the ids are unique and in [0, len(vocab)), as in every file Hugging Face writes (and so
// that a corrupt id cannot make us allocate a huge table), and returns the id → token table.
func denseVocab(vocab map[string]int64) ([]string, error) {
	n := int64(len(vocab))
	tokens := make([]string, n)
	seen := make([]bool, n)
	for tok, id := range vocab {
		switch {
		case id < 0 || id >= n:
			return nil, fmt.Errorf("id %d of %q is outside [0, %d)", id, tok, n)
		case seen[id]:
			return nil, fmt.Errorf("id %d is used by both %q and %q", id, tokens[id], tok)
		}
		tokens[id], seen[id] = tok, true
	}
	return tokens, nil
}

// unigramModel is tokenizers' models/unigram (Unigram::encode_optimized, SentencePiece's Viterbi): the best-scoring
// segmentation into vocabulary pieces, a character with no single-character piece costing min_score - 10 as
// <unk>, consecutive <unk> characters fused into one token.
//
// It is ours rather than sugarme's: sugarme's Unigram adds a 0.1-per-byte length bonus to every piece and never
// looks at pieces longer than 20 bytes, so it picks other segmentations than Hugging Face; it also byte-falls-back
// every word when byte_fallback is set and keeps a cache that grows with every distinct word.
type unigramModel struct {
	pieces       []string
	scores       []float64
	ids          map[string]int32
	index        prefixIndex
	unkID        int // -1 without one
	unkScore     float64
	byteFallback bool
	longest      int // bytes of the longest piece, at least utf8.UTFMax (an unknown character)
}

func loadUnigram(m *hfModel) (*unigramModel, error) {
	var vocab []hfUnigramPiece
	if err := json.Unmarshal(m.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("Unigram vocab: %w", err)
	}
	if len(vocab) == 0 {
		return nil, errors.New("Unigram: empty vocabulary")
	}
	if len(vocab) > math.MaxInt32 {
		return nil, errors.New("Unigram: vocabulary too large")
	}
	u := &unigramModel{
		pieces:       make([]string, len(vocab)),
		scores:       make([]float64, len(vocab)),
		ids:          make(map[string]int32, len(vocab)),
		unkID:        -1,
		byteFallback: m.ByteFallback,
		longest:      utf8.UTFMax,
	}
	minScore := math.Inf(1)
	for i, p := range vocab {
		if p.Piece == "" {
			return nil, fmt.Errorf("Unigram: piece %d is empty", i)
		}
		u.pieces[i], u.scores[i] = p.Piece, p.Score
		u.longest = max(u.longest, len(p.Piece))
		u.ids[p.Piece] = int32(i) // a repeated piece maps to its last id, as in tokenizers' token_to_ids
		minScore = min(minScore, p.Score)
	}
	u.unkScore = minScore - 10 // K_UNK_PENALTY
	if m.UnkID != nil {
		if *m.UnkID < 0 || *m.UnkID >= len(vocab) {
			return nil, fmt.Errorf("Unigram: unk_id %d is outside the vocabulary", *m.UnkID)
		}
		u.unkID = *m.UnkID
	}
	entries := make([]prefixEntry, 0, len(u.ids))
	for piece, id := range u.ids {
		entries = append(entries, prefixEntry{piece, id})
	}
	u.index = newPrefixIndex(entries)
	return u, nil
}

func (u *unigramModel) vocab() []string { return u.pieces }

func (u *unigramModel) maxPieceBytes() int { return u.longest }

// viterbiNode is the best path ending at a byte position: its score, where its last piece starts (-1: not reached
// yet) and that piece's id. 16 bytes, as a word gets one per byte.
type viterbiNode struct {
	score float64
	start int32
	id    int32
}

func (u *unigramModel) appendIDs(dst []int64, word string) ([]int64, error) {
	return unigramAppend(u, dst, word, pieceID)
}

func (u *unigramModel) appendPieces(dst []wordPiece, word string) ([]wordPiece, error) {
	return unigramAppend(u, dst, word, newWordPiece)
}

func unigramAppend[T any](u *unigramModel, dst []T, word string, token func(id int64, i, j int) T) ([]T, error) {
	if word == "" {
		return dst, nil
	}
	if len(word) > math.MaxInt32 {
		return dst, errors.New("unigram: word longer than 2 GiB")
	}
	n := len(word)
	best := make([]viterbiNode, n+1)
	for i := range best {
		best[i].start = -1
	}
	best[0].start = 0
	var matches []prefixMatch
	for i := 0; i < n; {
		base := best[i].score
		_, charLen := utf8.DecodeRuneInString(word[i:])
		hasSingle := false
		matches = u.index.appendPrefixes(matches[:0], word[i:])
		for _, p := range matches {
			t := &best[i+p.length]
			if s := base + u.scores[p.id]; t.start < 0 || s > t.score {
				*t = viterbiNode{score: s, start: int32(i), id: p.id}
			}
			if p.length == charLen {
				hasSingle = true
			}
		}
		if !hasSingle {
			if u.unkID < 0 {
				return dst, fmt.Errorf("unigram: %q is not in the vocabulary and there is no unk_id", word[i:i+charLen])
			}
			t := &best[i+charLen]
			if s := base + u.unkScore; t.start < 0 || s > t.score {
				*t = viterbiNode{score: s, start: int32(i), id: int32(u.unkID)}
			}
		}
		i += charLen
	}

	// Walk back, fusing runs of <unk> (tokenizers' fuse_unk is always true for Unigram), then look every piece up
	// by its text, as Unigram::tokenize does.
	var pieces [][2]int // byte ranges in the word, last first
	for end := n; end > 0; {
		node := best[end]
		if int(node.id) == u.unkID {
			unkEnd := end
			for end > 0 && int(best[end].id) == u.unkID {
				end = int(best[end].start)
			}
			pieces = append(pieces, [2]int{end, unkEnd})
			continue
		}
		pieces = append(pieces, [2]int{int(node.start), end})
		end = int(node.start)
	}
	for k := len(pieces) - 1; k >= 0; k-- {
		dst = unigramAppendPiece(u, dst, word, pieces[k][0], pieces[k][1], token)
	}
	return dst, nil
}

// unigramAppendPiece appends the token of one segment, word[i:j]: its vocabulary id, else (an unknown run) its
// bytes as <0xXX> pieces when byte_fallback is on and they all exist (each covering the whole segment, as in
// tokenizers), else unk_id.
func unigramAppendPiece[T any](u *unigramModel, dst []T, word string, i, j int, token func(id int64, i, j int) T) []T {
	piece := word[i:j]
	if id, ok := u.ids[piece]; ok {
		return append(dst, token(int64(id), i, j))
	}
	if u.byteFallback {
		start := len(dst)
		for k := 0; k < len(piece); k++ {
			id, ok := u.ids[fmt.Sprintf("<0x%02X>", piece[k])]
			if !ok {
				dst = dst[:start]
				return append(dst, token(int64(u.unkID), i, j))
			}
			dst = append(dst, token(int64(id), i, j))
		}
		return dst
	}
	return append(dst, token(int64(u.unkID), i, j))
}

// prefixIndex finds the vocabulary entries that are prefixes of a string. The keys are sorted, so the keys that
// share the string's first d bytes form a range, narrowed one byte at a time by a binary search on byte d; within a
// range the key that is exactly those d bytes comes first. A lookup costs the depth of the longest match times a
// binary search, whatever the length of the longest key, and the index is just the sorted keys (a trie of a
// 250,000-piece vocabulary would take far more memory).
type prefixIndex struct {
	keys []string
	ids  []int32
}

type prefixEntry struct {
	key string
	id  int32
}

// newPrefixIndex indexes entries, whose keys must be distinct and non-empty.
func newPrefixIndex(entries []prefixEntry) prefixIndex {
	slices.SortFunc(entries, func(a, b prefixEntry) int { return strings.Compare(a.key, b.key) })
	x := prefixIndex{keys: make([]string, len(entries)), ids: make([]int32, len(entries))}
	for i, e := range entries {
		x.keys[i], x.ids[i] = e.key, e.id
	}
	return x
}

type prefixMatch struct {
	id     int32
	length int
}

// appendPrefixes appends every key that is a prefix of s, shortest first.
func (x *prefixIndex) appendPrefixes(dst []prefixMatch, s string) []prefixMatch {
	lo, hi := 0, len(x.keys)
	for d := 0; d < len(s) && lo < hi; d++ {
		if lo, hi = x.narrow(lo, hi, d, s[d]); lo < hi && len(x.keys[lo]) == d+1 {
			dst = append(dst, prefixMatch{id: x.ids[lo], length: d + 1})
		}
	}
	return dst
}

// longest returns the id and length of the longest key that is a prefix of s, or length 0.
func (x *prefixIndex) longest(s string) (id int32, length int) {
	lo, hi := 0, len(x.keys)
	for d := 0; d < len(s) && lo < hi; d++ {
		if lo, hi = x.narrow(lo, hi, d, s[d]); lo < hi && len(x.keys[lo]) == d+1 {
			id, length = x.ids[lo], d+1
		}
	}
	return id, length
}

// narrow takes the range of keys that share d bytes with the string searched and returns the range of those whose
// byte d is c.
func (x *prefixIndex) narrow(lo, hi, d int, c byte) (int, int) {
	keys := x.keys
	if len(keys[lo]) == d {
		lo++ // the key that is exactly those d bytes; every other key in the range is longer
	}
	a, b := lo, hi // first key whose byte d is >= c
	for a < b {
		if mid := int(uint(a+b) >> 1); keys[mid][d] < c {
			a = mid + 1
		} else {
			b = mid
		}
	}
	lo, b = a, hi // then the first whose byte d is > c
	for a < b {
		if mid := int(uint(a+b) >> 1); keys[mid][d] <= c {
			a = mid + 1
		} else {
			b = mid
		}
	}
	return lo, a
}
