package synthbert_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// tinyConfig is small enough for every test to run in milliseconds, with
// weights large enough that outputs differ visibly between inputs.
func tinyConfig(head synthbert.Head) synthbert.Config {
	return synthbert.Config{
		VocabSize:     96,
		Hidden:        32,
		Layers:        2,
		Heads:         4,
		Intermediate:  64,
		MaxPositions:  16,
		TypeVocabSize: 2,
		NumLabels:     3,
		Head:          head,
		Seed:          42,
		WeightScale:   0.2,
		LayerNormEps:  1e-12,
	}
}

var allHeads = []synthbert.Head{synthbert.HeadHidden, synthbert.HeadMaskedLM, synthbert.HeadClassifier}

// batch is a padded batch of three sequences of lengths 7, 4 and 2, the
// first with a second segment (token type 1).
type batch struct {
	ids, typeIDs, mask [][]int64
	lengths            []int
}

func testBatch() batch {
	return batch{
		ids: [][]int64{
			{2, 17, 33, 5, 61, 40, 3},
			{2, 9, 48, 3, 0, 0, 0},
			{2, 3, 0, 0, 0, 0, 0},
		},
		typeIDs: [][]int64{
			{0, 0, 0, 0, 1, 1, 1},
			{0, 0, 0, 0, 0, 0, 0},
			{0, 0, 0, 0, 0, 0, 0},
		},
		mask: [][]int64{
			{1, 1, 1, 1, 1, 1, 1},
			{1, 1, 1, 1, 0, 0, 0},
			{1, 1, 0, 0, 0, 0, 0},
		},
		lengths: []int{7, 4, 2},
	}
}

// withPaddingIDs returns a copy of bt whose padded positions hold other
// token ids: a change that only a broken mask lets through.
func (bt batch) withPaddingIDs() batch {
	out := bt
	out.ids = make([][]int64, len(bt.ids))
	for b, row := range bt.ids {
		out.ids[b] = append([]int64(nil), row...)
		for s := bt.lengths[b]; s < len(row); s++ {
			out.ids[b][s] = int64(10 + s)
		}
	}
	return out
}

func mustNew(t testing.TB, cfg synthbert.Config) *synthbert.Model {
	t.Helper()
	m, err := synthbert.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return m
}

func mustONNX(t testing.TB, cfg synthbert.Config) []byte {
	t.Helper()
	data, err := mustNew(t, cfg).ONNX()
	if err != nil {
		t.Fatalf("ONNX: %v", err)
	}
	return data
}

func TestONNXIsDeterministic(t *testing.T) {
	for _, head := range allHeads {
		t.Run(head.String(), func(t *testing.T) {
			cfg := tinyConfig(head)
			first, second := mustONNX(t, cfg), mustONNX(t, cfg)
			if !bytes.Equal(first, second) {
				t.Fatal("two models from the same config serialize differently")
			}
			cfg.Seed++
			if other := mustONNX(t, cfg); bytes.Equal(first, other) {
				t.Fatal("a different seed gives the same bytes")
			} else if len(other) != len(first) {
				t.Fatalf("a different seed changes the size: %d, want %d", len(other), len(first))
			}
		})
	}
}

// TestONNXIsPinned guards "same Config ⇒ same bytes on every platform and
// release": a change to the drawing or the graph would silently change every
// recorded benchmark and expected value. If the change is intended, update
// the digests.
func TestONNXIsPinned(t *testing.T) {
	want := map[synthbert.Head]string{
		synthbert.HeadHidden:     "0133d602fbd3cccdb0ebee0b154bf89ea5fbe6b545000154bb14a5bff3e83555",
		synthbert.HeadMaskedLM:   "27224755ddd0577fe9246f0c4e7e7336159efd076ff020e3bea2363a002a02c5",
		synthbert.HeadClassifier: "b0a0c306569064f789d30b6cbaaddc7d09f4af105caf1abebe1439a51405f4c9",
	}
	for _, head := range allHeads {
		sum := sha256.Sum256(mustONNX(t, tinyConfig(head)))
		if got := hex.EncodeToString(sum[:]); got != want[head] {
			t.Errorf("%s: SHA-256 %s, want %s", head, got, want[head])
		}
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name   string
		change func(*synthbert.Config)
		want   string
	}{
		{"heads do not divide hidden", func(c *synthbert.Config) { c.Heads = 5 }, "multiple of Heads"},
		{"zero layers", func(c *synthbert.Config) { c.Layers = 0 }, "Layers"},
		{"negative vocab", func(c *synthbert.Config) { c.VocabSize = -1 }, "VocabSize"},
		{"classifier without labels", func(c *synthbert.Config) { c.Head, c.NumLabels = synthbert.HeadClassifier, 0 }, "NumLabels"},
		{"unknown head", func(c *synthbert.Config) { c.Head = 7 }, "Head"},
		{"zero weight scale", func(c *synthbert.Config) { c.WeightScale = 0 }, "WeightScale"},
		{"infinite eps", func(c *synthbert.Config) { c.LayerNormEps = float32(math.Inf(1)) }, "LayerNormEps"},
		{"too large for one file", func(c *synthbert.Config) { c.VocabSize, c.Hidden = 1<<22, 1<<8 }, "parameters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tinyConfig(synthbert.HeadHidden)
			tt.change(&cfg)
			_, err := synthbert.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	cfg := tinyConfig(synthbert.HeadHidden)
	cfg.NumLabels = 0 // only the classifier needs labels
	if _, err := synthbert.New(cfg); err != nil {
		t.Fatalf("New without labels for the hidden head: %v", err)
	}
}

func TestForwardRejectsBadBatch(t *testing.T) {
	m := mustNew(t, tinyConfig(synthbert.HeadHidden))
	row := func(vs ...int64) [][]int64 { return [][]int64{vs} }
	tests := []struct {
		name               string
		ids, typeIDs, mask [][]int64
		want               string
	}{
		{"empty batch", nil, nil, nil, "empty batch"},
		{"batch sizes differ", row(1, 2), [][]int64{{0, 0}, {0, 0}}, row(1, 1), "batch sizes differ"},
		{"ragged", row(1, 2), row(0), row(1, 1), "lengths"},
		{"id out of vocab", row(1, 96), row(0, 0), row(1, 1), "id 96 at position 1"},
		{"negative type", row(1, 2), row(0, -1), row(1, 1), "type id -1"},
		{"mask not 0/1", row(1, 2), row(0, 0), row(1, 2), "mask value 2"},
		{"longer than positions", [][]int64{make([]int64, 17)}, [][]int64{make([]int64, 17)}, [][]int64{make([]int64, 17)}, "sequence length 17"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Forward(tt.ids, tt.typeIDs, tt.mask)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Forward: error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestONNXContract checks what runtimes and jetinfer rely on: IR and opset,
// input and output names, types and symbolic dimensions.
func TestONNXContract(t *testing.T) {
	tests := []struct {
		head synthbert.Head
		out  string
		dims []string // a number is a fixed size
	}{
		{synthbert.HeadHidden, "last_hidden_state", []string{"batch_size", "sequence_length", "32"}},
		{synthbert.HeadMaskedLM, "logits", []string{"batch_size", "sequence_length", "96"}},
		{synthbert.HeadClassifier, "logits", []string{"batch_size", "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.head.String(), func(t *testing.T) {
			// Field numbers are onnx.proto's: ModelProto ir_version 1,
			// graph 7, opset_import 8; OperatorSetIdProto domain 1,
			// version 2; GraphProto input 11, output 12.
			model := decodeMessage(t, mustONNX(t, tinyConfig(tt.head)))
			opsets := model.msgs(t, 8)
			var opsetList []string
			for _, o := range opsets {
				opsetList = append(opsetList, strconv.Quote(o.str(1))+":"+strconv.FormatInt(o.int(2), 10))
			}
			if model.int(1) != 8 || len(opsets) != 1 || opsets[0].has(1) || opsets[0].int(2) != 17 {
				t.Fatalf("IR %d, opsets %v; want IR 8, default domain opset 17", model.int(1), opsetList)
			}
			g := model.msg(t, 7)
			var inputs []string
			for _, in := range g.msgs(t, 11) {
				inputs = append(inputs, describe(t, in))
			}
			wantInputs := []string{
				"input_ids int64 [batch_size sequence_length]",
				"attention_mask int64 [batch_size sequence_length]",
				"token_type_ids int64 [batch_size sequence_length]",
			}
			if strings.Join(inputs, "; ") != strings.Join(wantInputs, "; ") {
				t.Errorf("inputs %q, want %q", inputs, wantInputs)
			}
			outputs := g.msgs(t, 12)
			if len(outputs) != 1 {
				t.Fatalf("%d outputs, want 1", len(outputs))
			}
			want := tt.out + " float32 [" + strings.Join(tt.dims, " ") + "]"
			if got := describe(t, outputs[0]); got != want {
				t.Errorf("output %q, want %q", got, want)
			}
			if tt.head.OutputName() != tt.out {
				t.Errorf("OutputName() = %q, want %q", tt.head.OutputName(), tt.out)
			}
		})
	}
}

// describe renders a ValueInfoProto's tensor name, element type and
// dimensions. Field numbers are onnx.proto's: ValueInfoProto name 1, type 2;
// TypeProto tensor_type 1; TypeProto.Tensor elem_type 1, shape 2;
// TensorShapeProto dim 1; Dimension dim_value 1, dim_param 2. Element types
// are TensorProto.DataType's FLOAT 1 and INT64 7.
func describe(t *testing.T, v pbMessage) string {
	t.Helper()
	tt := v.msg(t, 2).msg(t, 1)
	elem := map[int64]string{7: "int64", 1: "float32"}[tt.int(1)]
	var dims []string
	for _, d := range tt.msg(t, 2).msgs(t, 1) {
		if d.has(2) {
			dims = append(dims, d.str(2))
		} else {
			dims = append(dims, strconv.FormatInt(d.int(1), 10))
		}
	}
	return v.str(1) + " " + elem + " [" + strings.Join(dims, " ") + "]"
}

func TestForwardShapes(t *testing.T) {
	bt := testBatch()
	tests := []struct {
		head        synthbert.Head
		rows, width int
	}{
		{synthbert.HeadHidden, 7, 32},
		{synthbert.HeadMaskedLM, 7, 96},
		{synthbert.HeadClassifier, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.head.String(), func(t *testing.T) {
			out, err := mustNew(t, tinyConfig(tt.head)).Forward(bt.ids, bt.typeIDs, bt.mask)
			if err != nil {
				t.Fatal(err)
			}
			assertShape(t, out, 3, tt.rows, tt.width)
		})
	}
}

func assertShape(t *testing.T, out [][][]float32, batch, rows, width int) {
	t.Helper()
	if len(out) != batch {
		t.Fatalf("batch %d, want %d", len(out), batch)
	}
	for b := range out {
		if len(out[b]) != rows {
			t.Fatalf("item %d: %d rows, want %d", b, len(out[b]), rows)
		}
		for s := range out[b] {
			if len(out[b][s]) != width {
				t.Fatalf("item %d row %d: width %d, want %d", b, s, len(out[b][s]), width)
			}
		}
	}
}

// TestForwardIgnoresPadding runs each sequence alone, unpadded, and compares
// it with its row of the padded batch: masking must make padding invisible.
func TestForwardIgnoresPadding(t *testing.T) {
	bt := testBatch()
	for _, head := range allHeads {
		t.Run(head.String(), func(t *testing.T) {
			m := mustNew(t, tinyConfig(head))
			padded, err := m.Forward(bt.ids, bt.typeIDs, bt.mask)
			if err != nil {
				t.Fatal(err)
			}
			for b, n := range bt.lengths {
				alone, err := m.Forward([][]int64{bt.ids[b][:n]}, [][]int64{bt.typeIDs[b][:n]}, [][]int64{bt.mask[b][:n]})
				if err != nil {
					t.Fatal(err)
				}
				// The classifier has one row per item; the others one per token.
				assertClose(t, "padded vs alone", padded[b][:len(alone[0])], alone[0], 1e-6)
			}
		})
	}
}

// TestMiniLML12Size builds the benchmark-size model: it must stay quick to
// generate and serialize, and its file is essentially its weights.
func TestMiniLML12Size(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 130 MB model")
	}
	start := time.Now()
	m := mustNew(t, synthbert.MiniLML12(synthbert.HeadHidden, 1))
	data, err := m.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MiniLM-L12: New+ONNX %v, %d bytes", time.Since(start), len(data))
	const params = 30522*384 + 512*384 + 2*384 + 2*384 + 12*(4*(384*384+384)+(384*1536+1536)+(1536*384+384)+4*384)
	if len(data) < 4*params || len(data) > 4*params+1<<20 {
		t.Fatalf("%d bytes, want 4·%d plus less than 1 MiB of graph", len(data), params)
	}
	out, err := m.Forward([][]int64{{101, 2023, 102}}, [][]int64{{0, 0, 0}}, [][]int64{{1, 1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	assertShape(t, out, 1, 3, 384)
}

func BenchmarkMiniLML12ONNX(b *testing.B) {
	cfg := synthbert.MiniLML12(synthbert.HeadHidden, 1)
	for b.Loop() {
		m, err := synthbert.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.ONNX(); err != nil {
			b.Fatal(err)
		}
	}
}
