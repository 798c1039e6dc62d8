// Package orttest gives test binaries outside package inference their ONNX
// Runtime environment: it finds the library ($ONNXRUNTIME_LIB, else the
// copy scripts/install-ort.sh installs) and owns the environment for the
// binary's lifetime, so that each TestMain stays one line.
package orttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/ortlib"
)

// Run creates the environment, hands it to use, runs the tests and
// destroys it; it returns the exit code for os.Exit. repoRoot is the path
// from the test's package directory to the repository root.
func Run(m *testing.M, repoRoot string, use func(*inference.Runtime)) int {
	lib := os.Getenv(ortlib.LibraryEnv)
	if lib == "" {
		out, err := exec.Command(filepath.Join(repoRoot, "scripts", "install-ort.sh")).Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "install ONNX Runtime with scripts/install-ort.sh:", err)
			return 1
		}
		lib = strings.TrimSpace(string(out))
		// Binaries the tests start find the library the same way.
		if err := os.Setenv(ortlib.LibraryEnv, lib); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	rt, err := inference.NewRuntime(inference.RuntimeConfig{LibraryPath: lib})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	use(rt)
	code := m.Run()
	if err := rt.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}
