package worker

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cachedModels lists the model ids with a complete copy in the cache:
// <cache>/<model_id>/<digest>/ (Fetch renames a download into place only
// once it is verified; partial downloads start with a dot).
func cachedModels(cacheDir string) []string {
	dirs, err := os.ReadDir(cacheDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		versions, err := os.ReadDir(filepath.Join(cacheDir, d.Name()))
		if err != nil {
			continue
		}
		for _, v := range versions {
			if v.IsDir() && !strings.HasPrefix(v.Name(), ".") {
				out = append(out, d.Name())
				break
			}
		}
	}
	return out
}

// availableMemory is MemAvailable from /proc/meminfo, 0 where there is none.
func availableMemory() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
