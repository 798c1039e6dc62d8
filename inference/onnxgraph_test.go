package inference

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// A graph onnxgraph rewrote runs in ONNX Runtime: decoded and encoded as is, and with its output moved behind a
// new Identity node, a model's embeddings are bit for bit those of the original.
func TestRewrittenGraphRunsIdentically(t *testing.T) {
	const config = `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":64}`
	dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 3), config)
	want, err := load(t, dir, LoadOptions{Threads: 1}).Embed(context.Background(), mixedTexts, "")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, artifact.ONNXFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range []struct {
		name  string
		apply func(g *onnxgraph.Graph)
	}{
		{"unchanged", func(*onnxgraph.Graph) {}},
		{"identity before the output", func(g *onnxgraph.Graph) {
			last := g.Nodes[len(g.Nodes)-1]
			out := last.Outputs[0]
			last.Outputs[0] = out + "/before"
			g.Nodes = append(g.Nodes, &onnxgraph.Node{OpType: "Identity", Name: out + "/identity", Inputs: []string{out + "/before"}, Outputs: []string{out}})
		}},
	} {
		t.Run(edit.name, func(t *testing.T) {
			m, err := onnxgraph.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			edit.apply(m.Graph)
			got, err := load(t, withGraph(t, dir, m), LoadOptions{Threads: 1}).Embed(context.Background(), mixedTexts, "")
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if !slices.Equal(got[i], want[i]) {
					t.Fatalf("text %d: %v…; the original gives %v…", i, got[i][:3], want[i][:3])
				}
			}
		})
	}
}

// withGraph writes a new artifact directory with dir's tokenizer and jetinfer.json and m as its graph.
func withGraph(t testing.TB, dir string, m *onnxgraph.Model) string {
	t.Helper()
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
	return out
}
