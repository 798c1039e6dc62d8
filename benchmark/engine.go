package benchmark

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/synthbert"
	"github.com/jetinfer/jetinfer/modelquant"
)

// Config configures a benchmark run.
type Config struct {
	Runtime *inference.Runtime
	// CacheDir keeps generated models between runs.
	CacheDir string
	// Tokenizer is bert-base-uncased's tokenizer.json, whose vocabulary the
	// synthetic models share.
	Tokenizer string
	// Texts is the size of the mixed-length corpus of the dense benchmark.
	Texts int
	// Docs is the number of 256-token documents of the sparse benchmark.
	Docs int
	// Threads are the num_threads settings to measure.
	Threads []int
	// RequestSize is how many texts the engine gets per call, as the
	// pipeline hands it a batch of messages.
	RequestSize int
	// DenseModel replaces the MiniLM-L12 sized dense model (smoke tests
	// use a small one), and gives the int8 benchmark's sparse and rerank
	// models its shape; nil keeps them.
	DenseModel *synthbert.Config
	// PipelineDocs is the number of mixed-length documents of the pipeline
	// benchmark.
	PipelineDocs int
	// LatencyRequests is the number of sequential single-input requests of
	// each latency measurement.
	LatencyRequests int
	// BulkDocs is the number of long documents queued as the bulk ingest
	// the latency benchmark searches beside; documents still queued when
	// the searches end are never embedded.
	BulkDocs int
	// PriorityDocs is the number of long documents the priority benchmark
	// embeds, alone and while searched: their time sets how many searches
	// its p99s rest on.
	PriorityDocs int
	// ProfileDir, when set, is where the int8 benchmark has ONNX Runtime write its profiles (see Int8Result).
	ProfileDir string
}

func (c Config) withDefaults() Config {
	if c.Texts == 0 {
		c.Texts = 1000
	}
	if c.Docs == 0 {
		c.Docs = 24
	}
	if len(c.Threads) == 0 {
		c.Threads = []int{1, 2}
	}
	if c.RequestSize == 0 {
		c.RequestSize = 256
	}
	if c.PipelineDocs == 0 {
		c.PipelineDocs = 192
	}
	if c.LatencyRequests == 0 {
		c.LatencyRequests = 200
	}
	if c.BulkDocs == 0 {
		c.BulkDocs = 256
	}
	if c.PriorityDocs == 0 {
		c.PriorityDocs = 512
	}
	return c
}

// Throughput is one measured configuration.
type Throughput struct {
	Name         string
	Threads      int
	Allocations  int
	Inputs       int
	Tokens       int64
	PaddedTokens int64
	Elapsed      time.Duration
}

// InputsPerSecond and TokensPerSecond count real (unpadded) tokens.
func (t Throughput) InputsPerSecond() float64 { return float64(t.Inputs) / t.Elapsed.Seconds() }
func (t Throughput) TokensPerSecond() float64 { return float64(t.Tokens) / t.Elapsed.Seconds() }

// PaddingRatio is padded tokens over real tokens: 1 means no padding.
func (t Throughput) PaddingRatio() float64 { return float64(t.PaddedTokens) / float64(t.Tokens) }

// model writes (once) and loads a synthetic model artifact.
func model(ctx context.Context, cfg Config, name string, sc synthbert.Config, jetinferJSON string, threads int) (*inference.Model, error) {
	dir, err := modelDir(cfg, name, sc, jetinferJSON)
	if err != nil {
		return nil, err
	}
	return inference.LoadModel(ctx, cfg.Runtime, dir, inference.LoadOptions{Threads: threads})
}

// modelDir writes (once) a synthetic model artifact and returns its
// directory.
func modelDir(cfg Config, name string, sc synthbert.Config, jetinferJSON string) (string, error) {
	// The cache is keyed by the generator's config; a change to the
	// generator itself fails synthbert's pinned-digest test first.
	sum := sha256.Sum256(fmt.Appendf(nil, "%+v", sc))
	dir := filepath.Join(cfg.CacheDir, fmt.Sprintf("%s-%x", name, sum[:6]))
	onnx := filepath.Join(dir, artifact.ONNXFile)
	if _, err := os.Stat(onnx); err != nil {
		m, err := synthbert.New(sc)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		if err := m.WriteONNX(onnx + ".partial"); err != nil {
			return "", err
		}
		if err := os.Rename(onnx+".partial", onnx); err != nil {
			return "", err
		}
	}
	tok, err := os.ReadFile(cfg.Tokenizer)
	if err != nil {
		return "", fmt.Errorf("tokenizer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, artifact.TokenizerFile), tok, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, artifact.ConfigFile), []byte(jetinferJSON), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// The sparse model: BERT-base sized, ELSER v2's architecture.
const (
	sparseName   = "bert-base-mlm"
	sparseConfig = `{"task_type":"sparse_embedding","max_sequence_length":256}`
)

var sparseSynth = synthbert.BERTBase(synthbert.HeadMaskedLM, 43)

const denseConfig = `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":512}`

func denseModel(ctx context.Context, cfg Config, threads int) (*inference.Model, error) {
	return model(ctx, cfg, "minilm-l12-hidden", denseSynth(cfg), denseConfig, threads)
}

// denseDir is denseModel's artifact directory.
func denseDir(cfg Config) (string, error) {
	return modelDir(cfg, "minilm-l12-hidden", denseSynth(cfg), denseConfig)
}

func denseSynth(cfg Config) synthbert.Config {
	if cfg.DenseModel != nil {
		return *cfg.DenseModel
	}
	return synthbert.MiniLML12(synthbert.HeadHidden, 42)
}

// Dense measures a MiniLM-L12 / multilingual-e5-small sized embedding model
// on the mixed corpus, in requests of RequestSize texts: raw ONNX Runtime on
// the requests' pre-tokenized, padded batches (the limit of this machine),
// measured before and after the engine end to end (tokenize, batch, run,
// pool, normalise) on the same requests.
func Dense(ctx context.Context, cfg Config) ([]Throughput, error) {
	cfg = cfg.withDefaults()
	corpus := Corpus(cfg.Texts, 1)
	var rows []Throughput
	for _, threads := range cfg.Threads {
		m, err := denseModel(ctx, cfg, threads)
		if err != nil {
			return nil, err
		}
		raw, engine, err := measureDense(ctx, m, corpus, cfg.RequestSize)
		_ = m.Close()
		if err != nil {
			return nil, err
		}
		raw.Threads, engine.Threads = threads, threads
		rows = append(rows, raw, engine)
	}
	return rows, nil
}

func measureDense(ctx context.Context, m *inference.Model, corpus []string, requestSize int) (raw, engine Throughput, err error) {
	if _, err := m.Embed(ctx, corpus[:min(16, len(corpus))], ""); err != nil { // warm-up
		return raw, engine, err
	}
	// Raw ORT runs exactly the batches the engine forms: the same requests,
	// tokenized, sorted and padded beforehand, outside the timing.
	var batches []inference.PaddedBatch
	for i := 0; i < len(corpus); i += requestSize {
		bs, err := m.PrepareBatches(corpus[i:min(i+requestSize, len(corpus))], "")
		if err != nil {
			return raw, engine, err
		}
		batches = append(batches, bs...)
	}
	runRaw := func() (Throughput, error) {
		t := Throughput{Name: "raw ONNX Runtime", Allocations: 1, Inputs: len(corpus)}
		start := time.Now()
		for _, b := range batches {
			if err := m.RunBatch(ctx, b); err != nil {
				return t, err
			}
			t.Tokens += int64(b.RealTokens())
			t.PaddedTokens += int64(b.PaddedTokens())
		}
		t.Elapsed = time.Since(start)
		return t, nil
	}
	if raw, err = runRaw(); err != nil {
		return raw, engine, err
	}

	engine = Throughput{Name: "engine end to end", Allocations: 1, Inputs: len(corpus)}
	st := m.Stats()
	real0, padded0 := st.RealTokens.Load(), st.PaddedTokens.Load()
	start := time.Now()
	for i := 0; i < len(corpus); i += requestSize {
		if _, err := m.Embed(ctx, corpus[i:min(i+requestSize, len(corpus))], ""); err != nil {
			return raw, engine, err
		}
	}
	engine.Elapsed = time.Since(start)
	engine.Tokens = st.RealTokens.Load() - real0
	engine.PaddedTokens = st.PaddedTokens.Load() - padded0

	// Raw ORT again after the engine, keeping the faster run, so that the
	// order of the measurements cannot flatter the engine.
	again, err := runRaw()
	if err != nil {
		return raw, engine, err
	}
	if again.Elapsed < raw.Elapsed {
		raw = again
	}
	return raw, engine, nil
}

// esELSERDocsPerVCPU is Elasticsearch's published ELSER v2 throughput per vCPU: 22 documents of 256 tokens a
// second with 8 allocations on 16 vCPUs (the ELSER benchmarks page).
const esELSERDocsPerVCPU = 22.0 / 16

// Sparse measures a BERT-base sized masked-LM model (ELSER v2's architecture) on 256-token documents, one
// document per call as allocations take them, with each number of single-threaded allocations: in float, then in
// int8 (its copy as `jetinfer model import --quantize int8` makes it) when int8 is set.
func Sparse(ctx context.Context, cfg Config, allocations []int, int8 bool) ([]Throughput, error) {
	cfg = cfg.withDefaults()
	dir, err := modelDir(cfg, sparseName, sparseSynth, sparseConfig)
	if err != nil {
		return nil, err
	}
	variants := []struct{ name, dir string }{{"float", dir}}
	if int8 {
		qdir, _, err := int8Dir(ctx, cfg, dir, modelquant.FuseAuto)
		if err != nil {
			return nil, err
		}
		defer func() { _ = os.RemoveAll(qdir) }()
		variants = append(variants, struct{ name, dir string }{"int8", qdir})
	}
	var rows []Throughput
	for _, v := range variants {
		for _, n := range allocations {
			t, err := sparseRun(ctx, cfg, v.dir, n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.name, err)
			}
			t.Name = v.name
			rows = append(rows, t)
		}
	}
	return rows, nil
}

// sparseRun embeds the documents one per call with n allocations sharing one single-threaded session.
func sparseRun(ctx context.Context, cfg Config, dir string, allocations int) (Throughput, error) {
	m, err := inference.LoadModel(ctx, cfg.Runtime, dir, inference.LoadOptions{Threads: 1})
	if err != nil {
		return Throughput{}, err
	}
	defer func() { _ = m.Close() }()
	docs := Documents(cfg.Docs, 300, 2)
	if _, err := m.SparseEmbed(ctx, docs[:1], ""); err != nil { // warm-up
		return Throughput{}, err
	}
	st := m.Stats()
	real0, padded0 := st.RealTokens.Load(), st.PaddedTokens.Load()
	t := Throughput{Threads: 1, Allocations: allocations, Inputs: len(docs)}
	start := time.Now()
	err = eachAllocation(ctx, allocations, docs, func(ctx context.Context, _ int, doc string) error {
		_, err := m.SparseEmbed(ctx, []string{doc}, "")
		return err
	})
	t.Elapsed = time.Since(start)
	t.Tokens = st.RealTokens.Load() - real0
	t.PaddedTokens = st.PaddedTokens.Load() - padded0
	return t, err
}

// eachAllocation runs work over inputs with n concurrent allocations, each
// taking the next input when it is free, as allocations take messages.
func eachAllocation(ctx context.Context, n int, inputs []string, work func(ctx context.Context, allocation int, input string) error) error {
	next := make(chan string)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for a := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range next {
				if err := work(ctx, a, in); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, in := range inputs {
		select {
		case next <- in:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	return errors.Join(err, <-errs)
}

// MemoryProbe loads the dense model and runs allocations concurrent
// allocations over the corpus, either sharing one session (jetinfer's way)
// or each with a session of its own, and returns the process's peak
// resident memory. Run it in a fresh process: the peak is per process.
func MemoryProbe(ctx context.Context, cfg Config, allocations int, sharedSession bool) (peakBytes int64, err error) {
	cfg = cfg.withDefaults()
	models := make([]*inference.Model, 1)
	if !sharedSession {
		models = make([]*inference.Model, allocations)
	}
	for i := range models {
		if models[i], err = denseModel(ctx, cfg, 1); err != nil {
			return 0, err
		}
		defer func() { _ = models[i].Close() }()
	}
	corpus := Corpus(min(cfg.Texts, 256), 3)
	err = eachAllocation(ctx, allocations, chunks(corpus, 32), func(ctx context.Context, allocation int, chunk string) error {
		m := models[allocation%len(models)]
		_, err := m.Embed(ctx, strings.Split(chunk, "\x00"), "")
		return err
	})
	if err != nil {
		return 0, err
	}
	return procStatus("VmHWM")
}

// chunks joins texts into groups of n, so that one work item is a request.
func chunks(texts []string, n int) []string {
	var out []string
	for i := 0; i < len(texts); i += n {
		out = append(out, strings.Join(texts[i:min(i+n, len(texts))], "\x00"))
	}
	return out
}

// procStatus reads a memory field (in kB) of /proc/self/status, in bytes.
func procStatus(field string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/self/status has no %s", field)
}
