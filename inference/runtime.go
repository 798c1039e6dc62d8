package inference

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime release jetinfer is built and tested
// against (C API 24, as github.com/yalue/onnxruntime_go v1.27.0 expects).
const ORTVersion = "1.24.3"

// LibraryEnv names the environment variable that overrides where the ONNX
// Runtime shared library is loaded from.
const LibraryEnv = "ONNXRUNTIME_LIB"

// ErrRuntimeInUse is returned by NewRuntime when ONNX Runtime's
// process-global environment already has an owner.
var ErrRuntimeInUse = errors.New("onnx runtime environment already initialized in this process")

// DefaultLibraryPath returns where the ONNX Runtime library is looked for
// when no path is configured: $ONNXRUNTIME_LIB, else the project-local copy
// that scripts/install-ort.sh installs under dir (the working directory for
// the service), else the bare soname for the system loader to find.
func DefaultLibraryPath(dir string) string {
	if p := os.Getenv(LibraryEnv); p != "" {
		return p
	}
	local := filepath.Join(dir, ".cache", "onnxruntime", ORTVersion, "libonnxruntime.so.1")
	if _, err := os.Stat(local); err == nil {
		return local
	}
	return "libonnxruntime.so.1"
}

// RuntimeConfig configures ONNX Runtime.
type RuntimeConfig struct {
	// LibraryPath is the ONNX Runtime shared library to load.
	LibraryPath string
}

// Runtime owns ONNX Runtime's process-global environment: it is created
// once by main (or a test's TestMain) and closed after every session built
// on it. Nothing else in jetinfer initialises or destroys the environment.
type Runtime struct {
	mu     sync.Mutex
	closed bool
}

// NewRuntime loads the library and creates the environment.
func NewRuntime(cfg RuntimeConfig) (*Runtime, error) {
	if ort.IsInitialized() {
		return nil, ErrRuntimeInUse
	}
	if cfg.LibraryPath == "" {
		return nil, errors.New("onnx runtime: library path is required")
	}
	ort.SetSharedLibraryPath(cfg.LibraryPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("onnx runtime: load %s: %w (run scripts/install-ort.sh, or set %s)", cfg.LibraryPath, err, LibraryEnv)
	}
	if v := ort.GetVersion(); v != ORTVersion {
		_ = ort.DestroyEnvironment()
		return nil, fmt.Errorf("onnx runtime: %s is version %s; jetinfer needs %s", cfg.LibraryPath, v, ORTVersion)
	}
	return &Runtime{}, nil
}

// Close destroys the environment; every session must be closed before.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("onnx runtime: destroy environment: %w", err)
	}
	return nil
}
