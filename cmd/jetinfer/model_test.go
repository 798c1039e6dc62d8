package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/hfhub/hubtest"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/inference/synthbert"
)

func TestModelCommands(t *testing.T) {
	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()

	dir := t.TempDir()
	for name, content := range map[string]string{
		"model.onnx":            string(tinyGraph(t, synthbert.HeadHidden, 96, false)),
		"tokenizer.json":        "{}",
		"1_Pooling/config.json": "{}",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cmd := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut strings.Builder
		code := run(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	// Flags after the positional argument, as the usage shows them.
	code, out, errOut := cmd("model", "import", dir, "--model-id", "cli-model", "--nats-url", url)
	if code != 0 || !regexp.MustCompile(`^imported cli-model: 3 files, \d+\.\d KiB, float32, version [0-9a-f]{12}\n$`).MatchString(out) {
		t.Fatalf("import: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if errOut != "" {
		t.Errorf("import drew a progress bar on a non-terminal: %q", errOut)
	}
	code, _, errOut = cmd("model", "import", "--nats-url", url, "--model-id", "cli-model", dir)
	if code != 1 || !strings.Contains(errOut, "model already exists") {
		t.Errorf("second import: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut = cmd("model", "import", "--nats-url", url, "--model-id", "cli-model", "--replace", dir); code != 0 {
		t.Errorf("import --replace: exit %d, stderr %q", code, errOut)
	}

	code, out, errOut = cmd("model", "list", "--nats-url", url)
	if code != 0 {
		t.Fatalf("list: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !regexp.MustCompile(`^MODEL_ID\s+PRECISION\s+FILES\s+SIZE\s+CREATED\s+SOURCE$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^cli-model\s+float32\s+3\s+\d+\.\d KiB\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+-$`).MatchString(lines[1]) {
		t.Errorf("list output:\n%s", out)
	}

	if code, out, errOut = cmd("model", "delete", "cli-model", "--nats-url", url); code != 0 || out != "deleted cli-model\n" {
		t.Errorf("delete: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut = cmd("model", "delete", "cli-model", "--nats-url", url); code != 1 || !strings.Contains(errOut, "model not found") {
		t.Errorf("second delete: exit %d, stderr %q", code, errOut)
	}
	if code, out, _ = cmd("model", "list", "--nats-url", url); code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("list after delete: exit %d, %q", code, out)
	}

	// Usage errors exit 2, before connecting.
	for _, args := range [][]string{
		{"model"},
		{"model", "frobnicate"},
		{"model", "import", dir},
		{"model", "import", "--model-id", "x"},
		{"model", "delete"},
		{"model", "list", "extra"},
		{"model", "list", "--no-such-flag"},
		{"model", "import", dir, "--model-id", "x", "--quantize", "int4"},
		{"model", "import", dir, "--model-id", "x", "--force"},
		{"model", "import", dir, "--model-id", "x", "--exclude", "node"},
		{"model", "import", dir, "--model-id", "x", "--fuse"},
		{"model", "quantize", "x", "--model-id", "y", "--fuse=maybe"},
		{"model", "import", dir, "--model-id", "x", "--onnxruntime-lib", "/lib.so"},
		{"model", "quantize", "x", "--model-id", "y", "--exclude"},
		{"model", "list", "--force"},
	} {
		if code, _, _ := cmd(args...); code != 2 {
			t.Errorf("%q: exit %d; want 2", args, code)
		}
	}
	// Invalid input is a failure.
	if code, _, errOut = cmd("model", "import", dir, "--model-id", "Bad/Id", "--nats-url", url); code != 1 || !strings.Contains(errOut, "invalid model") {
		t.Errorf("invalid id: exit %d, stderr %q", code, errOut)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(strings.Repeat("x", 2048)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = cmd("model", "import", dir, "--model-id", "junk", "--nats-url", url); code != 1 ||
		errOut != "jetinfer model import: invalid model source: model.onnx is not an ONNX model: onnxgraph: malformed model: no graph\n" {
		t.Errorf("a graph that is not ONNX: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut = cmd("model", "list", "--nats-url", "nats://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "connect to nats") {
		t.Errorf("unreachable server: exit %d, stderr %q", code, errOut)
	}
}

func TestHumanBytesAndBar(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q; want %q", n, got, want)
		}
	}
	var b strings.Builder
	bar := &progressBar{w: &b}
	bar.update(0, 2048)
	bar.update(2048, 2048)
	bar.finish()
	over := &progressBar{w: io.Discard}
	over.update(3000, 2048) // more bytes than the total: no panic
	over.finish()
	if !strings.HasPrefix(b.String(), "\r [") || !strings.Contains(b.String(), "2.0 KiB / 2.0 KiB 100%") || !strings.HasSuffix(b.String(), "\n") {
		t.Errorf("bar output %q", b.String())
	}
}

// TestModelImportFromHub: hf:// sources download through the Hugging Face
// cache from a fake Hub and record where they came from.
func TestModelImportFromHub(t *testing.T) {
	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	tok, err := os.ReadFile("../../inference/tokenizer/testdata/bert-base-uncased/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	hub := hubtest.Start()
	t.Cleanup(hub.Close)
	hub.Add(hubtest.Repo{ID: "org/e5", Files: map[string][]byte{
		"onnx/model.onnx":                   tinyGraph(t, synthbert.HeadHidden, 96, false),
		"onnx/model_qint8_avx512_vnni.onnx": tinyGraph(t, synthbert.HeadHidden, 96, true),
		"tokenizer.json":                    tok,
		"config.json":                       []byte(`{"model_type":"bert"}`),
		"modules.json":                      []byte(`[]`),
		"1_Pooling/config.json":             []byte(`{"pooling_mode_mean_tokens":true}`),
		"README.md":                         []byte("# e5"),
	}})
	hub.Add(hubtest.Repo{ID: "org/two-graphs", Files: map[string][]byte{
		"a.onnx": []byte("a"), "b.onnx": []byte("b"), "tokenizer.json": tok,
	}})
	hfHome := t.TempDir()
	t.Setenv("HF_ENDPOINT", hub.URL())
	t.Setenv("HF_HOME", hfHome)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HF_HUB_OFFLINE", "")

	cmd := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut strings.Builder
		code := run(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	commit := hub.Commit("org/e5")
	code, out, errOut := cmd("model", "import", "hf://org/e5", "--file", "onnx/model_qint8_avx512_vnni.onnx", "--model-id", "e5-int8", "--nats-url", url)
	want := "imported e5-int8 from hf://org/e5@" + commit + "/onnx/model_qint8_avx512_vnni.onnx: 5 files"
	if code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("import: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	// The files are in the user's Hugging Face cache, for the next import
	// and for Python tools.
	snap := filepath.Join(hfHome, "hub", "models--org--e5", "snapshots", commit)
	for _, f := range []string{"onnx/model_qint8_avx512_vnni.onnx", "tokenizer.json", "config.json", "modules.json", "1_Pooling/config.json"} {
		if _, err := os.Stat(filepath.Join(snap, f)); err != nil {
			t.Errorf("%s not in the Hugging Face cache: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(snap, "onnx/model.onnx")); !os.IsNotExist(err) {
		t.Errorf("the graph not chosen was downloaded (%v)", err)
	}
	code, out, errOut = cmd("model", "list", "--nats-url", url)
	if code != 0 || !regexp.MustCompile(`(?m)^e5-int8\s+int8\s+5\s+.*\s+hf://org/e5@`+commit+`/onnx/model_qint8_avx512_vnni\.onnx$`).MatchString(out) {
		t.Errorf("list: exit %d, %q, stderr %q", code, out, errOut)
	}

	// The default graph, from the cache's tokenizer and a new download of
	// onnx/model.onnx only.
	if code, out, errOut = cmd("model", "import", "hf://org/e5@main", "--model-id", "e5", "--nats-url", url); code != 0 ||
		!strings.HasPrefix(out, "imported e5 from hf://org/e5@"+commit+"/onnx/model.onnx: 5 files") {
		t.Fatalf("import of the default graph: exit %d, %q, %q", code, out, errOut)
	}
	if n := hub.Downloads("org/e5", "onnx/model.onnx"); n != 1 {
		t.Errorf("onnx/model.onnx downloaded %d times", n)
	}
	if n := hub.Downloads("org/e5", "tokenizer.json") + hub.Downloads("org/e5", "config.json"); n != 1+1 {
		t.Errorf("tokenizer.json and config.json downloaded %d times in all, want once each (the second import reuses the cache)", n)
	}

	for _, tc := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"hf://org/missing", "--model-id", "m"}, 1, "repository not found: org/missing was not found on " + hub.URL()},
		{[]string{"hf://org/e5@v2", "--model-id", "m"}, 1, "revision not found: org/e5@v2"},
		{[]string{"hf://org/two-graphs", "--model-id", "m"}, 1, "several ONNX graphs in the repository: org/two-graphs@" + hub.Commit("org/two-graphs") + " has a.onnx, b.onnx; choose one with --file"},
		{[]string{"hf://org/e5", "--file", "onnx/model_O4.onnx", "--model-id", "m"}, 1, "no ONNX graph in the repository: org/e5@" + commit + " has no onnx/model_O4.onnx"},
		{[]string{"hf://org", "--model-id", "m"}, 2, "want hf://org/name"},
		{[]string{"./dir", "--file", "x.onnx", "--model-id", "m"}, 2, "--file applies to hf:// sources only"},
	} {
		code, _, errOut := cmd(append([]string{"model", "import", "--nats-url", url}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.text) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.text)
		}
	}
	// Nothing half-imported is visible.
	if code, out, _ = cmd("model", "list", "--nats-url", url); strings.Count(out, "\n") != 3 {
		t.Errorf("list after failed imports: exit %d, %q", code, out)
	}
}

// tinyGraph is a generated BERT's ONNX graph with vocab entries (30522: bert-base-uncased's, which the tokenizer
// feeds), quantized to int8 when int8.
func tinyGraph(t *testing.T, head synthbert.Head, vocab int, int8 bool) []byte {
	t.Helper()
	return scaledGraph(t, head, vocab, int8, 0.05)
}

// scaledGraph is tinyGraph with random weights of that scale.
func scaledGraph(t *testing.T, head synthbert.Head, vocab int, int8 bool, weightScale float32) []byte {
	t.Helper()
	sb, err := synthbert.New(synthbert.Config{VocabSize: vocab, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 64,
		TypeVocabSize: 2, NumLabels: 1, Head: head, Seed: 3, WeightScale: weightScale, LayerNormEps: 1e-12})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "model.onnx")
	if err := sb.WriteONNX(p); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !int8 {
		return data
	}
	m, err := onnxgraph.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quantize.Dynamic(m, quantize.Options{}); err != nil {
		t.Fatal(err)
	}
	return m.Encode()
}

// writeArtifact writes an artifact directory: a generated model of the head on bert-base-uncased's tokenizer.
func writeArtifact(t *testing.T, head synthbert.Head, weightScale float32, config string) string {
	t.Helper()
	tok, err := os.ReadFile("../../inference/tokenizer/testdata/bert-base-uncased/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"model.onnx": scaledGraph(t, head, 30522, false, weightScale), "tokenizer.json": tok, "jetinfer.json": []byte(config)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// model quantize stores a checked int8 copy of a stored model under a new id and says what stayed in float;
// import --quantize int8 does the same on the way in. A copy beyond its accuracy bound is refused with the figure
// unless --force, a model already quantized is refused, and list shows each model's precision.
func TestModelQuantize(t *testing.T) {
	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	dense := writeArtifact(t, synthbert.HeadHidden, 0.05, `{"task_type":"text_embedding","pooling":"mean","max_sequence_length":64}`)
	// Large random weights spread the reranker's activations widely: int8 reorders its scores.
	rerank := writeArtifact(t, synthbert.HeadClassifier, 1, `{"task_type":"rerank","max_sequence_length":64}`)
	cmd := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut strings.Builder
		code := run(append(args, "--nats-url", url), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := cmd("model", "import", dense, "--model-id", "float"); code != 0 {
		t.Fatalf("import: %d %s %s", code, out, errOut)
	}
	// Attention and the residual layer normalizations are fused first; the excluded MatMul is not one of theirs.
	code, out, errOut := cmd("model", "quantize", "float", "--model-id", "int8", "--exclude", "bert.encoder.layer.1.output.dense/MatMul")
	quantized := regexp.MustCompile(`^quantized float \(version [0-9a-f]{12}\) to int8: 7 nodes in int8, 1 in float, ` +
		`2 Attention fused, 4 SkipLayerNormalization fused; min_cosine 0\.99\d+ over 50 inputs, within the bound 0\.99\n`)
	if code != 0 || !quantized.MatchString(out) ||
		!strings.Contains(out, "  float: bert.encoder.layer.1.output.dense/MatMul (excluded)\n") ||
		!regexp.MustCompile(`\nimported int8: 3 files, .*, int8, version`).MatchString(out) {
		t.Fatalf("quantize: exit %d\n%s%s", code, out, errOut)
	}
	// An excluded query projection is absorbed by the attention fusion: the copy is made without fusions.
	code, out, errOut = cmd("model", "quantize", "float", "--model-id", "unfused", "--exclude", "bert.encoder.layer.0.attention.self.query/MatMul")
	if code != 0 || !regexp.MustCompile(`^quantized float \(version [0-9a-f]{12}\) to int8: 11 nodes in int8, 5 in float, `+
		`not fused \(an excluded node is one a fusion absorbs\); min_cosine 0\.99\d+ over 50 inputs, within the bound 0\.99\n`).MatchString(out) {
		t.Errorf("quantize --exclude a fused node: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = cmd("model", "quantize", "float", "--model-id", "plain", "--fuse=false")
	if code != 0 || !regexp.MustCompile(`^quantized float \(version [0-9a-f]{12}\) to int8: 12 nodes in int8, 4 in float; `+
		`min_cosine 0\.99\d+ over 50 inputs, within the bound 0\.99\n`).MatchString(out) {
		t.Errorf("quantize --fuse=false: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := cmd("model", "quantize", "float", "--model-id", "fused", "--fuse", "--exclude", "bert.encoder.layer.0.attention.self.query/MatMul"); code != 1 ||
		!strings.Contains(errOut, "nothing to exclude") {
		t.Errorf("quantize --fuse --exclude a fused node: exit %d, %q", code, errOut)
	}
	if code, _, errOut := cmd("model", "quantize", "float", "--model-id", "typo", "--exclude", "bert.encoder.layer.9/MatMul"); code != 1 ||
		errOut != "jetinfer model quantize: quantize: nothing to exclude: \"bert.encoder.layer.9/MatMul\" names no MatMul or Attention node, nor the weight one multiplies by\n" {
		t.Errorf("an exclusion that matches nothing: exit %d, %q", code, errOut)
	}
	if code, _, errOut := cmd("model", "quantize", "int8", "--model-id", "int8-again"); code != 1 ||
		errOut != "jetinfer model quantize: quantize: the model is already quantized: its graph runs int8\n" {
		t.Errorf("quantizing the int8 model: exit %d, %s", code, errOut)
	}
	if code, _, errOut := cmd("model", "quantize", "float"); code != 2 || !strings.Contains(errOut, "--model-id is required") {
		t.Errorf("without --model-id: exit %d, %s", code, errOut)
	}

	// On import: int8 reorders the wide-weighted cross-encoder's scores.
	code, out, errOut = cmd("model", "import", rerank, "--model-id", "rerank-int8", "--quantize", "int8")
	if code != 1 || out != "" || !regexp.MustCompile(`^jetinfer model import: the int8 model strays beyond its accuracy bound: `+
		`spearman 0\.\d+ over 50 inputs, beyond the bound 0\.98 \(made again without fusions: the fused copy strays beyond its `+
		`accuracy bound: spearman 0\.\d+ over 50 inputs, beyond the bound 0\.98\)\n$`).MatchString(errOut) {
		t.Errorf("import of a rerank model beyond its bound: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = cmd("model", "import", rerank, "--model-id", "rerank-int8", "--quantize", "int8", "--force")
	if code != 0 || !regexp.MustCompile(`^quantized .+ to int8: 12 nodes in int8, 6 in float, not fused \(the fused copy strays `+
		`beyond its accuracy bound: spearman 0\.\d+ over 50 inputs, beyond the bound 0\.98\); spearman 0\.\d+ over 50 inputs, `+
		`beyond the bound 0\.98 \(stored with --force\)\n`).MatchString(out) ||
		!strings.Contains(out, "\n  float: classifier/MatMul (it runs once per sequence, on the one token a head reads: int8 would save nothing there and its error would land on the output)\n") {
		t.Errorf("forced import: exit %d, %q, %q", code, out, errOut)
	}
	if code, out, errOut = cmd("model", "import", dense, "--model-id", "dense-int8", "--quantize", "int8"); code != 0 ||
		!strings.Contains(out, "to int8: 8 nodes in int8, 0 in float, 2 Attention fused, 4 SkipLayerNormalization fused; min_cosine") {
		t.Errorf("import --quantize int8: exit %d, %q, %q", code, out, errOut)
	}

	if code, out, errOut = cmd("model", "list"); code != 0 {
		t.Fatalf("list: exit %d, %s", code, errOut)
	}
	for _, row := range []string{
		`(?m)^dense-int8\s+int8\s+3\s.*\sint8 of ` + regexp.QuoteMeta(dense) + `$`,
		`(?m)^float\s+float32\s+3\s.*\s-$`,
		`(?m)^int8\s+int8\s+3\s.*\sint8 of float \(version [0-9a-f]{12}\)$`,
		`(?m)^plain\s+int8\s+3\s.*\sint8 of float \(version [0-9a-f]{12}\)$`,
		`(?m)^rerank-int8\s+int8\s+3\s`,
		`(?m)^unfused\s+int8\s+3\s.*\sint8 of float \(version [0-9a-f]{12}\)$`,
	} {
		if !regexp.MustCompile(row).MatchString(out) {
			t.Errorf("list: no row %s in\n%s", row, out)
		}
	}
	if strings.Count(out, "\n") != 7 {
		t.Errorf("list: %s", out)
	}
}
