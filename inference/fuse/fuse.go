// Package fuse rewrites the subgraphs of an exported BERT-style ONNX graph that ONNX Runtime's online optimizer
// leaves unfused into ONNX Runtime's contrib operators (domain com.microsoft), as onnxruntime.transformers.optimizer
// does offline: each self-attention subgraph becomes one Attention, and a residual Add (with the bias Add before
// it) and the LayerNormalization after it one SkipLayerNormalization. It is pure Go over inference/onnxgraph;
// ONNX Runtime's own fusions (its SkipLayerNormFusion needs static shapes that dynamic-axis exports do not give
// it) still run at load. The patterns are those of a PyTorch export, its reshape shapes constant or computed at run
// time from the reshaped tensor's own Shape (ConstantShapes folds those first), its layer normalizations one
// LayerNormalization (opset 17) or spelled out in primitive operators (LayerNorm folds those first); anything else
// is left as it is.
package fuse

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/jetinfer/jetinfer/inference/onnxgraph"
)

// defaultEpsilon is LayerNormalization's epsilon when the attribute is absent.
const defaultEpsilon = 1e-5

// graphIndex says which node makes each value and how many nodes read it.
type graphIndex struct {
	producer map[string]*onnxgraph.Node
	readers  map[string]int
	reader   map[string]*onnxgraph.Node   // the last node read each value (the only one where readers is 1)
	readBy   map[string][]*onnxgraph.Node // every node that reads each value, once each
	inits    map[string]*onnxgraph.Tensor
	outputs  map[string]bool // the graph's outputs: a value a caller reads
}

func index(g *onnxgraph.Graph) graphIndex {
	ix := graphIndex{producer: map[string]*onnxgraph.Node{}, readers: map[string]int{}, reader: map[string]*onnxgraph.Node{},
		readBy: map[string][]*onnxgraph.Node{}, inits: map[string]*onnxgraph.Tensor{}, outputs: map[string]bool{}}
	for _, n := range g.Nodes {
		for _, out := range n.Outputs {
			ix.producer[out] = n
		}
		for _, in := range n.Inputs {
			ix.readers[in]++
			ix.reader[in] = n
			if rs := ix.readBy[in]; len(rs) == 0 || rs[len(rs)-1] != n {
				ix.readBy[in] = append(rs, n)
			}
		}
	}
	for _, t := range g.Initializers {
		ix.inits[t.Name] = t
	}
	for _, o := range g.Outputs() {
		ix.outputs[o] = true
	}
	return ix
}

// hasSubgraphs reports whether a node runs a subgraph (If, Loop, Scan): the values a subgraph reads from the main
// graph are not among its node's inputs, so no fusion here can know what is read.
func hasSubgraphs(g *onnxgraph.Graph) bool {
	return slices.ContainsFunc(g.Nodes, func(n *onnxgraph.Node) bool {
		return n.Domain == "" && (n.OpType == "If" || n.OpType == "Loop" || n.OpType == "Scan")
	})
}

// only reports whether value is read by exactly one node and is not a graph output, so that fusing its producer
// into its reader loses nothing.
func (ix graphIndex) only(value string) bool { return ix.readers[value] == 1 && !ix.outputs[value] }

// vector reports whether name is a 1-D float initializer.
func (ix graphIndex) vector(name string) bool {
	t, ok := ix.inits[name]
	return ok && t.DataType == onnxgraph.Float && len(t.Dims) == 1
}

// residualSource reports whether a value is a layer's normalized output, the input a residual connection adds
// back: then it has the [batch, sequence, hidden] shape SkipLayerNormalization needs (an embedding sum may not).
func (ix graphIndex) residualSource(value string) bool {
	n, ok := ix.producer[value]
	return ok && n.Outputs[0] == value && (n.OpType == "LayerNormalization" && n.Domain == "" ||
		n.OpType == "SkipLayerNormalization" && n.Domain == onnxgraph.ContribDomain)
}

// LayerNorm folds each layer normalization spelled out in primitive operators, as PyTorch exports it below opset 17,
// into one LayerNormalization (which ONNX Runtime runs at every opset): x − ReduceMean(x) over the last axis (one
// Sub, or two as older exporters repeat it), Pow 2, ReduceMean, Add ε, Sqrt, Div, Mul by a constant gamma, Add of a
// constant beta. ONNX Runtime folds the same at load, but only after the fusions here and the quantizer have looked
// at the graph: folded first, SkipLayerNorm finds the normalizations it starts from. It returns how many it folded.
func LayerNorm(m *onnxgraph.Model) int {
	g := m.Graph
	if hasSubgraphs(g) {
		return 0
	}
	ix := index(g)
	names := g.Names()
	drop := map[*onnxgraph.Node]bool{}
	replace := map[*onnxgraph.Node]*onnxgraph.Node{}
	for _, mean := range g.Nodes {
		if ln, absorbed, ok := ix.matchLayerNorm(mean); ok && !slices.ContainsFunc(absorbed, func(n *onnxgraph.Node) bool { return drop[n] }) {
			for _, n := range absorbed {
				drop[n] = true
			}
			ln.Name = names.Prefix(ln.Outputs[0] + "/layer_norm_folded")
			replace[absorbed[len(absorbed)-1]] = ln
		}
	}
	if len(replace) == 0 {
		return 0
	}
	rewrite(g, drop, replace)
	dropDead(g) // Constant nodes of ε and 2 that only the folded operators read
	return len(replace)
}

// rewrite puts each node of replace in its key's place and removes those of drop, in the graph's order.
func rewrite(g *onnxgraph.Graph, drop map[*onnxgraph.Node]bool, replace map[*onnxgraph.Node]*onnxgraph.Node) {
	nodes := g.Nodes[:0:0]
	for _, n := range g.Nodes {
		switch {
		case replace[n] != nil:
			nodes = append(nodes, replace[n])
		case drop[n]:
		default:
			nodes = append(nodes, n)
		}
	}
	g.Nodes = nodes
}

// matchLayerNorm matches a spelled-out layer normalization from its first ReduceMean: the LayerNormalization that
// computes it, and the nodes it replaces (the last is the final Add, whose output it takes over).
func (ix graphIndex) matchLayerNorm(mean *onnxgraph.Node) (*onnxgraph.Node, []*onnxgraph.Node, bool) {
	if !ix.lastAxisMean(mean) || ix.outputs[mean.Outputs[0]] {
		return nil, nil, false
	}
	x := mean.Inputs[0]
	subs := ix.readBy[mean.Outputs[0]]
	if len(subs) == 0 || len(subs) > 2 || len(subs) != ix.readers[mean.Outputs[0]] {
		return nil, nil, false
	}
	var pow, div *onnxgraph.Node
	for _, s := range subs {
		if s.OpType != "Sub" || s.Domain != "" || len(s.Inputs) != 2 || s.Inputs[0] != x || s.Inputs[1] != mean.Outputs[0] ||
			len(s.Outputs) != 1 || ix.outputs[s.Outputs[0]] || len(ix.readBy[s.Outputs[0]]) != ix.readers[s.Outputs[0]] {
			return nil, nil, false
		}
		for _, r := range ix.readBy[s.Outputs[0]] {
			switch {
			case r.OpType == "Pow" && r.Domain == "" && pow == nil && len(r.Inputs) == 2 && r.Inputs[0] == s.Outputs[0]:
				pow = r
			case r.OpType == "Div" && r.Domain == "" && div == nil && len(r.Inputs) == 2 && r.Inputs[0] == s.Outputs[0]:
				div = r
			default:
				return nil, nil, false
			}
		}
	}
	if pow == nil || div == nil {
		return nil, nil, false
	}
	if two, ok := ix.scalar(pow.Inputs[1]); !ok || two != 2 {
		return nil, nil, false
	}
	variance, ok := ix.next(pow, "ReduceMean")
	if !ok || !ix.lastAxisMean(variance) {
		return nil, nil, false
	}
	addEps, ok := ix.next(variance, "Add")
	if !ok || len(addEps.Inputs) != 2 {
		return nil, nil, false
	}
	epsilon, ok := ix.scalar(addEps.Inputs[1-slices.Index(addEps.Inputs, variance.Outputs[0])])
	if !ok || !(epsilon > 0) || epsilon > 1e-3 {
		return nil, nil, false
	}
	sqrt, ok := ix.next(addEps, "Sqrt")
	if !ok {
		return nil, nil, false
	}
	if d, ok := ix.next(sqrt, "Div"); !ok || d != div || div.Inputs[1] != sqrt.Outputs[0] {
		return nil, nil, false
	}
	mul, ok := ix.next(div, "Mul")
	if !ok || len(mul.Inputs) != 2 {
		return nil, nil, false
	}
	gamma := mul.Inputs[1-slices.Index(mul.Inputs, div.Outputs[0])]
	add, ok := ix.next(mul, "Add")
	if !ok || len(add.Inputs) != 2 || len(add.Outputs) != 1 {
		return nil, nil, false
	}
	beta := add.Inputs[1-slices.Index(add.Inputs, mul.Outputs[0])]
	// One value per hidden unit: a single broadcast one is not what LayerNormalization (nor SkipLayerNormalization
	// after it) takes.
	if !ix.vector(gamma) || !ix.vector(beta) || ix.inits[gamma].Dims[0] < 2 || ix.inits[gamma].Dims[0] != ix.inits[beta].Dims[0] {
		return nil, nil, false
	}
	ln := &onnxgraph.Node{OpType: "LayerNormalization", Inputs: []string{x, gamma, beta}, Outputs: add.Outputs,
		Attributes: []onnxgraph.Attribute{onnxgraph.IntAttribute("axis", -1), onnxgraph.FloatAttribute("epsilon", epsilon)}}
	absorbed := append([]*onnxgraph.Node{mean}, subs...)
	return ln, append(absorbed, pow, variance, addEps, sqrt, div, mul, add), true
}

// lastAxisMean reports whether n is a ReduceMean over the last axis alone that keeps the dimension, its axes an
// attribute (below opset 18) or a constant input.
func (ix graphIndex) lastAxisMean(n *onnxgraph.Node) bool {
	if n.OpType != "ReduceMean" || n.Domain != "" || len(n.Inputs) == 0 || len(n.Outputs) != 1 {
		return false
	}
	if a, ok := n.Attribute("keepdims"); ok {
		if keep, _ := a.Int(); keep != 1 {
			return false
		}
	}
	var axes []int64
	if a, ok := n.Attribute("axes"); ok {
		axes, _ = a.Ints()
	} else if len(n.Inputs) == 2 {
		axes, _ = ix.ints(n.Inputs[1])
	}
	return slices.Equal(axes, []int64{-1})
}

// SkipLayerNorm fuses every Add(Add(y, bias), residual) → LayerNormalization(axis -1) into
// SkipLayerNormalization(y, residual, gamma, beta, bias), and Add(y, residual) → LayerNormalization without a bias
// Add into SkipLayerNormalization(y, residual, gamma, beta), where residual is the output of an earlier
// normalization. It returns how many it fused; the graph's outputs are never fused away.
func SkipLayerNorm(m *onnxgraph.Model) int {
	g := m.Graph
	if hasSubgraphs(g) {
		return 0
	}
	ix := index(g)
	names := g.Names()
	drop := map[*onnxgraph.Node]bool{}
	replace := map[*onnxgraph.Node]*onnxgraph.Node{}
	for _, ln := range g.Nodes {
		if ln.OpType != "LayerNormalization" || ln.Domain != "" || len(ln.Inputs) != 3 || len(ln.Outputs) != 1 ||
			!ix.vector(ln.Inputs[1]) || !ix.vector(ln.Inputs[2]) {
			continue
		}
		if a, ok := ln.Attribute("axis"); ok {
			if axis, _ := a.Int(); axis != -1 {
				continue
			}
		}
		sum, ok := ix.producer[ln.Inputs[0]]
		if !ok || sum.OpType != "Add" || sum.Domain != "" || len(sum.Inputs) != 2 || !ix.only(ln.Inputs[0]) || drop[sum] {
			continue
		}
		// The residual is the normalized input; the other operand is the sublayer's output.
		y, residual := sum.Inputs[0], sum.Inputs[1]
		if !ix.residualSource(residual) {
			y, residual = residual, y
		}
		if !ix.residualSource(residual) || y == residual {
			continue
		}
		hidden := ix.inits[ln.Inputs[1]].Dims[0]
		if _, constant := ix.inits[y]; constant || ix.inits[ln.Inputs[2]].Dims[0] != hidden {
			continue
		}
		inputs := []string{y, residual, ln.Inputs[1], ln.Inputs[2]}
		if biasAdd, ok := ix.producer[y]; ok && biasAdd.OpType == "Add" && biasAdd.Domain == "" && len(biasAdd.Inputs) == 2 &&
			ix.only(y) && !drop[biasAdd] {
			for i, bias := range biasAdd.Inputs {
				if ix.vector(bias) && ix.inits[bias].Dims[0] == hidden && ix.inits[biasAdd.Inputs[1-i]] == nil {
					inputs = []string{biasAdd.Inputs[1-i], residual, ln.Inputs[1], ln.Inputs[2], bias}
					drop[biasAdd] = true
					break
				}
			}
		}
		epsilon := float32(defaultEpsilon)
		if a, ok := ln.Attribute("epsilon"); ok {
			if e, ok := a.Float(); ok {
				epsilon = e
			}
		}
		drop[sum] = true
		replace[ln] = &onnxgraph.Node{OpType: "SkipLayerNormalization", Domain: onnxgraph.ContribDomain, Name: names.Prefix(ln.Name + "/skip_fused"),
			Inputs: inputs, Outputs: ln.Outputs, Attributes: []onnxgraph.Attribute{onnxgraph.FloatAttribute("epsilon", epsilon)}}
	}
	if len(replace) == 0 {
		return 0
	}
	rewrite(g, drop, replace)
	m.ImportOpset(onnxgraph.ContribDomain, 1)
	return len(replace)
}

// defaultMaskFilter is the score Attention gives masked keys unless its mask_filter_value says otherwise.
const defaultMaskFilter = -10000

// Attention fuses each multi-head self-attention subgraph of a BERT-style export into one com.microsoft Attention
// node: the query, key and value projections (MatMul by a constant weight, Add of a constant bias) of the same
// input, their Reshape to [batch, sequence, heads, head size] and Transposes, the scores' MatMul, scaling (Div or
// Mul by a constant), the Add of the key mask's bias ((1 − mask) · filter, from the attention_mask input), the
// Softmax, the MatMul by the values, the Transpose and Reshape back to [batch, sequence, hidden]. The three
// weights are packed into one [hidden, 3·hidden] initializer; attention_mask is cast to int32 once. It returns how
// many it fused. A subgraph whose shape differs (rotary positions, causal masks, past state) is left as it is; the
// graph is still rewritten by ConstantShapes, run first, which computes the same whether an attention fuses or not.
func Attention(m *onnxgraph.Model) int {
	g := m.Graph
	if hasSubgraphs(g) {
		return 0
	}
	ConstantShapes(m)
	ix := index(g)
	names := g.Names()
	var fused []attention
	claimed := map[*onnxgraph.Node]bool{}
	for _, sm := range g.Nodes {
		if a, ok := ix.matchAttention(sm); ok && !a.overlaps(claimed) {
			for _, n := range a.nodes {
				claimed[n] = true
			}
			fused = append(fused, a)
		}
	}
	if len(fused) == 0 {
		return 0
	}
	mask := fused[0].mask
	maskInt32 := names.Prefix(mask + "/int32")
	cast := &onnxgraph.Node{OpType: "Cast", Name: maskInt32, Inputs: []string{mask}, Outputs: []string{maskInt32},
		Attributes: []onnxgraph.Attribute{onnxgraph.IntAttribute("to", dataInt32)}}
	replace := map[*onnxgraph.Node]*onnxgraph.Node{} // the final Reshape → the Attention taking over its output
	for _, a := range fused {
		if a.mask != mask {
			continue // a second mask input: not the shape this fusion knows
		}
		name := names.Prefix(a.out.Name + "/attention_fused")
		w, b := a.packed(ix, name)
		g.Initializers = append(g.Initializers, w, b)
		attrs := []onnxgraph.Attribute{onnxgraph.IntAttribute("num_heads", a.heads)}
		// 1/√d computed by the export in float32 may be an ulp off ONNX Runtime's own.
		if math.Abs(float64(a.scale)-a.defaultScale()) > 1e-6*a.defaultScale() {
			attrs = append(attrs, onnxgraph.FloatAttribute("scale", a.scale))
		}
		if a.filter != defaultMaskFilter {
			attrs = append(attrs, onnxgraph.FloatAttribute("mask_filter_value", a.filter))
		}
		replace[a.out] = &onnxgraph.Node{OpType: "Attention", Domain: onnxgraph.ContribDomain, Name: name,
			Inputs: []string{a.input, w.Name, b.Name, maskInt32}, Outputs: a.out.Outputs, Attributes: attrs}
	}
	nodes := g.Nodes[:0:0]
	for _, n := range g.Nodes {
		r, ok := replace[n]
		if !ok {
			nodes = append(nodes, n)
			continue
		}
		if cast != nil { // before the first Attention, which is after the mask's input
			nodes, cast = append(nodes, cast), nil
		}
		nodes = append(nodes, r)
	}
	g.Nodes = nodes
	// What only the replaced subgraphs read (their projections, scores, the float mask) is computed for nothing now.
	dropDead(g)
	m.ImportOpset(onnxgraph.ContribDomain, 1)
	return len(replace)
}

// dropDead removes the nodes whose outputs nothing reads (neither a node nor the graph's outputs), until none is
// left, then the initializers nothing reads unless the graph lists them among its inputs (older exporters do: they
// are then inputs a caller may set).
func dropDead(g *onnxgraph.Graph) {
	outputs := append(g.Outputs(), g.Inputs()...)
	for {
		read := map[string]bool{}
		for _, o := range outputs {
			read[o] = true
		}
		for _, n := range g.Nodes {
			for _, in := range n.Inputs {
				read[in] = true
			}
		}
		before := len(g.Nodes)
		g.Nodes = slices.DeleteFunc(g.Nodes, func(n *onnxgraph.Node) bool {
			return !slices.ContainsFunc(n.Outputs, func(o string) bool { return read[o] })
		})
		if len(g.Nodes) == before {
			g.Initializers = slices.DeleteFunc(g.Initializers, func(t *onnxgraph.Tensor) bool { return !read[t.Name] })
			return
		}
	}
}

// TensorProto.DataType of an int32 tensor.
const dataInt32 = 6

// attention is one matched self-attention subgraph.
type attention struct {
	input         string            // the hidden states the projections read
	weights, bias [3]string         // query, key, value initializers
	heads         int64             // from the Reshape to heads
	headSize      int64             // idem
	scale, filter float32           // the scores' scale, the masked keys' score
	mask          string            // the attention_mask graph input
	out           *onnxgraph.Node   // the final Reshape, whose output the Attention takes over
	nodes         []*onnxgraph.Node // every node the Attention replaces
}

// defaultScale is the scale Attention applies without the attribute.
func (a attention) defaultScale() float64 { return 1 / math.Sqrt(float64(a.headSize)) }

func (a attention) overlaps(claimed map[*onnxgraph.Node]bool) bool {
	return slices.ContainsFunc(a.nodes, func(n *onnxgraph.Node) bool { return claimed[n] })
}

// packed concatenates the query, key and value weights column-wise ([hidden, 3·hidden]) and their biases.
func (a attention) packed(ix graphIndex, name string) (*onnxgraph.Tensor, *onnxgraph.Tensor) {
	var ws [3][]float32
	var bs []float32
	rows := ix.inits[a.weights[0]].Dims[0]
	cols := ix.inits[a.weights[0]].Dims[1]
	for i := range 3 {
		ws[i], _ = ix.inits[a.weights[i]].Floats() // checked by matchAttention
		b, _ := ix.inits[a.bias[i]].Floats()
		bs = append(bs, b...)
	}
	w := make([]float32, 0, 3*rows*cols)
	for r := range rows {
		for i := range 3 {
			w = append(w, ws[i][r*cols:(r+1)*cols]...)
		}
	}
	return floatTensor(name+"/qkv_weight", []int64{rows, 3 * cols}, w), floatTensor(name+"/qkv_bias", []int64{3 * cols}, bs)
}

func int64Tensor(name string, vals []int64) *onnxgraph.Tensor {
	raw := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return &onnxgraph.Tensor{Name: name, DataType: dataInt64, Dims: []int64{int64(len(vals))}, RawData: raw}
}

func floatTensor(name string, dims []int64, vals []float32) *onnxgraph.Tensor {
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnxgraph.Tensor{Name: name, DataType: onnxgraph.Float, Dims: dims, RawData: raw}
}

// made returns the node that makes value when it is of opType (default domain) and value is read by one node only.
func (ix graphIndex) made(value, opType string) (*onnxgraph.Node, bool) {
	n, ok := ix.producer[value]
	if !ok || n.OpType != opType || n.Domain != "" || !ix.only(value) {
		return nil, false
	}
	return n, true
}

// next returns the one node that reads n's only output, when it is of opType.
func (ix graphIndex) next(n *onnxgraph.Node, opType string) (*onnxgraph.Node, bool) {
	if len(n.Outputs) != 1 || !ix.only(n.Outputs[0]) {
		return nil, false
	}
	r := ix.reader[n.Outputs[0]]
	if r.OpType != opType || r.Domain != "" {
		return nil, false
	}
	return r, true
}

// constant returns a constant tensor: an initializer, or a Constant node's value (PyTorch exports small constants
// so).
func (ix graphIndex) constant(name string) (*onnxgraph.Tensor, bool) {
	if t, ok := ix.inits[name]; ok {
		return t, true
	}
	if n, made := ix.producer[name]; made && n.OpType == "Constant" && n.Domain == "" {
		if a, has := n.Attribute("value"); has {
			return a.Tensor()
		}
	}
	return nil, false
}

// scalar returns the value of a one-value float constant of rank 0 or 1 (a higher rank would broadcast its
// operation's result to more dimensions).
func (ix graphIndex) scalar(name string) (float32, bool) {
	t, ok := ix.constant(name)
	if !ok || t.DataType != onnxgraph.Float || len(t.Dims) > 1 {
		return 0, false
	}
	vs, err := t.Floats()
	if err != nil || len(vs) != 1 {
		return 0, false
	}
	return vs[0], true
}

// ints returns an int64 constant's values.
func (ix graphIndex) ints(name string) ([]int64, bool) {
	t, ok := ix.constant(name)
	if !ok || t.DataType != dataInt64 || len(t.RawData) == 0 || len(t.RawData)%8 != 0 {
		return nil, false
	}
	vs := make([]int64, len(t.RawData)/8)
	for i := range vs {
		vs[i] = int64(binary.LittleEndian.Uint64(t.RawData[8*i:]))
	}
	return vs, true
}

// TensorProto.DataType of an int64 tensor.
const dataInt64 = 7

// perm reports whether a Transpose node has that permutation.
func perm(n *onnxgraph.Node, want ...int64) bool {
	a, ok := n.Attribute("perm")
	if !ok {
		return false
	}
	p, ok := a.Ints()
	return ok && slices.Equal(p, want)
}

// constOperand splits a two-input node's inputs into the one that is a scalar constant and the other.
func (ix graphIndex) constOperand(n *onnxgraph.Node) (float32, string, bool) {
	if len(n.Inputs) != 2 {
		return 0, "", false
	}
	for i := range 2 {
		if c, ok := ix.scalar(n.Inputs[i]); ok {
			return c, n.Inputs[1-i], true
		}
	}
	return 0, "", false
}

// projection is one of query, key, value: x·W + b reshaped to heads and transposed.
type projection struct {
	input, weight, bias string
	heads, headSize     int64
	nodes               []*onnxgraph.Node
}

// matchProjection follows value back through Transpose(perm) ← Reshape([0, 0, heads, head size]) ← Add(bias) ←
// MatMul(x, W). The key's Transpose may also be two: [0, 2, 1, 3] then [0, 1, 3, 2].
func (ix graphIndex) matchProjection(value string, key bool) (projection, bool) {
	var p projection
	tr, ok := ix.made(value, "Transpose")
	if !ok {
		return p, false
	}
	p.nodes = append(p.nodes, tr)
	switch {
	case !key && perm(tr, 0, 2, 1, 3), key && perm(tr, 0, 2, 3, 1):
	case key && perm(tr, 0, 1, 3, 2):
		if tr, ok = ix.made(tr.Inputs[0], "Transpose"); !ok || !perm(tr, 0, 2, 1, 3) {
			return p, false
		}
		p.nodes = append(p.nodes, tr)
	default:
		return p, false
	}
	rs, ok := ix.made(tr.Inputs[0], "Reshape")
	if !ok || len(rs.Inputs) != 2 {
		return p, false
	}
	shape, ok := ix.ints(rs.Inputs[1])
	if !ok || len(shape) != 4 || shape[0] != 0 || shape[1] != 0 || shape[2] < 1 || shape[3] < 1 {
		return p, false
	}
	p.heads, p.headSize = shape[2], shape[3]
	add, ok := ix.made(rs.Inputs[0], "Add")
	if !ok || len(add.Inputs) != 2 {
		return p, false
	}
	product := add.Inputs[0]
	p.bias = add.Inputs[1]
	if !ix.vector(p.bias) {
		product, p.bias = p.bias, product
	}
	mm, ok := ix.made(product, "MatMul")
	if !ok || len(mm.Inputs) != 2 || !ix.vector(p.bias) {
		return p, false
	}
	p.input, p.weight = mm.Inputs[0], mm.Inputs[1]
	w, ok := ix.inits[p.weight]
	hidden := p.heads * p.headSize
	if !ok || w.DataType != onnxgraph.Float || len(w.Dims) != 2 || w.Dims[1] != hidden || w.External() ||
		ix.inits[p.bias].Dims[0] != hidden {
		return p, false
	}
	p.nodes = append(p.nodes, rs, add, mm)
	return p, true
}

// maskBias follows an additive key bias back to (1 − expanded mask) · filter (expandedMask).
func (ix graphIndex) maskBias(value string) (mask string, filter float32, ok bool) {
	mul, found := ix.producer[value]
	if !found || mul.OpType != "Mul" || mul.Domain != "" {
		return "", 0, false
	}
	filter, inv, ok := ix.constOperand(mul)
	if !ok {
		return "", 0, false
	}
	sub, found := ix.producer[inv]
	if !found || sub.OpType != "Sub" || len(sub.Inputs) != 2 {
		return "", 0, false
	}
	if one, ok := ix.scalar(sub.Inputs[0]); !ok || one != 1 {
		return "", 0, false
	}
	if mask, ok = ix.expandedMask(sub.Inputs[1]); !ok {
		return "", 0, false
	}
	return mask, filter, true
}

// expandedMask follows a value back to a graph input, the attention mask [batch, keys], cast to float once and
// unsqueezed to [batch, 1, 1, keys]: Unsqueeze(Cast(mask), [1, 2]) as the generated models have it, or
// Cast(Unsqueeze(Unsqueeze(mask, 1), 2)) as PyTorch traces transformers' mask[:, None, None, :].to(dtype).
func (ix graphIndex) expandedMask(value string) (string, bool) {
	var unsqueezes [][]int64 // the last applied first
	casts := 0
	for range 3 { // a Cast and at most two Unsqueezes of the 2-D mask; a longer chain is not a mask's
		n, made := ix.producer[value]
		if !made || n.Domain != "" || len(n.Inputs) == 0 {
			break
		}
		switch n.OpType {
		case "Unsqueeze":
			axes, ok := ix.unsqueezeAxes(n)
			if !ok {
				return "", false
			}
			unsqueezes = append(unsqueezes, axes)
		case "Cast":
			to, found := n.Attribute("to")
			if v, _ := to.Int(); !found || v != int64(onnxgraph.Float) || casts > 0 {
				return "", false
			}
			casts++
		default:
			return "", false
		}
		value = n.Inputs[0]
	}
	if _, made := ix.producer[value]; made || ix.inits[value] != nil || casts != 1 {
		return "", false // not a graph input, or not the integer mask an export casts to float once
	}
	dims := []string{"batch", "keys"}
	for i := len(unsqueezes) - 1; i >= 0; i-- {
		var ok bool
		if dims, ok = unsqueezed(dims, unsqueezes[i]); !ok {
			return "", false
		}
	}
	return value, slices.Equal(dims, []string{"batch", "1", "1", "keys"})
}

// unsqueezeAxes returns an Unsqueeze's axes: an input from opset 13, an attribute before.
func (ix graphIndex) unsqueezeAxes(n *onnxgraph.Node) ([]int64, bool) {
	if a, found := n.Attribute("axes"); found {
		return a.Ints()
	}
	return ix.ints(n.Input(1))
}

// unsqueezed inserts a dimension of 1 at each of axes (positions in the result, negative from its end) into dims.
func unsqueezed(dims []string, axes []int64) ([]string, bool) {
	rank := int64(len(dims) + len(axes))
	at := make([]int64, len(axes))
	for i, a := range axes {
		if a < 0 {
			a += rank
		}
		if a < 0 || a >= rank {
			return nil, false
		}
		at[i] = a
	}
	slices.Sort(at)
	if len(slices.Compact(slices.Clone(at))) != len(at) {
		return nil, false
	}
	out := slices.Clone(dims)
	for _, a := range at {
		out = slices.Insert(out, int(a), "1")
	}
	return out, true
}

// ConstantShapes replaces each Reshape shape that an export computes at run time from the Reshape's own input by a
// constant, as onnxruntime.transformers' FusionReshape does: PyTorch traces x.view(x.size()[:-1] + (heads, size))
// to a Concat of x's dimensions (Shape → Gather(i) → Unsqueeze, or Gather of a 1-D index) and constants; a
// dimension i of x at position i of the shape becomes 0, which Reshape reads as "x's dimension i". The attention
// fusion matches the constant shapes; the nodes left unread (the Shape subgraphs) go. It returns how many it
// replaced.
func ConstantShapes(m *onnxgraph.Model) int {
	g := m.Graph
	if hasSubgraphs(g) {
		return 0
	}
	ix := index(g)
	names := g.Names()
	shapes := map[string]string{} // a shape's values → the initializer holding them, which every Reshape of it reads
	replaced := 0
	for _, rs := range g.Nodes {
		shape, ok := ix.runtimeShape(rs)
		if !ok {
			continue
		}
		key := strings.Trim(strings.ReplaceAll(fmt.Sprint(shape), " ", "_"), "[]")
		name, ok := shapes[key]
		if !ok {
			name = names.Prefix("constant_shape_" + key)
			g.Initializers = append(g.Initializers, int64Tensor(name, shape))
			shapes[key] = name
		}
		rs.Inputs[1] = name
		replaced++
	}
	if replaced > 0 {
		dropDead(g)
	}
	return replaced
}

// runtimeShape returns the constant equivalent of a Reshape's shape when it is a Concat of constants and of at
// least one dimension of the Reshape's input taken at its own position.
func (ix graphIndex) runtimeShape(rs *onnxgraph.Node) ([]int64, bool) {
	if rs.OpType != "Reshape" || rs.Domain != "" || len(rs.Inputs) != 2 {
		return nil, false
	}
	if a, found := rs.Attribute("allowzero"); found { // 0 would then be a dimension of size 0
		if v, _ := a.Int(); v != 0 {
			return nil, false
		}
	}
	concat, made := ix.producer[rs.Inputs[1]]
	if !made || concat.OpType != "Concat" || concat.Domain != "" || len(concat.Outputs) != 1 {
		return nil, false
	}
	if a, found := concat.Attribute("axis"); !found {
		return nil, false
	} else if axis, _ := a.Int(); axis != 0 && axis != -1 {
		return nil, false
	}
	var shape []int64
	copied := false
	for _, part := range concat.Inputs {
		if t, ok := ix.constant(part); ok {
			vs, ok := ix.ints(part)
			if !ok || len(t.Dims) != 1 {
				return nil, false
			}
			shape = append(shape, vs...)
			continue
		}
		if !ix.dimensionOf(part, rs.Inputs[0], int64(len(shape))) {
			return nil, false
		}
		shape = append(shape, 0)
		copied = true
	}
	return shape, copied
}

// dimensionOf reports whether value is the one-element tensor of x's dimension i: Unsqueeze(Gather(Shape(x), i), 0)
// with a scalar index, or Gather(Shape(x), [i]).
func (ix graphIndex) dimensionOf(value, x string, i int64) bool {
	n, made := ix.producer[value]
	if !made || n.Domain != "" || len(n.Inputs) == 0 {
		return false
	}
	indexRank := 1
	if n.OpType == "Unsqueeze" {
		if axes, ok := ix.unsqueezeAxes(n); !ok || !slices.Equal(axes, []int64{0}) {
			return false
		}
		if n, made = ix.producer[n.Inputs[0]]; !made || n.Domain != "" || len(n.Inputs) == 0 {
			return false
		}
		indexRank = 0
	}
	if n.OpType != "Gather" || len(n.Inputs) != 2 {
		return false
	}
	if a, found := n.Attribute("axis"); found {
		if axis, _ := a.Int(); axis != 0 {
			return false
		}
	}
	t, ok := ix.constant(n.Inputs[1])
	at, okAt := ix.ints(n.Inputs[1])
	if !ok || !okAt || len(t.Dims) != indexRank || !slices.Equal(at, []int64{i}) {
		return false
	}
	shape, made := ix.producer[n.Inputs[0]]
	if !made || shape.OpType != "Shape" || shape.Domain != "" || len(shape.Inputs) != 1 || shape.Inputs[0] != x {
		return false
	}
	// Shape's start and end (opset 15) would shift the index.
	_, start := shape.Attribute("start")
	_, end := shape.Attribute("end")
	return !start && !end
}

// matchAttention matches the self-attention subgraph around a Softmax.
func (ix graphIndex) matchAttention(sm *onnxgraph.Node) (attention, bool) {
	var a attention
	if sm.OpType != "Softmax" || sm.Domain != "" || len(sm.Inputs) != 1 || len(sm.Outputs) != 1 {
		return a, false
	}
	if ax, ok := sm.Attribute("axis"); !ok {
		return a, false // the default axis is 1 before opset 13
	} else if v, _ := ax.Int(); v != -1 && v != 3 {
		return a, false
	}
	masked, ok := ix.made(sm.Inputs[0], "Add")
	if !ok || len(masked.Inputs) != 2 {
		return a, false
	}
	scaled, bias := masked.Inputs[0], masked.Inputs[1]
	if a.mask, a.filter, ok = ix.maskBias(bias); !ok {
		scaled, bias = bias, scaled
		if a.mask, a.filter, ok = ix.maskBias(bias); !ok {
			return a, false
		}
	}
	sc, found := ix.producer[scaled]
	if !found || !ix.only(scaled) || sc.Domain != "" || (sc.OpType != "Div" && sc.OpType != "Mul") {
		return a, false
	}
	c, scores, ok := ix.constOperand(sc)
	if !ok || c == 0 || sc.OpType == "Div" && scores != sc.Inputs[0] { // a divisor, not a dividend
		return a, false
	}
	a.scale = c
	if sc.OpType == "Div" {
		a.scale = 1 / c
	}
	qk, ok := ix.made(scores, "MatMul")
	if !ok || len(qk.Inputs) != 2 {
		return a, false
	}
	q, okQ := ix.matchProjection(qk.Inputs[0], false)
	k, okK := ix.matchProjection(qk.Inputs[1], true)
	pv, okPV := ix.next(sm, "MatMul")
	if !okQ || !okK || !okPV || len(pv.Inputs) != 2 || pv.Inputs[0] != sm.Outputs[0] {
		return a, false
	}
	v, okV := ix.matchProjection(pv.Inputs[1], false)
	tr, okT := ix.next(pv, "Transpose")
	if !okV || !okT || !perm(tr, 0, 2, 1, 3) {
		return a, false
	}
	out, ok := ix.next(tr, "Reshape")
	if !ok || len(out.Inputs) != 2 {
		return a, false
	}
	shape, ok := ix.ints(out.Inputs[1])
	hidden := q.heads * q.headSize
	if !ok || !slices.Equal(shape, []int64{0, 0, hidden}) || q.input != k.input || q.input != v.input ||
		k.heads != q.heads || v.heads != q.heads || k.headSize != q.headSize || v.headSize != q.headSize {
		return a, false
	}
	a.input, a.heads, a.headSize, a.out = q.input, q.heads, q.headSize, out
	a.weights = [3]string{q.weight, k.weight, v.weight}
	a.bias = [3]string{q.bias, k.bias, v.bias}
	a.nodes = append([]*onnxgraph.Node{sm, masked, sc, qk, pv, tr, out}, q.nodes...)
	a.nodes = append(append(a.nodes, k.nodes...), v.nodes...)
	return a, true
}
