package benchmark

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/inference/synthbert"
	"github.com/jetinfer/jetinfer/modelquant"
	"github.com/jetinfer/jetinfer/modelstore"
)

// Int8Result is one model at one thread count, in float and in int8, on the same inputs through the engine.
type Int8Result struct {
	Name    string
	Threads int
	// Int8 is the copy `model import --quantize int8` makes (fused unless the fusions stand in the way: Form
	// says which), Other the other form (--fuse=false when the default fused, else --fuse=true) and
	// OtherAgreement its agreement with the float model.
	Float, Int8    Throughput
	Form           string
	Other          Throughput
	OtherAgreement quantize.Agreement
	// Agreement is on the benchmark's inputs; MeanCosine is the dense model's mean beside its minimum.
	Agreement  quantize.Agreement
	MeanCosine float64
	// ScoreStddev and MeanAbsError are the rerank scores' spread and int8's mean error, which say whether an
	// order can survive int8 (a random-weight cross-encoder scores every document almost alike).
	ScoreStddev, MeanAbsError float64
	// FloatProfile and Int8Profile are ONNX Runtime's operator times of the float model and the int8 copy over the
	// warm-up and all rounds, when Config.ProfileDir is set (profiling slows every pass, so that run's ratios are not
	// the unprofiled ones).
	FloatProfile, Int8Profile Profile
}

// Speedup is int8's inputs per second over the float model's.
func (r Int8Result) Speedup() float64 { return r.Int8.InputsPerSecond() / r.Float.InputsPerSecond() }

// The rerank model: ms-marco-MiniLM-L-6's shape (6 layers, hidden 384), the built-in .rerank-v1 stand-in.
const (
	rerankName   = "minilm-l6-classifier"
	rerankConfig = `{"task_type":"rerank","max_sequence_length":512}`
	rerankQuery  = "which document is about search relevance and dense retrieval?"
)

func rerankSynth() synthbert.Config {
	c := synthbert.MiniLML12(synthbert.HeadClassifier, 44)
	c.Layers = 6
	return c
}

// Int8 measures each model's int8 copy (modelquant, as `jetinfer model import --quantize int8` makes it, and in the
// other form: without the fusions when that copy has them, with them when not) against the float model at every
// thread count: the dense MiniLM-L12 / e5-small-sized model on 256 mixed texts, the
// BERT-base sparse model on cfg.Docs 256-token documents, the MiniLM-L6 reranker on one query and 50 documents.
func Int8(ctx context.Context, cfg Config) ([]Int8Result, error) {
	cfg = cfg.withDefaults()
	sparse, rerank := sparseSynth, rerankSynth()
	if small := cfg.DenseModel; small != nil { // smoke tests: every model in the small shape
		sparse, rerank = *small, *small
		sparse.Head, rerank.Head = synthbert.HeadMaskedLM, synthbert.HeadClassifier
	}
	models := []struct {
		name, dirName string
		synth         synthbert.Config
		config        string
		inputs        []string
	}{
		{"dense (MiniLM-L12 / e5-small)", "minilm-l12-hidden", denseSynth(cfg), denseConfig, Corpus(256, 5)},
		{"sparse (BERT-base MLM, 256 tokens)", sparseName, sparse, sparseConfig, Documents(cfg.Docs, 300, 2)},
		{"rerank (MiniLM-L6 cross-encoder)", rerankName, rerank, rerankConfig, Corpus(50, 6)},
	}
	var out []Int8Result
	for _, m := range models {
		dir, err := modelDir(cfg, m.dirName, m.synth, m.config)
		if err != nil {
			return nil, err
		}
		qdir, rec, err := int8Dir(ctx, cfg, dir, modelquant.FuseAuto)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		form, other := "fused", modelquant.FuseOff
		switch {
		case rec.UnfusedReason != "":
			form, other = "unfused: "+rec.UnfusedReason, modelquant.FuseOn
		case len(rec.Fused) == 0:
			form, other = "unfused: nothing to fuse", modelquant.FuseOn
		}
		odir, _, err := int8Dir(ctx, cfg, dir, other)
		if err != nil {
			_ = os.RemoveAll(qdir)
			return nil, fmt.Errorf("%s, the other form: %w", m.name, err)
		}
		rows, err := compareInt8(ctx, cfg, m.name, dir, qdir, odir, m.inputs)
		_ = os.RemoveAll(qdir)
		_ = os.RemoveAll(odir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		for i := range rows {
			rows[i].Form = form
		}
		out = append(out, rows...)
	}
	return out, nil
}

// int8Rounds is how many times each variant runs the inputs; the fastest run is kept, so that a moment of load on
// a shared machine does not decide a ratio.
const int8Rounds = 3

// compareInt8 runs the float model and the int8 model in both forms at each thread count.
func compareInt8(ctx context.Context, cfg Config, name, floatDir, int8Dir, otherDir string, inputs []string) ([]Int8Result, error) {
	var rows []Int8Result
	for _, threads := range cfg.Threads {
		var profiles []string // the float model's and the int8 copy's; the other form is not profiled
		if cfg.ProfileDir != "" {
			if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
				return nil, err
			}
			for _, variant := range []string{"float", "int8"} {
				prefix := filepath.Join(cfg.ProfileDir, fmt.Sprintf("%s-%s-%dt", strings.Fields(name)[0], variant, threads))
				// ReadProfiles adds up every file of a prefix: an earlier run's must go.
				old, err := profileFiles(prefix)
				if err != nil {
					return nil, err
				}
				for _, f := range old {
					if err := os.Remove(f); err != nil {
						return nil, err
					}
				}
				profiles = append(profiles, prefix)
			}
		}
		r, err := compareAt(ctx, cfg, []string{floatDir, int8Dir, otherDir}, profiles, threads, inputs)
		if err != nil {
			return nil, err
		}
		if profiles != nil {
			if r.FloatProfile, err = ReadProfiles(profiles[0]); err != nil {
				return nil, err
			}
			if r.Int8Profile, err = ReadProfiles(profiles[1]); err != nil {
				return nil, err
			}
		}
		r.Name = name
		rows = append(rows, r)
	}
	return rows, nil
}

// compareAt loads the float model and both int8 forms at one thread count and runs them in turn, round after round;
// profiles, when given, are the first models' LoadOptions.Profile (written when compareAt returns).
func compareAt(ctx context.Context, cfg Config, dirs, profiles []string, threads int, inputs []string) (Int8Result, error) {
	var models []*inference.Model
	defer func() {
		for _, m := range models {
			_ = m.Close()
		}
	}()
	for i, dir := range dirs {
		opts := inference.LoadOptions{Threads: threads}
		if i < len(profiles) {
			opts.Profile = profiles[i]
		}
		m, err := inference.LoadModel(ctx, cfg.Runtime, dir, opts)
		if err != nil {
			return Int8Result{}, err
		}
		models = append(models, m)
		if _, err := runInputs(ctx, cfg, m, inputs[:min(4, len(inputs))]); err != nil { // warm-up
			return Int8Result{}, err
		}
	}
	best := make([]Throughput, len(models))
	outs := make([]any, len(models))
	for range int8Rounds {
		for i, m := range models {
			t, out, err := measure(ctx, cfg, m, threads, inputs)
			if err != nil {
				return Int8Result{}, err
			}
			if best[i].Elapsed == 0 || t.Elapsed < best[i].Elapsed {
				best[i] = t
			}
			outs[i] = out
		}
	}
	r := Int8Result{Threads: threads, Float: best[0], Int8: best[1], Other: best[2]}
	var other Int8Result
	agree(&other, outs[0], outs[2])
	r.OtherAgreement = other.Agreement
	agree(&r, outs[0], outs[1])
	return r, nil
}

// int8Dir makes the int8 copy of a model directory in a new temporary directory (not cached: a change to the
// quantizer must show in the next run); remove it when done.
func int8Dir(ctx context.Context, cfg Config, dir string, fusion modelquant.Fusion) (string, *modelstore.Quantized, error) {
	qdir, err := os.MkdirTemp("", "jetinfer-int8-")
	if err != nil {
		return "", nil, err
	}
	// Forced: the benchmark reports the agreement itself, on its own inputs.
	rec, err := modelquant.Write(ctx, modelquant.Config{Runtime: cfg.Runtime, Force: true, Fuse: fusion}, dir, qdir)
	if err != nil {
		_ = os.RemoveAll(qdir)
		return "", nil, err
	}
	return qdir, rec, nil
}

// runInputs runs the inputs through the engine by the model's task: [][]float32, []inference.SparseEmbedding or
// []float32.
func runInputs(ctx context.Context, cfg Config, m *inference.Model, inputs []string) (any, error) {
	switch m.Spec().Task {
	case inference.TaskSparseEmbedding:
		return m.SparseEmbed(ctx, inputs, "")
	case inference.TaskRerank:
		return m.Rerank(ctx, rerankQuery, inputs)
	default:
		var all [][]float32
		for i := 0; i < len(inputs); i += cfg.RequestSize {
			vs, err := m.Embed(ctx, inputs[i:min(i+cfg.RequestSize, len(inputs))], "")
			if err != nil {
				return nil, err
			}
			all = append(all, vs...)
		}
		return all, nil
	}
}

// measure times one run of the inputs and counts its tokens.
func measure(ctx context.Context, cfg Config, m *inference.Model, threads int, inputs []string) (Throughput, any, error) {
	st := m.Stats()
	real0, padded0 := st.RealTokens.Load(), st.PaddedTokens.Load()
	t := Throughput{Threads: threads, Allocations: 1, Inputs: len(inputs)}
	start := time.Now()
	out, err := runInputs(ctx, cfg, m, inputs)
	t.Elapsed = time.Since(start)
	t.Tokens, t.PaddedTokens = st.RealTokens.Load()-real0, st.PaddedTokens.Load()-padded0
	return t, out, err
}

// agree measures the int8 outputs against the float ones.
func agree(r *Int8Result, floatOut, int8Out any) {
	switch f := floatOut.(type) {
	case [][]float32:
		q := int8Out.([][]float32)
		r.Agreement = quantize.DenseAgreement(f, q)
		for i := range f {
			r.MeanCosine += quantize.Cosine(f[i], q[i]) / float64(len(f))
		}
	case []inference.SparseEmbedding:
		r.Agreement = quantize.SparseAgreement(inference.SparseTerms(f), inference.SparseTerms(int8Out.([]inference.SparseEmbedding)))
	case []float32:
		q := int8Out.([]float32)
		r.Agreement = quantize.RerankAgreement(f, q)
		var mean float64
		for _, v := range f {
			mean += float64(v) / float64(len(f))
		}
		for i, v := range f {
			r.ScoreStddev += (float64(v) - mean) * (float64(v) - mean) / float64(len(f))
			r.MeanAbsError += math.Abs(float64(q[i]-v)) / float64(len(f))
		}
		r.ScoreStddev = math.Sqrt(r.ScoreStddev)
	}
}

// WriteInt8 prints the comparison as a Markdown table.
func WriteInt8(w io.Writer, rows []Int8Result) {
	fmt.Fprintln(w, "| model | threads | float texts/s | int8 texts/s | float tokens/s | int8 tokens/s | int8 speed-up | int8 form | the other form (agreement) | agreement (bound) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
	for _, r := range rows {
		a := fmt.Sprintf("%s %.4f (≥ %g)", r.Agreement.Measure, r.Agreement.Value, r.Agreement.Bound)
		switch {
		case r.MeanCosine > 0:
			a += fmt.Sprintf(", mean cosine %.4f", r.MeanCosine)
		case r.ScoreStddev > 0:
			a += fmt.Sprintf(", scores' σ %.4f, int8's mean error %.4f", r.ScoreStddev, r.MeanAbsError)
		}
		fmt.Fprintf(w, "| %s | %d | %.1f | %.1f | %.0f | %.0f | %.2f× | %s | %.2f× (%.4f) | %s |\n", r.Name, r.Threads,
			r.Float.InputsPerSecond(), r.Int8.InputsPerSecond(), r.Float.TokensPerSecond(), r.Int8.TokensPerSecond(), r.Speedup(),
			r.Form, r.Other.InputsPerSecond()/r.Float.InputsPerSecond(), r.OtherAgreement.Value, a)
	}
}
