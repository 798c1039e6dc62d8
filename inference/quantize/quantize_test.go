package quantize

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/jetinfer/jetinfer/inference/onnxgraph"
)

func TestQuantizeColumns(t *testing.T) {
	// Two columns: [1, -0.5, 0.25] and zeros.
	q, scales := quantizeColumns([]float32{1, 0, -0.5, 0, 0.25, 0}, 3, 2)
	if !slices.Equal(scales, []float32{float32(1.0 / 127), 1}) {
		t.Errorf("scales %v", scales)
	}
	// -0.5·127 = -63.5 rounds to the even -64; 0.25·127 = 31.75 to 32.
	if !slices.Equal(q, []int8{127, 0, -64, 0, 32, 0}) {
		t.Errorf("q %v", q)
	}
}

func floatTensor(name string, dims []int64, vals ...float32) *onnxgraph.Tensor {
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnxgraph.Tensor{Name: name, DataType: dataFloat, Dims: dims, RawData: raw}
}

func TestDynamic(t *testing.T) {
	g := &onnxgraph.Graph{
		Nodes: []*onnxgraph.Node{
			{OpType: "MatMul", Name: "q", Inputs: []string{"x", "wq"}, Outputs: []string{"yq"}},
			{OpType: "MatMul", Name: "k", Inputs: []string{"x", "wk"}, Outputs: []string{"yk"}},
			{OpType: "MatMul", Name: "scores", Inputs: []string{"yq", "yk"}, Outputs: []string{"s"}},
			{OpType: "MatMul", Name: "small", Inputs: []string{"s", "tiny"}, Outputs: []string{"out"}},
			{OpType: "Gemm", Name: "head", Inputs: []string{"out", "tiny"}, Outputs: []string{"logits"}},
		},
		Initializers: []*onnxgraph.Tensor{
			floatTensor("wq", []int64{2, 2}, 1, 2, 3, 4), floatTensor("wk", []int64{2, 2}, -1, 0, 0.5, 1),
			floatTensor("tiny", []int64{2, 1}, 1, 1),
		},
	}
	if got := Precision((&onnxgraph.Model{Graph: g}).Summary()); got != Float32 {
		t.Errorf("precision of the float graph: %s", got)
	}
	report, err := Dynamic(&onnxgraph.Model{Graph: g}, Options{MinWeights: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(report.Quantized, []string{"q", "k"}) || report.Float["scores"] != "its second input is not a constant" ||
		report.Float["small"] != "its weight has 2 values, fewer than 3" ||
		report.Float["head"] != "Gemm is left in float (only MatMul and Attention are quantized)" {
		t.Fatalf("report %+v", report)
	}
	var ops []string
	for _, n := range g.Nodes {
		ops = append(ops, n.OpType)
	}
	// x is quantized once for both products.
	want := []string{"DynamicQuantizeLinear", "MatMulInteger", "Mul", "Cast", "Mul", "MatMulInteger", "Mul", "Cast", "Mul", "MatMul", "MatMul", "Gemm"}
	if !slices.Equal(ops, want) {
		t.Fatalf("ops %v; want %v", ops, want)
	}
	if g.Nodes[5].Inputs[0] != g.Nodes[0].Outputs[0] || g.Nodes[8].Outputs[0] != "yk" {
		t.Errorf("k reads %v, writes %v", g.Nodes[5].Inputs, g.Nodes[8].Outputs)
	}
	var names []string
	for _, t := range g.Initializers {
		names = append(names, t.Name)
	}
	if slices.Contains(names, "wq") || slices.Contains(names, "wk") || !slices.Contains(names, "tiny") || !slices.Contains(names, "q/quant/weight_quantized") {
		t.Errorf("initializers %v: the float weights replaced, the others kept", names)
	}
	if got := Precision((&onnxgraph.Model{Graph: g}).Summary()); got != Int8 {
		t.Errorf("precision of the quantized graph: %s", got)
	}
	g.Nodes = append(g.Nodes, &onnxgraph.Node{OpType: "Identity", Inputs: []string{"out"}, Outputs: []string{"final"}})
	if _, err := Dynamic(&onnxgraph.Model{Graph: g}, Options{}); !errors.Is(err, ErrAlreadyQuantized) ||
		err.Error() != `quantize: the model is already quantized: node "q/quant/quantize_input" is DynamicQuantizeLinear` {
		t.Errorf("quantizing a quantized graph again: %v", err)
	}
	half := &onnxgraph.Graph{Initializers: []*onnxgraph.Tensor{{Name: "w", DataType: dataFloat16, Dims: []int64{1}, RawData: []byte{0, 0x3c}}}}
	if got := Precision((&onnxgraph.Model{Graph: half}).Summary()); got != Float16 {
		t.Errorf("precision of a half-precision graph: %s", got)
	}
	nbits := &onnxgraph.Graph{Nodes: []*onnxgraph.Node{{OpType: "DynamicQuantizeLinear"}, {OpType: "MatMulNBits", Domain: "com.microsoft"}}}
	if got := Precision((&onnxgraph.Model{Graph: nbits}).Summary()); got != Int4 {
		t.Errorf("precision of a 4-bit graph: %s", got)
	}
}

func TestDynamicQDQ(t *testing.T) {
	g := &onnxgraph.Graph{
		Nodes: []*onnxgraph.Node{
			{OpType: "MatMul", Name: "q", Inputs: []string{"x", "wq"}, Outputs: []string{"yq"}},
			{OpType: "MatMul", Name: "k", Inputs: []string{"x", "wk"}, Outputs: []string{"yk"}},
		},
		Initializers: []*onnxgraph.Tensor{
			floatTensor("wq", []int64{2, 2}, 1, 2, 3, 4), floatTensor("wk", []int64{2, 2}, -1, 0, 0.5, 1),
		},
	}
	report, err := Dynamic(&onnxgraph.Model{Graph: g}, Options{QDQ: true})
	if err != nil || len(report.Quantized) != 2 {
		t.Fatalf("report %+v, %v", report, err)
	}
	var ops []string
	for _, n := range g.Nodes {
		ops = append(ops, n.OpType)
	}
	// x quantized and dequantized once; each weight dequantized per column into its float MatMul.
	want := []string{"DynamicQuantizeLinear", "DequantizeLinear", "DequantizeLinear", "MatMul", "DequantizeLinear", "MatMul"}
	if !slices.Equal(ops, want) {
		t.Fatalf("ops %v; want %v", ops, want)
	}
	if g.Nodes[3].Inputs[0] != g.Nodes[1].Outputs[0] || g.Nodes[5].Inputs[0] != g.Nodes[1].Outputs[0] || g.Nodes[5].Outputs[0] != "yk" {
		t.Errorf("the MatMuls read %v and %v", g.Nodes[3].Inputs, g.Nodes[5].Inputs)
	}
	if a, ok := g.Nodes[2].Attribute("axis"); !ok {
		t.Error("the weight's DequantizeLinear has no axis")
	} else if v, _ := a.Int(); v != 1 {
		t.Errorf("weight dequantized along axis %d, want the columns (1)", v)
	}
}

// Unnamed nodes are reported by operator and position, each on its own.
func TestReportUnnamedNodes(t *testing.T) {
	g := &onnxgraph.Graph{
		Nodes: []*onnxgraph.Node{
			{OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"y"}},
			{OpType: "MatMul", Inputs: []string{"y", "y"}, Outputs: []string{"z"}},
			{OpType: "Gemm", Inputs: []string{"z", "w"}, Outputs: []string{"out"}},
		},
		Initializers: []*onnxgraph.Tensor{floatTensor("w", []int64{2, 2}, 1, 2, 3, 4)},
	}
	report, err := Dynamic(&onnxgraph.Model{Graph: g}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(report.Quantized, []string{"MatMul #0"}) || len(report.Float) != 2 ||
		report.Float["MatMul #1"] != "its second input is not a constant" || report.Float["Gemm #2"] == "" {
		t.Errorf("report %+v", report)
	}
}

// A classifier head's MatMuls read one token per sequence (a Gather on the sequence axis by a constant scalar, an
// initializer or a Constant node): they stay in float, the encoder's MatMul before them does not.
func TestHeadStaysFloat(t *testing.T) {
	const why = "it runs once per sequence, on the one token a head reads: int8 would save nothing there and its error would land on the output"
	zero := &onnxgraph.Tensor{Name: "zero", DataType: 7, RawData: make([]byte, 8)} // int64 0, rank 0
	for _, constantNode := range []bool{false, true} {
		g := &onnxgraph.Graph{
			Nodes: []*onnxgraph.Node{
				{OpType: "MatMul", Name: "encoder", Inputs: []string{"x", "w"}, Outputs: []string{"hidden"}},
				{OpType: "Gather", Name: "first_token", Inputs: []string{"hidden", "zero"}, Outputs: []string{"first"},
					Attributes: []onnxgraph.Attribute{onnxgraph.IntAttribute("axis", 1)}},
				{OpType: "MatMul", Name: "pooler", Inputs: []string{"first", "w"}, Outputs: []string{"pooled"}},
				{OpType: "Tanh", Inputs: []string{"pooled"}, Outputs: []string{"tanh"}},
				{OpType: "MatMul", Name: "classifier", Inputs: []string{"tanh", "w"}, Outputs: []string{"logits"}},
				// A Gather on another axis (an embedding lookup's) selects no token, nor does one by several indices.
				{OpType: "Gather", Name: "lookup", Inputs: []string{"hidden", "zero"}, Outputs: []string{"row"}},
				{OpType: "MatMul", Name: "other", Inputs: []string{"row", "w"}, Outputs: []string{"y"}},
				{OpType: "Gather", Name: "tokens", Inputs: []string{"hidden", "indices"}, Outputs: []string{"some"},
					Attributes: []onnxgraph.Attribute{onnxgraph.IntAttribute("axis", 1)}},
				{OpType: "MatMul", Name: "some_tokens", Inputs: []string{"some", "w"}, Outputs: []string{"z"}},
				// The pooled vector added back onto every token makes per-token values again.
				{OpType: "Add", Inputs: []string{"hidden", "tanh"}, Outputs: []string{"mixed"}},
				{OpType: "MatMul", Name: "every_token", Inputs: []string{"mixed", "w"}, Outputs: []string{"v"}},
			},
			Initializers: []*onnxgraph.Tensor{floatTensor("w", []int64{2, 2}, 1, 2, 3, 4),
				{Name: "indices", DataType: 7, Dims: []int64{1}, RawData: make([]byte, 8)}},
		}
		if constantNode {
			g.Nodes = append([]*onnxgraph.Node{{OpType: "Constant", Outputs: []string{"zero"},
				Attributes: []onnxgraph.Attribute{onnxgraph.TensorAttribute("value", zero)}}}, g.Nodes...)
		} else {
			g.Initializers = append(g.Initializers, zero)
		}
		report, err := Dynamic(&onnxgraph.Model{Graph: g}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(report.Quantized, []string{"encoder", "other", "some_tokens", "every_token"}) || len(report.Float) != 2 ||
			report.Float["pooler"] != why || report.Float["classifier"] != why {
			t.Errorf("index from a Constant node %v: report %+v", constantNode, report)
		}
	}
}

func TestUnknownExclude(t *testing.T) {
	g := &onnxgraph.Graph{
		Nodes:        []*onnxgraph.Node{{OpType: "MatMul", Name: "q", Inputs: []string{"x", "wq"}, Outputs: []string{"yq"}}},
		Initializers: []*onnxgraph.Tensor{floatTensor("wq", []int64{2, 2}, 1, 2, 3, 4)},
	}
	_, err := Dynamic(&onnxgraph.Model{Graph: g}, Options{Exclude: []string{"wq", "query/MatMul"}})
	if !errors.Is(err, ErrUnknownExclude) || err.Error() != `quantize: nothing to exclude: "query/MatMul" names no MatMul or Attention node, nor the weight one multiplies by` {
		t.Errorf("err = %v", err)
	}
	if g.Nodes[0].OpType != "MatMul" || len(g.Initializers) != 1 {
		t.Error("the graph was changed before the error")
	}
}
