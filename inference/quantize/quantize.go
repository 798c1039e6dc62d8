// Package quantize turns a float ONNX model into one that runs its matrix multiplications in int8, as ONNX
// Runtime's quantize_dynamic does (onnxruntime/python/tools/quantization, MatMulInteger mode): every MatMul whose
// second input is a constant 2-D weight gets int8 weights with one symmetric scale per output column, and its
// activations are quantized as they come (DynamicQuantizeLinear → MatMulInteger → Cast → Mul by the product of
// the scales), the pattern ONNX Runtime's optimizer fuses into DynamicQuantizeMatMul. It is pure Go over
// inference/onnxgraph.
//
// Where it differs from quantize_dynamic: weights are always per output column (quantize_dynamic's default is per
// tensor, its per_channel option per column for MatMul too); Gemm, Conv and the other ops it also handles are left
// in float (com.microsoft Attention becomes QAttention, as there); an activation that feeds several MatMuls (Q, K and
// V) is quantized once; weights in external data files are read and their int8 copies stored in the graph; the
// MatMuls of a classifier head, which read one token per sequence, stay in float (what quantize_dynamic users pass
// as nodes_to_exclude by hand).
package quantize

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/jetinfer/jetinfer/inference/onnxgraph"
)

// ErrAlreadyQuantized is the error of a model that already has quantized operators.
var ErrAlreadyQuantized = errors.New("quantize: the model is already quantized")

// ErrUnknownExclude is the error of an Exclude entry that matches nothing: a typo, or a MatMul fused away.
var ErrUnknownExclude = errors.New("quantize: nothing to exclude")

// Options shape the quantization.
type Options struct {
	// Exclude names MatMul nodes, or the weights they multiply by, to leave in float (a sparse model's vocabulary
	// projection, a classifier head) when measurement shows they lose too much.
	Exclude []string
	// MinWeights leaves in float the MatMuls whose weights are fewer (tiny projections gain nothing); 0 means
	// none are.
	MinWeights int
	// QDQ writes the MatMuls in the QDQ form instead (the activation's DynamicQuantizeLinear and DequantizeLinear,
	// the int8 weight's DequantizeLinear per column, the float MatMul), which ONNX Runtime's QDQ optimizer turns
	// into an integer MatMul. Measured as fast as the default form here (BenchmarkQuantizationForms in package
	// inference), which stays the default as quantize_dynamic's.
	QDQ bool
	// ExternalDir is the model's directory, where weights in external data files are read from; "" leaves
	// such weights in float. Their int8 copies are stored in the graph itself.
	ExternalDir string
}

// Report says what Dynamic did.
type Report struct {
	// Quantized are the MatMul and Attention nodes now in int8, in graph order.
	Quantized []string
	// Float are the MatMul, Attention, Gemm and Conv nodes left in float, with the reason.
	Float map[string]string
}

// TensorProto.DataType values.
const (
	dataFloat   int32 = 1
	dataInt8    int32 = 3
	dataFloat16 int32 = 10
)

// The precisions Precision reports.
const (
	Float32 = "float32"
	Float16 = "float16"
	Int8    = "int8"
	Int4    = "int4"
)

// quantizedOp gives the precision of the weights a quantized graph's operator multiplies by (onnxruntime's
// quantization tools' output, standard and com.microsoft), "" for the other operators.
func quantizedOp(opType string) string {
	switch opType {
	case "MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "QLinearMatMul",
		"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QGemm", "QLinearConv", "ConvInteger",
		"QOrderedMatMul":
		return Int8
	case "MatMulNBits":
		return Int4
	}
	return ""
}

// Precision names the precision a graph's weights run in: the lowest of its quantized operators', else float16
// when its float weights are half precision, else float32.
func Precision(s onnxgraph.Summary) string {
	precision := ""
	for _, op := range s.OpTypes {
		switch quantizedOp(op) {
		case Int4:
			return Int4
		case Int8:
			precision = Int8
		}
	}
	if precision != "" {
		return precision
	}
	if slices.Contains(s.InitializerTypes, dataFloat16) {
		return Float16
	}
	return Float32
}

// Dynamic quantizes the model's MatMuls, and the com.microsoft Attention nodes package fuse makes (as QAttention), in
// place.
func Dynamic(m *onnxgraph.Model, opts Options) (Report, error) {
	g := m.Graph
	report := Report{Float: map[string]string{}}
	for _, n := range g.Nodes {
		if quantizedOp(n.OpType) != "" {
			return report, fmt.Errorf("%w: node %q is %s", ErrAlreadyQuantized, n.Name, n.OpType)
		}
	}
	excludable := map[string]bool{} // the names Exclude may give: MatMul and Attention nodes, their weights
	for _, n := range g.Nodes {
		if n.OpType == "MatMul" && n.Domain == "" || n.OpType == "Attention" && n.Domain == onnxgraph.ContribDomain {
			excludable[n.Name], excludable[n.Input(1)] = true, true
		}
	}
	for _, name := range opts.Exclude {
		if !excludable[name] {
			return report, fmt.Errorf("%w: %q names no MatMul or Attention node, nor the weight one multiplies by", ErrUnknownExclude, name)
		}
	}
	inits := map[string]*onnxgraph.Tensor{}
	for _, t := range g.Initializers {
		inits[t.Name] = t
	}
	uses := map[string]int{} // how many node inputs read each value
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			uses[in]++
		}
	}
	head := perSequence(g, inits)
	names := g.Names()
	quantizedActivations := map[string][3]string{} // activation → its quantized value, scale and zero point
	dequantized := map[string]bool{}               // QDQ: activations whose DequantizeLinear is written
	var nodes []*onnxgraph.Node
	for i, n := range g.Nodes {
		label := nodeLabel(n, i)
		attention := n.OpType == "Attention" && n.Domain == onnxgraph.ContribDomain
		if !attention && (n.OpType != "MatMul" || n.Domain != "") {
			if n.OpType == "Gemm" || n.OpType == "Conv" { // weighted, but not what this quantizer rewrites
				report.Float[label] = n.OpType + " is left in float (only MatMul and Attention are quantized)"
			}
			nodes = append(nodes, n)
			continue
		}
		w, reason := weight(n, inits, opts)
		if w != nil && head[n.Inputs[0]] {
			w, reason = nil, "it runs once per sequence, on the one token a head reads: int8 would save nothing there and its error would land on the output"
		}
		if w == nil {
			report.Float[label] = reason
			nodes = append(nodes, n)
			continue
		}
		vals, err := w.ReadFloats(opts.ExternalDir)
		if err != nil {
			report.Float[label] = err.Error()
			nodes = append(nodes, n)
			continue
		}
		k, cols := int(w.Dims[0]), int(w.Dims[1])
		q, scales := quantizeColumns(vals, k, cols)
		base := n.Name + "/quant"
		if n.Name == "" {
			base = fmt.Sprintf("%s_%d/quant", strings.ToLower(n.OpType), len(report.Quantized))
		}
		prefix := names.Prefix(base)
		g.Initializers = append(g.Initializers,
			&onnxgraph.Tensor{Name: prefix + "/weight_quantized", DataType: dataInt8, Dims: []int64{int64(k), int64(cols)}, RawData: int8Bytes(q)},
			&onnxgraph.Tensor{Name: prefix + "/weight_scale", DataType: dataFloat, Dims: []int64{int64(cols)}, RawData: floatBytes(scales)},
			&onnxgraph.Tensor{Name: prefix + "/weight_zero_point", DataType: dataInt8, Dims: []int64{int64(cols)}, RawData: make([]byte, cols)})

		act := n.Inputs[0]
		qa, ok := quantizedActivations[act]
		if !ok {
			qa = [3]string{prefix + "/input_quantized", prefix + "/input_scale", prefix + "/input_zero_point"}
			quantizedActivations[act] = qa
			nodes = append(nodes, &onnxgraph.Node{OpType: "DynamicQuantizeLinear", Name: prefix + "/quantize_input",
				Inputs: []string{act}, Outputs: qa[:]})
		}
		report.Quantized = append(report.Quantized, label)
		uses[w.Name]--
		if attention {
			// QAttention: input, weight, bias, input_scale, weight_scale, mask_index, input_zero_point,
			// weight_zero_point.
			nodes = append(nodes, &onnxgraph.Node{OpType: "QAttention", Domain: onnxgraph.ContribDomain, Name: prefix + "/qattention",
				Inputs: []string{qa[0], prefix + "/weight_quantized", n.Inputs[2], qa[1], prefix + "/weight_scale",
					n.Input(3), qa[2], prefix + "/weight_zero_point"},
				Outputs: n.Outputs, Attributes: n.Attributes})
			continue
		}
		if opts.QDQ {
			dq := qa[0] + "/dequantized"
			if !dequantized[act] {
				dequantized[act] = true
				nodes = append(nodes, &onnxgraph.Node{OpType: "DequantizeLinear", Name: dq, Inputs: qa[:], Outputs: []string{dq}})
			}
			nodes = append(nodes,
				&onnxgraph.Node{OpType: "DequantizeLinear", Name: prefix + "/dequantize_weight",
					Inputs:     []string{prefix + "/weight_quantized", prefix + "/weight_scale", prefix + "/weight_zero_point"},
					Outputs:    []string{prefix + "/weight_dequantized"},
					Attributes: []onnxgraph.Attribute{onnxgraph.IntAttribute("axis", 1)}},
				&onnxgraph.Node{OpType: "MatMul", Name: n.Name, Inputs: []string{dq, prefix + "/weight_dequantized"}, Outputs: n.Outputs})
			continue
		}
		out := n.Outputs[0]
		nodes = append(nodes,
			&onnxgraph.Node{OpType: "MatMulInteger", Name: prefix + "/matmul_integer",
				Inputs:  []string{qa[0], prefix + "/weight_quantized", qa[2], prefix + "/weight_zero_point"},
				Outputs: []string{prefix + "/product_int32"}},
			&onnxgraph.Node{OpType: "Mul", Name: prefix + "/scales", Inputs: []string{qa[1], prefix + "/weight_scale"},
				Outputs: []string{prefix + "/scale"}},
			&onnxgraph.Node{OpType: "Cast", Name: prefix + "/cast", Inputs: []string{prefix + "/product_int32"},
				Outputs: []string{prefix + "/product"}, Attributes: []onnxgraph.Attribute{onnxgraph.IntAttribute("to", int64(dataFloat))}},
			&onnxgraph.Node{OpType: "Mul", Name: prefix + "/dequantize", Inputs: []string{prefix + "/product", prefix + "/scale"},
				Outputs: []string{out}})
	}
	g.Nodes = nodes
	// The float weights no node reads any more.
	g.Initializers = slices.DeleteFunc(g.Initializers, func(t *onnxgraph.Tensor) bool {
		n, read := uses[t.Name]
		return read && n == 0
	})
	return report, nil
}

// perSequence returns the values computed from one token of each sequence, as a classifier's pooler reads it
// (a Gather on the sequence axis by one constant index: an export of hidden[:, 0]), and the values computed from
// those alone (with constants): an operator that also reads a per-token value, or a shape, makes per-token values
// again. ONNX keeps nodes in topological order, so one pass sees a value's producer before its readers.
func perSequence(g *onnxgraph.Graph, inits map[string]*onnxgraph.Tensor) map[string]bool {
	constant := map[string]bool{} // initializers and Constant nodes' outputs
	scalar := map[string]bool{}   // the rank-0 ones
	for name, t := range inits {
		constant[name], scalar[name] = true, len(t.Dims) == 0
	}
	head := map[string]bool{}
	for _, n := range g.Nodes {
		if n.OpType == "Constant" && n.Domain == "" && len(n.Outputs) == 1 {
			constant[n.Outputs[0]] = true
			if a, ok := n.Attribute("value"); ok {
				if t, ok := a.Tensor(); ok && len(t.Dims) == 0 {
					scalar[n.Outputs[0]] = true
				}
			}
			continue
		}
		from := false
		if n.OpType == "Gather" && n.Domain == "" && len(n.Inputs) == 2 && scalar[n.Inputs[1]] {
			if a, ok := n.Attribute("axis"); ok {
				axis, _ := a.Int()
				from = axis == 1
			}
		}
		if !from && n.OpType != "Shape" {
			read := 0
			from = !slices.ContainsFunc(n.Inputs, func(in string) bool {
				if in == "" || constant[in] {
					return false
				}
				read++
				return !head[in]
			}) && read > 0
		}
		if from {
			for _, o := range n.Outputs {
				head[o] = true
			}
		}
	}
	return head
}

// nodeLabel names a node in a Report: its name, or its operator and index for an unnamed one (ONNX does not require
// names).
func nodeLabel(n *onnxgraph.Node, i int) string {
	if n.Name != "" {
		return n.Name
	}
	return fmt.Sprintf("%s #%d", n.OpType, i)
}

// weight returns the constant 2-D float weight a MatMul or an Attention multiplies by, or why it has none to
// quantize.
func weight(n *onnxgraph.Node, inits map[string]*onnxgraph.Tensor, opts Options) (*onnxgraph.Tensor, string) {
	if n.OpType == "Attention" {
		// QAttention has Attention's inputs up to the mask, and of its attributes these (ONNX Runtime 1.24).
		if len(n.Inputs) < 3 || len(n.Inputs) > 4 || n.Inputs[2] == "" || len(n.Outputs) != 1 {
			return nil, "an Attention with inputs or outputs beyond QAttention's"
		}
		for _, a := range n.Attributes {
			switch a.Name() {
			case "num_heads", "unidirectional", "scale", "mask_filter_value":
			default:
				return nil, fmt.Sprintf("an Attention with attribute %s, which QAttention lacks", a.Name())
			}
		}
	} else if len(n.Inputs) != 2 || len(n.Outputs) != 1 {
		return nil, "not a two-input MatMul"
	}
	if slices.Contains(opts.Exclude, n.Name) || slices.Contains(opts.Exclude, n.Inputs[1]) {
		return nil, "excluded"
	}
	w, ok := inits[n.Inputs[1]]
	switch {
	case !ok:
		return nil, "its second input is not a constant"
	case w.DataType != dataFloat:
		return nil, fmt.Sprintf("its weight has data type %d, not FLOAT", w.DataType)
	case len(w.Dims) != 2 || w.Dims[0] < 1 || w.Dims[1] < 1:
		return nil, fmt.Sprintf("its weight has shape %v, not [K, N]", w.Dims)
	case w.External() && opts.ExternalDir == "":
		return nil, "its weight is in an external data file"
	case int(w.Dims[0]*w.Dims[1]) < opts.MinWeights:
		return nil, fmt.Sprintf("its weight has %d values, fewer than %d", w.Dims[0]*w.Dims[1], opts.MinWeights)
	}
	return w, ""
}

// quantizeColumns quantizes a row-major [k, cols] matrix symmetrically per column: scale = max|w| / 127 and
// q = round(w / scale) in [-127, 127] (onnxruntime's symmetric int8 range); a column of zeros has scale 1.
func quantizeColumns(w []float32, k, cols int) ([]int8, []float32) {
	scales := make([]float32, cols)
	for j := range cols {
		var maxAbs float64
		for i := range k {
			maxAbs = max(maxAbs, math.Abs(float64(w[i*cols+j])))
		}
		scales[j] = 1
		if maxAbs > 0 {
			scales[j] = float32(maxAbs / 127)
		}
	}
	q := make([]int8, len(w))
	for i := range k {
		for j := range cols {
			v := math.RoundToEven(float64(w[i*cols+j]) / float64(scales[j]))
			q[i*cols+j] = int8(max(-127, min(127, v)))
		}
	}
	return q, scales
}

func int8Bytes(q []int8) []byte {
	b := make([]byte, len(q))
	for i, v := range q {
		b[i] = byte(v)
	}
	return b
}

func floatBytes(f []float32) []byte {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}
