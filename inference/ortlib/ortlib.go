// Package ortlib finds the ONNX Runtime shared library jetinfer loads, in
// the places a user may have put it, without loading it: pure Go, so that
// the search and its error are testable without ONNX Runtime.
package ortlib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Version is the ONNX Runtime release jetinfer is built and tested against
// (C API 24, as github.com/yalue/onnxruntime_go v1.27.0 expects).
const Version = "1.24.3"

// LibraryEnv names the environment variable that names the library.
const LibraryEnv = "ONNXRUNTIME_LIB"

// SOName is the library's file name on Linux.
const SOName = "libonnxruntime.so.1"

// ErrNotFound: no place holds the library.
var ErrNotFound = errors.New("ONNX Runtime library not found")

// Places are where Find looks, in order.
type Places struct {
	// Flag is --onnxruntime-lib; when set it is the only place.
	Flag string
	// Lookup reads the environment (ONNXRUNTIME_LIB, XDG_CACHE_HOME, HOME,
	// LD_LIBRARY_PATH).
	Lookup func(string) (string, bool)
	// Executable is the running binary's path (os.Executable).
	Executable string
	// SystemDirs are the system library directories after LD_LIBRARY_PATH.
	SystemDirs []string
}

// DefaultPlaces reads the process's environment and executable.
func DefaultPlaces(flag string) Places {
	exe, _ := os.Executable()
	return Places{Flag: flag, Lookup: os.LookupEnv, Executable: exe,
		SystemDirs: []string{"/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
			"/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/lib"}}
}

// CacheDir is where scripts/install-ort.sh installs the library:
// $XDG_CACHE_HOME/jetinfer/onnxruntime/<version>, ~/.cache by default.
func CacheDir(lookup func(string) (string, bool)) string {
	base, _ := lookup("XDG_CACHE_HOME")
	if base == "" {
		home, _ := lookup("HOME")
		if home == "" {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "jetinfer", "onnxruntime", Version)
}

// Find returns the first place that holds the library: the flag,
// $ONNXRUNTIME_LIB, beside the executable, the install script's cache
// directory, then $LD_LIBRARY_PATH and the system library directories. A
// flag or variable naming a missing file is an error of its own, not a
// reason to look further.
func Find(p Places) (string, error) {
	lookup := p.Lookup
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	if p.Flag != "" {
		return p.Flag, exists(p.Flag, "--onnxruntime-lib")
	}
	if v, _ := lookup(LibraryEnv); v != "" {
		return v, exists(v, "$"+LibraryEnv)
	}
	var tried []string
	try := func(dir string) (string, bool) {
		if dir == "" {
			return "", false
		}
		f := filepath.Join(dir, SOName)
		tried = append(tried, f)
		st, err := os.Stat(f)
		return f, err == nil && st.Mode().IsRegular()
	}
	var dirs []string
	if p.Executable != "" {
		dirs = append(dirs, filepath.Dir(p.Executable))
	}
	dirs = append(dirs, CacheDir(lookup))
	if v, _ := lookup("LD_LIBRARY_PATH"); v != "" {
		dirs = append(dirs, filepath.SplitList(v)...)
	}
	dirs = append(dirs, p.SystemDirs...)
	for _, d := range dirs {
		if f, ok := try(d); ok {
			return f, nil
		}
	}
	return "", fmt.Errorf("%w: looked for %s in %s, and --onnxruntime-lib and $%s are not set. "+
		"Install ONNX Runtime %s: run scripts/install-ort.sh from a jetinfer checkout (it installs into %s), "+
		"or unpack onnxruntime-linux-x64-%s.tgz from https://github.com/microsoft/onnxruntime/releases/tag/v%s "+
		"and pass --onnxruntime-lib DIR/lib/%s",
		ErrNotFound, SOName, strings.Join(tried, ", "), LibraryEnv, Version, CacheDir(lookup), Version, Version, SOName)
}

func exists(path, from string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %s names %s: %w", ErrNotFound, from, path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s names %s, which is not a file", ErrNotFound, from, path)
	}
	return nil
}
