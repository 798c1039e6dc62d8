package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpeModel is tokenizers' models/bpe (model.rs BPE::merge_word and word.rs Word::merge_all), the model of
// RoBERTa, GPT-2 and their byte-level relatives:
//
//  1. The word is cut into characters, each looked up in the vocabulary, the ones after the first with
//     continuing_subword_prefix before them and the last with end_of_word_suffix after it. A character that is not
//     in the vocabulary becomes its bytes as <0xXX> tokens when byte_fallback is on and they all exist, else
//     unk_token (consecutive ones fused into one with fuse_unk), else — no unk_token — nothing at all.
//  2. Adjacent pairs are merged, lowest merge rank first and, among equal ranks, leftmost first, until no pair has a
//     merge: a min-heap of candidate merges over a doubly linked list of symbols, O(n log n) in the word's length
//     whatever the input (a 100 KB word without spaces included).
//
// With ignore_merges, a word that is itself in the vocabulary is that token, merges or not.
//
// The Rust crate keeps a per-thread cache of words up to 256 bytes; we keep none (the merge loop is cheap enough,
// see BenchmarkEncode), so that a Tokenizer stays immutable and its memory does not grow with the text it has
// seen. The only state is a sync.Pool of scratch buffers, which never keeps a buffer for a word longer than
// bpeMaxPooled symbols.
//
// Rust's quirks are kept: a character that falls back to bytes does not flush a pending <unk> first, so that <unk>
// comes after the bytes; byte fallback spells out the prefixed or suffixed character, prefix and suffix included;
// a queued merge is checked, as in Word::merge_all, by the token the pair at its position now produces (merges
// lengthen their symbols, so in practice this is the same as checking the pair).
type bpeModel struct {
	tokens []string
	ids    map[string]int32
	// merges maps a pair (left id << 32 | right id) to its rank << 32 | the id of the merged token.
	merges map[uint64]uint64

	unkToken     *string // nil: unknown characters are dropped
	unkID        int32   // -1: no unk_token, or unk_token is not in the vocabulary (an error once it is needed)
	prefix       string  // continuing_subword_prefix
	suffix       string  // end_of_word_suffix
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	byteIDs      [256]int32 // ids of <0x00> … <0xFF>, -1 where absent
	longest      int        // bytes of the longest token, at least utf8.UTFMax (one character)
	// charIDs[r] is the id of the one-character token r (-1: none) for r below bpeCharTable, which covers ASCII and
	// the 256 characters of the byte-level alphabet: the lookups of a word's characters without a hash.
	charIDs [bpeCharTable]int32

	scratch sync.Pool // *bpeScratch
}

const bpeCharTable = 0x180

// bpeMaxPooled is the largest word (in symbols) whose scratch buffers go back to the pool.
const bpeMaxPooled = 1 << 12

type bpeSymbol struct {
	id         int32
	prev, next int32 // -1: none
	start, end int32 // the bytes of the word it covers
	dead       bool  // merged into the symbol on its left (Rust: len 0)
}

// bpeCandidate is a queued merge of the symbol at pos with the one after it: Rust's Merge, ordered by rank, then
// position.
type bpeCandidate struct {
	rank uint32
	pos  int32
	id   int32 // the merged token
}

type bpeScratch struct {
	symbols []bpeSymbol
	heap    []bpeCandidate
	buf     []byte
}

func bpePairKey(left, right int32) uint64 { return uint64(uint32(left))<<32 | uint64(uint32(right)) }

func loadBPE(m *hfModel) (*bpeModel, error) {
	if m.Dropout != nil && *m.Dropout != 0 {
		// tokenizers accepts dropout in [0, 1] and then skips merges at random; we give the same ids every time.
		return nil, fmt.Errorf("BPE: dropout %v is not supported (only null or 0: encoding must be deterministic)", *m.Dropout)
	}
	var vocab map[string]int64
	if err := json.Unmarshal(m.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("BPE vocab: %w", err)
	}
	if len(vocab) > math.MaxInt32 {
		return nil, errors.New("BPE: vocabulary too large")
	}
	tokens, err := denseVocab(vocab)
	if err != nil {
		return nil, fmt.Errorf("BPE vocab: %w", err)
	}
	if isJSONNull(m.Merges) {
		return nil, errors.New(`BPE: "merges" is missing`)
	}
	merges, err := parseBPEMerges(m.Merges)
	if err != nil {
		return nil, fmt.Errorf("BPE: %w", err)
	}
	b := &bpeModel{
		tokens:       tokens,
		ids:          make(map[string]int32, len(vocab)),
		merges:       make(map[uint64]uint64, len(merges)),
		unkToken:     m.UnkToken,
		unkID:        -1,
		fuseUnk:      m.FuseUnk,
		byteFallback: m.ByteFallback,
		ignoreMerges: m.IgnoreMerges,
		longest:      utf8.UTFMax,
	}
	for tok, id := range vocab {
		b.ids[tok] = int32(id)
		b.longest = max(b.longest, len(tok))
	}
	if m.ContinuingSubwordPrefix != nil {
		b.prefix = *m.ContinuingSubwordPrefix
	}
	if m.EndOfWordSuffix != nil {
		b.suffix = *m.EndOfWordSuffix
	}
	if b.unkToken != nil {
		// Not in the vocabulary: tokenizers fails on the first unknown character (UnkTokenOutOfVocabulary), and so
		// do we; a byte-level file never has one.
		if id, ok := b.ids[*b.unkToken]; ok {
			b.unkID = id
		}
	}
	for r := range b.charIDs {
		b.charIDs[r] = -1
		if id, ok := b.ids[string(rune(r))]; ok {
			b.charIDs[r] = id
		}
	}
	for c := range b.byteIDs {
		b.byteIDs[c] = -1
		if id, ok := b.ids[fmt.Sprintf("<0x%02X>", c)]; ok {
			b.byteIDs[c] = id
		}
	}
	// BpeBuilder::build: both tokens and their concatenation (the right one without the prefix) must be in the
	// vocabulary. A pair listed twice gets its last rank, as the Rust hash map is filled in order.
	if len(merges) > math.MaxUint32 {
		return nil, errors.New("BPE: too many merges")
	}
	for rank, p := range merges {
		left, ok := b.ids[p[0]]
		if !ok {
			return nil, fmt.Errorf("BPE: merges[%d]: %q is not in the vocabulary", rank, p[0])
		}
		right, ok := b.ids[p[1]]
		if !ok {
			return nil, fmt.Errorf("BPE: merges[%d]: %q is not in the vocabulary", rank, p[1])
		}
		if len(p[1]) < len(b.prefix) {
			// tokenizers would panic slicing the prefix off.
			return nil, fmt.Errorf("BPE: merges[%d]: %q is shorter than continuing_subword_prefix %q", rank, p[1], b.prefix)
		}
		merged := p[0] + p[1][len(b.prefix):]
		id, ok := b.ids[merged]
		if !ok {
			return nil, fmt.Errorf("BPE: merges[%d]: the merged token %q is not in the vocabulary", rank, merged)
		}
		b.merges[bpePairKey(left, right)] = uint64(rank)<<32 | uint64(uint32(id))
	}
	return b, nil
}

// parseBPEMerges reads merges in either format tokenizers reads: [["a", "b"], …] (written since tokenizers 0.20) or
// the legacy ["a b", …] of merges.txt lines, where "#version" lines are skipped and every other line must be
// exactly two tokens separated by one space.
func parseBPEMerges(raw json.RawMessage) ([][2]string, error) {
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		out := make([][2]string, len(pairs))
		for i, p := range pairs {
			if len(p) != 2 {
				return nil, fmt.Errorf("merges[%d]: want [left, right], got %d elements", i, len(p))
			}
			out[i] = [2]string{p[0], p[1]}
		}
		return out, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, errors.New(`merges: want an array of "left right" strings or of [left, right] pairs`)
	}
	out := make([][2]string, 0, len(lines))
	for _, line := range lines {
		if strings.HasPrefix(line, "#version") {
			continue
		}
		left, right, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(right, " ") {
			return nil, fmt.Errorf("merges[%d]: %q is not two tokens separated by one space", len(out), line)
		}
		out = append(out, [2]string{left, right})
	}
	return out, nil
}

func (b *bpeModel) vocab() []string { return b.tokens }

// maxPieceBytes: a token is the concatenation of the characters it covers (with the prefix or suffix, or spelled
// <0xXX> for one byte), so it covers at most its own length.
func (b *bpeModel) maxPieceBytes() int { return b.longest }

func (b *bpeModel) appendIDs(dst []int64, word string) ([]int64, error) {
	return bpeAppend(b, dst, word, pieceID)
}

func (b *bpeModel) appendPieces(dst []wordPiece, word string) ([]wordPiece, error) {
	return bpeAppend(b, dst, word, newWordPiece)
}

func bpeAppend[T any](b *bpeModel, dst []T, word string, token func(id int64, i, j int) T) ([]T, error) {
	if word == "" {
		return dst, nil
	}
	if b.ignoreMerges {
		if id, ok := b.ids[word]; ok {
			return append(dst, token(int64(id), 0, len(word))), nil
		}
	}
	if len(word) > math.MaxInt32/2 {
		return dst, errors.New("bpe: word longer than 1 GiB")
	}
	s, _ := b.scratch.Get().(*bpeScratch)
	if s == nil {
		s = new(bpeScratch)
	}
	defer func() {
		if cap(s.symbols) <= bpeMaxPooled && cap(s.heap) <= 3*bpeMaxPooled && cap(s.buf) <= 1024 {
			b.scratch.Put(s)
		}
	}()
	if err := b.initialSymbols(s, word); err != nil {
		return dst, err
	}
	live := b.mergeAll(s)
	dst = slices.Grow(dst, live)
	for _, sym := range s.symbols {
		if !sym.dead {
			dst = append(dst, token(int64(sym.id), int(sym.start), int(sym.end)))
		}
	}
	return dst, nil
}

// initialSymbols is the first part of BPE::merge_word: one symbol per character (or per byte, or per run of
// unknown characters).
func (b *bpeModel) initialSymbols(s *bpeScratch, word string) error {
	// One symbol per character, except for byte fallback: sized once, as growing a slice of a long word step by step
	// costs more than the merges.
	if n := utf8.RuneCountInString(word); cap(s.symbols) < n {
		s.symbols = make([]bpeSymbol, 0, n)
	}
	s.symbols = s.symbols[:0]
	// Every symbol covers the character it comes from (each byte of a byte fallback the whole character, a fused
	// <unk> all of its characters).
	var from, to int32
	add := func(id int32) {
		n := int32(len(s.symbols))
		if n > 0 {
			s.symbols[n-1].next = n
		}
		s.symbols = append(s.symbols, bpeSymbol{id: id, prev: n - 1, next: -1, start: from, end: to})
	}
	pendingUnk := false
	unkFrom := int32(0)
	for i := 0; i < len(word); {
		r, size := utf8.DecodeRuneInString(word[i:])
		first, last := i == 0, i+size == len(word)
		piece := word[i : i+size]
		charFrom, charTo := int32(i), int32(i+size)
		i += size
		var (
			id       int32
			ok       bool
			affixed  = !first && b.prefix != "" || last && b.suffix != ""
			fallback = false
		)
		if affixed {
			s.buf = s.buf[:0]
			if !first {
				s.buf = append(s.buf, b.prefix...)
			}
			s.buf = append(s.buf, piece...)
			if last {
				s.buf = append(s.buf, b.suffix...)
			}
			id, ok = b.ids[string(s.buf)]
		} else if r < bpeCharTable && size == utf8.RuneLen(r) {
			id = b.charIDs[r]
			ok = id >= 0
		} else {
			id, ok = b.ids[piece]
		}
		if ok {
			if pendingUnk {
				from, to = unkFrom, charFrom
				add(b.unkID)
				pendingUnk = false
			}
			from, to = charFrom, charTo
			add(id)
			continue
		}
		// Byte fallback looks at the string that was looked up, prefix and suffix included.
		from, to = charFrom, charTo
		if b.byteFallback {
			if affixed {
				fallback = bpeAppendBytes(b, add, s.buf)
			} else {
				fallback = bpeAppendBytes(b, add, piece)
			}
		}
		if fallback {
			continue
		}
		if b.unkToken == nil {
			continue
		}
		if b.unkID < 0 {
			return fmt.Errorf("bpe: unk_token %q is not in the vocabulary", *b.unkToken)
		}
		if pendingUnk && !b.fuseUnk {
			from, to = unkFrom, charFrom
			add(b.unkID)
		}
		if !pendingUnk || !b.fuseUnk {
			unkFrom = charFrom
		}
		pendingUnk = true
	}
	if pendingUnk {
		from, to = unkFrom, int32(len(word))
		add(b.unkID)
	}
	return nil
}

// bpeAppendBytes adds the <0xXX> token of every byte of piece if they all exist, and reports whether it did.
func bpeAppendBytes[T string | []byte](b *bpeModel, add func(int32), piece T) bool {
	for j := 0; j < len(piece); j++ {
		if b.byteIDs[piece[j]] < 0 {
			return false
		}
	}
	for j := 0; j < len(piece); j++ {
		add(b.byteIDs[piece[j]])
	}
	return true
}

// mergeAll is Word::merge_all without dropout. It returns the number of symbols left.
func (b *bpeModel) mergeAll(s *bpeScratch) int {
	syms := s.symbols
	live := len(syms)
	if cap(s.heap) < len(syms) {
		s.heap = make([]bpeCandidate, 0, len(syms))
	}
	h := s.heap[:0]
	for pos := 0; pos+1 < len(syms); pos++ {
		if v, ok := b.merges[bpePairKey(syms[pos].id, syms[pos+1].id)]; ok {
			h = append(h, bpeCandidate{rank: uint32(v >> 32), pos: int32(pos), id: int32(uint32(v))})
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		bpeSiftDown(h, i)
	}
	for len(h) > 0 {
		top := h[0]
		last := len(h) - 1
		h[0] = h[last]
		h = h[:last]
		bpeSiftDown(h, 0)

		cur := &syms[top.pos]
		if cur.dead || cur.next < 0 {
			continue
		}
		rightPos := cur.next
		right := syms[rightPos]
		// An entry queued for a pair that has changed since: skipped unless the pair there now gives the same token.
		if v, ok := b.merges[bpePairKey(cur.id, right.id)]; !ok || int32(uint32(v)) != top.id {
			continue
		}
		cur.id = top.id
		cur.end = right.end
		cur.next = right.next
		syms[rightPos].dead = true
		live--
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if v, ok := b.merges[bpePairKey(syms[cur.prev].id, cur.id)]; ok {
				h = bpePush(h, bpeCandidate{rank: uint32(v >> 32), pos: cur.prev, id: int32(uint32(v))})
			}
		}
		if cur.next >= 0 {
			if v, ok := b.merges[bpePairKey(cur.id, syms[cur.next].id)]; ok {
				h = bpePush(h, bpeCandidate{rank: uint32(v >> 32), pos: top.pos, id: int32(uint32(v))})
			}
		}
	}
	s.heap = h
	return live
}

func bpeLess(a, b bpeCandidate) bool { return a.rank < b.rank || a.rank == b.rank && a.pos < b.pos }

func bpePush(h []bpeCandidate, c bpeCandidate) []bpeCandidate {
	h = append(h, c)
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !bpeLess(h[i], h[parent]) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
	return h
}

func bpeSiftDown(h []bpeCandidate, i int) {
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && bpeLess(h[l], h[least]) {
			least = l
		}
		if r < len(h) && bpeLess(h[r], h[least]) {
			least = r
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}
