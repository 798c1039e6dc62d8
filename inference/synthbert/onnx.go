package synthbert

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// ONNX Runtime 1.24 loads IR 8 with opset 17, the first opset with
// LayerNormalization in the default domain; a graph that spells layer
// normalization out is of opset 14, as PyTorch exports it.
const (
	irVersion           = 8
	opsetVersion        = 17
	spelledOpsetVersion = 14
)

// Graph input names and symbolic dimensions, as Hugging Face exports BERT.
const (
	inputIDs      = "input_ids"
	attentionMask = "attention_mask"
	tokenTypeIDs  = "token_type_ids"
	positionIDs   = "position_ids"
	batchDim      = "batch_size"
	seqDim        = "sequence_length"
)

// ONNX returns the model as a serialized ModelProto. Equal configs give
// byte-identical output: nothing in it depends on time, maps or platform.
func (m *Model) ONNX() ([]byte, error) {
	model := m.modelProto()
	// New's parameter limit keeps models well below this; protobuf parsers
	// reject larger messages.
	size := model.size()
	if size > math.MaxInt32 {
		return nil, fmt.Errorf("synthbert: marshal ONNX model: %d bytes exceed protobuf's 2 GiB limit", size)
	}
	return model.append(make([]byte, 0, size)), nil
}

// WriteONNX writes ONNX() to path.
func (m *Model) WriteONNX(path string) error {
	data, err := m.ONNX()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("synthbert: write ONNX model: %w", err)
	}
	return nil
}

func (m *Model) modelProto() *modelProto {
	opset := int64(opsetVersion)
	if m.Config.SpelledLayerNorm {
		opset = spelledOpsetVersion
	}
	return &modelProto{
		irVersion:       irVersion,
		opsetImport:     []operatorSetID{{version: opset}},
		producerName:    "jetinfer-synthbert",
		producerVersion: "1",
		docString: fmt.Sprintf("synthetic BERT, %s head: vocab %d, hidden %d, %d layers, %d heads, intermediate %d, seed %d",
			m.Config.Head, m.Config.VocabSize, m.Config.Hidden, m.Config.Layers, m.Config.Heads,
			m.Config.Intermediate, m.Config.Seed),
		graph: m.graph(),
	}
}

func (m *Model) graph() *graphProto {
	b := &graphBuilder{
		graph:     &graphProto{name: "synthbert"},
		constants: map[string]bool{},
		eps:       m.Config.LayerNormEps,
		spelled:   m.Config.SpelledLayerNorm,
		traced:    m.Config.Traced,
	}
	inputs := []string{inputIDs, attentionMask, tokenTypeIDs}
	switch {
	case m.Config.Decoder:
		inputs = []string{inputIDs, attentionMask, positionIDs}
	case m.Config.NoTokenTypeInput:
		inputs = inputs[:2]
	}
	for _, name := range inputs {
		b.graph.input = append(b.graph.input,
			valueInfo(name, tensorInt64, dimParam(batchDim), dimParam(seqDim)))
	}
	x := m.embeddingsGraph(b)
	keyBias := b.keyBias()
	if m.Config.Decoder {
		keyBias = b.causal(keyBias)
	}
	for i := range m.layers {
		x = m.layers[i].graph(b, x, keyBias, m.Config.Hidden, m.Config.Heads)
	}
	m.headGraph(b, x)
	return b.graph
}

// embeddingsGraph mirrors Model.embed. Positions 0..seq-1 are the first seq
// rows of the position table, so a Slice up to the input's own length
// replaces the position_ids input some exports carry.
func (m *Model) embeddingsGraph(b *graphBuilder) string {
	e := &m.embeddings
	word := b.op(e.word.name+"/Gather", "Gather", []string{b.table(&e.word), inputIDs})
	noTypes := m.Config.NoTokenTypeInput || m.Config.Decoder
	var typ string
	if !noTypes {
		typ = b.op(e.tokenType.name+"/Gather", "Gather", []string{b.table(&e.tokenType), tokenTypeIDs})
	}
	seqLen := b.seqLen("bert.embeddings/seq_len")
	zero := b.int64Const("const.zero_1d", []int64{1}, 0)
	if noTypes {
		// Type 0 for every token: row 0 of the table, broadcast over [B,S].
		one := b.int64Const("const.one_1d", []int64{1}, 1)
		typ = b.op(e.tokenType.name+"/Slice", "Slice", []string{b.table(&e.tokenType), zero, one, zero})
	}
	var pos string
	if m.Config.Decoder {
		pos = b.op(e.position.name+"/Gather", "Gather", []string{b.table(&e.position), positionIDs})
	} else {
		pos = b.op(e.position.name+"/Slice", "Slice", []string{b.table(&e.position), zero, seqLen, zero})
	}
	sum := b.op("bert.embeddings/Add_position", "Add", []string{word, pos})
	sum = b.op("bert.embeddings/Add_token_type", "Add", []string{sum, typ})
	return b.layerNorm(e.norm.name, sum, &e.norm)
}

// keyBias turns attention_mask [B,S] into the additive bias
// (1-mask)·maskedScore, shaped [B,1,1,S] to broadcast over heads and query
// positions; traced, as transformers computes it.
func (b *graphBuilder) keyBias() string {
	if b.traced {
		// transformers masks with float32's lowest value: exp of either is 0.
		mask := b.op("mask/Unsqueeze", "Unsqueeze", []string{attentionMask, b.int64Const("const.axes_1", []int64{1}, 1)})
		mask = b.op("mask/Unsqueeze_1", "Unsqueeze", []string{mask, b.int64Const("const.axes_2", []int64{1}, 2)})
		mask = b.op("mask/Cast", "Cast", []string{mask}, attrInt("to", int64(tensorFloat)))
		inv := b.op("mask/Sub", "Sub", []string{b.floatConst("const.one", 1), mask})
		return b.op("mask/bias", "Mul", []string{inv, b.floatConst("const.lowest", -math.MaxFloat32)})
	}
	mask := b.op("mask/Cast", "Cast", []string{attentionMask}, attrInt("to", int64(tensorFloat)))
	mask = b.op("mask/Unsqueeze", "Unsqueeze", []string{mask, b.int64Const("const.mask_axes", []int64{2}, 1, 2)})
	inv := b.op("mask/Sub", "Sub", []string{b.floatConst("const.one", 1), mask})
	return b.op("mask/bias", "Mul", []string{inv, b.floatConst("const.masked_score", maskedScore)})
}

// causal adds to keyBias [B,1,1,S] the mask of every key after its query,
// maskedScore above the diagonal of an [S,S] matrix: [B,1,S,S].
func (b *graphBuilder) causal(keyBias string) string {
	seqLen := b.seqLen("causal/seq_len")
	square := b.op("causal/shape", "Concat", []string{seqLen, seqLen}, attrInt("axis", 0))
	// ConstantOfShape without a value is float zeros.
	zeros := b.op("causal/zeros", "ConstantOfShape", []string{square})
	ones := b.op("causal/ones", "Add", []string{zeros, b.floatConst("const.one", 1)})
	lower := b.op("causal/lower", "Trilu", []string{ones}, attrInt("upper", 0))
	above := b.op("causal/above", "Sub", []string{b.floatConst("const.one", 1), lower})
	bias := b.op("causal/bias", "Mul", []string{above, b.floatConst("const.masked_score", maskedScore)})
	return b.op("mask/causal_bias", "Add", []string{keyBias, bias})
}

// graph mirrors encoderLayer.forward.
func (l *encoderLayer) graph(b *graphBuilder, x, keyBias string, hidden, heads int) string {
	ctx := l.attentionGraph(b, x, keyBias, hidden, heads)
	attn := b.linear(l.attnOut.name, ctx, &l.attnOut)
	attn = b.op(l.attnOut.name+"/residual", "Add", []string{attn, x})
	x = b.layerNorm(l.attnNorm.name, attn, &l.attnNorm)

	ff := b.gelu(l.intermediate.name+"/gelu", b.linear(l.intermediate.name, x, &l.intermediate))
	ff = b.linear(l.output.name, ff, &l.output)
	ff = b.op(l.output.name+"/residual", "Add", []string{ff, x})
	return b.layerNorm(l.outNorm.name, ff, &l.outNorm)
}

// attentionGraph mirrors encoderLayer.selfAttention: heads are split by
// reshaping [B,S,H] to [B,S,heads,dh] and moving heads ahead of positions,
// with K transposed once more so that Q·Kᵀ is a plain batched MatMul.
func (l *encoderLayer) attentionGraph(b *graphBuilder, x, keyBias string, hidden, heads int) string {
	dh := hidden / heads
	// Reshape's 0 copies the input's dimension, so batch and sequence stay
	// dynamic in a constant shape; traced, each shape is computed as
	// PyTorch does (tracedShape).
	split := func(prefix, y string) string { return b.tracedShape(prefix, y, int64(heads), int64(dh)) }
	merge := func(prefix, y string) string { return b.tracedShape(prefix, y, int64(hidden)) }
	if !b.traced {
		splitShape := b.int64Const("const.split_heads", []int64{4}, 0, 0, int64(heads), int64(dh))
		mergeShape := b.int64Const("const.merge_heads", []int64{3}, 0, 0, int64(hidden))
		split = func(string, string) string { return splitShape }
		merge = func(string, string) string { return mergeShape }
	}
	heads4 := func(lin *linear, perm ...int64) string {
		y := b.linear(lin.name, x, lin)
		y = b.op(lin.name+"/Reshape", "Reshape", []string{y, split(lin.name+"/Reshape", y)})
		return b.op(lin.name+"/Transpose", "Transpose", []string{y}, attrInts("perm", perm...))
	}
	q := heads4(&l.query, 0, 2, 1, 3) // [B,heads,S,dh]
	k := heads4(&l.key, 0, 2, 3, 1)   // [B,heads,dh,S]
	v := heads4(&l.value, 0, 2, 1, 3) // [B,heads,S,dh]

	p := l.name + ".attention.self"
	scale := b.floatConst(fmt.Sprintf("const.sqrt_%d", dh), float32(math.Sqrt(float64(dh))))
	scores := b.op(p+"/scores", "MatMul", []string{q, k})
	scores = b.op(p+"/scaled", "Div", []string{scores, scale})
	scores = b.op(p+"/masked", "Add", []string{scores, keyBias})
	probs := b.op(p+"/probs", "Softmax", []string{scores}, attrInt("axis", -1))
	ctx := b.op(p+"/context", "MatMul", []string{probs, v})
	ctx = b.op(p+"/context_transposed", "Transpose", []string{ctx}, attrInts("perm", 0, 2, 1, 3))
	return b.op(p+"/context_merged", "Reshape", []string{ctx, merge(p+"/context_merged", ctx)})
}

// tracedShape returns x.size()[:2] + tail as PyTorch traces it: Shape, then Gather and Unsqueeze of each of the two
// dimensions, Concat with the constant tail.
func (b *graphBuilder) tracedShape(prefix, x string, tail ...int64) string {
	shape := b.op(prefix+"/Shape", "Shape", []string{x})
	var parts []string
	for i := range int64(2) {
		d := b.op(fmt.Sprintf("%s/Gather_%d", prefix, i), "Gather", []string{shape, b.int64Const(fmt.Sprintf("const.index_%d", i), nil, i)}, attrInt("axis", 0))
		parts = append(parts, b.op(fmt.Sprintf("%s/Unsqueeze_%d", prefix, i), "Unsqueeze", []string{d, b.int64Const("const.axes_0", []int64{1}, 0)}))
	}
	for _, v := range tail {
		parts = append(parts, b.int64Const(fmt.Sprintf("const.dim_%d", v), []int64{1}, v))
	}
	return b.op(prefix+"/shape", "Concat", parts, attrInt("axis", 0))
}

// headGraph mirrors Model.head and names its result the graph output.
func (m *Model) headGraph(b *graphBuilder, x string) {
	cfg := m.Config
	out := cfg.Head.OutputName()
	batch, seq := dimParam(batchDim), dimParam(seqDim)
	switch cfg.Head {
	case HeadHidden:
		b.op(out, "Identity", []string{x})
		b.addOutput(out, batch, seq, dimValue(cfg.Hidden))
	case HeadMaskedLM:
		h := m.mlm
		t := b.gelu(h.transform.name+"/gelu", b.linear(h.transform.name, x, &h.transform))
		t = b.layerNorm(h.norm.name, t, &h.norm)
		b.linear(out, t, &h.decoder)
		b.addOutput(out, batch, seq, dimValue(cfg.VocabSize))
	case HeadClassifier:
		h := m.classifier
		first := b.op("bert.pooler/first_token", "Gather",
			[]string{x, b.int64Const("const.zero", nil, 0)}, attrInt("axis", 1))
		pooled := b.op("bert.pooler/tanh", "Tanh", []string{b.linear(h.pooler.name, first, &h.pooler)})
		b.linear(out, pooled, &h.classifier)
		b.addOutput(out, batch, dimValue(cfg.NumLabels))
	}
}

// graphBuilder appends nodes and initializers to a graph in the order they
// are made, which keeps the serialization deterministic.
type graphBuilder struct {
	graph     *graphProto
	constants map[string]bool // names of constant initializers already added
	eps       float32
	spelled   bool // layer normalization in primitive operators
	traced    bool // reshape shapes computed at run time, the mask unsqueezed before its Cast
}

// op adds a node with one output, named out (the node gets the same name),
// and returns out.
func (b *graphBuilder) op(out, opType string, inputs []string, attrs ...*attributeProto) string {
	b.graph.node = append(b.graph.node, &nodeProto{
		name: out, opType: opType, input: inputs, output: []string{out}, attribute: attrs,
	})
	return out
}

// seqLen adds the input's sequence length as a one-element tensor named out: Shape's start and end attributes
// came with opset 15, so the opset-14 graph slices the whole shape instead.
func (b *graphBuilder) seqLen(out string) string {
	if !b.spelled {
		return b.op(out, "Shape", []string{inputIDs}, attrInt("start", 1), attrInt("end", 2))
	}
	shape := b.op(out+"/Shape", "Shape", []string{inputIDs})
	one := b.int64Const("const.one_1d", []int64{1}, 1)
	return b.op(out, "Slice", []string{shape, one, b.int64Const("const.two_1d", []int64{1}, 2), b.int64Const("const.zero_1d", []int64{1}, 0)})
}

// linear adds x·W + b as MatMul and Add; the Add's output is named out.
func (b *graphBuilder) linear(out, x string, l *linear) string {
	w := b.floatInit(l.name+".weight", l.w, int64(l.in), int64(l.out))
	bias := b.floatInit(l.name+".bias", l.b, int64(l.out))
	mm := b.op(l.name+"/MatMul", "MatMul", []string{x, w})
	return b.op(out, "Add", []string{mm, bias})
}

func (b *graphBuilder) layerNorm(out, x string, n *layerNorm) string {
	gamma := b.floatInit(n.name+".weight", n.gamma, int64(len(n.gamma)))
	beta := b.floatInit(n.name+".bias", n.beta, int64(len(n.beta)))
	if !b.spelled {
		return b.op(out, "LayerNormalization", []string{x, gamma, beta},
			attrInt("axis", -1), attrFloat("epsilon", b.eps))
	}
	mean := b.op(out+"/ReduceMean", "ReduceMean", []string{x}, attrInts("axes", -1))
	d := b.op(out+"/Sub", "Sub", []string{x, mean})
	sq := b.op(out+"/Pow", "Pow", []string{d, b.floatConst("const.two", 2)})
	variance := b.op(out+"/ReduceMean_1", "ReduceMean", []string{sq}, attrInts("axes", -1))
	std := b.op(out+"/Sqrt", "Sqrt", []string{b.op(out+"/Add", "Add", []string{variance, b.floatConst("const.eps", b.eps)})})
	scaled := b.op(out+"/Mul", "Mul", []string{b.op(out+"/Div", "Div", []string{d, std}), gamma})
	return b.op(out, "Add", []string{scaled, beta})
}

// gelu adds the exact GELU, 0.5·x·(1+erf(x/√2)), from primitive ops; ONNX
// has a Gelu op only from opset 20.
func (b *graphBuilder) gelu(prefix, x string) string {
	d := b.op(prefix+"/Div", "Div", []string{x, b.floatConst("const.sqrt2", math.Sqrt2)})
	e := b.op(prefix+"/Erf", "Erf", []string{d})
	e = b.op(prefix+"/Add", "Add", []string{e, b.floatConst("const.one", 1)})
	y := b.op(prefix+"/Mul", "Mul", []string{x, e})
	return b.op(prefix+"/Mul_half", "Mul", []string{y, b.floatConst("const.half", 0.5)})
}

func (b *graphBuilder) table(t *table) string {
	return b.floatInit(t.name+".weight", t.w, int64(t.rows), int64(t.cols))
}

func (b *graphBuilder) addOutput(name string, dims ...dimension) {
	b.graph.output = append(b.graph.output, valueInfo(name, tensorFloat, dims...))
}

// floatInit adds a float32 initializer, little-endian in raw_data as ONNX
// requires whatever the host's byte order.
func (b *graphBuilder) floatInit(name string, data []float32, dims ...int64) string {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	b.addInit(name, tensorFloat, dims, raw)
	return name
}

// floatConst adds a scalar constant once, however many nodes use it.
func (b *graphBuilder) floatConst(name string, v float32) string {
	if !b.constants[name] {
		b.constants[name] = true
		b.floatInit(name, []float32{v})
	}
	return name
}

// int64Const adds an int64 constant of shape dims (nil for a scalar) once.
func (b *graphBuilder) int64Const(name string, dims []int64, data ...int64) string {
	if !b.constants[name] {
		b.constants[name] = true
		raw := make([]byte, 8*len(data))
		for i, v := range data {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
		b.addInit(name, tensorInt64, dims, raw)
	}
	return name
}

func (b *graphBuilder) addInit(name string, dataType int32, dims []int64, raw []byte) {
	b.graph.initializer = append(b.graph.initializer, &tensorProto{
		name: name, dataType: dataType, dims: dims, rawData: raw,
	})
}

func valueInfo(name string, elemType int32, dims ...dimension) *valueInfoProto {
	return &valueInfoProto{name: name, tensor: &tensorType{elemType: elemType, shape: dims}}
}

func dimParam(name string) dimension {
	return dimension{param: name, symbolic: true}
}

func dimValue(v int) dimension {
	return dimension{value: int64(v)}
}

func attrInt(name string, v int64) *attributeProto {
	return &attributeProto{name: name, typ: attributeInt, i: v}
}

func attrInts(name string, v ...int64) *attributeProto {
	return &attributeProto{name: name, typ: attributeInts, ints: v}
}

func attrFloat(name string, v float32) *attributeProto {
	return &attributeProto{name: name, typ: attributeFloat, f: v}
}
