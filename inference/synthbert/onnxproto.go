package synthbert

// This file encodes the handful of ONNX protobuf messages synthbert writes,
// by hand over protowire. It exists for dependency weight: the generated
// ONNX types we used before (github.com/advancedclimatesystems/gonnx) pulled
// gorgonia.org/tensor, Apache Arrow and gonum into every binary that builds
// a synthetic model, `jetinfer-bench` included, and tripled the package's
// cold build time.
//
// Only the fields synthbert sets are modelled. The bytes are exactly those
// of google.golang.org/protobuf's deterministic Marshal of the equivalent
// proto3 messages (onnx.proto3, as gonnx generated them), which
// TestONNXIsPinned checks. That takes three rules:
//
//   - fields are written in field-number order, whatever order the structs
//     below declare them in;
//   - a scalar, string or bytes field is omitted when it holds its zero value
//     (proto3 implicit presence; a float counts as zero only if it is +0),
//     and a repeated scalar is packed and omitted when empty;
//   - a message field is written whenever it is set, even if empty, and so is
//     a oneof member, even if it holds its zero value.
//
// Field numbers and enum values are those of onnx.proto
// (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto), checked against
// gonnx v1.1.0's onnx/onnx.proto3.pb.go.

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// TensorProto.DataType values.
const (
	tensorFloat int32 = 1 // FLOAT
	tensorInt64 int32 = 7 // INT64
)

// attributeType is AttributeProto.AttributeType.
type attributeType int32

const (
	attributeFloat attributeType = 1 // FLOAT
	attributeInt   attributeType = 2 // INT
	attributeInts  attributeType = 7 // INTS
)

// modelProto is ModelProto.
type modelProto struct {
	irVersion       int64           // 1: ir_version
	producerName    string          // 2: producer_name
	producerVersion string          // 3: producer_version
	docString       string          // 6: doc_string
	graph           *graphProto     // 7: graph
	opsetImport     []operatorSetID // 8: opset_import
}

// operatorSetID is OperatorSetIdProto.
type operatorSetID struct {
	domain  string // 1: domain ("" is the default ai.onnx domain)
	version int64  // 2: version
}

// graphProto is GraphProto.
type graphProto struct {
	node        []*nodeProto      // 1: node
	name        string            // 2: name
	initializer []*tensorProto    // 5: initializer
	input       []*valueInfoProto // 11: input
	output      []*valueInfoProto // 12: output
}

// nodeProto is NodeProto.
type nodeProto struct {
	input     []string          // 1: input
	output    []string          // 2: output
	name      string            // 3: name
	opType    string            // 4: op_type
	attribute []*attributeProto // 5: attribute
}

// attributeProto is AttributeProto; typ says which of f, i and ints is meant.
type attributeProto struct {
	name string        // 1: name
	f    float32       // 2: f
	i    int64         // 3: i
	ints []int64       // 8: ints
	typ  attributeType // 20: type
}

// tensorProto is TensorProto with its data in raw_data.
type tensorProto struct {
	dims     []int64 // 1: dims (empty for a scalar)
	dataType int32   // 2: data_type
	name     string  // 8: name
	rawData  []byte  // 9: raw_data, little-endian
}

// valueInfoProto is ValueInfoProto of a tensor: its TypeProto's oneof value
// is always tensor_type.
type valueInfoProto struct {
	name   string      // 1: name
	tensor *tensorType // 2: type, a TypeProto whose field 1, tensor_type, is this
}

// tensorType is TypeProto.Tensor.
type tensorType struct {
	elemType int32       // 1: elem_type
	shape    []dimension // 2: shape, a TensorShapeProto whose field 1, dim, is this
}

// dimension is TensorShapeProto.Dimension: its oneof value is dim_param
// (2) when symbolic, else dim_value (1).
type dimension struct {
	value    int64
	param    string
	symbolic bool
}

// Field numbers: field<Message><Field>, in onnx.proto's names.
const (
	fieldModelIRVersion       protowire.Number = 1
	fieldModelProducerName    protowire.Number = 2
	fieldModelProducerVersion protowire.Number = 3
	fieldModelDocString       protowire.Number = 6
	fieldModelGraph           protowire.Number = 7
	fieldModelOpsetImport     protowire.Number = 8

	fieldOpsetDomain  protowire.Number = 1
	fieldOpsetVersion protowire.Number = 2

	fieldGraphNode        protowire.Number = 1
	fieldGraphName        protowire.Number = 2
	fieldGraphInitializer protowire.Number = 5
	fieldGraphInput       protowire.Number = 11
	fieldGraphOutput      protowire.Number = 12

	fieldNodeInput     protowire.Number = 1
	fieldNodeOutput    protowire.Number = 2
	fieldNodeName      protowire.Number = 3
	fieldNodeOpType    protowire.Number = 4
	fieldNodeAttribute protowire.Number = 5

	fieldAttributeName protowire.Number = 1
	fieldAttributeF    protowire.Number = 2
	fieldAttributeI    protowire.Number = 3
	fieldAttributeInts protowire.Number = 8
	fieldAttributeType protowire.Number = 20

	fieldTensorDims     protowire.Number = 1
	fieldTensorDataType protowire.Number = 2
	fieldTensorName     protowire.Number = 8
	fieldTensorRawData  protowire.Number = 9

	fieldValueInfoName protowire.Number = 1
	fieldValueInfoType protowire.Number = 2

	fieldTypeTensorType protowire.Number = 1

	fieldTypeTensorElemType protowire.Number = 1
	fieldTypeTensorShape    protowire.Number = 2

	fieldShapeDim protowire.Number = 1

	fieldDimValue protowire.Number = 1
	fieldDimParam protowire.Number = 2
)

// Each message has a size method, its encoded length, and an append method
// that writes it; a nested message is written as its tag, its size and its
// fields. Sizes are recomputed at each level of nesting, which costs little
// next to copying the weights.

func (m *modelProto) size() int {
	n := sizeInt(fieldModelIRVersion, m.irVersion) +
		sizeString(fieldModelProducerName, m.producerName) +
		sizeString(fieldModelProducerVersion, m.producerVersion) +
		sizeString(fieldModelDocString, m.docString)
	if m.graph != nil {
		n += sizeMessage(fieldModelGraph, m.graph.size())
	}
	for i := range m.opsetImport {
		n += sizeMessage(fieldModelOpsetImport, m.opsetImport[i].size())
	}
	return n
}

func (m *modelProto) append(b []byte) []byte {
	b = appendInt(b, fieldModelIRVersion, m.irVersion)
	b = appendString(b, fieldModelProducerName, m.producerName)
	b = appendString(b, fieldModelProducerVersion, m.producerVersion)
	b = appendString(b, fieldModelDocString, m.docString)
	if m.graph != nil {
		b = appendMessageHeader(b, fieldModelGraph, m.graph.size())
		b = m.graph.append(b)
	}
	for i := range m.opsetImport {
		o := &m.opsetImport[i]
		b = appendMessageHeader(b, fieldModelOpsetImport, o.size())
		b = o.append(b)
	}
	return b
}

func (o *operatorSetID) size() int {
	return sizeString(fieldOpsetDomain, o.domain) + sizeInt(fieldOpsetVersion, o.version)
}

func (o *operatorSetID) append(b []byte) []byte {
	b = appendString(b, fieldOpsetDomain, o.domain)
	return appendInt(b, fieldOpsetVersion, o.version)
}

func (g *graphProto) size() int {
	n := sizeString(fieldGraphName, g.name)
	for _, x := range g.node {
		n += sizeMessage(fieldGraphNode, x.size())
	}
	for _, x := range g.initializer {
		n += sizeMessage(fieldGraphInitializer, x.size())
	}
	for _, x := range g.input {
		n += sizeMessage(fieldGraphInput, x.size())
	}
	for _, x := range g.output {
		n += sizeMessage(fieldGraphOutput, x.size())
	}
	return n
}

func (g *graphProto) append(b []byte) []byte {
	for _, x := range g.node {
		b = appendMessageHeader(b, fieldGraphNode, x.size())
		b = x.append(b)
	}
	b = appendString(b, fieldGraphName, g.name)
	for _, x := range g.initializer {
		b = appendMessageHeader(b, fieldGraphInitializer, x.size())
		b = x.append(b)
	}
	for _, x := range g.input {
		b = appendMessageHeader(b, fieldGraphInput, x.size())
		b = x.append(b)
	}
	for _, x := range g.output {
		b = appendMessageHeader(b, fieldGraphOutput, x.size())
		b = x.append(b)
	}
	return b
}

func (n *nodeProto) size() int {
	s := sizeStrings(fieldNodeInput, n.input) + sizeStrings(fieldNodeOutput, n.output) +
		sizeString(fieldNodeName, n.name) + sizeString(fieldNodeOpType, n.opType)
	for _, a := range n.attribute {
		s += sizeMessage(fieldNodeAttribute, a.size())
	}
	return s
}

func (n *nodeProto) append(b []byte) []byte {
	b = appendStrings(b, fieldNodeInput, n.input)
	b = appendStrings(b, fieldNodeOutput, n.output)
	b = appendString(b, fieldNodeName, n.name)
	b = appendString(b, fieldNodeOpType, n.opType)
	for _, a := range n.attribute {
		b = appendMessageHeader(b, fieldNodeAttribute, a.size())
		b = a.append(b)
	}
	return b
}

func (a *attributeProto) size() int {
	return sizeString(fieldAttributeName, a.name) + sizeFloat(fieldAttributeF, a.f) + sizeInt(fieldAttributeI, a.i) +
		sizePackedInts(fieldAttributeInts, a.ints) + sizeInt(fieldAttributeType, int64(a.typ))
}

func (a *attributeProto) append(b []byte) []byte {
	b = appendString(b, fieldAttributeName, a.name)
	b = appendFloat(b, fieldAttributeF, a.f)
	b = appendInt(b, fieldAttributeI, a.i)
	b = appendPackedInts(b, fieldAttributeInts, a.ints)
	return appendInt(b, fieldAttributeType, int64(a.typ))
}

func (t *tensorProto) size() int {
	return sizePackedInts(fieldTensorDims, t.dims) + sizeInt(fieldTensorDataType, int64(t.dataType)) +
		sizeString(fieldTensorName, t.name) + sizeBytes(fieldTensorRawData, t.rawData)
}

func (t *tensorProto) append(b []byte) []byte {
	b = appendPackedInts(b, fieldTensorDims, t.dims)
	b = appendInt(b, fieldTensorDataType, int64(t.dataType))
	b = appendString(b, fieldTensorName, t.name)
	return appendBytes(b, fieldTensorRawData, t.rawData)
}

// A ValueInfoProto nests TypeProto, TypeProto.Tensor and TensorShapeProto;
// typeSize and tensorTypeSize are the sizes of the first two.

func (v *valueInfoProto) size() int {
	n := sizeString(fieldValueInfoName, v.name)
	if v.tensor != nil {
		n += sizeMessage(fieldValueInfoType, v.typeSize())
	}
	return n
}

func (v *valueInfoProto) append(b []byte) []byte {
	b = appendString(b, fieldValueInfoName, v.name)
	if v.tensor != nil {
		b = appendMessageHeader(b, fieldValueInfoType, v.typeSize())
		b = appendMessageHeader(b, fieldTypeTensorType, v.tensor.size())
		b = v.tensor.append(b)
	}
	return b
}

func (v *valueInfoProto) typeSize() int {
	return sizeMessage(fieldTypeTensorType, v.tensor.size())
}

func (t *tensorType) size() int {
	return sizeInt(fieldTypeTensorElemType, int64(t.elemType)) + sizeMessage(fieldTypeTensorShape, t.shapeSize())
}

func (t *tensorType) append(b []byte) []byte {
	b = appendInt(b, fieldTypeTensorElemType, int64(t.elemType))
	b = appendMessageHeader(b, fieldTypeTensorShape, t.shapeSize())
	for _, d := range t.shape {
		b = appendMessageHeader(b, fieldShapeDim, d.size())
		b = d.append(b)
	}
	return b
}

func (t *tensorType) shapeSize() int {
	n := 0
	for _, d := range t.shape {
		n += sizeMessage(fieldShapeDim, d.size())
	}
	return n
}

func (d dimension) size() int {
	if d.symbolic {
		return protowire.SizeTag(fieldDimParam) + protowire.SizeBytes(len(d.param))
	}
	return protowire.SizeTag(fieldDimValue) + protowire.SizeVarint(uint64(d.value))
}

func (d dimension) append(b []byte) []byte {
	if d.symbolic {
		b = protowire.AppendTag(b, fieldDimParam, protowire.BytesType)
		return protowire.AppendString(b, d.param)
	}
	b = protowire.AppendTag(b, fieldDimValue, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(d.value))
}

// Field encoders. Each size function is the length its append writes; both
// write nothing for a proto3 zero value. int32 fields go through int64, as
// protobuf sign-extends negative int32s to ten-byte varints.

func sizeInt(num protowire.Number, v int64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(uint64(v))
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

// float32 zero is +0 only: protobuf writes -0 like any other value.
func sizeFloat(num protowire.Number, v float32) int {
	if math.Float32bits(v) == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeFixed32()
}

func appendFloat(b []byte, num protowire.Number, v float32) []byte {
	if math.Float32bits(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, math.Float32bits(v))
}

func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func sizeBytes(num protowire.Number, v []byte) int {
	if len(v) == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(v))
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// Repeated strings are never packed, and each element is written, empty or
// not.
func sizeStrings(num protowire.Number, ss []string) int {
	n := 0
	for _, s := range ss {
		n += protowire.SizeTag(num) + protowire.SizeBytes(len(s))
	}
	return n
}

func appendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

// Repeated int64s are packed, as proto3 does by default: one length-delimited
// record of varints.
func packedIntsLen(vs []int64) int {
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(uint64(v))
	}
	return n
}

func sizePackedInts(num protowire.Number, vs []int64) int {
	if len(vs) == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(packedIntsLen(vs))
}

func appendPackedInts(b []byte, num protowire.Number, vs []int64) []byte {
	if len(vs) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(packedIntsLen(vs)))
	for _, v := range vs {
		b = protowire.AppendVarint(b, uint64(v))
	}
	return b
}

func sizeMessage(num protowire.Number, size int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(size)
}

// appendMessageHeader writes a nested message's tag and length; its fields
// follow.
func appendMessageHeader(b []byte, num protowire.Number, size int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(size))
}
