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
		"model.onnx":            strings.Repeat("x", 2048),
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
	if code != 0 || !strings.Contains(out, "imported cli-model: 3 files, 2.0 KiB") {
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
	if len(lines) != 2 || !regexp.MustCompile(`^MODEL_ID\s+FILES\s+SIZE\s+CREATED\s+SOURCE$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^cli-model\s+3\s+2\.0 KiB\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+-$`).MatchString(lines[1]) {
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
	} {
		if code, _, _ := cmd(args...); code != 2 {
			t.Errorf("%q: exit %d; want 2", args, code)
		}
	}
	// Invalid input is a failure.
	if code, _, errOut = cmd("model", "import", dir, "--model-id", "Bad/Id", "--nats-url", url); code != 1 || !strings.Contains(errOut, "invalid model") {
		t.Errorf("invalid id: exit %d, stderr %q", code, errOut)
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
		"onnx/model.onnx":                   []byte(strings.Repeat("f", 4096)),
		"onnx/model_qint8_avx512_vnni.onnx": []byte(strings.Repeat("q", 1024)),
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
	if code != 0 || !regexp.MustCompile(`(?m)^e5-int8\s+5\s+.*\s+hf://org/e5@`+commit+`/onnx/model_qint8_avx512_vnni\.onnx$`).MatchString(out) {
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

// model quantize stores an int8 copy of a stored model under a new id, says what stayed in float, and refuses a
// model already quantized.
func TestModelQuantize(t *testing.T) {
	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	sb, err := synthbert.New(synthbert.Config{VocabSize: 96, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 16,
		TypeVocabSize: 2, NumLabels: 1, Head: synthbert.HeadHidden, Seed: 3, WeightScale: 0.2, LayerNormEps: 1e-12})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := sb.WriteONNX(filepath.Join(dir, "model.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut strings.Builder
		code := run(append(args, "--nats-url", url), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := cmd("model", "import", dir, "--model-id", "float"); code != 0 {
		t.Fatalf("import: %d %s %s", code, out, errOut)
	}
	code, out, errOut := cmd("model", "quantize", "float", "--model-id", "int8", "--exclude", "bert.encoder.layer.1.output.dense/MatMul")
	if code != 0 || !strings.HasPrefix(out, "quantized float to int8 as int8: 11 MatMuls in int8, 5 in float\n") ||
		!strings.Contains(out, "  float: bert.encoder.layer.1.output.dense/MatMul (excluded)\n") || !strings.Contains(out, "imported int8: 2 files") {
		t.Fatalf("quantize: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := cmd("model", "quantize", "int8", "--model-id", "int8-again"); code != 1 || !strings.Contains(errOut, "already quantized") {
		t.Errorf("quantizing the int8 model: exit %d, %s", code, errOut)
	}
	if code, _, errOut := cmd("model", "quantize", "float"); code != 2 || !strings.Contains(errOut, "--model-id is required") {
		t.Errorf("without --model-id: exit %d, %s", code, errOut)
	}
	if code, out, _ := cmd("model", "list"); code != 0 || !strings.Contains(out, "int8 ") || !strings.Contains(out, "float ") {
		t.Errorf("list: %s", out)
	}
}
