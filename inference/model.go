package inference

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/tokenizer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// ErrClosed is wrapped by the error of every call on a Model after Close.
var ErrClosed = errors.New("inference: model is closed")

// InputType selects the prefix a text gets (PrefixStrings).
type InputType string

// Input types that select a prefix; any other value selects none.
const (
	InputSearch InputType = "search"
	InputIngest InputType = "ingest"
)

// LoadOptions configures a loaded model.
type LoadOptions struct {
	// Threads is ORT's intra-op thread count per run: the endpoint's
	// num_threads.
	Threads int
	// Batch bounds each forward pass; the zero value means DefaultBatch().
	// MaxTokens must be at least 1, and so must MaxRows unless it is zero
	// (DefaultBatch's MaxRows).
	Batch BatchConfig
	// Timings, when set, is told how long each tokenization and each
	// forward pass took.
	Timings Timings
	// GraphCache, when set, is a directory where the graphs ONNX Runtime
	// optimized are kept, so that loading a model again skips the
	// optimization (see graphCache).
	GraphCache string
	// Profile, when set, makes ONNX Runtime time every operator of every
	// forward pass and write the events, when the model is closed, to a
	// JSON file named Profile + "_" + the load's date and time + ".json",
	// in ONNX Runtime's profile format. Profiling slows every pass: it is
	// for measurements.
	Profile string
}

// Timings observes the model's work (the worker's metrics).
type Timings interface {
	// Tokenized: the inputs of one call were tokenized in d.
	Tokenized(d time.Duration)
	// Ran: a forward pass over rows sequences took d.
	Ran(rows int, d time.Duration)
}

// sparseOutputBudget caps the output of one sparse batch (rows × seq ×
// vocabulary floats) at 64 MiB: BERT's 30,522-token vocabulary makes a
// 4096-token batch's logits 500 MB otherwise.
const sparseOutputBudget = 64 << 20

// Model is a loaded model artifact: tokenizer, ONNX session and task head.
// It is safe for concurrent use; concurrent calls run concurrently on the
// one shared session.
type Model struct {
	// mu guards the session's lifetime: every call holds the read side while
	// it uses the session, Close takes the write side, so it waits for the
	// calls in flight and the calls after it see closed.
	mu     sync.RWMutex
	closed bool

	spec    Spec
	tok     *tokenizer.Tokenizer
	sess    *session
	batch   BatchConfig
	padID   int64
	stats   Stats
	timings Timings
	dir     string
}

// Stats counts what a model computed, for benchmarks and metrics.
type Stats struct {
	Batches      atomic.Int64
	Inputs       atomic.Int64
	RealTokens   atomic.Int64
	PaddedTokens atomic.Int64
	// TokenizeNanos and RunNanos split the model's time between the
	// tokenizer and ONNX Runtime.
	TokenizeNanos atomic.Int64
	RunNanos      atomic.Int64
}

// LoadModel loads the artifact in dir and validates it against the graph.
func LoadModel(ctx context.Context, rt *Runtime, dir string, opts LoadOptions) (*Model, error) {
	if rt == nil {
		return nil, errors.New("inference: LoadModel needs a Runtime")
	}
	if opts.Threads < 1 {
		opts.Threads = 1
	}
	if opts.Batch == (BatchConfig{}) {
		opts.Batch = DefaultBatch()
	}
	if err := opts.Batch.validate(); err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	if opts.Batch.MaxRows == 0 {
		opts.Batch.MaxRows = defaultBatchRows
	}
	a, err := readArtifact(dir)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	tok, err := tokenizer.Load(tokenizer.Config{Path: filepath.Join(dir, artifact.TokenizerFile), MaxLength: a.maxSequenceLength()})
	if err != nil {
		return nil, fmt.Errorf("model %s: %w: %w", dir, ErrInvalidModel, err)
	}
	onnx := filepath.Join(dir, artifact.ONNXFile)
	inputs, outputs, err := graphInfo(onnx)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	spec, err := resolve(a, inputs, outputs, tok.VocabSize())
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	if spec.Task == TaskRerank && !tok.EncodesPairs() {
		// EncodePair would fail on every request.
		return nil, fmt.Errorf("model %s: %w", dir, invalid("%s: the post-processor has no template for pairs, which rerank needs", artifact.TokenizerFile))
	}
	names := []string{spec.Inputs.InputIDs, spec.Inputs.AttentionMask}
	if spec.Inputs.TokenTypeIDs != "" {
		names = append(names, spec.Inputs.TokenTypeIDs)
	}
	if spec.Inputs.PositionIDs != "" {
		names = append(names, spec.Inputs.PositionIDs) // in batchInput's order
	}
	sess, err := newSession(onnx, names, spec.Output, runSettings{threads: opts.Threads, profile: opts.Profile}, graphCache{dir: opts.GraphCache})
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	m := &Model{spec: spec, tok: tok, sess: sess, batch: opts.Batch, padID: tok.PadID(), dir: dir, timings: opts.Timings}
	if spec.Task == TaskSparseEmbedding {
		m.batch.MaxTokens = max(spec.MaxSequenceLength, min(m.batch.MaxTokens, sparseOutputBudget/4/tok.VocabSize()))
	}
	if spec.Task == TaskTextEmbedding && spec.Dimensions == 0 {
		// Nothing states the size: measure it, as Elasticsearch's
		// validation call does with the same input.
		vecs, err := m.Embed(ctx, []string{"how big"}, InputIngest)
		if err != nil {
			_ = m.Close()
			return nil, fmt.Errorf("model %s: measure embedding size: %w", dir, err)
		}
		m.spec.Dimensions = len(vecs[0])
	}
	return m, nil
}

// Spec returns what the model computes and how.
func (m *Model) Spec() Spec { return m.spec }

// Stats returns the model's counters.
func (m *Model) Stats() *Stats { return &m.stats }

// Close waits for the calls in flight and releases the session. Calls
// after it return an error wrapping ErrClosed; closing again does nothing.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	return m.sess.close()
}

// acquire holds off Close for the duration of one call; the caller runs
// release (m.mu.RUnlock) when it is done with the session.
func (m *Model) acquire() error {
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return fmt.Errorf("model %s: %w", m.dir, ErrClosed)
	}
	return nil
}

// RunOptions change how one call reads and scores its inputs; the zero
// value runs the model as its spec says.
type RunOptions struct {
	// Prompt, when set, goes before every input instead of the prefix the
	// input type selects.
	Prompt *string
	// Truncation is what becomes of an input longer than the model's
	// limit: its end is cut off (the default), its start, or it is refused
	// with a *TooLongError.
	Truncation Truncation
	// Normalize, when set, says whether dense embeddings are scaled to unit
	// length instead of the spec's Normalize.
	Normalize *bool
	// Scores, when set, replaces the spec's RerankScores.
	Scores ScoreFunction
}

// Truncation is what RunOptions do with an input too long for the model.
type Truncation int

const (
	TruncateEnd   Truncation = iota // cut the end off (Hugging Face's direction right)
	TruncateStart                   // cut the start off (direction left)
	RefuseLong                      // a *TooLongError
)

// TooLongError is the error of an input longer than the model's limit
// under RunOptions{Truncation: RefuseLong}.
type TooLongError struct {
	Input  int // its index
	Tokens int // its tokens, special tokens included
	Max    int // the model's limit
}

func (e *TooLongError) Error() string {
	return fmt.Sprintf("input %d has %d tokens, more than the model's %d", e.Input, e.Tokens, e.Max)
}

func (m *Model) prefixed(texts []string, it InputType, ro RunOptions) []string {
	prefix := ""
	switch it {
	case InputSearch:
		prefix = m.spec.Prefixes.Search
	case InputIngest:
		prefix = m.spec.Prefixes.Ingest
	default:
		prefix = m.spec.DefaultPrompt
	}
	if ro.Prompt != nil {
		prefix = *ro.Prompt
	}
	if prefix == "" {
		return texts
	}
	out := make([]string, len(texts))
	for i, t := range texts {
		out[i] = prefix + t
	}
	return out
}

func (m *Model) encode(ctx context.Context, texts []string, t Truncation) ([]tokenizer.Encoding, error) {
	defer m.timeTokenizer(ctx, len(texts))()
	encs := make([]tokenizer.Encoding, len(texts))
	for i, text := range texts {
		e, err := m.tok.EncodeKeeping(text, keep(t))
		if err != nil {
			return nil, fmt.Errorf("tokenize input %d: %w", i, err)
		}
		if e.Truncated && t == RefuseLong {
			return nil, m.tooLong(i, text)
		}
		encs[i] = e
	}
	return encs, nil
}

func (m *Model) encodePairs(ctx context.Context, query string, docs []string, t Truncation) ([]tokenizer.Encoding, error) {
	defer m.timeTokenizer(ctx, len(docs))()
	encs := make([]tokenizer.Encoding, len(docs))
	for i, d := range docs {
		e, err := m.tok.EncodePairKeeping(query, d, keep(t))
		if err != nil {
			return nil, fmt.Errorf("tokenize document %d: %w", i, err)
		}
		if e.Truncated && t == RefuseLong {
			return nil, m.tooLong(i, query, d)
		}
		encs[i] = e
	}
	return encs, nil
}

func keep(t Truncation) tokenizer.Keep {
	if t == TruncateStart {
		return tokenizer.KeepEnd
	}
	return tokenizer.KeepStart
}

// tooLong counts all the tokens of the input, a text or a pair (its
// encoding stopped at the limit), for the error.
func (m *Model) tooLong(i int, texts ...string) error {
	n, err := m.tok.Count(texts...)
	if err != nil {
		n = m.spec.MaxSequenceLength + 1
	}
	return &TooLongError{Input: i, Tokens: n, Max: m.spec.MaxSequenceLength}
}

// timeTokenizer measures (and traces, under ctx's span) tokenizing n
// inputs until the returned func is called.
func (m *Model) timeTokenizer(ctx context.Context, n int) (done func()) {
	start := time.Now()
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(ctx, "tokenize", trace.WithAttributes(attribute.Int("inputs", n)))
	return func() {
		d := time.Since(start)
		m.stats.TokenizeNanos.Add(int64(d))
		if m.timings != nil {
			m.timings.Tokenized(d)
		}
		span.End()
	}
}

// tracerName is the instrumentation scope of the engine's spans, which it
// starts only under a span it is given.
const tracerName = "github.com/jetinfer/jetinfer/inference"

// outShape is the output shape of a batch, or nil when it is not known
// before the run (an embedding size still to be measured).
func (m *Model) outShape(rows, seq int) []int64 {
	r, s := int64(rows), int64(seq)
	switch m.spec.Task {
	case TaskSparseEmbedding:
		return []int64{r, s, int64(m.tok.VocabSize())}
	case TaskRerank:
		return []int64{r, 1}
	}
	switch d := int64(m.spec.Dimensions); {
	case d == 0:
		return nil
	case m.spec.OutputPooled:
		return []int64{r, d}
	default:
		return []int64{r, s, d}
	}
}

// batches plans encs into token-budget batches and pads each one when the
// iteration reaches it, yielding the inputs' indices with the batch.
func (m *Model) batches(encs []tokenizer.Encoding) iter.Seq2[[]int, PaddedBatch] {
	return func(yield func([]int, PaddedBatch) bool) {
		lengths := make([]int, len(encs))
		for i, e := range encs {
			lengths[i] = len(e.IDs)
		}
		for _, idx := range planBatches(lengths, m.batch) {
			batch := make([]tokenizer.Encoding, len(idx))
			real := 0
			for j, i := range idx {
				batch[j] = encs[i]
				real += lengths[i]
			}
			layout := padLayout{types: m.spec.Inputs.TokenTypeIDs != "", positions: m.spec.Inputs.PositionIDs != "", left: m.spec.PadLeft}
			if !yield(idx, PaddedBatch{in: pad(batch, m.padID, layout), real: real}) {
				return
			}
		}
	}
}

// forEachBatch runs the graph over encs batch by batch and hands each
// batch's output to emit with the inputs' indices.
func (m *Model) forEachBatch(ctx context.Context, encs []tokenizer.Encoding, emit func(idx []int, in batchInput, out []float32) error) error {
	for idx, b := range m.batches(encs) {
		start := time.Now()
		_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(ctx, "run batch", trace.WithAttributes(
			attribute.Int("rows", b.Rows()), attribute.Int("tokens", b.RealTokens()), attribute.Int("padded_tokens", b.PaddedTokens())))
		out, err := m.runBatch(ctx, b, span, start)
		if err != nil {
			return err
		}
		m.stats.Batches.Add(1)
		m.stats.Inputs.Add(int64(b.Rows()))
		m.stats.RealTokens.Add(int64(b.RealTokens()))
		m.stats.PaddedTokens.Add(int64(b.PaddedTokens()))
		if err := emit(idx, b.in, out); err != nil {
			return err
		}
	}
	return nil
}

// runBatch runs one batch and ends its span, even when the run panics.
func (m *Model) runBatch(ctx context.Context, b PaddedBatch, span trace.Span, start time.Time) ([]float32, error) {
	defer span.End()
	out, _, err := m.sess.run(ctx, b.in, m.outShape(b.in.rows, b.in.seq))
	d := time.Since(start)
	m.stats.RunNanos.Add(int64(d))
	if m.timings != nil {
		m.timings.Ran(b.Rows(), d)
	}
	return out, err
}

// Embed returns one dense embedding per text, in order.
func (m *Model) Embed(ctx context.Context, texts []string, it InputType) ([][]float32, error) {
	vecs, _, err := m.EmbedWith(ctx, texts, it, RunOptions{})
	return vecs, err
}

// EmbedWith is Embed changed by ro, and the tokens the model read:
// prefixes and special tokens included, truncated to its limit, no
// padding (OpenAI's usage).
func (m *Model) EmbedWith(ctx context.Context, texts []string, it InputType, ro RunOptions) ([][]float32, int, error) {
	if err := m.acquire(); err != nil {
		return nil, 0, err
	}
	defer m.mu.RUnlock()
	if m.spec.Task != TaskTextEmbedding {
		return nil, 0, fmt.Errorf("inference: model %s computes %s, not text_embedding", m.dir, m.spec.Task)
	}
	encs, err := m.encode(ctx, m.prefixed(texts, it, ro), ro.Truncation)
	if err != nil {
		return nil, 0, err
	}
	normalize := m.spec.Normalize
	if ro.Normalize != nil {
		normalize = *ro.Normalize
	}
	tokens := 0
	for _, e := range encs {
		tokens += len(e.IDs)
	}
	result := make([][]float32, len(texts))
	err = m.forEachBatch(ctx, encs, func(idx []int, in batchInput, out []float32) error {
		d := len(out) / in.rows
		if !m.spec.OutputPooled {
			d /= in.seq
		}
		var vecs [][]float32
		switch {
		case m.spec.OutputPooled:
			vecs = make([][]float32, in.rows)
			for r := range vecs {
				vecs[r] = out[r*d : (r+1)*d : (r+1)*d]
			}
		case m.spec.Pooling == PoolCLS:
			vecs = clsPool(out, in.rows, in.seq, d)
		case m.spec.Pooling == PoolLastToken:
			vecs = lastTokenPool(out, in.rows, in.seq, d, in.mask)
		default:
			vecs = meanPool(out, in.rows, in.seq, d, in.mask)
		}
		for j, i := range idx {
			if normalize {
				Normalize(vecs[j])
			}
			result[i] = vecs[j]
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return result, tokens, nil
}

// SparseEmbed returns one sparse embedding per text, in order.
func (m *Model) SparseEmbed(ctx context.Context, texts []string, it InputType) ([]SparseEmbedding, error) {
	return m.SparseEmbedWith(ctx, texts, it, RunOptions{})
}

// SparseEmbedWith is SparseEmbed changed by ro (its prompt and truncation).
func (m *Model) SparseEmbedWith(ctx context.Context, texts []string, it InputType, ro RunOptions) ([]SparseEmbedding, error) {
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	if m.spec.Task != TaskSparseEmbedding {
		return nil, fmt.Errorf("inference: model %s computes %s, not sparse_embedding", m.dir, m.spec.Task)
	}
	encs, err := m.encode(ctx, m.prefixed(texts, it, ro), ro.Truncation)
	if err != nil {
		return nil, err
	}
	vocab := m.tok.VocabSize()
	result := make([]SparseEmbedding, len(texts))
	err = m.forEachBatch(ctx, encs, func(idx []int, in batchInput, out []float32) error {
		for j, i := range idx {
			row := out[j*in.seq*vocab : (j+1)*in.seq*vocab]
			weights := splade(row, in.seq, vocab, in.mask[j*in.seq:(j+1)*in.seq])
			result[i] = SparseEmbedding{Tokens: sortedTokens(weights, m.tok.Token), Truncated: encs[i].Truncated}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// Rerank returns the relevance of each document to query, in input order.
func (m *Model) Rerank(ctx context.Context, query string, docs []string) ([]float32, error) {
	return m.RerankWith(ctx, query, docs, RunOptions{})
}

// RerankWith is Rerank changed by ro (its truncation and scores).
func (m *Model) RerankWith(ctx context.Context, query string, docs []string, ro RunOptions) ([]float32, error) {
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	if m.spec.Task != TaskRerank {
		return nil, fmt.Errorf("inference: model %s computes %s, not rerank", m.dir, m.spec.Task)
	}
	encs, err := m.encodePairs(ctx, query, docs, ro.Truncation)
	if err != nil {
		return nil, err
	}
	score := m.spec.RerankScores
	if ro.Scores != "" {
		score = ro.Scores
	}
	scores := make([]float32, len(docs))
	err = m.forEachBatch(ctx, encs, func(idx []int, in batchInput, out []float32) error {
		for j, i := range idx {
			s := out[j]
			if score == ScoreSigmoid {
				s = sigmoid(s)
			}
			scores[i] = s
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return scores, nil
}

// Tokenize returns the tokens of each text with their offsets (see
// tokenizer.Tokenize): all of them, with the special tokens when special.
func (m *Model) Tokenize(ctx context.Context, texts []string, special bool) ([][]tokenizer.TokenOffsets, error) {
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	defer m.timeTokenizer(ctx, len(texts))()
	out := make([][]tokenizer.TokenOffsets, len(texts))
	for i, t := range texts {
		toks, err := m.tok.Tokenize(t, special)
		if err != nil {
			return nil, fmt.Errorf("tokenize input %d: %w", i, err)
		}
		out[i] = toks
	}
	return out, nil
}

// Batch is the bound of the model's forward passes.
func (m *Model) Batch() BatchConfig { return m.batch }

// Token returns the vocabulary string of id.
func (m *Model) Token(id int64) string { return m.tok.Token(id) }

// PaddedBatch is one forward pass's input exactly as the model's task
// methods prepare it, for measuring ONNX Runtime alone (RunBatch).
type PaddedBatch struct {
	in   batchInput
	real int
}

// Rows, RealTokens and PaddedTokens describe the batch.
func (b PaddedBatch) Rows() int         { return b.in.rows }
func (b PaddedBatch) RealTokens() int   { return b.real }
func (b PaddedBatch) PaddedTokens() int { return b.in.rows * b.in.seq }

// PrepareBatches tokenizes, sorts and pads texts into the batches that
// Embed or SparseEmbed would run.
func (m *Model) PrepareBatches(texts []string, it InputType) ([]PaddedBatch, error) {
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	encs, err := m.encode(context.Background(), m.prefixed(texts, it, RunOptions{}), TruncateEnd)
	if err != nil {
		return nil, err
	}
	var out []PaddedBatch
	for _, b := range m.batches(encs) {
		out = append(out, b)
	}
	return out, nil
}

// RunBatch runs the session on a prepared batch and discards the output.
func (m *Model) RunBatch(ctx context.Context, b PaddedBatch) error {
	if err := m.acquire(); err != nil {
		return err
	}
	defer m.mu.RUnlock()
	_, _, err := m.sess.run(ctx, b.in, m.outShape(b.in.rows, b.in.seq))
	return err
}
