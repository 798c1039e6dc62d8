// Package tokenizer is jetinfer's own implementation of Hugging Face
// tokenizers for a tokenizer.json (WordPiece, Unigram and BPE models, byte
// level or with byte fallback, their normalizers, pre-tokenizers (regex
// Split included), added tokens, truncation and post-processing, and the
// offsets of every token). It is pure Go: it links no ONNX Runtime, so its
// tests and fuzz targets run anywhere.
package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"unicode/utf8"
)

// ErrInternal is wrapped by the error of an encoding that failed on a fault of this package (a recovered panic),
// not of its input.
var ErrInternal = errors.New("tokenizer: internal error")

// Config says which tokenizer to load and how long its encodings may be.
type Config struct {
	Path      string // tokenizer.json
	MaxLength int    // model's maximum sequence length including special tokens; overrides any truncation/padding in the file
}

// Encoding is the model input for one text or one pair of texts.
type Encoding struct {
	IDs       []int64 // with special tokens, no padding
	TypeIDs   []int64 // token type ids (0 for the first sequence, 1 for the second of a pair)
	Truncated bool    // the input did not fit into MaxLength
}

// Tokenizer turns text into the token ids of a Hugging Face tokenizer.json (WordPiece, Unigram or BPE model), equal
// to what Hugging Face tokenizers computes for the same file with truncation to MaxLength (strategy longest_first)
// and without padding.
//
// All of it is implemented in this package after tokenizers' Rust sources, file loading included; sugarme/tokenizer
// is used only by the tests, as the reference for the WordPiece matching, because its versions give other ids
// than Hugging Face or are too slow: normalizers (normalize.go), pre-tokenizers (pretokenize.go, ByteLevel
// included), added-token extraction (added.go), the WordPiece and Unigram models (model.go),
// the BPE model (bpe.go), truncation and post-processing (post.go). The comment on each part says what
// sugarme does differently.
//
// A Tokenizer is immutable once loaded, and Encode reads nothing else (the models keep no cache; the BPE model has
// only a sync.Pool of scratch buffers), so it is safe for concurrent use.
type Tokenizer struct {
	maxLength  int
	normalizer textNormalizer // nil: none
	preTok     preTokenizer   // nil: the whole section is one word
	model      subwordModel
	rawAdded   *addedTokenMatcher // added tokens matched before normalization; nil: none
	normAdded  *addedTokenMatcher // added tokens matched in normalized text; nil: none
	post       *postProcessor
	tokens     []string // id → token, model vocabulary overlaid with added tokens
	padID      int64
}

// Load reads a tokenizer.json. A file that cannot be read, is not valid JSON or uses a model or
// component this package does not implement is an error.
func Load(cfg Config) (*Tokenizer, error) {
	if cfg.Path == "" {
		return nil, errors.New("tokenizer: no path")
	}
	if cfg.MaxLength <= 0 {
		return nil, fmt.Errorf("tokenizer: MaxLength %d must be positive", cfg.MaxLength)
	}
	data, err := os.ReadFile(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := newTokenizer(data, cfg.MaxLength)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", cfg.Path, err)
	}
	return t, nil
}

func newTokenizer(data []byte, maxLength int) (*Tokenizer, error) {
	file, model, err := parseTokenizerFile(data)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{maxLength: maxLength}
	if t.normalizer, err = buildNormalizer(file.Normalizer); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	if t.preTok, err = buildPreTokenizer(file.PreTokenizer); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	switch model.Type {
	case "WordPiece":
		t.model, err = loadWordPiece(model)
	case "Unigram":
		t.model, err = loadUnigram(model)
	case "BPE":
		t.model, err = loadBPE(model)
	}
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}

	modelVocab := t.model.vocab()
	size := len(modelVocab)
	// Hugging Face appends added tokens after the model's vocabulary; an id beyond that range is refused rather
	// than allowed to size the id table.
	limit := int64(len(modelVocab) + len(file.AddedTokens))
	for _, at := range file.AddedTokens {
		if *at.ID >= limit {
			return nil, fmt.Errorf("added token %q: id %d is beyond the vocabulary (%d)", at.Content, *at.ID, limit)
		}
		size = max(size, int(*at.ID)+1)
	}
	t.tokens = make([]string, size)
	copy(t.tokens, modelVocab)
	var rawTokens, normTokens []addedToken
	var rawPatterns, normPatterns []string
	for _, at := range file.AddedTokens {
		tok := addedToken{
			id: *at.ID, content: at.Content, singleWord: at.SingleWord, lstrip: at.LStrip, rstrip: at.RStrip,
			normalized: !at.Special,
		}
		if at.Normalized != nil {
			tok.normalized = *at.Normalized
		}
		t.tokens[tok.id] = tok.content // an added token takes precedence over the model's entry for its id
		if tok.normalized {
			pattern := tok.content
			if t.normalizer != nil {
				pattern = t.normalizer.normalize(pattern)
			}
			normTokens, normPatterns = append(normTokens, tok), append(normPatterns, pattern)
		} else {
			rawTokens, rawPatterns = append(rawTokens, tok), append(rawPatterns, tok.content)
		}
	}
	t.rawAdded = newAddedTokenMatcher(rawTokens, rawPatterns)
	t.normAdded = newAddedTokenMatcher(normTokens, normPatterns)

	validID := func(id int64) bool { return id >= 0 && id < int64(len(t.tokens)) }
	if t.post, err = buildPostProcessor(file.PostProcessor, validID); err != nil {
		return nil, fmt.Errorf("post_processor: %w", err)
	}
	if n := t.post.added(false); maxLength < n {
		return nil, fmt.Errorf("MaxLength %d leaves no room for the %d special tokens", maxLength, n)
	}
	if n := t.post.added(true); t.post.hasPair && maxLength < n {
		return nil, fmt.Errorf("MaxLength %d leaves no room for the %d special tokens of a pair", maxLength, n)
	}
	t.padID = t.findPadID(file)
	return t, nil
}

// findPadID: the padding section's pad_id if the file pads, else the id of [PAD] or <pad>, else 0.
func (t *Tokenizer) findPadID(file *hfTokenizerFile) int64 {
	if p := file.Padding; p != nil && p.PadID != nil && *p.PadID >= 0 && *p.PadID < int64(len(t.tokens)) {
		return *p.PadID
	}
	for _, name := range []string{"[PAD]", "<pad>"} {
		for _, at := range file.AddedTokens {
			if at.Content == name {
				return *at.ID
			}
		}
		for id, tok := range t.tokens {
			if tok == name {
				return int64(id)
			}
		}
	}
	return 0
}

// Keep says which part of a text longer than MaxLength an encoding keeps.
type Keep int

const (
	// KeepStart cuts the end off (Hugging Face's truncation direction right, the default).
	KeepStart Keep = iota
	// KeepEnd cuts the start off (direction left).
	KeepEnd
)

// Encode tokenizes one text: special tokens around it, truncated to MaxLength.
func (t *Tokenizer) Encode(text string) (Encoding, error) {
	return t.encode(text, "", false, KeepStart)
}

// EncodeKeeping is Encode with the part of a long text to keep.
func (t *Tokenizer) EncodeKeeping(text string, keep Keep) (Encoding, error) {
	return t.encode(text, "", false, keep)
}

// EncodePair tokenizes a pair of texts, e.g. a rerank (query, document): the second sequence gets type id 1 (as the
// template says), and when the pair is too long the longer text is cut first (longest_first, Hugging Face's
// default).
func (t *Tokenizer) EncodePair(first, second string) (Encoding, error) {
	return t.EncodePairKeeping(first, second, KeepStart)
}

// EncodePairKeeping is EncodePair with the part of a long text to keep.
func (t *Tokenizer) EncodePairKeeping(first, second string, keep Keep) (Encoding, error) {
	if !t.post.hasPair {
		return Encoding{}, errors.New("tokenizer: the post-processor has no template for pairs")
	}
	return t.encode(first, second, true, keep)
}

func (t *Tokenizer) encode(first, second string, pair bool, keep Keep) (enc Encoding, err error) {
	// Everything below is our own code over validated data; still, one unforeseen input must fail its request,
	// not the process.
	defer func() {
		if r := recover(); r != nil {
			enc, err = Encoding{}, fmt.Errorf("%w: %v", ErrInternal, r)
		}
	}()
	room := t.maxLength - t.post.added(pair)
	// The end of a text is only known once all of it is tokenized.
	limit := room
	if keep == KeepEnd {
		limit = math.MaxInt - 1
	}
	a, err := t.encodeSequence(first, limit)
	if err != nil {
		return Encoding{}, fmt.Errorf("tokenizer: %w", err)
	}
	var b []int64
	if pair {
		if b, err = t.encodeSequence(second, limit); err != nil {
			return Encoding{}, fmt.Errorf("tokenizer: %w", err)
		}
	}
	a, b, enc.Truncated = truncateLongestFirst(a, b, room, pair, keep)
	enc.IDs, enc.TypeIDs = t.post.apply(a, b, pair)
	return enc, nil
}

// encodeSequence returns the ids of one text without special tokens, following tokenizers'
// Tokenizer::encode_single_sequence: added tokens out of the raw text, normalization of the rest, added tokens out
// of the normalized text, pre-tokenization, the model.
//
// It stops once it has more than limit ids: truncation keeps at most limit tokens of a sequence, from the start,
// and its choice for a pair depends on each length only up to limit (truncateLongestFirst gives the same result
// for any length above it), so the rest of a long text is never run through the model.
func (t *Tokenizer) encodeSequence(text string, limit int) ([]int64, error) {
	text = toValidUTF8(text)
	var (
		ids   []int64
		words []string
		err   error
	)
	for _, seg := range t.rawAdded.split(nil, text) {
		if len(ids) > limit {
			break
		}
		if seg.token >= 0 {
			ids = append(ids, t.rawAdded.tokens[seg.token].id)
			continue
		}
		normalized := seg.text
		if t.normalizer != nil {
			normalized = t.normalizer.normalize(normalized)
		}
		for _, sub := range t.normAdded.split(nil, normalized) {
			if len(ids) > limit {
				break
			}
			if sub.token >= 0 {
				ids = append(ids, t.normAdded.tokens[sub.token].id)
				continue
			}
			if sub.text == "" {
				continue
			}
			words = words[:0]
			if t.preTok != nil {
				words = t.preTok.split(words, sub.text, seg.start == 0 && sub.start == 0)
			} else {
				words = append(words, sub.text)
			}
			for _, w := range words {
				if ids, err = t.appendWord(ids, w, limit); err != nil {
					return nil, err
				}
				if len(ids) > limit {
					return ids, nil
				}
			}
		}
	}
	return ids, nil
}

// clipMarginTokens is how many tokens' worth of bytes appendWord keeps beyond what the tokens it needs can cover,
// so that the cut, which changes the tokens around it, stays far from them.
const clipMarginTokens = 64

// appendWord appends the ids of one pre-tokenized word, of which only enough to take ids past limit matter
// (encodeSequence stops there). A word longer than those tokens could cover (the model's longest piece each, plus
// a margin) is clipped at a character boundary before the model sees it, so that one huge word without spaces
// costs the model (Unigram's Viterbi, 16 bytes per byte; BPE's merges) only a bounded prefix. The ids are those of
// the whole word wherever they are kept: the first tokens of a word cover at most that many bytes, and the
// segmentation of a word's start depends on text that far after it only through an unbroken chain of competing
// segmentations across the whole margin (possible in principle for Viterbi and for BPE merges; the golden tests and
// TestTokenizerHugeWord compare with the unclipped word). When the clipped word does
// not give enough tokens (a long run of unknown characters fused into one <unk>, or characters BPE drops), it is
// retried four times longer, up to the whole word.
func (t *Tokenizer) appendWord(ids []int64, word string, limit int) ([]int64, error) {
	piece := t.model.maxPieceBytes()
	need := limit + 1 - len(ids)
	if piece <= 0 || need <= 0 || need > len(word) {
		return t.model.appendIDs(ids, word)
	}
	start := len(ids)
	for clip := (need + clipMarginTokens) * piece; clip < len(word); clip *= 4 {
		cut := clip
		for cut > 0 && !utf8.RuneStart(word[cut]) {
			cut--
		}
		out, err := t.model.appendIDs(ids, word[:cut])
		if err != nil {
			return out, err // an error about the word's start is one about the word
		}
		if len(out)-start >= need {
			return out, nil
		}
		ids = out[:start]
		if clip > len(word)/4 {
			break
		}
	}
	return t.model.appendIDs(ids, word)
}

// toValidUTF8 replaces every byte that is not part of a valid UTF-8 sequence with U+FFFD, one per byte as Go's
// range loop decodes. What a Hugging Face tokenizer sees for such input depends on the caller's decoder (Python and
// JavaScript also substitute U+FFFD); the BERT normalizer then drops U+FFFD, the others keep it as a character
// (usually [UNK]/<unk>).
func toValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// Token returns the vocabulary string of id, or "" if id is out of range.
func (t *Tokenizer) Token(id int64) string {
	if id < 0 || id >= int64(len(t.tokens)) {
		return ""
	}
	return t.tokens[id]
}

// VocabSize is one more than the largest id the tokenizer can produce: the model's vocabulary and the added tokens.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// PadID is the id to pad with: the file's padding pad_id, else [PAD] or <pad>, else 0.
func (t *Tokenizer) PadID() int64 { return t.padID }

// EncodesPairs reports whether the post-processor has a template for pairs,
// which EncodePair (and so rerank) needs.
func (t *Tokenizer) EncodesPairs() bool { return t.post.hasPair }
