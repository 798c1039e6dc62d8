package ortlib_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/inference/ortlib"
)

func touch(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindLooksInOrder(t *testing.T) {
	root := t.TempDir()
	env := map[string]string{"HOME": filepath.Join(root, "home"), "LD_LIBRARY_PATH": filepath.Join(root, "ld1") + ":" + filepath.Join(root, "ld2")}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	places := ortlib.Places{Lookup: lookup, Executable: filepath.Join(root, "bin", "jetinfer"), SystemDirs: []string{filepath.Join(root, "usr/lib")}}
	find := func() string {
		t.Helper()
		got, err := ortlib.Find(places)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// Nothing anywhere: one error naming every place and how to install.
	_, err := ortlib.Find(places)
	if !errors.Is(err, ortlib.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	for _, want := range []string{
		filepath.Join(root, "bin", ortlib.SOName),
		filepath.Join(root, "home/.cache/jetinfer/onnxruntime", ortlib.Version, ortlib.SOName),
		filepath.Join(root, "ld1", ortlib.SOName), filepath.Join(root, "ld2", ortlib.SOName),
		filepath.Join(root, "usr/lib", ortlib.SOName),
		"scripts/install-ort.sh", "https://github.com/microsoft/onnxruntime/releases/tag/v" + ortlib.Version,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}

	// Each place found, the earlier ones winning.
	sys := touch(t, filepath.Join(root, "usr/lib", ortlib.SOName))
	if got := find(); got != sys {
		t.Errorf("got %s, want the system copy %s", got, sys)
	}
	ld := touch(t, filepath.Join(root, "ld2", ortlib.SOName))
	if got := find(); got != ld {
		t.Errorf("got %s, want LD_LIBRARY_PATH's %s", got, ld)
	}
	cache := touch(t, filepath.Join(root, "home/.cache/jetinfer/onnxruntime", ortlib.Version, ortlib.SOName))
	if got := find(); got != cache {
		t.Errorf("got %s, want the install script's %s", got, cache)
	}
	env["XDG_CACHE_HOME"] = filepath.Join(root, "xdg")
	xdg := touch(t, filepath.Join(root, "xdg/jetinfer/onnxruntime", ortlib.Version, ortlib.SOName))
	if got := find(); got != xdg {
		t.Errorf("got %s, want $XDG_CACHE_HOME's %s", got, xdg)
	}
	beside := touch(t, filepath.Join(root, "bin", ortlib.SOName))
	if got := find(); got != beside {
		t.Errorf("got %s, want the copy beside the executable %s", got, beside)
	}
	env[ortlib.LibraryEnv] = sys
	if got := find(); got != sys {
		t.Errorf("got %s, want $%s", got, ortlib.LibraryEnv)
	}
	places.Flag = ld
	if got := find(); got != ld {
		t.Errorf("got %s, want the flag's", got)
	}

	// A flag or variable naming nothing is an error, not a fallback.
	places.Flag = filepath.Join(root, "missing.so")
	if _, err := ortlib.Find(places); !errors.Is(err, ortlib.ErrNotFound) || !strings.Contains(err.Error(), "--onnxruntime-lib names "+places.Flag) {
		t.Errorf("missing flag file: %v", err)
	}
	places.Flag = ""
	env[ortlib.LibraryEnv] = filepath.Join(root, "gone.so")
	if _, err := ortlib.Find(places); !errors.Is(err, ortlib.ErrNotFound) || !strings.Contains(err.Error(), "$ONNXRUNTIME_LIB names") {
		t.Errorf("missing env file: %v", err)
	}
}

// The install script installs the version jetinfer looks for, where it
// looks.
func TestInstallScriptAgrees(t *testing.T) {
	data, err := os.ReadFile("../../scripts/install-ort.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^version=(\S+)`).FindSubmatch(data)
	if m == nil || string(m[1]) != ortlib.Version {
		t.Errorf("install-ort.sh installs version %q, ortlib.Version is %s", m, ortlib.Version)
	}
	if !strings.Contains(string(data), "dir=${XDG_CACHE_HOME:-$HOME/.cache}/jetinfer/onnxruntime/$version") {
		t.Errorf("install-ort.sh does not install into ortlib.CacheDir")
	}
}
