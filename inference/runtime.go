package inference

import (
	"errors"
	"fmt"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/jetinfer/jetinfer/inference/ortlib"
)

// ErrRuntimeInUse is returned by NewRuntime when ONNX Runtime's
// process-global environment already has an owner.
var ErrRuntimeInUse = errors.New("onnx runtime environment already initialized in this process")

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
		return nil, fmt.Errorf("onnx runtime: load %s: %w (jetinfer needs ONNX Runtime %s: run scripts/install-ort.sh, or pass --onnxruntime-lib)", cfg.LibraryPath, err, ortlib.Version)
	}
	if v := ort.GetVersion(); v != ortlib.Version {
		_ = ort.DestroyEnvironment()
		return nil, fmt.Errorf("onnx runtime: %s is version %s; jetinfer needs %s", cfg.LibraryPath, v, ortlib.Version)
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
