package inference

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/synthbert"
)

// TestGraphCache: a model loaded with a graph cache saves the graph ORT
// optimized and, loaded again, runs that graph (proven by swapping in
// another model's) with outputs bit-identical to an uncached load; a
// corrupt cached graph is made again.
func TestGraphCache(t *testing.T) {
	const cfg = `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":64}`
	dirA, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 1), cfg)
	dirB, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 2), cfg)
	cache := t.TempDir()
	ctx := context.Background()
	embed := func(m *Model) [][]float32 {
		t.Helper()
		vecs, err := m.Embed(ctx, mixedTexts, "")
		if err != nil {
			t.Fatal(err)
		}
		return vecs
	}
	equal := func(a, b [][]float32) bool { return slices.EqualFunc(a, b, slices.Equal[[]float32]) }
	// Each load closes its model before the next reads the cache.
	run := func(dir string, opts LoadOptions) [][]float32 {
		t.Helper()
		m, err := LoadModel(ctx, testRuntime, dir, opts)
		if err != nil {
			t.Fatalf("LoadModel: %v", err)
		}
		defer m.Close()
		return embed(m)
	}
	wantA, wantB := run(dirA, LoadOptions{}), run(dirB, LoadOptions{})
	if equal(wantA, wantB) {
		t.Fatal("the two models embed alike: the swap below would prove nothing")
	}

	if got := run(dirA, LoadOptions{GraphCache: cache}); !equal(got, wantA) {
		t.Fatal("the first cached load (optimizing and saving) differs from an uncached one")
	}
	pathA := graphCache{dir: cache}.path(filepath.Join(dirA, artifact.ONNXFile))
	saved, err := os.ReadFile(pathA)
	if err != nil || len(saved) == 0 {
		t.Fatalf("no optimized graph saved at %s: %v", pathA, err)
	}
	if entries, _ := os.ReadDir(cache); len(entries) != 1 {
		t.Fatalf("cache holds %d files; want the one graph (no temporary file left)", len(entries))
	}
	if got := run(dirA, LoadOptions{GraphCache: cache, Threads: 2}); !equal(got, wantA) {
		t.Fatal("the load from the saved graph differs from an uncached one")
	}

	// B's optimized graph put where A's is kept: loading A runs B's graph.
	if got := run(dirB, LoadOptions{GraphCache: cache}); !equal(got, wantB) {
		t.Fatal("B cached differs from B")
	}
	graphB, err := os.ReadFile(graphCache{dir: cache}.path(filepath.Join(dirB, artifact.ONNXFile)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pathA, graphB, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run(dirA, LoadOptions{GraphCache: cache}); !equal(got, wantB) {
		t.Fatal("loading A with B's graph in its place did not run B's graph: the cache is not read")
	}

	// A corrupt graph is replaced by a good one.
	if err := os.WriteFile(pathA, []byte("not a graph"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run(dirA, LoadOptions{GraphCache: cache}); !equal(got, wantA) {
		t.Fatal("a load over a corrupt cached graph differs from an uncached one")
	}
	if again, err := os.ReadFile(pathA); err != nil || string(again) != string(saved) {
		t.Fatalf("the corrupt graph was not made again (%d bytes, %v)", len(again), err)
	}
}
