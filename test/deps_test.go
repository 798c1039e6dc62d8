package test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPackagesWithoutONNXRuntime: the processes and packages that only
// speak the API (HTTP, the NATS protocol, the controller) and the pure-Go
// text processing must not link ONNX Runtime, so that an HTTP-only process
// runs where the library is absent and their tests need none.
func TestPackagesWithoutONNXRuntime(t *testing.T) {
	const ort = "github.com/yalue/onnxruntime_go"
	for _, pkg := range []string{"httpapi", "controller", "cluster", "config", "wire", "inferapi", "openaiapi", "teiapi", "rerankapi", "inference/tokenizer", "inference/onnxgraph", "inference/quantize", "inference/fuse", "pipeline/chunking",
		"hfhub", "modelsource", "modelstore", "inference/ortlib"} {
		out, err := exec.Command("go", "list", "-deps", "github.com/jetinfer/jetinfer/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 2 {
			t.Fatalf("go list -deps %s listed %d packages", pkg, len(deps))
		}
		for _, d := range deps {
			if d == ort || d == "github.com/jetinfer/jetinfer/inference" {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
}
