package inference

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/fuse"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// decodeGraph reads an artifact's graph.
func decodeGraph(t testing.TB, dir string) *onnxgraph.Model {
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

// maxAbsDiff is the largest difference between two models' raw outputs on the same batches.
func maxAbsDiff(t *testing.T, a, b *Model, texts []string) float64 {
	t.Helper()
	ba, err := a.PrepareBatches(texts, "")
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for _, batch := range ba {
		oa, err := a.runRaw(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		ob, err := b.runRaw(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		for i := range oa {
			worst = max(worst, math.Abs(float64(oa[i]-ob[i])))
		}
	}
	return worst
}

// headCases are a tiny model's three heads with their tasks.
var headCases = []struct {
	name   string
	head   synthbert.Head
	config string
}{
	{"hidden", synthbert.HeadHidden, `{"task_type":"text_embedding","pooling":"mean","max_sequence_length":64}`},
	{"mlm", synthbert.HeadMaskedLM, `{"task_type":"sparse_embedding","max_sequence_length":64}`},
	{"classifier", synthbert.HeadClassifier, `{"task_type":"rerank","max_sequence_length":64}`},
}

// SkipLayerNormalization replaces each encoder layer's two residual Add + LayerNormalization pairs (with the bias
// Add before them), in float and in int8, and the outputs stay within 1e-4 of the unfused graph's; the embeddings'
// and the MLM head's normalizations, which add no residual, are left alone.
func TestSkipLayerNormFusion(t *testing.T) {
	for _, tc := range headCases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := writeModel(t, tinyConfig(tc.head, 21), tc.config)
			for _, int8 := range []bool{false, true} {
				src := dir
				if int8 {
					src, _ = quantizedCopy(t, dir, quantize.Options{})
				}
				g := decodeGraph(t, src)
				if n := fuse.SkipLayerNorm(g); n != 4 {
					t.Fatalf("int8 %v: fused %d; want 2 per layer", int8, n)
				}
				ops := map[string]int{}
				for _, n := range g.Graph.Nodes {
					ops[n.OpType]++
				}
				wantLN := 1 // the embeddings'
				if tc.head == synthbert.HeadMaskedLM {
					wantLN = 2 // and the MLM transform's
				}
				if ops["SkipLayerNormalization"] != 4 || ops["LayerNormalization"] != wantLN {
					t.Errorf("int8 %v: operators %v", int8, ops)
				}
				if again := fuse.SkipLayerNorm(g); again != 0 {
					t.Errorf("a second pass fused %d more", again)
				}
				fused := withGraph(t, src, g)
				diff := maxAbsDiff(t, load(t, src, LoadOptions{Threads: 1}), load(t, fused, LoadOptions{Threads: 1}), mixedTexts)
				t.Logf("int8 %v: max abs difference %.3g", int8, diff)
				if diff > 1e-4 {
					t.Errorf("int8 %v: outputs differ by %g from the unfused graph's", int8, diff)
				}
			}
		})
	}
}

// A graph that spells its layer normalizations out (opset 14, as PyTorch exports below 17) computes what the
// opset-17 graph does; SkipLayerNorm finds nothing in it. LayerNorm folds every one into a LayerNormalization within
// 1e-4 of it, after which attention and the residual normalizations fuse as in the opset-17 graph, in float and
// once quantized.
func TestLayerNormFolding(t *testing.T) {
	for _, tc := range headCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(tc.head, 23)
			cfg.LayerNormEps = 1e-3 // large enough that a wrong ε would show in the outputs
			ref, _ := writeModel(t, cfg, tc.config)
			cfg.SpelledLayerNorm = true
			dir, _ := writeModel(t, cfg, tc.config)
			spelled := load(t, dir, LoadOptions{Threads: 1})
			if diff := maxAbsDiff(t, load(t, ref, LoadOptions{Threads: 1}), spelled, mixedTexts); diff > 1e-4 {
				t.Fatalf("the spelled-out graph differs by %g from the opset-17 one", diff)
			}
			if n := fuse.SkipLayerNorm(decodeGraph(t, dir)); n != 0 {
				t.Fatalf("SkipLayerNorm fused %d in a graph without LayerNormalization", n)
			}
			g := decodeGraph(t, dir)
			want := 1 + 2*cfg.Layers // the embeddings' and two per layer
			if tc.head == synthbert.HeadMaskedLM {
				want++ // and the MLM transform's
			}
			if n := fuse.LayerNorm(g); n != want {
				t.Fatalf("folded %d; want %d", n, want)
			}
			ops := map[string]int{}
			for _, n := range g.Graph.Nodes {
				ops[n.OpType]++
			}
			if ops["LayerNormalization"] != want || ops["ReduceMean"] != 0 || ops["Pow"] != 0 || ops["Sqrt"] != 0 {
				t.Errorf("operators %v", ops)
			}
			if again := fuse.LayerNorm(g); again != 0 {
				t.Errorf("a second pass folded %d more", again)
			}
			folded := withGraph(t, dir, g)
			diff := maxAbsDiff(t, load(t, ref, LoadOptions{Threads: 1}), load(t, folded, LoadOptions{Threads: 1}), mixedTexts)
			t.Logf("folded: max abs difference %.3g", diff)
			if diff > 1e-4 {
				t.Errorf("outputs differ by %g from the opset-17 graph's", diff)
			}
			if a, s := fuse.Attention(g), fuse.SkipLayerNorm(g); a != cfg.Layers || s != 2*cfg.Layers {
				t.Fatalf("after folding, %d Attention and %d SkipLayerNormalization fused", a, s)
			}
			fused := withGraph(t, dir, g)
			if diff := maxAbsDiff(t, spelled, load(t, fused, LoadOptions{Threads: 1}), mixedTexts); diff > 1e-4 {
				t.Errorf("fused outputs differ by %g from the spelled-out graph's", diff)
			}
			q, _ := quantizedCopy(t, fused, quantize.Options{})
			qg := decodeGraph(t, q)
			ops = map[string]int{}
			for _, n := range qg.Graph.Nodes {
				ops[n.OpType]++
			}
			if ops["QAttention"] != cfg.Layers || ops["SkipLayerNormalization"] != 2*cfg.Layers {
				t.Errorf("quantized operators %v", ops)
			}
			// ONNX Runtime runs the int8 copy (LayerNormalization in a graph of opset 14, QAttention).
			if diff := maxAbsDiff(t, spelled, load(t, q, LoadOptions{Threads: 1}), mixedTexts); math.IsNaN(diff) || math.IsInf(diff, 0) || diff == 0 {
				t.Errorf("the int8 copy's outputs differ by %g", diff)
			}
		})
	}
}

// Attention replaces each layer's self-attention subgraph, and its outputs stay within 1e-4 of the unfused
// graph's; nothing of the replaced subgraphs stays behind.
func TestAttentionFusion(t *testing.T) {
	for _, tc := range headCases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := writeModel(t, tinyConfig(tc.head, 22), tc.config)
			g := decodeGraph(t, dir)
			if n := fuse.Attention(g); n != 2 {
				t.Fatalf("fused %d; want one per layer", n)
			}
			ops := map[string]int{}
			for _, n := range g.Graph.Nodes {
				ops[n.OpType]++
			}
			if ops["Attention"] != 2 || ops["Softmax"] != 0 || ops["Transpose"] != 0 || ops["Cast"] != 1 || ops["Unsqueeze"] != 0 {
				t.Errorf("operators %v", ops)
			}
			fused := withGraph(t, dir, g)
			written := 0
			for _, n := range decodeGraph(t, fused).Graph.Nodes {
				if n.OpType == "Attention" && n.Domain == onnxgraph.ContribDomain {
					written++
				}
			}
			if written != 2 {
				t.Fatalf("the written graph has %d Attention nodes", written)
			}
			diff := maxAbsDiff(t, load(t, dir, LoadOptions{Threads: 1}), load(t, fused, LoadOptions{Threads: 1}), mixedTexts)
			// ONNX Runtime's Attention runs the same GEMMs and softmax as the unfused graph: often bit-identical.
			t.Logf("max abs difference %.3g", diff)
			if diff > 1e-4 {
				t.Errorf("outputs differ by %g from the unfused graph's", diff)
			}

			// Quantized, each Attention becomes a QAttention on the same int8 weights as the three projections'
			// MatMuls would get: within 1e-4 of the unfused int8 graph.
			report, err := quantize.Dynamic(g, quantize.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ops = map[string]int{}
			for _, n := range g.Graph.Nodes {
				ops[n.OpType]++
			}
			headInFloat := 0 // a classifier's pooler and classifier read one token per sequence
			if tc.head == synthbert.HeadClassifier {
				headInFloat = 2
			}
			if ops["QAttention"] != 2 || ops["Attention"] != 0 || len(report.Float) != headInFloat {
				t.Errorf("quantized operators %v, left in float %v", ops, report.Float)
			}
			unfusedInt8, _ := quantizedCopy(t, dir, quantize.Options{})
			diff = maxAbsDiff(t, load(t, unfusedInt8, LoadOptions{Threads: 1}), load(t, withGraph(t, dir, g), LoadOptions{Threads: 1}), mixedTexts)
			t.Logf("int8: max abs difference %.3g", diff)
			if diff > 1e-4 {
				t.Errorf("int8: outputs differ by %g from the unfused int8 graph's", diff)
			}
		})
	}
}

// An export laid out as PyTorch traces transformers' BERT (reshape shapes computed at run time, the mask unsqueezed
// before its Cast) computes what the generated layout does, and fuses as it: one Attention per layer within 1e-4 of
// the traced graph, then QAttention once quantized.
func TestTracedExportFusion(t *testing.T) {
	for _, tc := range headCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(tc.head, 24)
			ref, _ := writeModel(t, cfg, tc.config)
			cfg.Traced = true
			dir, _ := writeModel(t, cfg, tc.config)
			traced := load(t, dir, LoadOptions{Threads: 1})
			if diff := maxAbsDiff(t, load(t, ref, LoadOptions{Threads: 1}), traced, mixedTexts); diff > 1e-4 {
				t.Fatalf("the traced graph differs by %g from the generated layout", diff)
			}
			// The constant shapes alone compute the same.
			g := decodeGraph(t, dir)
			if n := fuse.ConstantShapes(g); n != 4*cfg.Layers {
				t.Fatalf("made %d shapes constant; want 4 per layer", n)
			}
			if diff := maxAbsDiff(t, traced, load(t, withGraph(t, dir, g), LoadOptions{Threads: 1}), mixedTexts); diff > 1e-4 {
				t.Fatalf("with constant shapes, the outputs differ by %g", diff)
			}
			if n := fuse.Attention(g); n != cfg.Layers {
				t.Fatalf("fused %d attentions; want %d", n, cfg.Layers)
			}
			ops := map[string]int{}
			for _, n := range g.Graph.Nodes {
				ops[n.OpType]++
			}
			if ops["Attention"] != cfg.Layers || ops["Concat"] != 0 || ops["Unsqueeze"] != 0 || ops["Softmax"] != 0 {
				t.Errorf("operators %v", ops)
			}
			fused := withGraph(t, dir, g)
			diff := maxAbsDiff(t, traced, load(t, fused, LoadOptions{Threads: 1}), mixedTexts)
			t.Logf("max abs difference %.3g", diff)
			if diff > 1e-4 {
				t.Errorf("fused outputs differ by %g from the traced graph's", diff)
			}
			q, _ := quantizedCopy(t, fused, quantize.Options{})
			ops = map[string]int{}
			for _, n := range decodeGraph(t, q).Graph.Nodes {
				ops[n.OpType]++
			}
			if ops["QAttention"] != cfg.Layers {
				t.Errorf("quantized operators %v", ops)
			}
		})
	}
}

// ONNX does not require node names: a graph without any is fused and quantized into one whose new nodes and values
// all have names of their own (a name taken twice makes ONNX Runtime run one initializer for both), and it computes
// what the named graph does.
func TestFusionWithoutNodeNames(t *testing.T) {
	dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 23), headCases[0].config)
	rewrite := func(blank bool) string {
		g := decodeGraph(t, dir)
		if blank {
			for _, n := range g.Graph.Nodes {
				n.Name = ""
			}
		}
		if fuse.Attention(g) != 2 || fuse.SkipLayerNorm(g) != 4 {
			t.Fatal("not fused")
		}
		if _, err := quantize.Dynamic(g, quantize.Options{}); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, init := range g.Graph.Initializers {
			if seen[init.Name] {
				t.Fatalf("initializer %q twice", init.Name)
			}
			seen[init.Name] = true
		}
		return withGraph(t, dir, g)
	}
	named, blank := rewrite(false), rewrite(true)
	if diff := maxAbsDiff(t, load(t, named, LoadOptions{Threads: 1}), load(t, blank, LoadOptions{Threads: 1}), mixedTexts); diff != 0 {
		t.Errorf("the graph without node names computes %g away from the named one", diff)
	}
}

// QAttention takes Attention's scale and mask_filter_value attributes (a fused export whose mask uses the float
// minimum carries one): given explicitly with their default values, the quantized graph computes the same.
func TestQAttentionAttributes(t *testing.T) {
	dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 24), headCases[0].config)
	quantized := func(explicit bool) string {
		g := decodeGraph(t, dir)
		fuse.Attention(g)
		for _, n := range g.Graph.Nodes {
			if n.OpType == "Attention" && explicit {
				n.Attributes = append(n.Attributes, onnxgraph.FloatAttribute("mask_filter_value", -10000),
					onnxgraph.FloatAttribute("scale", float32(1/math.Sqrt(8))))
			}
		}
		report, err := quantize.Dynamic(g, quantize.Options{})
		if err != nil || len(report.Float) != 0 {
			t.Fatalf("left in float %v, %v", report.Float, err)
		}
		return withGraph(t, dir, g)
	}
	plain, explicit := quantized(false), quantized(true)
	if diff := maxAbsDiff(t, load(t, plain, LoadOptions{Threads: 1}), load(t, explicit, LoadOptions{Threads: 1}), mixedTexts); diff > 1e-6 {
		t.Errorf("the explicit attributes changed the outputs by %g", diff)
	}
}

// runRaw is the graph's output for one batch, copied.
func (m *Model) runRaw(ctx context.Context, b PaddedBatch) ([]float32, error) {
	out, _, err := m.sess.run(ctx, b.in, m.outShape(b.in.rows, b.in.seq))
	return slices.Clone(out), err
}

// BenchmarkFusion embeds the same texts with an e5-small-shaped model in float and in int8, unfused and with each
// fusion, one thread: the ratios say whether a fusion pays (go test -run XXX -bench Fusion ./inference/).
func BenchmarkFusion(b *testing.B) {
	const config = `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":128}`
	cfg := synthbert.MiniLML12(synthbert.HeadHidden, 1)
	cfg.MaxPositions = 128
	dir, _ := writeModel(b, cfg, config)
	variant := func(skip, attention, int8 bool) string {
		g := decodeGraph(b, dir)
		if attention {
			fuse.Attention(g)
		}
		if skip {
			fuse.SkipLayerNorm(g)
		}
		if int8 {
			if _, err := quantize.Dynamic(g, quantize.Options{}); err != nil {
				b.Fatal(err)
			}
		}
		return withGraph(b, dir, g)
	}
	texts := make([]string, 32)
	for i := range texts {
		texts[i] = mixedTexts[(i+2)%len(mixedTexts)] + " " + mixedTexts[(i+3)%len(mixedTexts)]
	}
	for _, precision := range []string{"float", "int8"} {
		for _, fusion := range []string{"unfused", "skiplayernorm", "attention", "both"} {
			d := variant(fusion == "skiplayernorm" || fusion == "both", fusion == "attention" || fusion == "both", precision == "int8")
			b.Run(precision+"/"+fusion, func(b *testing.B) {
				m, err := LoadModel(context.Background(), testRuntime, d, LoadOptions{Threads: 1})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				for b.Loop() {
					if _, err := m.Embed(context.Background(), texts, ""); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(texts)*b.N)/b.Elapsed().Seconds(), "texts/s")
			})
		}
	}
}

// asMultiHead rewrites each fused Attention into MultiHeadAttention on the packed projection split in three, with
// the key padding mask or without: without, it is the one form in which ONNX Runtime's CPU runs flash attention
// (MlasFlashAttention), right only on batches without padding.
func asMultiHead(b *testing.B, g *onnxgraph.Graph, masked bool) {
	var nodes []*onnxgraph.Node
	rewritten := 0
	for _, a := range g.Nodes {
		if a.OpType != "Attention" || a.Domain != onnxgraph.ContribDomain {
			nodes = append(nodes, a)
			continue
		}
		rewritten++
		qkv, q, k, v := a.Name+"/qkv", a.Name+"/q", a.Name+"/k", a.Name+"/v"
		var attrs []onnxgraph.Attribute
		for _, at := range a.Attributes {
			if at.Name() == "num_heads" || at.Name() == "scale" {
				attrs = append(attrs, at)
			}
		}
		inputs := []string{q, k, v, a.Inputs[2]}
		if masked {
			inputs = append(inputs, a.Inputs[3])
		}
		nodes = append(nodes,
			&onnxgraph.Node{OpType: "MatMul", Name: qkv, Inputs: a.Inputs[:2], Outputs: []string{qkv}},
			&onnxgraph.Node{OpType: "Split", Name: a.Name + "/split", Inputs: []string{qkv}, Outputs: []string{q, k, v},
				Attributes: []onnxgraph.Attribute{onnxgraph.IntAttribute("axis", 2)}},
			&onnxgraph.Node{OpType: "MultiHeadAttention", Domain: onnxgraph.ContribDomain, Name: a.Name + "/mha",
				Inputs: inputs, Outputs: a.Outputs, Attributes: attrs})
	}
	if rewritten == 0 {
		b.Fatal("no Attention to rewrite")
	}
	g.Nodes = nodes
}

// BenchmarkAttentionKernels weighs ONNX Runtime's CPU attention kernels on long texts, one per batch (no padding):
// Attention (QAttention once quantized), MultiHeadAttention with the mask, and MultiHeadAttention without it, which
// runs MLAS's flash attention; in float and with the weights in int8, one thread
// (go test -run XXX -bench AttentionKernels ./inference/).
func BenchmarkAttentionKernels(b *testing.B) {
	const config = `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":512}`
	dir, _ := writeModel(b, synthbert.MiniLML12(synthbert.HeadHidden, 1), config)
	words := strings.Fields(mixedTexts[4])
	texts := make([]string, 8)
	for i := range texts {
		var s strings.Builder
		for w := range 300 + 25*i {
			s.WriteString(words[(w*7+i)%len(words)] + " ")
		}
		texts[i] = s.String()
	}
	kernels := []string{"attention", "multihead", "flash"}
	variant := func(kernel string, int8 bool) *Model {
		g := decodeGraph(b, dir)
		fuse.Attention(g)
		if kernel != "attention" {
			asMultiHead(b, g.Graph, kernel == "multihead")
		}
		if int8 {
			if _, err := quantize.Dynamic(g, quantize.Options{}); err != nil {
				b.Fatal(err)
			}
		}
		m, err := LoadModel(context.Background(), testRuntime, withGraph(b, dir, g), LoadOptions{Threads: 1, Batch: BatchConfig{MaxTokens: 512, MaxRows: 1}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = m.Close() })
		return m
	}
	for _, precision := range []string{"float", "int8"} {
		var models []*Model
		for _, k := range kernels {
			models = append(models, variant(k, precision == "int8"))
		}
		if precision == "float" { // the same computation: a wrong rewrite would not be worth timing
			want, err := models[0].Embed(context.Background(), texts, "")
			if err != nil {
				b.Fatal(err)
			}
			for j, m := range models[1:] {
				got, err := m.Embed(context.Background(), texts, "")
				if err != nil {
					b.Fatal(err)
				}
				for i := range want {
					if c := quantize.Cosine(want[i], got[i]); c < 0.99999 {
						b.Fatalf("%s, text %d: embedding at cosine %v", kernels[j+1], i, c)
					}
				}
			}
		}
		for i, m := range models {
			b.Run(precision+"/"+kernels[i], func(b *testing.B) {
				for b.Loop() {
					if _, err := m.Embed(context.Background(), texts, ""); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(texts)*b.N)/b.Elapsed().Seconds(), "texts/s")
			})
		}
	}
}
