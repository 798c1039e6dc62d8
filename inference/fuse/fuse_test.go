package fuse_test

import (
	"testing"

	"github.com/jetinfer/jetinfer/inference/fuse"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// graph is a generated two-layer BERT's graph (the layout of a PyTorch export); ORT runs in the inference
// package's tests check that the fused graphs compute the same.
func graph(t *testing.T, decoder bool) *onnxgraph.Model {
	t.Helper()
	sb, err := synthbert.New(synthbert.Config{VocabSize: 64, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 16,
		TypeVocabSize: 2, NumLabels: 1, Head: synthbert.HeadHidden, Seed: 1, WeightScale: 0.2, LayerNormEps: 1e-12, Decoder: decoder})
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
