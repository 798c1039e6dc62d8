package inference

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// quantizedCopy writes dir's artifact again with its graph quantized, and returns the new directory.
func quantizedCopy(t testing.TB, dir string, opts quantize.Options) (string, quantize.Report) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, artifact.ONNXFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnxgraph.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	report, err := quantize.Dynamic(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, f := range []string{artifact.TokenizerFile, artifact.ConfigFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, artifact.ONNXFile), m.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out, report
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

// The int8 model's embeddings stay within the accuracy bound of issue 11 (cosine ≥ 0.99 with the float model's)
// on every text; every constant-weight MatMul is quantized, the attention products stay float.
func TestDynamicQuantization(t *testing.T) {
	const config = `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":64}`
	cfg := tinyConfig(synthbert.HeadHidden, 9)
	cfg.WeightScale = 0.05
	dir, _ := writeModel(t, cfg, config)
	want, err := load(t, dir, LoadOptions{Threads: 1}).Embed(context.Background(), mixedTexts, "")
	if err != nil {
		t.Fatal(err)
	}
	qdir, report := quantizedCopy(t, dir, quantize.Options{})
	if len(report.Quantized) != 2*6 || len(report.Float) != 2*2 {
		t.Fatalf("quantized %d MatMuls, left %d in float (%v); want 12 and the 4 attention products", len(report.Quantized), len(report.Float), report.Float)
	}
	got, err := load(t, qdir, LoadOptions{Threads: 1}).Embed(context.Background(), mixedTexts, "")
	if err != nil {
		t.Fatal(err)
	}
	worst := 1.0
	for i := range want {
		c := cosine(got[i], want[i])
		worst = min(worst, c)
		if c < 0.99 {
			t.Errorf("text %d: cosine %.4f with the float model's", i, c)
		}
	}
	t.Logf("lowest cosine between int8 and float embeddings: %.7f", worst)
	if worst > 0.9999999 {
		t.Error("the int8 embeddings equal the float ones: the quantized graph did not run in int8")
	}

	// Quantizing again is refused.
	data, err := os.ReadFile(filepath.Join(qdir, artifact.ONNXFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnxgraph.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quantize.Dynamic(m, quantize.Options{}); !errors.Is(err, quantize.ErrAlreadyQuantized) {
		t.Errorf("quantizing a quantized model: %v", err)
	}
}

// BenchmarkDynamicQuantization embeds the same texts with an e5-small-shaped model in float and in int8, one
// thread each: the int8 speed-up is the ratio of the two (go test -bench DynamicQuantization ./inference/).
func BenchmarkDynamicQuantization(b *testing.B) {
	const config = `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":128}`
	cfg := synthbert.MiniLML12(synthbert.HeadHidden, 1)
	cfg.MaxPositions = 128
	dir, _ := writeModel(b, cfg, config)
	qdir, _ := quantizedCopy(b, dir, quantize.Options{})
	texts := make([]string, 32)
	for i := range texts {
		texts[i] = mixedTexts[(i+2)%len(mixedTexts)] + " " + mixedTexts[(i+3)%len(mixedTexts)]
	}
	var floatVecs [][]float32
	for _, tc := range []struct{ name, dir string }{{"float", dir}, {"int8", qdir}} {
		b.Run(tc.name, func(b *testing.B) {
			m, err := LoadModel(context.Background(), testRuntime, tc.dir, LoadOptions{Threads: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			var vecs [][]float32
			for b.Loop() {
				if vecs, err = m.Embed(context.Background(), texts, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(texts)*b.N)/b.Elapsed().Seconds(), "texts/s")
			if floatVecs == nil {
				floatVecs = vecs
				return
			}
			worst := 1.0
			for i := range vecs {
				worst = min(worst, cosine(vecs[i], floatVecs[i]))
			}
			b.ReportMetric(worst, "min-cosine")
		})
	}
}
