package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/embeddednats"
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
	if len(lines) != 2 || !regexp.MustCompile(`^MODEL_ID\s+FILES\s+SIZE\s+CREATED$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^cli-model\s+3\s+2\.0 KiB\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(lines[1]) {
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
	if !strings.HasPrefix(b.String(), "\r[") || !strings.Contains(b.String(), "2.0 KiB / 2.0 KiB 100%") || !strings.HasSuffix(b.String(), "\n") {
		t.Errorf("bar output %q", b.String())
	}
}
