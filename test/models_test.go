package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/orttest"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/inference/synthbert"
	"github.com/jetinfer/jetinfer/pipeline"
)

// testRuntime is this test binary's ONNX Runtime environment; modelRepo is
// a model repository holding small generated models under the built-in
// model ids, as <repo>/<model_id>/.
var (
	testRuntime *inference.Runtime
	modelRepo   string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jetinfer-models-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := orttest.Run(m, "..", func(rt *inference.Runtime) {
		testRuntime = rt
		if err := writeModelRepository(dir); err != nil {
			fmt.Fprintln(os.Stderr, "model repository:", err)
			os.Exit(1)
		}
		modelRepo = dir
	})
	_ = os.RemoveAll(dir)
	if binaries.dir != "" {
		_ = os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// binaries holds the commands tests run as processes of their own, each
// built once per test binary.
var binaries struct {
	mu    sync.Mutex
	dir   string
	built map[string]error
}

// goBinary builds the main package pkg as name, once.
func goBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds " + name)
	}
	binaries.mu.Lock()
	defer binaries.mu.Unlock()
	if binaries.dir == "" {
		dir, err := os.MkdirTemp("", "jetinfer-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binaries.dir, binaries.built = dir, map[string]error{}
	}
	path := filepath.Join(binaries.dir, name)
	err, done := binaries.built[name]
	if !done {
		if out, berr := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); berr != nil {
			err = fmt.Errorf("go build %s: %w\n%s", pkg, berr, out)
		}
		binaries.built[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// jetinferBinary is cmd/jetinfer, built.
func jetinferBinary(t *testing.T) string { return goBinary(t, "jetinfer", "../cmd/jetinfer") }

// natsServerBinary is the nats-server of go.mod, built, to run as a
// process a test can kill.
func natsServerBinary(t *testing.T) string {
	return goBinary(t, "nats-server", "github.com/nats-io/nats-server/v2")
}

// Generated models: BERT-architecture, small enough to run fast, long
// enough (512 positions) for ELSER's 250-word sentence chunks.
var (
	sparseModel = testModel{head: synthbert.HeadMaskedLM, seed: 101, config: `{"task_type":"sparse_embedding","max_sequence_length":512}`}
	denseModel  = testModel{head: synthbert.HeadHidden, seed: 102, config: `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":512,"prefix_strings":{"search":"query: ","ingest":"passage: "},"similarity":"cosine"}`}
	rerankModel = testModel{head: synthbert.HeadClassifier, seed: 103, config: `{"task_type":"rerank","max_sequence_length":512}`}
)

type testModel struct {
	head   synthbert.Head
	seed   uint64
	config string
	// int8 quantizes the graph (as Elasticsearch's _linux-x86_64 files are).
	int8 bool
}

// quantized is the model with its graph in int8.
func (tm testModel) quantized() testModel {
	tm.int8 = true
	return tm
}

// writeGraph writes the model's ONNX graph to path.
func (tm testModel) writeGraph(path string) error {
	sb, err := synthbert.New(synthbert.Config{VocabSize: 30522, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64,
		MaxPositions: 512, TypeVocabSize: 2, NumLabels: 1, Head: tm.head, Seed: tm.seed, WeightScale: 0.2, LayerNormEps: 1e-12})
	if err != nil {
		return err
	}
	if err := sb.WriteONNX(path); err != nil || !tm.int8 {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	m, err := onnxgraph.Decode(data)
	if err != nil {
		return err
	}
	if _, err := quantize.Dynamic(m, quantize.Options{}); err != nil {
		return err
	}
	return os.WriteFile(path, m.Encode(), 0o644)
}

// testTokenizer is the tokenizer of every generated model: bert-base-uncased's.
const testTokenizer = "../inference/tokenizer/testdata/bert-base-uncased/tokenizer.json"

func (tm testModel) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := tm.writeGraph(filepath.Join(dir, artifact.ONNXFile)); err != nil {
		return err
	}
	tok, err := os.ReadFile(testTokenizer)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, artifact.TokenizerFile), tok, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, artifact.ConfigFile), []byte(tm.config), 0o644)
}

func writeModelRepository(dir string) error {
	for id, tm := range map[string]testModel{
		".elser_model_2":                      sparseModel,
		".elser_model_2_linux-x86_64":         sparseModel.quantized(),
		".multilingual-e5-small":              denseModel,
		".multilingual-e5-small_linux-x86_64": denseModel.quantized(),
		".rerank-v1":                          rerankModel,
	} {
		if err := tm.write(filepath.Join(dir, id)); err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
	}
	return nil
}

// directModel loads a repository model outside any node, for reference
// answers: the engine called directly.
func directModel(t *testing.T, modelID string) *inference.Model {
	t.Helper()
	m, err := inference.LoadModel(context.Background(), testRuntime, filepath.Join(modelRepo, modelID), inference.LoadOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// directInfer is the engine's own answer to a POST _inference body.
func directInfer(t *testing.T, m *inference.Model, ep config.Endpoint, body string) string {
	t.Helper()
	req, err := inferapi.ParseRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := pipeline.Infer(context.Background(), m, ep, req, inferapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return string(out.Body)
}
