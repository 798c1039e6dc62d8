// Package xcontent parses JSON request bodies the way Elasticsearch's
// XContent layer does, so that jetinfer's errors read like Elasticsearch's:
// objects keep their member order (for "unknown settings [{a=b}]" messages),
// duplicate fields are rejected, every member remembers its [line:col]
// position, and values print as Java's toString would print them.
package xcontent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/jetinfer/jetinfer/eserror"
)

// Position is a 1-based line and column, as Jackson reports locations.
type Position struct {
	Line, Col int
}

func (p Position) String() string { return fmt.Sprintf("[%d:%d]", p.Line, p.Col) }

// Object is a JSON object that keeps its members in document order.
// Values are string, json.Number, bool, nil, *Object or []any.
type Object struct {
	keys   []string
	values map[string]any
	// keyOff and valueOff locate each member in src, as byte offsets:
	// positions are only computed for error messages, since counting lines
	// for every token would make parsing quadratic.
	keyOff   map[string]int64
	valueOff map[string]int64
	src      []byte
}

// NewObject returns an empty object.
func NewObject() *Object {
	return &Object{values: map[string]any{}, keyOff: map[string]int64{}, valueOff: map[string]int64{}}
}

// Keys returns the member names in document order.
func (o *Object) Keys() []string { return o.keys }

// Has reports whether the object has the member key.
func (o *Object) Has(key string) bool {
	_, ok := o.values[key]
	return ok
}

// Get returns the value of key.
func (o *Object) Get(key string) (any, bool) {
	v, ok := o.values[key]
	return v, ok
}

// KeyPos and ValuePos locate a member's name and value in the parsed
// document ([1:1] for members added with Set).
func (o *Object) KeyPos(key string) Position   { return position(o.src, o.keyOff[key]) }
func (o *Object) ValuePos(key string) Position { return position(o.src, o.valueOff[key]) }

// Set adds key with value, or replaces its value.
func (o *Object) Set(key string, value any) {
	if !o.Has(key) {
		o.keys = append(o.keys, key)
	}
	o.values[key] = value
}

// Remove deletes key and returns its value, as Java's Map.remove does:
// Elasticsearch consumes the settings it knows and reports the rest.
func (o *Object) Remove(key string) (any, bool) {
	v, ok := o.values[key]
	if !ok {
		return nil, false
	}
	delete(o.values, key)
	for i, k := range o.keys {
		if k == key {
			o.keys = append(o.keys[:i:i], o.keys[i+1:]...)
			break
		}
	}
	return v, true
}

// Empty reports whether no member is left.
func (o *Object) Empty() bool { return len(o.keys) == 0 }

// JavaString renders the object as Java's Map.toString does: {k=v, k2=v2}.
func (o *Object) JavaString() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(JavaValue(o.values[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// JavaValue renders a decoded JSON value as Java's toString renders the
// object Elasticsearch's parser produces for it.
func JavaValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case json.Number:
		return javaNumber(v)
	case *Object:
		return v.JavaString()
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = JavaValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// javaNumber renders a JSON number the way Jackson-parsed Java numbers print:
// integers as written, floating-point values as Double.toString.
func javaNumber(n json.Number) string {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		return s
	}
	f, err := n.Float64()
	if err != nil {
		return s
	}
	return JavaDouble(f)
}

// JavaDouble formats f as Java's Double.toString: 5 → "5.0", 1e21 → "1.0E21".
func JavaDouble(f float64) string {
	abs := f
	if abs < 0 {
		abs = -abs
	}
	if abs != 0 && (abs < 1e-3 || abs >= 1e7) {
		s := strconv.FormatFloat(f, 'E', -1, 64)
		mant, exp, _ := strings.Cut(s, "E")
		if !strings.Contains(mant, ".") {
			mant += ".0"
		}
		exp = strings.TrimPrefix(exp, "+")
		neg := strings.HasPrefix(exp, "-")
		exp = strings.TrimLeft(strings.TrimPrefix(exp, "-"), "0")
		if neg {
			exp = "-" + exp
		}
		return mant + "E" + exp
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// TokenName returns Jackson's name for the kind of a decoded value, as
// Elasticsearch's parser errors print it.
func TokenName(v any) string {
	switch v.(type) {
	case nil:
		return "VALUE_NULL"
	case string:
		return "VALUE_STRING"
	case bool:
		return "VALUE_BOOLEAN"
	case json.Number:
		return "VALUE_NUMBER"
	case *Object:
		return "START_OBJECT"
	case []any:
		return "START_ARRAY"
	}
	return "VALUE_EMBEDDED_OBJECT"
}

// Parse decodes data, which must hold exactly one JSON object. A malformed
// document yields Elasticsearch's x_content_parse_exception, its reason
// prefixed with the [line:col] of the fault.
func Parse(data []byte) (*Object, error) {
	return ParseNamed(data, "")
}

// ParseNamed is Parse for a body that an Elasticsearch ObjectParser named
// parserName reads; the name prefixes its errors, as in
// "[1:1] [cluster:internal/xpack/inference] Expected START_OBJECT …".
func ParseNamed(data []byte, parserName string) (*Object, error) {
	p := &parser{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	v, off, err := p.value()
	if err != nil {
		return nil, p.fail(err)
	}
	obj, ok := v.(*Object)
	if !ok {
		pos := p.position(off)
		reason := fmt.Sprintf("Expected START_OBJECT but was: %s", TokenName(v))
		if parserName != "" {
			reason = "[" + parserName + "] " + reason
		}
		return nil, ParseError(pos, reason, nil)
	}
	trailing := p.position(p.nextTokenStart())
	if _, err := p.dec.Token(); err != io.EOF {
		if err == nil {
			msg := "unexpected content after the end of the JSON object"
			return nil, ParseError(trailing, msg, eserror.New(http.StatusBadRequest, eserror.TypeJSONParse, "%s", msg))
		}
		return nil, p.fail(err)
	}
	return obj, nil
}

// ParseError builds an x_content_parse_exception at pos, optionally caused
// by another exception.
func ParseError(pos Position, reason string, cause *eserror.Error) *eserror.Error {
	e := eserror.New(http.StatusBadRequest, eserror.TypeXContentParse, "%s %s", pos, reason)
	e.Cause = cause
	return e
}

// MaxDepth bounds the nesting of objects and arrays, as Jackson's default
// stream constraints do: deeper documents are refused, not recursed into.
const MaxDepth = 1000

type parser struct {
	data  []byte
	dec   *json.Decoder
	depth int
}

// position converts a byte offset into a 1-based line and column.
func position(data []byte, offset int64) Position {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return Position{Line: line, Col: col}
}

func (p *parser) position(offset int64) Position { return position(p.data, offset) }

// nextTokenStart is the offset where the next token begins: past
// whitespace and the ',' and ':' separators the decoder consumes silently.
func (p *parser) nextTokenStart() int64 {
	off := p.dec.InputOffset()
	for off < int64(len(p.data)) {
		switch p.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return off
}

func (p *parser) fail(err error) error {
	var e *eserror.Error
	if errors.As(err, &e) {
		return e
	}
	var syntax *json.SyntaxError
	pos := p.position(p.dec.InputOffset())
	msg := err.Error()
	switch {
	case errors.As(err, &syntax):
		pos = p.position(syntax.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		pos = p.position(int64(len(p.data)))
		msg = "Unexpected end-of-input"
	}
	cause := eserror.New(http.StatusBadRequest, eserror.TypeJSONParse, "%s", msg)
	return ParseError(pos, msg, cause)
}

// value reads one value, returning it with the offset where it starts.
func (p *parser) value() (any, int64, error) {
	off := p.nextTokenStart()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, off, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, off, nil
	}
	if p.depth++; p.depth > MaxDepth {
		msg := fmt.Sprintf("Document nesting depth exceeds the maximum allowed (%d)", MaxDepth)
		return nil, off, ParseError(p.position(off), msg, nil)
	}
	defer func() { p.depth-- }()
	switch d {
	case '{':
		obj := NewObject()
		obj.src = p.data
		for p.dec.More() {
			keyOff := p.nextTokenStart()
			tok, err := p.dec.Token()
			if err != nil {
				return nil, off, err
			}
			key, _ := tok.(string) // the decoder only yields strings here
			if obj.Has(key) {
				msg := fmt.Sprintf("Duplicate field '%s'", key)
				return nil, off, ParseError(p.position(keyOff), msg, eserror.New(http.StatusBadRequest, eserror.TypeJSONParse, "%s", msg))
			}
			v, valueOff, err := p.value()
			if err != nil {
				return nil, off, err
			}
			obj.keys = append(obj.keys, key)
			obj.values[key] = v
			obj.keyOff[key] = keyOff
			obj.valueOff[key] = valueOff
		}
		if _, err := p.dec.Token(); err != nil {
			return nil, off, err
		}
		return obj, off, nil
	case '[':
		arr := []any{}
		for p.dec.More() {
			v, _, err := p.value()
			if err != nil {
				return nil, off, err
			}
			arr = append(arr, v)
		}
		if _, err := p.dec.Token(); err != nil {
			return nil, off, err
		}
		return arr, off, nil
	}
	return nil, off, fmt.Errorf("unexpected %q", d)
}

// Marshal encodes v as Elasticsearch writes JSON: like json.Marshal, but
// without escaping '<', '>' and '&', which Elasticsearch leaves as they are.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// MarshalIndent is Marshal with indentation, for ?pretty.
func MarshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// AppendJavaFloat appends f as Jackson writes a Java float (Float.toString):
// the shortest decimal that reads back as f, "3.0" rather than "3", and
// "1.0E-5" style beyond [1e-3, 1e7).
func AppendJavaFloat(b []byte, f float32) []byte {
	abs := f
	if abs < 0 {
		abs = -abs
	}
	switch {
	case f != f || abs > 3.4028235e38: // NaN, ±Inf: Jackson writes them as strings
		return strconv.AppendQuote(b, strconv.FormatFloat(float64(f), 'g', -1, 32))
	case abs != 0 && (abs < 1e-3 || abs >= 1e7):
		s := strconv.FormatFloat(float64(f), 'E', -1, 32)
		mant, exp, _ := strings.Cut(s, "E")
		if !strings.Contains(mant, ".") {
			mant += ".0"
		}
		neg := strings.HasPrefix(exp, "-")
		exp = strings.TrimLeft(strings.TrimLeft(exp, "+-"), "0")
		if neg {
			exp = "-" + exp
		}
		return append(append(append(b, mant...), 'E'), exp...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, float64(f), 'f', -1, 32)
	if !bytes.ContainsRune(b[start:], '.') {
		b = append(b, '.', '0')
	}
	return b
}
