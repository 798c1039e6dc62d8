package modelquant_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/orttest"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/inference/synthbert"
	"github.com/jetinfer/jetinfer/modelquant"
)

var testRuntime *inference.Runtime

func TestMain(m *testing.M) {
	os.Exit(orttest.Run(m, "..", func(rt *inference.Runtime) { testRuntime = rt }))
}

const bertTokenizer = "../inference/tokenizer/testdata/bert-base-uncased/tokenizer.json"

// writeModel writes an artifact directory: a small generated BERT with bert-base-uncased's vocabulary.
func writeModel(t *testing.T, head synthbert.Head, weightScale float32, config string) string {
	t.Helper()
	return writeSynth(t, synthbert.Config{VocabSize: 30522, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64,
		MaxPositions: 64, TypeVocabSize: 2, NumLabels: 1, Head: head, Seed: 11, WeightScale: weightScale, LayerNormEps: 1e-12}, config)
}

// writeSynth writes the artifact of a generated model.
func writeSynth(t *testing.T, cfg synthbert.Config, config string) string {
	t.Helper()
	m, err := synthbert.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.WriteONNX(filepath.Join(dir, artifact.ONNXFile)); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(bertTokenizer)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{artifact.TokenizerFile: tok, artifact.ConfigFile: []byte(config)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// graphOf decodes an artifact directory's graph.
func graphOf(t *testing.T, dir string) *onnxgraph.Model {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, artifact.ONNXFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnxgraph.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ops(t *testing.T, dir string) map[string]int {
	t.Helper()
	m := graphOf(t, dir)
	count := map[string]int{}
	for _, n := range m.Graph.Nodes {
		count[n.OpType]++
	}
	return count
}

const denseConfig = `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":64}`

// A dense model's int8 copy is written beside links to its other files and keeps its bound; the record says
// what was measured.
func TestWriteDense(t *testing.T) {
	ctx := context.Background()
	src := writeModel(t, synthbert.HeadHidden, 0.05, denseConfig)
	dst := t.TempDir()
	rec, err := modelquant.Write(ctx, modelquant.Config{Runtime: testRuntime, From: "float-model", Fuse: modelquant.FuseOff}, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Agreement
	t.Log(a)
	if rec.From != "float-model" || rec.Forced || rec.Int8 != 12 || len(rec.Float) != 4 || rec.Fused != nil || rec.UnfusedReason != "" ||
		a.Measure != "min_cosine" || a.Bound != quantize.MinCosineBound || a.Inputs != 50 || !a.Holds() || a.Value > 0.9999999 {
		t.Fatalf("record %+v: want 12 MatMuls in int8, the 4 attention products in float, a cosine in [0.99, 1)", rec)
	}
	if got := ops(t, dst); got["MatMulInteger"] != 12 || got["DynamicQuantizeLinear"] != 8 || got["MatMul"] != 4 {
		t.Errorf("quantized graph's operators %v", got)
	}
	for _, name := range []string{artifact.TokenizerFile, artifact.ConfigFile} {
		if !sameFile(t, filepath.Join(dst, name), filepath.Join(src, name)) {
			t.Errorf("%s is not the source's file", name)
		}
	}
	// The same model against itself agrees exactly: the measure compares what it says it does.
	same, err := modelquant.Check(ctx, testRuntime, src, src)
	if err != nil || same.Value != 1 {
		t.Errorf("the float model against itself: %+v, %v", same, err)
	}

	// Quantizing the int8 copy again is refused.
	if _, err := modelquant.Write(ctx, modelquant.Config{Runtime: testRuntime}, dst, t.TempDir()); !errors.Is(err, quantize.ErrAlreadyQuantized) {
		t.Errorf("quantizing the int8 model: %v", err)
	}
	// Weights all under the size to quantize leave nothing to do.
	_, err = modelquant.Write(ctx, modelquant.Config{Runtime: testRuntime, Options: quantize.Options{MinWeights: 1 << 30}, Fuse: modelquant.FuseOff}, src, t.TempDir())
	if !errors.Is(err, modelquant.ErrNothingToQuantize) || err.Error() != "no MatMul with a constant float weight to quantize (16 left in float)" {
		t.Errorf("nothing to quantize: %v", err)
	}
}

const rerankConfig = `{"task_type":"rerank","max_sequence_length":64}`

// A cross-encoder keeps its order in int8 with its head, which reads one token per sequence, in float.
func TestWriteRerank(t *testing.T) {
	src := writeModel(t, synthbert.HeadClassifier, 0.05, rerankConfig)
	rec, err := modelquant.Write(context.Background(), modelquant.Config{Runtime: testRuntime}, src, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rec.Agreement)
	const why = "it runs once per sequence, on the one token a head reads: int8 would save nothing there and its error would land on the output"
	if !rec.Agreement.Holds() || rec.Agreement.Measure != "spearman" || rec.Int8 != 8 || len(rec.Float) != 2 ||
		rec.Float["bert.pooler.dense/MatMul"] != why || rec.Float["classifier/MatMul"] != why {
		t.Fatalf("record %+v", rec)
	}
}

// A cross-encoder whose large random weights spread its activations widely loses its order in int8: the copy is
// refused with the measured figure, fused and then without fusions, and stored as forced with Force.
func TestWriteRerankBeyondBound(t *testing.T) {
	ctx := context.Background()
	src := writeModel(t, synthbert.HeadClassifier, 1, rerankConfig)
	_, err := modelquant.Write(ctx, modelquant.Config{Runtime: testRuntime}, src, t.TempDir())
	if !errors.Is(err, modelquant.ErrBeyondBound) ||
		!regexp.MustCompile(`^the int8 model strays beyond its accuracy bound: spearman 0\.\d+ over 50 inputs, beyond the bound 0\.98 `+
			`\(made again without fusions: the fused copy strays beyond its accuracy bound: spearman 0\.\d+ over 50 inputs, beyond the bound 0\.98\)$`).MatchString(err.Error()) {
		t.Fatalf("err = %v", err)
	}
	rec, err := modelquant.Write(ctx, modelquant.Config{Runtime: testRuntime, Force: true}, src, t.TempDir())
	if err != nil || !rec.Forced || rec.Agreement.Holds() || rec.Agreement.Measure != "spearman" || rec.Fused != nil ||
		!strings.HasPrefix(rec.UnfusedReason, "the fused copy strays beyond its accuracy bound: spearman") {
		t.Fatalf("forced: %+v, %v", rec, err)
	}
	// Asked to keep the fusions, the fused copy is checked, alone, and refused as it is.
	var checked []int
	countFused := func(ctx context.Context, rt *inference.Runtime, floatDir, int8Dir string) (quantize.Agreement, error) {
		checked = append(checked, ops(t, int8Dir)["QAttention"])
		return modelquant.Check(ctx, rt, floatDir, int8Dir)
	}
	_, err = modelquant.WriteChecked(ctx, modelquant.Config{Runtime: testRuntime, Fuse: modelquant.FuseOn}, src, t.TempDir(), countFused)
	if !errors.Is(err, modelquant.ErrBeyondBound) || strings.Contains(err.Error(), "without fusions") || !slices.Equal(checked, []int{2}) {
		t.Fatalf("fused on: %v; QAttention nodes of the copies checked: %v", err, checked)
	}
}

// By default attention and the residual layer normalizations are fused before quantizing, and the fused copy is
// kept when it holds its bound.
func TestWriteFusesByDefault(t *testing.T) {
	src := writeModel(t, synthbert.HeadHidden, 0.05, denseConfig)
	dst := t.TempDir()
	rec, err := modelquant.Write(context.Background(), modelquant.Config{Runtime: testRuntime}, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	// Per layer: QAttention and the three other MatMuls in int8, the residual Adds and their LayerNormalization
	// fused.
	if !maps.Equal(rec.Fused, map[string]int{"Attention": 2, "SkipLayerNormalization": 4}) || rec.UnfusedReason != "" || rec.Int8 != 8 ||
		len(rec.Float) != 0 || !rec.Agreement.Holds() || rec.Agreement.Value > 0.9999999 {
		t.Fatalf("record %+v", rec)
	}
	if got := ops(t, dst); got["QAttention"] != 2 || got["SkipLayerNormalization"] != 4 || got["MatMulInteger"] != 6 || got["MatMul"] != 0 {
		t.Errorf("fused graph's operators %v", got)
	}
}

// An export as PyTorch traces transformers' BERT at opset 14 (layer normalizations spelled out, reshape shapes
// computed at run time, the mask unsqueezed before its Cast) gets the same int8 copy, its five normalizations folded
// first.
func TestWriteFusesTracedExport(t *testing.T) {
	src := writeSynth(t, synthbert.Config{VocabSize: 30522, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 64,
		TypeVocabSize: 2, NumLabels: 1, Head: synthbert.HeadHidden, Seed: 11, WeightScale: 0.05, LayerNormEps: 1e-12,
		SpelledLayerNorm: true, Traced: true}, denseConfig)
	if got := ops(t, src); got["ReduceMean"] != 10 || got["LayerNormalization"] != 0 || got["Concat"] != 8 {
		t.Fatalf("the export's operators %v", got)
	}
	dst := t.TempDir()
	rec, err := modelquant.Write(context.Background(), modelquant.Config{Runtime: testRuntime}, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(rec.Fused, map[string]int{"LayerNormalization": 5, "Attention": 2, "SkipLayerNormalization": 4}) || rec.UnfusedReason != "" ||
		rec.Int8 != 8 || !rec.Agreement.Holds() {
		t.Fatalf("record %+v", rec)
	}
	if got := ops(t, dst); got["QAttention"] != 2 || got["SkipLayerNormalization"] != 4 || got["LayerNormalization"] != 1 || got["ReduceMean"] != 0 ||
		got["Concat"] != 0 {
		t.Errorf("int8 graph's operators %v", got)
	}
}

// The copy is made again without fusions when the fused one strays beyond its bound, cannot be checked, or when an
// excluded node is one a fusion absorbs; asked to fuse, the exclusion is an error.
func TestWriteDropsFusionsInTheWay(t *testing.T) {
	ctx := context.Background()
	src := writeModel(t, synthbert.HeadHidden, 0.05, denseConfig)
	// A check that finds every fused copy far from the float model, and measures the others.
	fusedAway := quantize.Agreement{Measure: "min_cosine", Value: 0.5, Inputs: 50, Bound: quantize.MinCosineBound}
	checks := 0
	check := func(ctx context.Context, rt *inference.Runtime, floatDir, int8Dir string) (quantize.Agreement, error) {
		checks++
		if ops(t, int8Dir)["QAttention"] > 0 {
			return fusedAway, nil
		}
		return modelquant.Check(ctx, rt, floatDir, int8Dir)
	}
	dst := t.TempDir()
	rec, err := modelquant.WriteChecked(ctx, modelquant.Config{Runtime: testRuntime}, src, dst, check)
	if err != nil {
		t.Fatal(err)
	}
	if checks != 2 || rec.Fused != nil || rec.UnfusedReason != "the fused copy strays beyond its accuracy bound: min_cosine 0.500000 over 50 inputs, beyond the bound 0.99" ||
		rec.Int8 != 12 || !rec.Agreement.Holds() {
		t.Fatalf("%d checks, record %+v", checks, rec)
	}
	if got := ops(t, dst); got["QAttention"] != 0 || got["MatMulInteger"] != 12 {
		t.Errorf("stored graph's operators %v", got)
	}

	const query = "bert.encoder.layer.0.attention.self.query/MatMul"
	exclude := quantize.Options{Exclude: []string{query}}
	dst = t.TempDir()
	rec, err = modelquant.Write(ctx, modelquant.Config{Runtime: testRuntime, Options: exclude}, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Fused != nil || rec.UnfusedReason != "an excluded node is one a fusion absorbs" || rec.Int8 != 11 || rec.Float[query] == "" {
		t.Fatalf("record %+v", rec)
	}
	if got := ops(t, dst); got["QAttention"] != 0 || got["MatMulInteger"] != 11 {
		t.Errorf("stored graph's operators %v", got)
	}
	_, err = modelquant.Write(ctx, modelquant.Config{Runtime: testRuntime, Options: exclude, Fuse: modelquant.FuseOn}, src, t.TempDir())
	if !errors.Is(err, quantize.ErrUnknownExclude) {
		t.Errorf("excluding a fused node with the fusions kept: %v", err)
	}

	// A fused copy ONNX Runtime cannot run (an export the fusions half-match) gives way to the unfused one; when
	// that one fails too, its error is the answer.
	refused := errors.New("load the int8 model: QAttention refused the graph")
	failFused := func(ctx context.Context, rt *inference.Runtime, floatDir, int8Dir string) (quantize.Agreement, error) {
		if ops(t, int8Dir)["QAttention"] > 0 {
			return quantize.Agreement{}, refused
		}
		return modelquant.Check(ctx, rt, floatDir, int8Dir)
	}
	dst = t.TempDir()
	rec, err = modelquant.WriteChecked(ctx, modelquant.Config{Runtime: testRuntime}, src, dst, failFused)
	if err != nil || rec.UnfusedReason != "the fused copy failed: load the int8 model: QAttention refused the graph" ||
		!rec.Agreement.Holds() || ops(t, dst)["QAttention"] != 0 {
		t.Fatalf("record %+v, %v", rec, err)
	}
	second := errors.New("the unfused copy failed too")
	failBoth := func(ctx context.Context, rt *inference.Runtime, floatDir, int8Dir string) (quantize.Agreement, error) {
		if ops(t, int8Dir)["QAttention"] > 0 {
			return fusedAway, nil
		}
		return quantize.Agreement{}, second
	}
	if _, err := modelquant.WriteChecked(ctx, modelquant.Config{Runtime: testRuntime, Force: true}, src, t.TempDir(), failBoth); !errors.Is(err, second) {
		t.Errorf("both copies failing: %v", err)
	}
}

// A sparse model's int8 copy keeps the overlap of its heaviest terms.
func TestWriteSparse(t *testing.T) {
	src := writeModel(t, synthbert.HeadMaskedLM, 0.2, `{"task_type":"sparse_embedding","max_sequence_length":64}`)
	rec, err := modelquant.Write(context.Background(), modelquant.Config{Runtime: testRuntime, Fuse: modelquant.FuseOff}, src, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Agreement
	t.Log(a)
	// 12 encoder MatMuls and the MLM head's transform and decoder.
	if rec.Int8 != 14 || a.Measure != "top20_overlap" || a.Bound != quantize.TopOverlapBound || !a.Holds() || a.Value == 1 {
		t.Fatalf("record %+v", rec)
	}
}

// A model whose weights are in an external data file (as exports over 2 GB are) is quantized from that file: the
// int8 weights go into the graph, the external file stays beside it for the weights left in float.
func TestWriteExternalData(t *testing.T) {
	ctx := context.Background()
	src := writeModel(t, synthbert.HeadHidden, 0.05, denseConfig)
	g := graphOf(t, src)
	const dataFile = "model.onnx_data"
	var external []byte
	moved := 0
	for _, w := range g.Graph.Initializers {
		if w.DataType == onnxgraph.Float && len(w.Dims) == 2 {
			external = append(external, w.MoveExternal(dataFile, int64(len(external)))...)
			moved++
		}
	}
	if err := os.WriteFile(filepath.Join(src, dataFile), external, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, artifact.ONNXFile), g.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	// Staged as a Hub import stages: symbolic links into the Hugging Face cache, which ONNX Runtime follows for
	// the graph but not for its external data.
	staged := t.TempDir()
	for _, name := range []string{artifact.ONNXFile, dataFile, artifact.TokenizerFile, artifact.ConfigFile} {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(staged, name)); err != nil {
			t.Fatal(err)
		}
	}
	dst := t.TempDir()
	rec, err := modelquant.Write(ctx, modelquant.Config{Runtime: testRuntime, Fuse: modelquant.FuseOff}, staged, dst) // the check runs both
	if err != nil {
		t.Fatal(err)
	}
	if rec.Int8 != 12 || !rec.Agreement.Holds() || moved != 12+3 { // 12 weights, the 3 embedding tables
		t.Fatalf("moved %d; record %+v", moved, rec)
	}
	if !sameFile(t, filepath.Join(dst, dataFile), filepath.Join(src, dataFile)) {
		t.Error("the external data file is not the source's")
	}
	// The float weights that stayed behind are still external; the int8 ones are in the graph.
	qg := graphOf(t, dst)
	externalLeft, int8Inline := 0, 0
	for _, w := range qg.Graph.Initializers {
		if w.External() {
			externalLeft++
		}
		if w.DataType == 3 && len(w.Dims) == 2 && len(w.RawData) > 0 { // INT8 weights, not their zero points
			int8Inline++
		}
	}
	if externalLeft != 3 || int8Inline != 12 {
		t.Errorf("%d initializers left external, %d int8 weights inline", externalLeft, int8Inline)
	}
}

// sameFile reports whether a is b hard-linked (both in one temporary file system here).
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Lstat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return fa.Mode().IsRegular() && os.SameFile(fa, fb)
}
