// Package onnxgraph reads and writes ONNX models (ModelProto, onnx/onnx.proto) for rewriting their graphs: the
// main graph's nodes and initializers are decoded into structs that can be changed, added and removed; every other
// field of every message (opsets, metadata, value infos, attributes, sub-graphs, fields of newer ONNX versions) is
// kept as the bytes it was read as and written back unchanged. A model decoded and encoded without changes is the
// same bytes for any file a protobuf library wrote (fields in number order, packed repeated scalars), and the same
// model for any other. It is pure Go over protowire.
package onnxgraph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is wrapped by the errors of data that is not a valid ONNX model.
var ErrMalformed = errors.New("onnxgraph: malformed model")

// field is one field of a message as read: its number, wire type and encoding, tag included.
type field struct {
	num protowire.Number
	typ protowire.Type
	raw []byte
}

// payload is a length-delimited field's content.
func (f field) payload() []byte {
	_, _, n := protowire.ConsumeTag(f.raw)
	v, _ := protowire.ConsumeBytes(f.raw[n:])
	return v
}

// parseFields splits a message into its fields, in order.
func parseFields(b []byte) ([]field, error) {
	var fields []field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(m))
		}
		fields = append(fields, field{num: num, typ: typ, raw: b[:n+m]})
		b = b[n+m:]
	}
	return fields, nil
}

// Model is a decoded ModelProto.
type Model struct {
	fields []field // field 7 (the graph) is written from Graph
	Graph  *Graph
}

// ModelProto and GraphProto field numbers.
const (
	modelGraph       protowire.Number = 7
	graphNode        protowire.Number = 1
	graphInitializer protowire.Number = 5
)

// Decode reads a serialized ModelProto.
func Decode(data []byte) (*Model, error) {
	fields, err := parseFields(data)
	if err != nil {
		return nil, err
	}
	m := &Model{fields: fields}
	for _, f := range fields {
		if f.num != modelGraph {
			continue
		}
		if f.typ != protowire.BytesType || m.Graph != nil {
			return nil, fmt.Errorf("%w: graph field", ErrMalformed)
		}
		if m.Graph, err = decodeGraph(f.payload()); err != nil {
			return nil, fmt.Errorf("graph: %w", err)
		}
	}
	if m.Graph == nil {
		return nil, fmt.Errorf("%w: no graph", ErrMalformed)
	}
	return m, nil
}

// ModelProto.opset_import and OperatorSetIdProto field numbers.
const (
	modelOpsetImport protowire.Number = 8
	opsetDomain      protowire.Number = 1
	opsetVersion     protowire.Number = 2
)

// ImportOpset declares an operator set the graph's nodes use (com.microsoft for ONNX Runtime's contrib operators),
// unless the model imports that domain already.
func (m *Model) ImportOpset(domain string, version int64) {
	for _, opset := range messages(m.fields, modelOpsetImport) {
		for _, g := range opset {
			if g.num == opsetDomain && g.typ == protowire.BytesType && string(g.payload()) == domain {
				return
			}
		}
	}
	body := stringField(opsetDomain, domain, false).raw
	body = protowire.AppendTag(body, opsetVersion, protowire.VarintType)
	body = protowire.AppendVarint(body, uint64(version))
	// After the last opset import, so that the fields stay in number order.
	at := len(m.fields)
	for i, f := range m.fields {
		if f.num > modelOpsetImport {
			at = i
			break
		}
	}
	m.fields = slices.Insert(m.fields, at, bytesField(modelOpsetImport, body))
}

// Encode writes the model.
func (m *Model) Encode() []byte {
	var out []byte
	for _, f := range m.fields {
		if f.num == modelGraph {
			out = append(out, bytesField(modelGraph, m.Graph.encode()).raw...)
			continue
		}
		out = append(out, f.raw...)
	}
	return out
}

// Graph is a decoded GraphProto: its nodes and initializers, in order.
type Graph struct {
	fields       []field // nodes and initializers are written from the slices, where the first of each was
	Nodes        []*Node
	Initializers []*Tensor
}

func decodeGraph(b []byte) (*Graph, error) {
	fields, err := parseFields(b)
	if err != nil {
		return nil, err
	}
	g := &Graph{}
	for _, f := range fields {
		switch {
		case f.num == graphNode && f.typ == protowire.BytesType:
			n, err := decodeNode(f.payload())
			if err != nil {
				return nil, fmt.Errorf("node %d: %w", len(g.Nodes), err)
			}
			g.Nodes = append(g.Nodes, n)
		case f.num == graphInitializer && f.typ == protowire.BytesType:
			t, err := decodeTensor(f.payload())
			if err != nil {
				return nil, fmt.Errorf("initializer %d: %w", len(g.Initializers), err)
			}
			g.Initializers = append(g.Initializers, t)
		}
		g.fields = append(g.fields, f)
	}
	return g, nil
}

// GraphProto.input and .output and ValueInfoProto.name field numbers.
const (
	graphInput    protowire.Number = 11
	graphOutput   protowire.Number = 12
	valueInfoName protowire.Number = 1
)

// Inputs names the graph's inputs (with the initializers listed among them by older exporters).
func (g *Graph) Inputs() []string { return g.valueNames(graphInput) }

// Outputs names the values the graph returns.
func (g *Graph) Outputs() []string { return g.valueNames(graphOutput) }

func (g *Graph) valueNames(num protowire.Number) []string {
	var names []string
	for _, info := range messages(g.fields, num) {
		for _, v := range info {
			if v.num == valueInfoName && v.typ == protowire.BytesType {
				names = append(names, string(v.payload()))
			}
		}
	}
	return names
}

// messages parses the fields of each embedded message in field num (those that parse).
func messages(fields []field, num protowire.Number) [][]field {
	var out [][]field
	for _, f := range fields {
		if f.num != num || f.typ != protowire.BytesType {
			continue
		}
		if inner, err := parseFields(f.payload()); err == nil {
			out = append(out, inner)
		}
	}
	return out
}

// encode writes the graph's fields in their order, the nodes where the first node was and the initializers where
// the first initializer was (after the other fields when the graph had none).
func (g *Graph) encode() []byte {
	var out []byte
	nodesDone, initsDone := false, false
	writeNodes := func() {
		for _, n := range g.Nodes {
			out = append(out, bytesField(graphNode, n.encode()).raw...)
		}
		nodesDone = true
	}
	writeInits := func() {
		for _, t := range g.Initializers {
			out = append(out, bytesField(graphInitializer, t.encode()).raw...)
		}
		initsDone = true
	}
	for _, f := range g.fields {
		switch f.num {
		case graphNode:
			if !nodesDone {
				writeNodes()
			}
		case graphInitializer:
			if !initsDone {
				writeInits()
			}
		default:
			out = append(out, f.raw...)
		}
	}
	if !nodesDone {
		writeNodes()
	}
	if !initsDone {
		writeInits()
	}
	return out
}

// ContribDomain is ONNX Runtime's contrib operator domain (Attention, QAttention, SkipLayerNormalization).
const ContribDomain = "com.microsoft"

// Input is the node's input i, "" (an absent optional input) past its inputs.
func (n *Node) Input(i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

// Node is a decoded NodeProto. Attributes and the fields not modelled are kept as read; a new node has none but its
// Attributes.
type Node struct {
	Inputs, Outputs []string
	Name, OpType    string
	Domain          string
	// Attributes are the node's AttributeProtos; NewAttribute makes one.
	Attributes []Attribute
	other      []field // doc_string, overload, metadata_props, newer fields
}

// NodeProto field numbers.
const (
	nodeInput     protowire.Number = 1
	nodeOutput    protowire.Number = 2
	nodeName      protowire.Number = 3
	nodeOpType    protowire.Number = 4
	nodeAttribute protowire.Number = 5
	nodeDomain    protowire.Number = 7
)

func decodeNode(b []byte) (*Node, error) {
	fields, err := parseFields(b)
	if err != nil {
		return nil, err
	}
	n := &Node{}
	for _, f := range fields {
		if f.typ != protowire.BytesType {
			n.other = append(n.other, f)
			continue
		}
		switch v := f.payload(); f.num {
		case nodeInput:
			n.Inputs = append(n.Inputs, string(v))
		case nodeOutput:
			n.Outputs = append(n.Outputs, string(v))
		case nodeName:
			n.Name = string(v)
		case nodeOpType:
			n.OpType = string(v)
		case nodeDomain:
			n.Domain = string(v)
		case nodeAttribute:
			n.Attributes = append(n.Attributes, Attribute{raw: slices.Clone(v)})
		default:
			n.other = append(n.other, f)
		}
	}
	return n, nil
}

// encode writes the node's fields in field-number order, as protobuf libraries do.
func (n *Node) encode() []byte {
	var modelled []field
	for _, s := range n.Inputs {
		modelled = append(modelled, stringField(nodeInput, s, true))
	}
	for _, s := range n.Outputs {
		modelled = append(modelled, stringField(nodeOutput, s, true))
	}
	modelled = append(modelled, stringField(nodeName, n.Name, false), stringField(nodeOpType, n.OpType, false))
	for _, a := range n.Attributes {
		modelled = append(modelled, bytesField(nodeAttribute, a.raw))
	}
	modelled = append(modelled, stringField(nodeDomain, n.Domain, false))
	return merge(modelled, n.other)
}

// merge writes the modelled fields and the others kept as read, by field number; fields of one number keep their
// order, the modelled ones first.
func merge(modelled, other []field) []byte {
	all := append(slices.Clip(modelled), other...)
	slices.SortStableFunc(all, func(a, b field) int { return int(a.num) - int(b.num) })
	var out []byte
	for _, f := range all {
		out = append(out, f.raw...)
	}
	return out
}

// bytesField is a length-delimited field holding v.
func bytesField(num protowire.Number, v []byte) field {
	raw := protowire.AppendTag(nil, num, protowire.BytesType)
	return field{num: num, typ: protowire.BytesType, raw: protowire.AppendBytes(raw, v)}
}

// stringField is a string field; an empty one is left out (proto3) unless it is an element of a repeated field.
func stringField(num protowire.Number, s string, repeated bool) field {
	if s == "" && !repeated {
		return field{num: num}
	}
	return bytesField(num, []byte(s))
}

// Attribute is an AttributeProto, kept as its encoding.
type Attribute struct {
	raw []byte
}

// AttributeProto field numbers and AttributeType values.
const (
	attrName protowire.Number = 1
	attrF    protowire.Number = 2
	attrI    protowire.Number = 3
	attrT    protowire.Number = 5
	attrInts protowire.Number = 8
	attrType protowire.Number = 20

	attrTypeFloat  = 1
	attrTypeInt    = 2
	attrTypeTensor = 4
	attrTypeInts   = 7
)

// Name is the attribute's name.
func (a Attribute) Name() string {
	fields, err := parseFields(a.raw)
	if err != nil {
		return ""
	}
	for _, f := range fields {
		if f.num == attrName && f.typ == protowire.BytesType {
			return string(f.payload())
		}
	}
	return ""
}

// value is the attribute's field num, if it has one.
func (a Attribute) value(num protowire.Number) (field, bool) {
	fields, err := parseFields(a.raw)
	if err != nil {
		return field{}, false
	}
	for _, f := range fields {
		if f.num == num {
			return f, true
		}
	}
	return field{}, false
}

// Int is an INT attribute's value.
func (a Attribute) Int() (int64, bool) {
	f, ok := a.value(attrI)
	if !ok || f.typ != protowire.VarintType {
		return 0, false
	}
	v, _ := protowire.ConsumeVarint(f.raw[protowire.SizeTag(f.num):])
	return int64(v), true
}

// Float is a FLOAT attribute's value.
func (a Attribute) Float() (float32, bool) {
	f, ok := a.value(attrF)
	if !ok || f.typ != protowire.Fixed32Type {
		return 0, false
	}
	v, _ := protowire.ConsumeFixed32(f.raw[protowire.SizeTag(f.num):])
	return math.Float32frombits(v), true
}

// Tensor is a TENSOR attribute's value (a Constant node's).
func (a Attribute) Tensor() (*Tensor, bool) {
	f, ok := a.value(attrT)
	if !ok || f.typ != protowire.BytesType {
		return nil, false
	}
	t, err := decodeTensor(f.payload())
	return t, err == nil
}

// Ints is an INTS attribute's values.
func (a Attribute) Ints() ([]int64, bool) {
	fields, err := parseFields(a.raw)
	if err != nil {
		return nil, false
	}
	var vs []int64
	for _, f := range fields {
		if f.num == attrInts {
			if vs, err = appendVarints(vs, f); err != nil {
				return nil, false
			}
		}
	}
	return vs, true
}

// Attribute returns the node's attribute of that name.
func (n *Node) Attribute(name string) (Attribute, bool) {
	for _, a := range n.Attributes {
		if a.Name() == name {
			return a, true
		}
	}
	return Attribute{}, false
}

// IntAttribute makes an INT attribute.
func IntAttribute(name string, v int64) Attribute {
	out := stringField(attrName, name, false).raw
	out = protowire.AppendTag(out, attrI, protowire.VarintType)
	out = protowire.AppendVarint(out, uint64(v))
	out = protowire.AppendTag(out, attrType, protowire.VarintType)
	return Attribute{raw: protowire.AppendVarint(out, attrTypeInt)}
}

// FloatAttribute makes a FLOAT attribute.
func FloatAttribute(name string, v float32) Attribute {
	out := stringField(attrName, name, false).raw
	out = protowire.AppendTag(out, attrF, protowire.Fixed32Type)
	out = protowire.AppendFixed32(out, math.Float32bits(v))
	out = protowire.AppendTag(out, attrType, protowire.VarintType)
	return Attribute{raw: protowire.AppendVarint(out, attrTypeFloat)}
}

// TensorAttribute makes a TENSOR attribute (a Constant node's value).
func TensorAttribute(name string, t *Tensor) Attribute {
	out := stringField(attrName, name, false).raw
	out = protowire.AppendTag(out, attrT, protowire.BytesType)
	out = protowire.AppendBytes(out, t.encode())
	out = protowire.AppendTag(out, attrType, protowire.VarintType)
	return Attribute{raw: protowire.AppendVarint(out, attrTypeTensor)}
}

// IntsAttribute makes an INTS attribute.
func IntsAttribute(name string, vs ...int64) Attribute {
	out := stringField(attrName, name, false).raw
	var packed []byte
	for _, v := range vs {
		packed = protowire.AppendVarint(packed, uint64(v))
	}
	out = protowire.AppendTag(out, attrInts, protowire.BytesType)
	out = protowire.AppendBytes(out, packed)
	out = protowire.AppendTag(out, attrType, protowire.VarintType)
	return Attribute{raw: protowire.AppendVarint(out, attrTypeInts)}
}

// Tensor is a decoded TensorProto: its name, type, shape and raw_data; the typed data fields (float_data and the
// like), external data and the rest are kept as read.
type Tensor struct {
	Name     string
	DataType int32
	Dims     []int64
	// RawData holds the values little-endian, unless the values are in a typed field or external (Floats reads
	// either).
	RawData []byte
	other   []field
}

// TensorProto field numbers and DataType values.
const (
	tensorDims         protowire.Number = 1
	tensorDataType     protowire.Number = 2
	tensorFloatData    protowire.Number = 4
	tensorName         protowire.Number = 8
	tensorRawData      protowire.Number = 9
	tensorDataLocation protowire.Number = 14

	// Float is TensorProto.FLOAT.
	Float int32 = 1
)

func decodeTensor(b []byte) (*Tensor, error) {
	fields, err := parseFields(b)
	if err != nil {
		return nil, err
	}
	t := &Tensor{}
	for _, f := range fields {
		switch {
		case f.num == tensorDims:
			if t.Dims, err = appendVarints(t.Dims, f); err != nil {
				return nil, fmt.Errorf("dims: %w", err)
			}
		case f.num == tensorDataType && f.typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(f.raw[protowire.SizeTag(f.num):])
			t.DataType = int32(v)
		case f.num == tensorName && f.typ == protowire.BytesType:
			t.Name = string(f.payload())
		case f.num == tensorRawData && f.typ == protowire.BytesType:
			t.RawData = slices.Clone(f.payload())
		default:
			t.other = append(t.other, f)
		}
	}
	return t, nil
}

// appendVarints reads a repeated varint field, packed or not.
func appendVarints(dst []int64, f field) ([]int64, error) {
	body := f.raw[protowire.SizeTag(f.num):]
	switch f.typ {
	case protowire.VarintType:
		v, _ := protowire.ConsumeVarint(body)
		return append(dst, int64(v)), nil
	case protowire.BytesType:
		packed := f.payload()
		for len(packed) > 0 {
			v, n := protowire.ConsumeVarint(packed)
			if n < 0 {
				return nil, fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
			}
			dst = append(dst, int64(v))
			packed = packed[n:]
		}
		return dst, nil
	}
	return nil, fmt.Errorf("%w: wire type %d", ErrMalformed, f.typ)
}

func (t *Tensor) encode() []byte {
	var modelled []field
	if len(t.Dims) > 0 {
		var packed []byte
		for _, d := range t.Dims {
			packed = protowire.AppendVarint(packed, uint64(d))
		}
		modelled = append(modelled, bytesField(tensorDims, packed))
	}
	if t.DataType != 0 {
		raw := protowire.AppendTag(nil, tensorDataType, protowire.VarintType)
		modelled = append(modelled, field{num: tensorDataType, typ: protowire.VarintType, raw: protowire.AppendVarint(raw, uint64(t.DataType))})
	}
	modelled = append(modelled, stringField(tensorName, t.Name, false))
	if len(t.RawData) > 0 {
		modelled = append(modelled, bytesField(tensorRawData, t.RawData))
	}
	return merge(modelled, t.other)
}

// External reports whether the tensor's values are in an external data file.
func (t *Tensor) External() bool {
	for _, f := range t.other {
		if f.num == tensorDataLocation && f.typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(f.raw[protowire.SizeTag(f.num):])
			return v == 1 // EXTERNAL
		}
	}
	return false
}

// Floats returns a FLOAT tensor's values, from raw_data or float_data.
func (t *Tensor) Floats() ([]float32, error) {
	if t.DataType != Float {
		return nil, fmt.Errorf("onnxgraph: tensor %q has data type %d, not FLOAT", t.Name, t.DataType)
	}
	if t.External() {
		return nil, fmt.Errorf("onnxgraph: tensor %q is in an external data file", t.Name)
	}
	n := t.size()
	var vals []float32
	if t.RawData != nil {
		return t.rawFloats(t.RawData, n)
	}
	for _, f := range t.other {
		if f.num != tensorFloatData {
			continue
		}
		switch f.typ {
		case protowire.Fixed32Type:
			v, _ := protowire.ConsumeFixed32(f.raw[protowire.SizeTag(f.num):])
			vals = append(vals, math.Float32frombits(v))
		case protowire.BytesType:
			packed := f.payload()
			for ; len(packed) >= 4; packed = packed[4:] {
				vals = append(vals, math.Float32frombits(binary.LittleEndian.Uint32(packed)))
			}
		}
	}
	if int64(len(vals)) != n {
		return nil, fmt.Errorf("%w: tensor %q has %d floats for dims %v", ErrMalformed, t.Name, len(vals), t.Dims)
	}
	return vals, nil
}

// size is the number of values the dims hold.
func (t *Tensor) size() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// rawFloats decodes n little-endian floats.
func (t *Tensor) rawFloats(raw []byte, n int64) ([]float32, error) {
	if int64(len(raw)) != 4*n {
		return nil, fmt.Errorf("%w: tensor %q has %d bytes for %d floats", ErrMalformed, t.Name, len(raw), n)
	}
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return vals, nil
}

// TensorProto.external_data and StringStringEntryProto field numbers.
const (
	tensorExternalData protowire.Number = 13
	entryKey           protowire.Number = 1
	entryValue         protowire.Number = 2
)

// ExternalData is where an external tensor's bytes are: a file relative to the model's directory, an offset and a
// length (-1: to the end of the file).
type ExternalData struct {
	Location       string
	Offset, Length int64
}

// ExternalData returns where the tensor's bytes are, when they are in an external data file.
func (t *Tensor) ExternalData() (ExternalData, bool) {
	if !t.External() {
		return ExternalData{}, false
	}
	d := ExternalData{Length: -1}
	for _, entry := range messages(t.other, tensorExternalData) {
		var key, value string
		for _, f := range entry {
			switch {
			case f.num == entryKey && f.typ == protowire.BytesType:
				key = string(f.payload())
			case f.num == entryValue && f.typ == protowire.BytesType:
				value = string(f.payload())
			}
		}
		var err error
		switch key {
		case "location":
			d.Location = value
		case "offset":
			d.Offset, err = strconv.ParseInt(value, 10, 64)
		case "length":
			d.Length, err = strconv.ParseInt(value, 10, 64)
		}
		if err != nil {
			return ExternalData{}, false
		}
	}
	return d, true
}

// ReadFloats returns a FLOAT tensor's values, from the tensor or from its external data file in dir (the model's
// directory). A location that leaves dir is refused: a model is untrusted input.
func (t *Tensor) ReadFloats(dir string) ([]float32, error) {
	ext, ok := t.ExternalData()
	if !ok {
		return t.Floats()
	}
	if t.DataType != Float {
		return nil, fmt.Errorf("onnxgraph: tensor %q has data type %d, not FLOAT", t.Name, t.DataType)
	}
	if ext.Location == "" || !filepath.IsLocal(ext.Location) || ext.Offset < 0 {
		return nil, fmt.Errorf("%w: tensor %q: external data location %q offset %d", ErrMalformed, t.Name, ext.Location, ext.Offset)
	}
	n := t.size()
	if ext.Length >= 0 && ext.Length != 4*n {
		return nil, fmt.Errorf("%w: tensor %q has %d external bytes for %d floats", ErrMalformed, t.Name, ext.Length, n)
	}
	f, err := os.Open(filepath.Join(dir, ext.Location))
	if err != nil {
		return nil, fmt.Errorf("onnxgraph: tensor %q: %w", t.Name, err)
	}
	defer f.Close()
	raw := make([]byte, 4*n)
	if _, err := f.ReadAt(raw, ext.Offset); err != nil {
		return nil, fmt.Errorf("onnxgraph: tensor %q: read %s at %d: %w", t.Name, ext.Location, ext.Offset, err)
	}
	return t.rawFloats(raw, n)
}

// MoveExternal makes the tensor's values external: its raw data is returned, to be written at offset of the file
// location (relative to the model's directory), and the tensor refers to it instead.
func (t *Tensor) MoveExternal(location string, offset int64) []byte {
	raw := t.RawData
	t.RawData = nil
	t.other = slices.DeleteFunc(t.other, func(f field) bool { return f.num == tensorExternalData || f.num == tensorDataLocation })
	for _, kv := range [][2]string{{"location", location}, {"offset", strconv.FormatInt(offset, 10)}, {"length", strconv.Itoa(len(raw))}} {
		entry := append(stringField(entryKey, kv[0], false).raw, stringField(entryValue, kv[1], false).raw...)
		t.other = append(t.other, bytesField(tensorExternalData, entry))
	}
	loc := protowire.AppendTag(nil, tensorDataLocation, protowire.VarintType)
	t.other = append(t.other, field{num: tensorDataLocation, typ: protowire.VarintType, raw: protowire.AppendVarint(loc, 1)})
	return raw
}

// Names hands out names that no node, value or initializer of a graph has, for the nodes and values a rewrite adds:
// ONNX does not require node names at all, and a name taken twice makes ONNX Runtime use one initializer for both.
type Names struct {
	taken map[string]bool // every name of the graph and every name handed out
	dirs  map[string]bool // every "a/b" of a name "a/b/c", so that a prefix handed out leads to no taken name
}

// Names collects the graph's names.
func (g *Graph) Names() *Names {
	n := &Names{taken: map[string]bool{}, dirs: map[string]bool{}}
	for _, node := range g.Nodes {
		n.add(node.Name)
		for _, v := range append(slices.Clip(node.Inputs), node.Outputs...) {
			n.add(v)
		}
	}
	for _, t := range g.Initializers {
		n.add(t.Name)
	}
	for _, v := range append(g.Inputs(), g.Outputs()...) {
		n.add(v)
	}
	return n
}

func (n *Names) add(name string) {
	n.taken[name] = true
	for i := range len(name) {
		if name[i] == '/' {
			n.dirs[name[:i]] = true
		}
	}
}

// Prefix returns base, or base_1, base_2…: a name that no name of the graph has, nor starts with followed by '/'.
// The caller names its new nodes and values prefix or prefix + "/…".
func (n *Names) Prefix(base string) string {
	p := base
	for i := 1; n.taken[p] || n.dirs[p]; i++ {
		p = fmt.Sprintf("%s_%d", base, i)
	}
	n.add(p)
	n.dirs[p] = true
	return p
}

// Summary is what a graph is made of, read without loading its weights: its nodes' operator types and its
// initializers' data types, in order.
type Summary struct {
	OpTypes          []string
	InitializerTypes []int32
}

// initializerHead bounds what Summarize reads of each initializer: its dims and data type come before its name
// and data in a protobuf encoder's field order.
const initializerHead = 4096

// Summarize reads a model's Summary from r (size bytes) without reading its initializers' data, so that the
// precision of a graph of gigabytes is known in kilobytes of memory.
func Summarize(r io.ReaderAt, size int64) (Summary, error) {
	var s Summary
	graph, ok, err := findField(r, 0, size, modelGraph)
	if err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: no graph", ErrMalformed)
		}
		return s, err
	}
	for off := graph[0]; off < graph[1]; {
		num, typ, start, end, err := readField(r, off, graph[1])
		if err != nil {
			return s, err
		}
		switch {
		case typ == protowire.BytesType && num == graphNode:
			b := make([]byte, end-start)
			if _, err := r.ReadAt(b, start); err != nil {
				return s, err
			}
			n, err := decodeNode(b)
			if err != nil {
				return s, err
			}
			s.OpTypes = append(s.OpTypes, n.OpType)
		case typ == protowire.BytesType && num == graphInitializer:
			b := make([]byte, min(end-start, initializerHead))
			if _, err := r.ReadAt(b, start); err != nil {
				return s, err
			}
			s.InitializerTypes = append(s.InitializerTypes, leadingDataType(b))
		}
		off = end
	}
	return s, nil
}

// leadingDataType reads a TensorProto's data_type from the start of its encoding (0 when it is not there).
func leadingDataType(b []byte) int32 {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		if num == tensorDataType && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b[n:])
			if m < 0 {
				return 0
			}
			return int32(v)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return 0 // the head ends inside this field
		}
		b = b[n+m:]
	}
	return 0
}

// findField returns the payload bounds of the first length-delimited field num in [off, end).
func findField(r io.ReaderAt, off, end int64, num protowire.Number) ([2]int64, bool, error) {
	for off < end {
		n, typ, start, stop, err := readField(r, off, end)
		if err != nil {
			return [2]int64{}, false, err
		}
		if n == num && typ == protowire.BytesType {
			return [2]int64{start, stop}, true, nil
		}
		off = stop
	}
	return [2]int64{}, false, nil
}

// readField reads the field at off: its number and type, where its value starts (a length-delimited field's
// payload) and where the field ends.
func readField(r io.ReaderAt, off, end int64) (protowire.Number, protowire.Type, int64, int64, error) {
	var head [2 * binary.MaxVarintLen64]byte
	n, err := r.ReadAt(head[:min(int64(len(head)), end-off)], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, 0, 0, err
	}
	b := head[:n]
	num, typ, tn := protowire.ConsumeTag(b)
	if tn < 0 {
		return 0, 0, 0, 0, fmt.Errorf("%w: at %d: %v", ErrMalformed, off, protowire.ParseError(tn))
	}
	var start, stop int64
	switch typ {
	case protowire.VarintType:
		_, vn := protowire.ConsumeVarint(b[tn:])
		if vn < 0 {
			return 0, 0, 0, 0, fmt.Errorf("%w: at %d: %v", ErrMalformed, off, protowire.ParseError(vn))
		}
		start, stop = off+int64(tn), off+int64(tn+vn)
	case protowire.Fixed32Type:
		start, stop = off+int64(tn), off+int64(tn)+4
	case protowire.Fixed64Type:
		start, stop = off+int64(tn), off+int64(tn)+8
	case protowire.BytesType:
		l, ln := protowire.ConsumeVarint(b[tn:])
		if ln < 0 {
			return 0, 0, 0, 0, fmt.Errorf("%w: at %d: %v", ErrMalformed, off, protowire.ParseError(ln))
		}
		start = off + int64(tn+ln)
		stop = start + int64(l)
	default:
		return 0, 0, 0, 0, fmt.Errorf("%w: at %d: wire type %d", ErrMalformed, off, typ)
	}
	if stop > end || stop < start {
		return 0, 0, 0, 0, fmt.Errorf("%w: field %d at %d runs past its message", ErrMalformed, num, off)
	}
	return num, typ, start, stop, nil
}

// Summary is the decoded model's Summary.
func (m *Model) Summary() Summary {
	var s Summary
	for _, n := range m.Graph.Nodes {
		s.OpTypes = append(s.OpTypes, n.OpType)
	}
	for _, t := range m.Graph.Initializers {
		s.InitializerTypes = append(s.InitializerTypes, t.DataType)
	}
	return s
}
