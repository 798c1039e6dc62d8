package fuse_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/inference/fuse"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// graph is a generated two-layer BERT's graph (the layout of a PyTorch export); ORT runs in the inference
// package's tests check that the fused graphs compute the same.
func graph(t *testing.T, decoder bool) *onnxgraph.Model {
	t.Helper()
	return graphOf(t, synthbert.Config{VocabSize: 64, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 16,
		TypeVocabSize: 2, NumLabels: 1, Head: synthbert.HeadHidden, Seed: 1, WeightScale: 0.2, LayerNormEps: 1e-12, Decoder: decoder})
}

func graphOf(t *testing.T, cfg synthbert.Config) *onnxgraph.Model {
	t.Helper()
	sb, err := synthbert.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data, err := sb.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnxgraph.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func node(m *onnxgraph.Model, name string) *onnxgraph.Node {
	for _, n := range m.Graph.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func TestAttentionMatchesOnlyItsShape(t *testing.T) {
	if n := fuse.Attention(graph(t, false)); n != 2 {
		t.Errorf("fused %d of 2 layers", n)
	}
	// A causal decoder adds a second bias to the mask: left alone.
	if n := fuse.Attention(graph(t, true)); n != 0 {
		t.Errorf("fused %d causal attentions", n)
	}
	// Layer 0's key transposed like a query: layer 0 no longer matches, layer 1 still does.
	m := graph(t, false)
	node(m, "bert.encoder.layer.0.attention.self.key/Transpose").Attributes = []onnxgraph.Attribute{onnxgraph.IntsAttribute("perm", 0, 2, 1, 3)}
	if n := fuse.Attention(m); n != 1 {
		t.Errorf("fused %d with one key transposed wrongly; want the other layer only", n)
	}
	// Scores divided into the constant, not by it.
	m = graph(t, false)
	div := node(m, "bert.encoder.layer.1.attention.self/scaled")
	div.Inputs[0], div.Inputs[1] = div.Inputs[1], div.Inputs[0]
	if n := fuse.Attention(m); n != 1 {
		t.Errorf("fused %d with a reversed Div", n)
	}
	// A value of the subgraph read elsewhere (here a graph output would be the same) keeps it.
	m = graph(t, false)
	probs := node(m, "bert.encoder.layer.0.attention.self/probs")
	m.Graph.Nodes = append(m.Graph.Nodes, &onnxgraph.Node{OpType: "Identity", Name: "peek", Inputs: probs.Outputs, Outputs: []string{"peek"}})
	if n := fuse.Attention(m); n != 1 {
		t.Errorf("fused %d with layer 0's probabilities read elsewhere", n)
	}
}

func TestSubgraphsAreLeftAlone(t *testing.T) {
	m := graph(t, false)
	m.Graph.Nodes = append(m.Graph.Nodes, &onnxgraph.Node{OpType: "If", Name: "branch", Inputs: []string{"cond"}, Outputs: []string{"b"}})
	if a, s := fuse.Attention(m), fuse.SkipLayerNorm(m); a != 0 || s != 0 {
		t.Errorf("fused %d attentions and %d normalizations beside an If, whose branches may read any value", a, s)
	}
}

func TestSkipLayerNormNeedsAResidual(t *testing.T) {
	m := graph(t, false)
	if n := fuse.SkipLayerNorm(m); n != 4 {
		t.Fatalf("fused %d; want 2 per layer", n)
	}
	var biases int
	for _, n := range m.Graph.Nodes {
		if n.OpType == "SkipLayerNormalization" && len(n.Inputs) == 5 {
			biases++
		}
		if n.OpType == "LayerNormalization" && n.Name != "bert.embeddings.LayerNorm" {
			t.Errorf("%s left unfused", n.Name)
		}
	}
	if biases != 4 {
		t.Errorf("%d of 4 fusions took the bias Add", biases)
	}
	// The attention output's bias Add read twice: fused without taking the bias.
	m = graph(t, false)
	bias := node(m, "bert.encoder.layer.0.attention.output.dense")
	m.Graph.Nodes = append(m.Graph.Nodes, &onnxgraph.Node{OpType: "Identity", Name: "peek", Inputs: bias.Outputs, Outputs: []string{"peek"}})
	if n := fuse.SkipLayerNorm(m); n != 4 {
		t.Fatalf("fused %d", n)
	}
	if skip := node(m, "bert.encoder.layer.0.attention.output.LayerNorm/skip_fused"); skip == nil || len(skip.Inputs) != 4 {
		t.Errorf("fusion beside a shared bias Add: %+v", skip)
	}
}

// LayerNorm folds the forms PyTorch exports take besides the generated one (ε a Constant node, the Sub repeated,
// ReduceMean's axes an input as from opset 18) and leaves alone what is not a normalization over the last axis.
func TestLayerNormForms(t *testing.T) {
	m := graphOf(t, synthbert.Config{VocabSize: 64, Hidden: 32, Layers: 3, Heads: 4, Intermediate: 64, MaxPositions: 16,
		TypeVocabSize: 2, NumLabels: 1, Head: synthbert.HeadHidden, Seed: 1, WeightScale: 0.2, LayerNormEps: 1e-12, SpelledLayerNorm: true})
	var norms []string // each normalization's name, its final Add's
	for _, n := range m.Graph.Nodes {
		if n.OpType == "ReduceMean" && strings.HasSuffix(n.Name, "/ReduceMean") {
			norms = append(norms, strings.TrimSuffix(n.Name, "/ReduceMean"))
		}
	}
	if len(norms) != 7 {
		t.Fatalf("%d spelled-out normalizations: %v", len(norms), norms)
	}
	g := m.Graph
	// Folded: ε from a Constant node, which another node reads too (it stays).
	eps := &onnxgraph.Tensor{Name: "eps", DataType: onnxgraph.Float, RawData: []byte{0x08, 0xe5, 0x3c, 0x1e}} // 1e-20
	g.Nodes = append([]*onnxgraph.Node{{OpType: "Constant", Name: "eps_const", Outputs: []string{"eps_const"},
		Attributes: []onnxgraph.Attribute{onnxgraph.TensorAttribute("value", eps)}}}, g.Nodes...)
	node(m, norms[0]+"/Add").Inputs[1] = "eps_const"
	node(m, norms[3]+"/Add").Inputs[1] = "eps_const" // a normalization left as it is
	// Folded: the Sub repeated, Div reading the second.
	sub := node(m, norms[1]+"/Sub")
	again := &onnxgraph.Node{OpType: "Sub", Name: norms[1] + "/Sub_again", Inputs: slices.Clone(sub.Inputs), Outputs: []string{norms[1] + "/Sub_again"}}
	g.Nodes = slices.Insert(g.Nodes, slices.Index(g.Nodes, sub)+1, again)
	node(m, norms[1]+"/Div").Inputs[0] = again.Outputs[0]
	// Folded: axes as an input, a Constant node.
	axes := &onnxgraph.Tensor{Name: "axes", DataType: 7, Dims: []int64{1}, RawData: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	g.Nodes = append([]*onnxgraph.Node{{OpType: "Constant", Name: "last_axis", Outputs: []string{"last_axis"},
		Attributes: []onnxgraph.Attribute{onnxgraph.TensorAttribute("value", axes)}}}, g.Nodes...)
	for _, name := range []string{norms[2] + "/ReduceMean", norms[2] + "/ReduceMean_1"} {
		n := node(m, name)
		n.Attributes = nil
		n.Inputs = append(n.Inputs, "last_axis")
	}
	// Not folded: a mean over axis 1; the mean minus x; a cube; the mean's dimension dropped.
	node(m, norms[3]+"/ReduceMean").Attributes = []onnxgraph.Attribute{onnxgraph.IntsAttribute("axes", 1)}
	swapped := node(m, norms[4]+"/Sub")
	swapped.Inputs[0], swapped.Inputs[1] = swapped.Inputs[1], swapped.Inputs[0]
	g.Initializers = append(g.Initializers, &onnxgraph.Tensor{Name: "three", DataType: onnxgraph.Float, RawData: []byte{0, 0, 0x40, 0x40}})
	node(m, norms[5]+"/Pow").Inputs[1] = "three"
	node(m, norms[6]+"/ReduceMean_1").Attributes = append(node(m, norms[6]+"/ReduceMean_1").Attributes, onnxgraph.IntAttribute("keepdims", 0))

	if n := fuse.LayerNorm(m); n != 3 {
		t.Fatalf("folded %d; want 3", n)
	}
	for i, name := range norms {
		var folded *onnxgraph.Node
		for _, c := range g.Nodes {
			if c.OpType == "LayerNormalization" && c.Outputs[0] == name {
				folded = c
			}
		}
		if i >= 3 {
			if folded != nil || node(m, name+"/ReduceMean") == nil || node(m, name+"/Sqrt") == nil {
				t.Errorf("%s: folded", name)
			}
			continue
		}
		if folded == nil || node(m, name+"/ReduceMean") != nil || node(m, name+"/Sub_again") != nil {
			t.Fatalf("%s: not folded", name)
		}
		// Every node comes after those that make its inputs.
		made := map[string]bool{}
		for _, in := range g.Inputs() {
			made[in] = true
		}
		for _, init := range g.Initializers {
			made[init.Name] = true
		}
		for _, c := range g.Nodes {
			if c == folded && !made[c.Inputs[0]] {
				t.Errorf("%s: folded before its input %s is made", name, c.Inputs[0])
			}
			for _, o := range c.Outputs {
				made[o] = true
			}
		}
		e, _ := folded.Attribute("epsilon")
		if v, _ := e.Float(); (i == 0) != (v == 1e-20) || i != 0 && v != 1e-12 {
			t.Errorf("%s: epsilon %g", name, v)
		}
	}
	if node(m, "eps_const") == nil {
		t.Error("the Constant node of ε, which another node reads, was dropped")
	}
	if node(m, "last_axis") != nil {
		t.Error("the Constant node of the axes, read by the folded operators alone, was left behind")
	}
}

// Attention reads its shapes and scalars from Constant nodes as PyTorch exports them, as well as from
// initializers, and drops the Constant nodes it leaves unread.
func TestAttentionFromConstantNodes(t *testing.T) {
	m := graph(t, false)
	g := m.Graph
	inits := map[string]*onnxgraph.Tensor{}
	for _, t := range g.Initializers {
		inits[t.Name] = t
	}
	var constants []*onnxgraph.Node
	made := map[string]bool{}
	for _, n := range g.Nodes {
		if n.OpType != "Reshape" && n.OpType != "Div" && n.OpType != "Unsqueeze" {
			continue
		}
		in := n.Inputs[1]
		c, ok := inits[in]
		if !ok || strings.Contains(in, ".weight") || strings.Contains(in, ".bias") {
			continue
		}
		n.Inputs[1] = "c:" + in
		if !made[in] {
			made[in] = true
			constants = append(constants, &onnxgraph.Node{OpType: "Constant", Name: "c:" + in, Outputs: []string{"c:" + in},
				Attributes: []onnxgraph.Attribute{onnxgraph.TensorAttribute("value", c)}})
		}
	}
	if len(constants) < 3 { // the shapes to heads and back, the scale, the mask's axes
		t.Fatalf("%d constants moved into Constant nodes", len(constants))
	}
	g.Nodes = append(constants, g.Nodes...)
	if n := fuse.Attention(m); n != 2 {
		t.Fatalf("fused %d of 2 layers", n)
	}
	read := map[string]bool{}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			read[in] = true
		}
	}
	for _, n := range g.Nodes {
		if n.OpType == "Constant" && !read[n.Outputs[0]] {
			t.Errorf("unread Constant node left: %s", n.Name)
		}
	}
}

// tracedGraph is a generated two-layer BERT in the layout PyTorch traces transformers' BERT to: reshape shapes
// computed from Shape at run time, the mask unsqueezed twice before its Cast.
func tracedGraph(t *testing.T) *onnxgraph.Model {
	t.Helper()
	return graphOf(t, synthbert.Config{VocabSize: 64, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 16,
		TypeVocabSize: 2, NumLabels: 1, Head: synthbert.HeadHidden, Seed: 1, WeightScale: 0.2, LayerNormEps: 1e-12, Traced: true})
}

// ConstantShapes makes the four reshape shapes of each layer constant where they copy the reshaped tensor's own
// dimensions at their own positions, and leaves those that do not; the attention fusion then matches the traced
// layout, its mask included.
func TestConstantShapes(t *testing.T) {
	const layer0 = "bert.encoder.layer.0.attention.self"
	m := tracedGraph(t)
	if n := fuse.ConstantShapes(m); n != 8 {
		t.Fatalf("made %d shapes constant; want 4 per layer", n)
	}
	inits := map[string]*onnxgraph.Tensor{}
	for _, t := range m.Graph.Initializers {
		inits[t.Name] = t
	}
	shapes := map[string]bool{}
	for _, n := range m.Graph.Nodes {
		switch n.OpType {
		case "Concat", "Gather", "Shape":
			if strings.Contains(n.Name, "/Reshape/") || strings.Contains(n.Name, "/context_merged/") {
				t.Errorf("%s left behind", n.Name)
			}
		case "Reshape":
			c := inits[n.Inputs[1]]
			if c == nil {
				t.Fatalf("%s's shape is not constant", n.Name)
			}
			shapes[fmt.Sprint(c.Dims, c.RawData)] = true
			if want := []byte{0: 0, 8: 0, 16: 4, 24: 8, 31: 0}; strings.HasSuffix(n.Name, "query/Reshape") && !slices.Equal(c.RawData, want) {
				t.Errorf("the query's shape %v; want [0 0 4 8]", c.RawData)
			}
		}
	}
	if len(shapes) != 2 { // [0 0 heads size] and [0 0 hidden]
		t.Errorf("%d distinct shapes", len(shapes))
	}
	read := map[string]bool{}
	for _, n := range m.Graph.Nodes {
		if n.OpType == "Reshape" {
			read[n.Inputs[1]] = true
		}
	}
	if len(read) != 2 {
		t.Errorf("the Reshapes read %d shape initializers; want each shape once: %v", len(read), read)
	}
	if n := fuse.Attention(m); n != 2 {
		t.Errorf("fused %d of 2 traced attentions", n)
	}
	// Masked keys score float32's lowest value, as transformers has them.
	for _, n := range m.Graph.Nodes {
		if n.OpType != "Attention" {
			continue
		}
		a, ok := n.Attribute("mask_filter_value")
		if v, _ := a.Float(); !ok || v != -math.MaxFloat32 {
			t.Errorf("%s: mask_filter_value %v", n.Name, v)
		}
	}
	if n := fuse.Attention(tracedGraph(t)); n != 2 {
		t.Errorf("Attention on the traced graph itself fused %d of 2", n)
	}

	for _, tc := range []struct {
		name   string
		change func(m *onnxgraph.Model)
	}{
		{"the dimensions swapped", func(m *onnxgraph.Model) {
			g0, g1 := node(m, layer0+".query/Reshape/Gather_0"), node(m, layer0+".query/Reshape/Gather_1")
			g0.Inputs[1], g1.Inputs[1] = g1.Inputs[1], g0.Inputs[1]
		}},
		{"the shape of another tensor", func(m *onnxgraph.Model) {
			node(m, layer0+".key/Reshape/Shape").Inputs[0] = node(m, layer0+".key/MatMul").Inputs[0]
		}},
		{"zero meaning zero", func(m *onnxgraph.Model) {
			rs := node(m, "bert.encoder.layer.1.attention.self.value/Reshape")
			rs.Attributes = append(rs.Attributes, onnxgraph.IntAttribute("allowzero", 1))
		}},
		{"a shape from dimension 1 on", func(m *onnxgraph.Model) { // Shape's start (opset 15) shifts the indices
			sh := node(m, layer0+".value/Reshape/Shape")
			sh.Attributes = append(sh.Attributes, onnxgraph.IntAttribute("start", 1))
		}},
	} {
		m := tracedGraph(t)
		tc.change(m)
		if n := fuse.ConstantShapes(m); n != 7 {
			t.Errorf("%s: made %d shapes constant; want the 7 others", tc.name, n)
		}
		if n := fuse.Attention(m); n != 1 {
			t.Errorf("%s: fused %d attentions; want the other layer's", tc.name, n)
		}
	}

	// Unsqueeze's axes as an attribute, as before opset 13: the same shapes.
	m = tracedGraph(t)
	for _, n := range m.Graph.Nodes {
		if n.OpType == "Unsqueeze" && strings.Contains(n.Name, "layer.1.") {
			n.Inputs = n.Inputs[:1]
			n.Attributes = append(n.Attributes, onnxgraph.IntsAttribute("axes", 0))
		}
	}
	if n := fuse.ConstantShapes(m); n != 8 {
		t.Errorf("with Unsqueeze's axes as attributes, made %d shapes constant", n)
	}

	// The mask unsqueezed to [batch, 1, keys, 1] (axes 2, then 1), never cast to float, cast to another type, or
	// computed rather than the graph's input: no attention fuses.
	m = tracedGraph(t)
	u1, u2 := node(m, "mask/Unsqueeze"), node(m, "mask/Unsqueeze_1")
	u1.Inputs[1], u2.Inputs[1] = u2.Inputs[1], u1.Inputs[1]
	if n := fuse.Attention(m); n != 0 {
		t.Errorf("fused %d attentions with the mask on the wrong axes", n)
	}
	m = tracedGraph(t)
	node(m, "mask/Sub").Inputs[1] = "mask/Unsqueeze_1"
	if n := fuse.Attention(m); n != 0 {
		t.Errorf("fused %d attentions with an uncast mask", n)
	}
	m = tracedGraph(t)
	node(m, "mask/Cast").Attributes = []onnxgraph.Attribute{onnxgraph.IntAttribute("to", 6)} // int32
	if n := fuse.Attention(m); n != 0 {
		t.Errorf("fused %d attentions with the mask cast to int32", n)
	}
	m = tracedGraph(t)
	node(m, "mask/Unsqueeze").Inputs[0] = "mask_copy"
	m.Graph.Nodes = append([]*onnxgraph.Node{{OpType: "Identity", Name: "mask_copy", Inputs: []string{"attention_mask"}, Outputs: []string{"mask_copy"}}},
		m.Graph.Nodes...)
	if n := fuse.Attention(m); n != 0 {
		t.Errorf("fused %d attentions on a computed mask", n)
	}
}
