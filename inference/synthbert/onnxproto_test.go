package synthbert_test

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// pbMessage is one decoded protobuf message: the values of its varint and
// length-delimited fields, by field number, in wire order. The tests read
// the ONNX output with it, independently of the package's encoder, and need
// no generated ONNX types.
type pbMessage struct {
	varints map[protowire.Number][]uint64
	bytes   map[protowire.Number][][]byte
}

func decodeMessage(t testing.TB, b []byte) pbMessage {
	t.Helper()
	m := pbMessage{varints: map[protowire.Number][]uint64{}, bytes: map[protowire.Number][][]byte{}}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("malformed protobuf tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.varints[num] = append(m.varints[num], v)
		case protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			m.bytes[num] = append(m.bytes[num], v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			t.Fatalf("malformed protobuf field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return m
}

// has reports whether field num is present.
func (m pbMessage) has(num protowire.Number) bool {
	return len(m.varints[num]) > 0 || len(m.bytes[num]) > 0
}

// int is the last value of varint field num, 0 if absent (proto3's default).
func (m pbMessage) int(num protowire.Number) int64 {
	vs := m.varints[num]
	if len(vs) == 0 {
		return 0
	}
	return int64(vs[len(vs)-1])
}

// str is the last value of string field num, "" if absent.
func (m pbMessage) str(num protowire.Number) string {
	vs := m.bytes[num]
	if len(vs) == 0 {
		return ""
	}
	return string(vs[len(vs)-1])
}

// msg decodes the last value of message field num; an absent one is empty.
func (m pbMessage) msg(t testing.TB, num protowire.Number) pbMessage {
	t.Helper()
	vs := m.bytes[num]
	if len(vs) == 0 {
		return decodeMessage(t, nil)
	}
	return decodeMessage(t, vs[len(vs)-1])
}

// msgs decodes every value of repeated message field num.
func (m pbMessage) msgs(t testing.TB, num protowire.Number) []pbMessage {
	t.Helper()
	var out []pbMessage
	for _, v := range m.bytes[num] {
		out = append(out, decodeMessage(t, v))
	}
	return out
}
