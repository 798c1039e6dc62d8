package onnxgraph

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/jetinfer/jetinfer/inference/synthbert"
)

func tinyModel(t *testing.T, head synthbert.Head, decoder bool) []byte {
	t.Helper()
	cfg := synthbert.Config{VocabSize: 96, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 16,
		TypeVocabSize: 2, NumLabels: 3, Head: head, Seed: 7, WeightScale: 0.2, LayerNormEps: 1e-12, Decoder: decoder}
	m, err := synthbert.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Decoded and encoded without changes, a model is the same bytes; its graph is there to read.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		head    synthbert.Head
		decoder bool
	}{{"hidden", synthbert.HeadHidden, false}, {"masked-lm", synthbert.HeadMaskedLM, false},
		{"classifier", synthbert.HeadClassifier, false}, {"decoder", synthbert.HeadHidden, true}} {
		t.Run(tc.name, func(t *testing.T) {
			data := tinyModel(t, tc.head, tc.decoder)
			m, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Encode(); !bytes.Equal(got, data) {
				t.Fatalf("round trip changed the model: %d bytes → %d", len(data), len(got))
			}
			// Two layers: four attention MatMuls (Q, K, V, out), two feed-forward ones, two score/context ones each.
			ops := map[string]int{}
			for _, n := range m.Graph.Nodes {
				ops[n.OpType]++
			}
			if ops["MatMul"] != 2*8+map[synthbert.Head]int{synthbert.HeadMaskedLM: 2, synthbert.HeadClassifier: 2}[tc.head] ||
				ops["Softmax"] != 2 || ops["LayerNormalization"] == 0 {
				t.Errorf("op counts %v", ops)
			}
			word := slices.IndexFunc(m.Graph.Initializers, func(t *Tensor) bool { return t.Name == "bert.embeddings.word_embeddings.weight" })
			if word < 0 {
				t.Fatal("no word embedding table among the initializers")
			}
			vals, err := m.Graph.Initializers[word].Floats()
			if err != nil || len(vals) != 96*32 || !slices.Equal(m.Graph.Initializers[word].Dims, []int64{96, 32}) {
				t.Fatalf("word embeddings: %d values, dims %v, %v", len(vals), m.Graph.Initializers[word].Dims, err)
			}
		})
	}
}

// An edited graph is written with its changes and nothing else changed: a node renamed, one added, an initializer
// replaced.
func TestEdit(t *testing.T) {
	data := tinyModel(t, synthbert.HeadHidden, false)
	m, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Nodes[0].Name = "renamed"
	m.Graph.Nodes = append(m.Graph.Nodes, &Node{OpType: "Identity", Name: "extra", Inputs: []string{"a"}, Outputs: []string{"b"},
		Attributes: []Attribute{IntAttribute("axis", -1), FloatAttribute("alpha", 0.5), IntsAttribute("perm", 0, 2, 1)}})
	m.Graph.Initializers[0].RawData = make([]byte, len(m.Graph.Initializers[0].RawData))
	again, err := Decode(m.Encode())
	if err != nil {
		t.Fatal(err)
	}
	g := again.Graph
	last := g.Nodes[len(g.Nodes)-1]
	if g.Nodes[0].Name != "renamed" || len(g.Nodes) != len(m.Graph.Nodes) || last.OpType != "Identity" || last.Name != "extra" ||
		!slices.Equal(last.Inputs, []string{"a"}) || len(last.Attributes) != 3 || last.Attributes[2].Name() != "perm" {
		t.Fatalf("edited graph read back as %d nodes, first %q, last %+v", len(g.Nodes), g.Nodes[0].Name, last)
	}
	if !bytes.Equal(g.Initializers[0].RawData, make([]byte, len(g.Initializers[0].RawData))) ||
		g.Initializers[1].Name != m.Graph.Initializers[1].Name || !bytes.Equal(g.Initializers[1].RawData, m.Graph.Initializers[1].RawData) {
		t.Fatal("initializers not written as edited")
	}
}

// A tensor with its values in float_data (packed or not) reads as one with raw_data; external data is reported.
func TestTensorForms(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, tensorDims, protowire.VarintType)
	b = protowire.AppendVarint(b, 3)
	b = protowire.AppendTag(b, tensorDataType, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	var packed []byte
	for _, v := range []float32{1.5, -2} {
		packed = binary.LittleEndian.AppendUint32(packed, math.Float32bits(v))
	}
	b = protowire.AppendTag(b, tensorFloatData, protowire.BytesType)
	b = protowire.AppendBytes(b, packed)
	b = protowire.AppendTag(b, tensorFloatData, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, math.Float32bits(0.25))
	tensor, err := decodeTensor(b)
	if err != nil {
		t.Fatal(err)
	}
	if vals, err := tensor.Floats(); err != nil || !slices.Equal(vals, []float32{1.5, -2, 0.25}) {
		t.Fatalf("float_data: %v, %v", vals, err)
	}
	b = protowire.AppendTag(b, tensorDataLocation, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	if tensor, err = decodeTensor(b); err != nil || !tensor.External() {
		t.Fatalf("external: %v", err)
	}
	if _, err := tensor.Floats(); err == nil {
		t.Fatal("an external tensor's values were read")
	}
}

func TestMalformed(t *testing.T) {
	data := tinyModel(t, synthbert.HeadHidden, false)
	for _, bad := range [][]byte{data[:len(data)/2], {0xff, 0xff}, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 8)} {
		if _, err := Decode(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d bytes: %v; want ErrMalformed", len(bad), err)
		}
	}
}

func TestOpsetsOutputsAttributes(t *testing.T) {
	m, err := Decode(tinyModel(t, synthbert.HeadHidden, false))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Graph.Outputs(); !slices.Equal(got, []string{"last_hidden_state"}) {
		t.Errorf("outputs %v", got)
	}
	m.ImportOpset("com.microsoft", 1)
	m.ImportOpset("com.microsoft", 1) // once only
	again, err := Decode(m.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var opsets []string
	for _, f := range again.fields {
		if f.num == modelOpsetImport {
			inner, _ := parseFields(f.payload())
			domain, version := "", uint64(0)
			for _, g := range inner {
				switch g.num {
				case opsetDomain:
					domain = string(g.payload())
				case opsetVersion:
					version, _ = protowire.ConsumeVarint(g.raw[protowire.SizeTag(g.num):])
				}
			}
			opsets = append(opsets, fmt.Sprintf("%q:%d", domain, version))
		}
	}
	if !slices.Equal(opsets, []string{`"":17`, `"com.microsoft":1`}) {
		t.Errorf("opset imports %v", opsets)
	}

	for _, n := range again.Graph.Nodes {
		switch n.OpType {
		case "LayerNormalization":
			eps, _ := n.Attribute("epsilon")
			axis, _ := n.Attribute("axis")
			if e, ok := eps.Float(); !ok || e != 1e-12 {
				t.Errorf("%s epsilon %v %v", n.Name, e, ok)
			}
			if a, ok := axis.Int(); !ok || a != -1 {
				t.Errorf("%s axis %v %v", n.Name, a, ok)
			}
		case "Transpose":
			p, _ := n.Attribute("perm")
			if vs, ok := p.Ints(); !ok || len(vs) != 4 {
				t.Errorf("%s perm %v %v", n.Name, vs, ok)
			}
			if _, ok := n.Attribute("nothing"); ok {
				t.Error("an absent attribute was found")
			}
		}
	}
}

func TestExternalData(t *testing.T) {
	dir := t.TempDir()
	w := &Tensor{Name: "w", DataType: Float, Dims: []int64{2}, RawData: binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, math.Float32bits(1.5)), math.Float32bits(-2))}
	raw := w.MoveExternal("weights.bin", 4)
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), append([]byte{9, 9, 9, 9}, raw...), 0o644); err != nil {
		t.Fatal(err)
	}
	// Encoded and decoded, the tensor still says where its bytes are.
	again, err := decodeTensor(w.encode())
	if err != nil {
		t.Fatal(err)
	}
	if ext, ok := again.ExternalData(); !ok || ext != (ExternalData{Location: "weights.bin", Offset: 4, Length: 8}) {
		t.Errorf("external data %+v %v", ext, ok)
	}
	if got, err := again.ReadFloats(dir); err != nil || !slices.Equal(got, []float32{1.5, -2}) {
		t.Errorf("ReadFloats = %v, %v", got, err)
	}
	if _, err := again.Floats(); err == nil {
		t.Error("Floats read an external tensor without its directory")
	}
	// A location out of the model's directory is refused before any file is opened.
	escape := &Tensor{Name: "e", DataType: Float, Dims: []int64{2}, RawData: raw}
	escape.MoveExternal("../weights.bin", 0)
	if _, err := escape.ReadFloats(filepath.Join(dir, "sub")); !errors.Is(err, ErrMalformed) {
		t.Errorf("an escaping location: %v", err)
	}
	short := &Tensor{Name: "s", DataType: Float, Dims: []int64{3}, RawData: raw}
	short.MoveExternal("weights.bin", 4)
	if _, err := short.ReadFloats(dir); !errors.Is(err, ErrMalformed) {
		t.Errorf("8 bytes for 3 floats: %v", err)
	}
}

// Summarize reads what Decode reads of operators and initializer types, from a reader, without the weights.
func TestSummarize(t *testing.T) {
	for _, data := range [][]byte{tinyModel(t, synthbert.HeadMaskedLM, false), tinyModel(t, synthbert.HeadHidden, true)} {
		m, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Summarize(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		want := m.Summary()
		if !slices.Equal(got.OpTypes, want.OpTypes) || !slices.Equal(got.InitializerTypes, want.InitializerTypes) || len(want.OpTypes) < 50 {
			t.Errorf("Summarize = %v\nDecode says %v", got, want)
		}
	}
	for _, bad := range [][]byte{nil, {0x3a, 0x05, 0x0a}, {0xff}} {
		if _, err := Summarize(bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrMalformed) {
			t.Errorf("Summarize(% x): %v", bad, err)
		}
	}
}
