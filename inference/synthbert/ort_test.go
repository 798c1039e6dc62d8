package synthbert_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// ortErr says why ONNX Runtime could not be started; the tests that need it
// fail with it, the others run regardless.
var ortErr error

// TestMain owns ONNX Runtime's process-global environment: nothing else in
// this package may initialize or destroy it.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	ortErr = startORT()
	if ortErr == nil {
		defer func() {
			if err := ort.DestroyEnvironment(); err != nil {
				fmt.Fprintln(os.Stderr, "destroy ONNX Runtime environment:", err)
			}
		}()
	}
	return m.Run()
}

func startORT() error {
	lib, err := ortLibrary()
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(); err != nil {
		return fmt.Errorf("initialize ONNX Runtime from %s: %w", lib, err)
	}
	return nil
}

// ortLibrary is $ONNXRUNTIME_LIB, or what the project's install script
// installs and prints.
func ortLibrary() (string, error) {
	if lib := os.Getenv("ONNXRUNTIME_LIB"); lib != "" {
		return lib, nil
	}
	const script = "../../scripts/install-ort.sh"
	var stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ONNXRUNTIME_LIB is unset and %s failed: %w: %s", script, err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	lib := strings.TrimSpace(lines[len(lines)-1])
	if lib == "" {
		return "", errors.New(script + " printed no library path")
	}
	return lib, nil
}

// ortModel is one synthetic model loaded into ONNX Runtime.
type ortModel struct {
	session *ort.DynamicAdvancedSession
	cfg     synthbert.Config
}

func loadORT(t *testing.T, m *synthbert.Model) *ortModel {
	t.Helper()
	if ortErr != nil {
		t.Fatalf("ONNX Runtime is unavailable: %v", ortErr)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := m.WriteONNX(path); err != nil {
		t.Fatal(err)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	// The machine's cores are shared; the models are tiny anyway.
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	// A decoder's third input is its positions, which run takes from typeIDs.
	third := "token_type_ids"
	if m.Config.Decoder {
		third = "position_ids"
	}
	session, err := ort.NewDynamicAdvancedSession(path,
		[]string{"input_ids", "attention_mask", third},
		[]string{m.Config.Head.OutputName()}, opts)
	if err != nil {
		t.Fatalf("ONNX Runtime rejects the model: %v", err)
	}
	t.Cleanup(func() {
		if err := session.Destroy(); err != nil {
			t.Errorf("destroy session: %v", err)
		}
	})
	return &ortModel{session: session, cfg: m.Config}
}

// run returns ONNX Runtime's output in Forward's layout.
func (o *ortModel) run(t *testing.T, bt batch) [][][]float32 {
	t.Helper()
	batchSize, seq := len(bt.ids), len(bt.ids[0])
	inputs := make([]ort.Value, 0, 3)
	defer func() {
		for _, v := range inputs {
			v.Destroy()
		}
	}()
	for _, rows := range [][][]int64{bt.ids, bt.mask, bt.typeIDs} {
		tensor, err := ort.NewTensor(ort.NewShape(int64(batchSize), int64(seq)), flatten(rows))
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, tensor)
	}

	rows, width := seq, o.cfg.Hidden
	shape := ort.NewShape(int64(batchSize), int64(seq), int64(width))
	switch o.cfg.Head {
	case synthbert.HeadMaskedLM:
		width = o.cfg.VocabSize
		shape = ort.NewShape(int64(batchSize), int64(seq), int64(width))
	case synthbert.HeadClassifier:
		rows, width = 1, o.cfg.NumLabels
		shape = ort.NewShape(int64(batchSize), int64(width))
	}
	output, err := ort.NewEmptyTensor[float32](shape)
	if err != nil {
		t.Fatal(err)
	}
	defer output.Destroy()
	if err := o.session.Run(inputs, []ort.Value{output}); err != nil {
		t.Fatalf("ONNX Runtime run: %v", err)
	}
	data := output.GetData()
	out := make([][][]float32, batchSize)
	for b := range out {
		out[b] = make([][]float32, rows)
		for s := range out[b] {
			start := (b*rows + s) * width
			out[b][s] = append([]float32(nil), data[start:start+width]...)
		}
	}
	return out
}

func flatten(rows [][]int64) []int64 {
	var out []int64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// TestORTMatchesForward is the package's key check: ONNX Runtime running
// the serialized graph and the pure-Go Forward compute the same numbers, on
// a padded batch where masks and token types matter.
func TestORTMatchesForward(t *testing.T) {
	bt := testBatch()
	for _, head := range allHeads {
		t.Run(head.String(), func(t *testing.T) {
			m := mustNew(t, tinyConfig(head))
			want, err := m.Forward(bt.ids, bt.typeIDs, bt.mask)
			if err != nil {
				t.Fatal(err)
			}
			got := loadORT(t, m).run(t, bt)
			assertShape(t, got, len(want), len(want[0]), len(want[0][0]))
			var worst float64
			for b := range want {
				assertClose(t, fmt.Sprintf("item %d: ONNX Runtime vs Forward", b), got[b], want[b], 1e-4)
				worst = max(worst, maxDiff(got[b], want[b]))
			}
			t.Logf("largest |ONNX Runtime - Forward| = %.3g", worst)
			assertDistinctItems(t, want)
		})
	}
}

// TestPaddingIsMasked changes the ids at padded positions: outputs at real
// positions must not move, in either implementation, while the padded
// positions' own outputs do (so the change did reach the model).
func TestPaddingIsMasked(t *testing.T) {
	bt, changed := testBatch(), testBatch().withPaddingIDs()
	for _, head := range allHeads {
		t.Run(head.String(), func(t *testing.T) {
			m := mustNew(t, tinyConfig(head))
			session := loadORT(t, m)
			implementations := []struct {
				name string
				run  func(batch) [][][]float32
			}{
				{"Forward", func(bt batch) [][][]float32 {
					out, err := m.Forward(bt.ids, bt.typeIDs, bt.mask)
					if err != nil {
						t.Fatal(err)
					}
					return out
				}},
				{"ONNX Runtime", func(bt batch) [][][]float32 { return session.run(t, bt) }},
			}
			for _, impl := range implementations {
				name, before, after := impl.name, impl.run(bt), impl.run(changed)
				for b, n := range bt.lengths {
					rows := min(n, len(before[b])) // the classifier has one row per item
					assertClose(t, name+": real positions", after[b][:rows], before[b][:rows], 1e-6)
					if head != synthbert.HeadClassifier && n < len(bt.ids[b]) &&
						maxDiff(after[b][n:], before[b][n:]) < 1e-3 {
						t.Errorf("%s: item %d: changing padded ids did not change padded outputs", name, b)
					}
				}
			}
		})
	}
}

// assertDistinctItems guards against a degenerate model whose output does
// not depend on its input: the first rows of different items must differ.
func assertDistinctItems(t *testing.T, out [][][]float32) {
	t.Helper()
	for b := 1; b < len(out); b++ {
		if d := maxDiff(out[b][:1], out[0][:1]); d < 1e-2 {
			t.Errorf("items 0 and %d differ by at most %g: outputs barely depend on the input", b, d)
		}
	}
}

func assertClose(t *testing.T, what string, got, want [][]float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for s := range want {
		if len(got[s]) != len(want[s]) {
			t.Fatalf("%s: row %d: width %d, want %d", what, s, len(got[s]), len(want[s]))
		}
		for j := range want[s] {
			if d := math.Abs(float64(got[s][j] - want[s][j])); !(d <= tol) {
				t.Fatalf("%s: [%d][%d] = %g, want %g (|diff| %g > %g)", what, s, j, got[s][j], want[s][j], d, tol)
			}
		}
	}
}

func maxDiff(a, b [][]float32) float64 {
	var d float64
	for s := range a {
		for j := range a[s] {
			d = max(d, math.Abs(float64(a[s][j]-b[s][j])))
		}
	}
	return d
}

// A decoder, as a left-padded batch feeds it: ONNX Runtime equals
// ForwardPositions, a left-padded row with its own positions equals the row
// alone, and a position never sees the ones after it.
func TestDecoder(t *testing.T) {
	cfg := tinyConfig(synthbert.HeadHidden)
	cfg.Decoder = true
	m := mustNew(t, cfg)
	bt := batch{
		ids:     [][]int64{{5, 6, 7, 8}, {0, 0, 9, 10}},
		mask:    [][]int64{{1, 1, 1, 1}, {0, 0, 1, 1}},
		typeIDs: [][]int64{{0, 1, 2, 3}, {0, 0, 0, 1}}, // the positions
	}
	want, err := m.ForwardPositions(bt.ids, bt.mask, bt.typeIDs)
	if err != nil {
		t.Fatal(err)
	}
	got := loadORT(t, m).run(t, bt)
	// Real positions only: a padded position of a left-padded row attends to
	// nothing but masked keys, and its output is noise in either.
	real := []int{0, 2}
	for b := range want {
		assertClose(t, fmt.Sprintf("item %d: ONNX Runtime vs ForwardPositions", b), got[b][real[b]:], want[b][real[b]:], 1e-4)
	}
	alone, err := m.ForwardPositions([][]int64{{9, 10}}, [][]int64{{1, 1}}, [][]int64{{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "left-padded row vs the row alone", want[1][2:], alone[0], 1e-5)
	changed, err := m.ForwardPositions([][]int64{{5, 6, 7, 90}}, [][]int64{{1, 1, 1, 1}}, [][]int64{{0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "positions before the changed token", changed[0][:3], want[0][:3], 1e-6)
	if maxDiff(changed[0][3:], want[0][3:]) < 1e-3 {
		t.Error("changing the last token did not change its output")
	}
	if _, err := m.Forward(bt.ids, bt.typeIDs, bt.mask); err == nil {
		t.Error("Forward ran a decoder without its positions")
	}
}
