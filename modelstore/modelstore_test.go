package modelstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/modelstore"
)

// startNATS runs a real embedded nats-server on a random port and returns
// its client URL and a JetStream context on it.
func startNATS(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), js
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// artifact is a small model directory: files by relative path.
var artifact = map[string]string{
	"model.onnx":                        strings.Repeat("onnx-bytes ", 30000), // > one 128 KiB chunk
	"tokenizer.json":                    `{"version":"1.0"}`,
	"config.json":                       `{"hidden_size":4}`,
	"1_Pooling/config.json":             `{"pooling_mode_mean_tokens":true}`,
	"sentence_bert_config.json":         `{"max_seq_length":128}`,
	".git/HEAD":                         "skipped",
	"modules.json":                      `[]`,
	"2_Dense/deeper/nested/weights.bin": "\x00\x01\x02",
}

func writeArtifact(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func openStore(t *testing.T) (*modelstore.Store, jetstream.JetStream) {
	t.Helper()
	_, js := startNATS(t)
	s, err := modelstore.Open(ctxT(t), js, modelstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

func TestImportListFetchDelete(t *testing.T) {
	ctx := ctxT(t)
	s, _ := openStore(t)
	dir := writeArtifact(t, artifact)

	var calls int
	var lastDone, lastTotal int64
	m, err := s.Import(ctx, "my-model.v1", dir, modelstore.ImportOptions{Progress: func(done, total int64) {
		calls++
		if done < lastDone {
			t.Errorf("progress went back: %d after %d", done, lastDone)
		}
		lastDone, lastTotal = done, total
	}})
	if err != nil {
		t.Fatal(err)
	}
	var wantTotal int64
	for p, c := range artifact {
		if !strings.HasPrefix(p, ".") {
			wantTotal += int64(len(c))
		}
	}
	if calls < 3 || lastDone != wantTotal || lastTotal != wantTotal {
		t.Errorf("progress: %d calls, last %d/%d; want done = total = %d", calls, lastDone, lastTotal, wantTotal)
	}

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ModelID != "my-model.v1" || list[0].Size != wantTotal || list[0].Digest != m.Digest || !list[0].Created.Equal(m.Created) {
		t.Fatalf("List = %+v; want one my-model.v1 of %d bytes", list, wantTotal)
	}
	got := map[string]modelstore.File{}
	for _, f := range list[0].Files {
		got[f.Path] = f
	}
	if len(got) != len(artifact)-1 {
		t.Errorf("manifest files = %+v; want every file but .git/HEAD", list[0].Files)
	}
	for p, c := range artifact {
		f, ok := got[p]
		if strings.HasPrefix(p, ".") {
			if ok {
				t.Errorf("dot file %s imported", p)
			}
			continue
		}
		if !ok || f.Size != int64(len(c)) || f.Digest != modelstore.Digest([]byte(c)) {
			t.Errorf("file %s = %+v; want size %d digest %s", p, f, len(c), modelstore.Digest([]byte(c)))
		}
	}

	// Fetch reproduces the bytes.
	cache := t.TempDir()
	fetched, err := s.Fetch(ctx, "my-model.v1", cache)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "my-model.v1", m.Digest); fetched != want {
		t.Errorf("Fetch dir = %s; want %s", fetched, want)
	}
	checkDir(t, fetched)
	before := statAll(t, fetched)

	// A second fetch uses the cache: the same files, not new ones.
	again, err := s.Fetch(ctx, "my-model.v1", cache)
	if err != nil || again != fetched {
		t.Fatalf("second Fetch = %s, %v", again, err)
	}
	for p, st := range statAll(t, fetched) {
		if !os.SameFile(st, before[p]) || !st.ModTime().Equal(before[p].ModTime()) {
			t.Errorf("second Fetch replaced %s", p)
		}
	}

	// A file of ours in the cached directory: it stays while the cache is
	// used and goes when the directory is downloaded again. (Inode
	// comparisons cannot tell that: a new file may reuse a freed inode.)
	marker := filepath.Join(fetched, "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(ctx, "my-model.v1", cache); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("Fetch of a verified cache replaced it: %v", err)
	}

	// A corrupted cached file (same size, other bytes) is detected and the
	// model downloaded again.
	onnx := filepath.Join(fetched, "model.onnx")
	corrupt := []byte(artifact["model.onnx"])
	corrupt[100] ^= 0xff
	if err := os.WriteFile(onnx, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := s.Fetch(ctx, "my-model.v1", cache)
	if err != nil || third != fetched {
		t.Fatalf("Fetch after corruption = %s, %v", third, err)
	}
	checkDir(t, third)
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("Fetch after corruption kept the old directory (marker: %v)", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "my-model.v1")); len(entries) != 1 {
		t.Errorf("cache holds %d entries, want only the model directory (no temporary ones)", len(entries))
	}

	// Same id again.
	if _, err := s.Import(ctx, "my-model.v1", dir, modelstore.ImportOptions{}); !errors.Is(err, modelstore.ErrExists) {
		t.Errorf("second Import: %v; want ErrExists", err)
	}

	// Delete.
	if err := s.Delete(ctx, "my-model.v1"); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List after delete = %+v, %v", list, err)
	}
	if _, err := s.Fetch(ctx, "my-model.v1", t.TempDir()); !errors.Is(err, modelstore.ErrNotFound) {
		t.Errorf("Fetch after delete: %v; want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "my-model.v1"); !errors.Is(err, modelstore.ErrNotFound) {
		t.Errorf("second Delete: %v; want ErrNotFound", err)
	}
	// The id can be imported again.
	if _, err := s.Import(ctx, "my-model.v1", dir, modelstore.ImportOptions{}); err != nil {
		t.Errorf("Import after delete: %v", err)
	}
}

func TestReplace(t *testing.T) {
	ctx := ctxT(t)
	s, js := openStore(t)
	v1 := writeArtifact(t, map[string]string{"model.onnx": "one", "tokenizer.json": "{}", "old.txt": "x"})
	v2 := writeArtifact(t, map[string]string{"model.onnx": "two", "tokenizer.json": "{}"})
	m1, err := s.Import(ctx, ".elser_model_2", v1, modelstore.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := s.Import(ctx, ".elser_model_2", v2, modelstore.ImportOptions{Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if m1.Digest == m2.Digest || m1.Generation == m2.Generation {
		t.Errorf("replace kept the version: %+v %+v", m1, m2)
	}
	dir, err := s.Fetch(ctx, ".elser_model_2", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "model.onnx")); string(b) != "two" {
		t.Errorf("model.onnx = %q after replace", b)
	}
	// The old generation's objects are gone.
	obs, _ := js.ObjectStore(ctx, modelstore.Bucket)
	objs, _ := obs.List(ctx)
	for _, o := range objs {
		if strings.Contains(o.Name, m1.Generation) {
			t.Errorf("object %s of the replaced import is left", o.Name)
		}
	}
}

func TestIncompleteImportInvisible(t *testing.T) {
	ctx := ctxT(t)
	s, js := openStore(t)
	obs, err := js.ObjectStore(ctx, modelstore.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	// An import interrupted before its manifest: only a file object.
	if _, err := obs.PutString(ctx, "half-done/20250101T000000Z-00000000/model.onnx", "partial"); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List = %+v, %v; want nothing", list, err)
	}
	if _, err := s.Fetch(ctx, "half-done", t.TempDir()); !errors.Is(err, modelstore.ErrNotFound) {
		t.Errorf("Fetch: %v; want ErrNotFound", err)
	}
	// Delete reports not found but clears the leftovers.
	if err := s.Delete(ctx, "half-done"); !errors.Is(err, modelstore.ErrNotFound) {
		t.Errorf("Delete: %v; want ErrNotFound", err)
	}
	if _, err := obs.GetInfo(ctx, "half-done/20250101T000000Z-00000000/model.onnx"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("leftover after Delete: %v", err)
	}
}

func TestCorruptObjectDetected(t *testing.T) {
	ctx := ctxT(t)
	s, js := openStore(t)
	m, err := s.Import(ctx, "m", writeArtifact(t, map[string]string{"model.onnx": "good", "tokenizer.json": "{}"}), modelstore.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite the stored file with other bytes behind the manifest's back.
	obs, _ := js.ObjectStore(ctx, modelstore.Bucket)
	if _, err := obs.PutString(ctx, "m/"+m.Generation+"/model.onnx", "evil"); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := s.Fetch(ctx, "m", cache); !errors.Is(err, modelstore.ErrDigestMismatch) {
		t.Errorf("Fetch: %v; want ErrDigestMismatch", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "m")); len(entries) != 0 {
		t.Errorf("cache after a failed fetch holds %v", entries)
	}
}

func TestValidation(t *testing.T) {
	ctx := ctxT(t)
	s, _ := openStore(t)
	good := writeArtifact(t, map[string]string{"model.onnx": "x", "tokenizer.json": "{}"})
	for _, id := range []string{"", "My-Model", "-a", "a-", "a/b", "a b", "a.", ".custom", strings.Repeat("a", 65), "a*"} {
		if _, err := s.Import(ctx, id, good, modelstore.ImportOptions{}); !errors.Is(err, modelstore.ErrInvalid) {
			t.Errorf("Import(%q): %v; want ErrInvalid", id, err)
		}
	}
	for _, id := range []string{"a", "a1", "my_model-2.0", strings.Repeat("a", 64), ".multilingual-e5-small_linux-x86_64", ".rerank-v1"} {
		if err := modelstore.ValidateModelID(id); err != nil {
			t.Errorf("ValidateModelID(%q): %v", id, err)
		}
	}
	noONNX := writeArtifact(t, map[string]string{"tokenizer.json": "{}", "sub/model.onnx": "x"})
	if _, err := s.Import(ctx, "no-onnx", noONNX, modelstore.ImportOptions{}); !errors.Is(err, modelstore.ErrInvalid) || !strings.Contains(err.Error(), "no model.onnx") {
		t.Errorf("Import without model.onnx: %v", err)
	}
	noTok := writeArtifact(t, map[string]string{"model.onnx": "x"})
	if _, err := s.Import(ctx, "no-tok", noTok, modelstore.ImportOptions{}); !errors.Is(err, modelstore.ErrInvalid) {
		t.Errorf("Import without tokenizer.json: %v", err)
	}
	if _, err := s.Import(ctx, "missing", filepath.Join(good, "nope"), modelstore.ImportOptions{}); !errors.Is(err, modelstore.ErrInvalid) {
		t.Errorf("Import of a missing dir: %v", err)
	}
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List = %+v, %v; want nothing", list, err)
	}
}

func checkDir(t *testing.T, dir string) {
	t.Helper()
	for p, c := range artifact {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if strings.HasPrefix(p, ".") {
			if err == nil {
				t.Errorf("fetched dot file %s", p)
			}
			continue
		}
		if err != nil || !bytes.Equal(b, []byte(c)) {
			t.Errorf("fetched %s: %d bytes, %v; want %d bytes", p, len(b), err, len(c))
		}
	}
}

func statAll(t *testing.T, dir string) map[string]os.FileInfo {
	t.Helper()
	out := map[string]os.FileInfo{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		st, err := os.Stat(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = st
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFetchCancelledMidFile: a fetch whose connection closes in the middle
// of a file and whose context is then cancelled returns at once; nats.go's
// reader alone would wait for the transfer's deadline (minutes for a large
// model), holding up the worker's shutdown.
func TestFetchCancelledMidFile(t *testing.T) {
	url, js := startNATS(t)
	store, err := modelstore.Open(ctxT(t), js, modelstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	big := map[string]string{"model.onnx": strings.Repeat("0123456789abcdef", 6<<20), "tokenizer.json": "{}"} // 96 MiB
	if _, err := store.Import(ctxT(t), "big", writeArtifact(t, big), modelstore.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js2, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	fetcher, err := modelstore.Open(ctxT(t), js2, modelstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := fetcher.Fetch(ctx, "big", cache)
		done <- err
	}()
	// Wait until the graph is partly written, then cut the connection.
	deadline := time.Now().Add(30 * time.Second)
	for {
		parts, _ := filepath.Glob(filepath.Join(cache, "big", ".fetch-*", "model.onnx"))
		if len(parts) == 1 {
			if st, err := os.Stat(parts[0]); err == nil && st.Size() > 0 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the fetch ended before it could be cut: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the fetch never started writing")
		}
		time.Sleep(time.Millisecond)
	}
	nc.Close()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("a cancelled fetch returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled fetch still waits 10 s later")
	}
}
