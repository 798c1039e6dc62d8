package inference

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jetinfer/jetinfer/inference/ortlib"
)

// graphCache keeps the graphs ONNX Runtime optimized (its optimized model
// file), so that a model loaded again skips the optimization. A graph is
// keyed by its file (path, size and modification time: the model store's
// directories are named by digest, so a path holds one content), the ORT
// version, the optimization level and this CPU's features, since an
// ENABLE_ALL graph may hold kernels laid out for them. The zero value
// caches nothing.
type graphCache struct {
	dir string
}

// graphCacheVersion changes when what a cached graph is made with does
// (the session options that shape the graph).
const graphCacheVersion = "1-enable-all"

// path returns where the optimized graph of the model file onnx is kept,
// or "" when there is no cache or the file cannot be read.
func (c graphCache) path(onnx string) string {
	if c.dir == "" {
		return ""
	}
	abs, err := filepath.Abs(onnx)
	if err != nil {
		return ""
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00%s\x00%s", abs, fi.Size(), fi.ModTime().UnixNano(), ortlib.Version, graphCacheVersion, cpuFlags())
	return filepath.Join(c.dir, hex.EncodeToString(h.Sum(nil)[:16])+".onnx")
}

// cpuFlags is the feature flags of this machine's first processor, as
// Linux lists them ("" where there is no /proc/cpuinfo).
func cpuFlags() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "flags" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}
