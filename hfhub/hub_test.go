package hfhub_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/hfhub/hubtest"
)

const repoID = "intfloat/multilingual-e5-small"

// bigFile is an LFS-sized pseudo-random file: large enough that a cut
// mid-body leaves a real partial download.
func bigFile(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func gitBlobID(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

type fixture struct {
	hub   *hubtest.Hub
	files map[string][]byte
	cache string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	h := hubtest.Start()
	t.Cleanup(h.Close)
	files := map[string][]byte{
		"onnx/model.onnx": bigFile(3 << 20),
		"tokenizer.json":  []byte(`{"model":{"type":"Unigram"}}`),
		"config.json":     []byte(`{"model_type":"bert"}`),
	}
	h.Add(hubtest.Repo{ID: repoID, Files: files})
	return &fixture{hub: h, files: files, cache: t.TempDir()}
}

func (f *fixture) client(t *testing.T, adjust func(*hfhub.Config)) *hfhub.Client {
	t.Helper()
	cfg := hfhub.Config{Endpoint: f.hub.URL(), CacheDir: f.cache, Attempts: 4, Backoff: time.Millisecond, StallTimeout: 5 * time.Second}
	if adjust != nil {
		adjust(&cfg)
	}
	c, err := hfhub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// resolved is a client of the fixture's Hub and its repository at main.
func (f *fixture) resolved(t *testing.T, adjust func(*hfhub.Config)) (*hfhub.Client, hfhub.Repo) {
	t.Helper()
	c := f.client(t, adjust)
	repo, err := c.Resolve(context.Background(), repoID, "main")
	if err != nil {
		t.Fatal(err)
	}
	return c, repo
}

func TestDownloadIntoTheHuggingFaceCache(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, func(c *hfhub.Config) { c.Token, c.TokenSource = "hf_secret", "HF_TOKEN" })
	ctx := context.Background()
	repo, err := c.Resolve(ctx, repoID, "")
	if err != nil {
		t.Fatal(err)
	}
	if repo.Commit != f.hub.Commit(repoID) || repo.Revision != "main" {
		t.Fatalf("resolved %+v, want commit %s of main", repo, f.hub.Commit(repoID))
	}
	if got, ok := repo.File("onnx/model.onnx"); !ok || got.Size != 3<<20 {
		t.Fatalf("listing has onnx/model.onnx %+v %v, want %d bytes", got, ok, 3<<20)
	}
	var progressed atomic.Int64
	for path, want := range f.files {
		got, err := c.Download(ctx, repo, path, func(n int64) { progressed.Add(n) })
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(got)
		if err != nil || !bytes.Equal(data, want) {
			t.Fatalf("%s: %d bytes, err %v; want the Hub's %d", path, len(data), err, len(want))
		}
	}
	if want := int64(len(f.files["onnx/model.onnx"]) + len(f.files["tokenizer.json"]) + len(f.files["config.json"])); progressed.Load() != want {
		t.Errorf("progress reported %d bytes, want %d", progressed.Load(), want)
	}

	// huggingface_hub's layout, so Python tools and jetinfer share files.
	root := filepath.Join(f.cache, "models--intfloat--multilingual-e5-small")
	for path, target := range map[string]string{
		"onnx/model.onnx": "../../../blobs/" + sha256Hex(f.files["onnx/model.onnx"]),
		"tokenizer.json":  "../../blobs/" + gitBlobID(f.files["tokenizer.json"]),
	} {
		link, err := os.Readlink(filepath.Join(root, "snapshots", repo.Commit, path))
		if err != nil || link != target {
			t.Errorf("snapshot %s links to %q (%v), want %q", path, link, err, target)
		}
	}
	if ref, err := os.ReadFile(filepath.Join(root, "refs", "main")); err != nil || string(ref) != repo.Commit {
		t.Errorf("refs/main = %q, %v; want %s", ref, err, repo.Commit)
	}

	// The token goes to the Hub and never to the CDN; the metadata comes
	// from HEADs on the Hub (two for a plain file, whose relative redirect
	// is followed), the bytes of the LFS file from the CDN.
	var cdnGets, hubHeads int
	for _, r := range f.hub.Requests() {
		switch r.Host {
		case "cdn":
			cdnGets++
			if r.Authorization != "" {
				t.Errorf("the CDN received Authorization %q", r.Authorization)
			}
		case "hub":
			if r.Authorization != "Bearer hf_secret" {
				t.Errorf("%s %s reached the Hub with Authorization %q", r.Method, r.Path, r.Authorization)
			}
			if r.Method == "HEAD" {
				hubHeads++
			}
		}
	}
	if cdnGets != 1 || hubHeads != 5 {
		t.Errorf("%d CDN GETs and %d Hub HEADs, want 1 and 5", cdnGets, hubHeads)
	}

	// A second download of any file touches nothing.
	before := len(f.hub.Requests())
	for path := range f.files {
		if _, err := c.Download(ctx, repo, path, nil); err != nil {
			t.Fatal(err)
		}
	}
	if after := len(f.hub.Requests()); after != before {
		t.Errorf("downloading cached files sent %d requests", after-before)
	}
}

func TestDownloadResumesACutConnection(t *testing.T) {
	f := newFixture(t)
	f.hub.CutAfter("onnx/model.onnx", 1<<20)
	f.hub.CutAfter("onnx/model.onnx", 1<<20) // the resumed request is cut too
	c := f.client(t, nil)
	ctx := context.Background()
	repo, err := c.Resolve(ctx, repoID, "main")
	if err != nil {
		t.Fatal(err)
	}
	var progressed atomic.Int64
	p, err := c.Download(ctx, repo, "onnx/model.onnx", func(n int64) { progressed.Add(n) })
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	if !bytes.Equal(data, f.files["onnx/model.onnx"]) {
		t.Fatalf("resumed file differs from the Hub's")
	}
	if progressed.Load() != 3<<20 {
		t.Errorf("progress %d, want %d", progressed.Load(), 3<<20)
	}
	var ranges []string
	for _, r := range f.hub.Requests() {
		if r.Host == "cdn" {
			ranges = append(ranges, r.Range)
		}
	}
	if want := []string{"", "bytes=1048576-", "bytes=2097152-"}; fmt.Sprint(ranges) != fmt.Sprint(want) {
		t.Errorf("CDN ranges %q, want %q", ranges, want)
	}
	assertNoPartials(t, f.cache)
}

func TestDownloadRefusesBytesThatDoNotMatchTheEtag(t *testing.T) {
	f := newFixture(t)
	c, repo := f.resolved(t, nil)
	ctx := context.Background()
	for _, path := range []string{"onnx/model.onnx", "tokenizer.json"} {
		f.hub.Corrupt(path, 1)
		_, err := c.Download(ctx, repo, path, nil)
		if !errors.Is(err, hfhub.ErrChecksum) {
			t.Fatalf("%s: corrupt bytes gave %v, want ErrChecksum", path, err)
		}
		if _, err := os.Lstat(filepath.Join(f.cache, "models--intfloat--multilingual-e5-small", "snapshots", repo.Commit, path)); !os.IsNotExist(err) {
			t.Errorf("%s: a refused file is in the snapshot (%v)", path, err)
		}
		assertNoPartials(t, f.cache)
		// The next attempt starts clean and succeeds.
		p, err := c.Download(ctx, repo, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(p); !bytes.Equal(data, f.files[path]) {
			t.Errorf("%s: the retried download differs", path)
		}
	}
}

// assertNoPartials fails if a .incomplete file is left in the cache.
func assertNoPartials(t *testing.T, cache string) {
	t.Helper()
	_ = filepath.WalkDir(cache, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".incomplete") {
			t.Errorf("partial download left: %s", p)
		}
		return nil
	})
}

func TestHubErrors(t *testing.T) {
	f := newFixture(t)
	f.hub.Add(hubtest.Repo{ID: "org/gated", Gated: true, Files: map[string][]byte{"model.onnx": []byte("onnx")}})
	f.hub.AllowToken("hf_granted")
	ctx := context.Background()
	for _, tc := range []struct {
		name, repo, rev, file, token string
		want                         error
		text                         string
	}{
		{"unknown repository without a token", "org/nothing", "main", "", "", hfhub.ErrRepoNotFound,
			"org/nothing was not found on " + f.hub.URL() + " or is private or gated (set HF_TOKEN or write a token to $HF_HOME/token)"},
		{"unknown repository with a token", "org/nothing", "main", "", "hf_granted", hfhub.ErrRepoNotFound, "repository not found: org/nothing on"},
		{"unknown revision", repoID, "v9", "", "", hfhub.ErrRevisionNotFound, "revision not found: intfloat/multilingual-e5-small@v9"},
		{"missing file", repoID, "main", "onnx/model_O4.onnx", "", hfhub.ErrEntryNotFound, "file not found in the repository: onnx/model_O4.onnx in intfloat/multilingual-e5-small"},
		{"gated without a token", "org/gated", "main", "", "", hfhub.ErrUnauthorized, "org/gated is gated: accept its conditions on " + f.hub.URL() + "/org/gated and pass a token (set HF_TOKEN"},
		{"gated with a token without access", "org/gated", "main", "", "hf_other", hfhub.ErrUnauthorized, "the token from HF_TOKEN was refused or has no access"},
		{"gated with access", "org/gated", "main", "model.onnx", "hf_granted", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.client(t, func(c *hfhub.Config) { c.Token, c.TokenSource = tc.token, "HF_TOKEN" })
			repo, err := c.Resolve(ctx, tc.repo, tc.rev)
			if err == nil && tc.file != "" {
				_, err = c.Download(ctx, repo, tc.file, nil)
			}
			if !errors.Is(err, tc.want) || (tc.want != nil && !strings.Contains(err.Error(), tc.text)) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

func TestRetriesServerErrorsAndStalls(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, func(c *hfhub.Config) { c.StallTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	repo, err := c.Resolve(ctx, repoID, "main")
	if err != nil {
		t.Fatal(err)
	}
	f.hub.Fail("config.json", 2)
	f.hub.Hang("onnx/model.onnx", 1)
	for _, path := range []string{"config.json", "onnx/model.onnx"} {
		if _, err := c.Download(ctx, repo, path, nil); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if n := f.hub.Downloads(repoID, "onnx/model.onnx"); n != 2 {
		t.Errorf("onnx/model.onnx fetched %d times, want 2 (a stall, then the file)", n)
	}

	// A server that keeps failing: the attempts are bounded.
	f.hub.Fail("tokenizer.json", 100)
	start := len(f.hub.Requests())
	_, err = c.Download(ctx, repo, "tokenizer.json", nil)
	if !errors.Is(err, hfhub.ErrUnavailable) || !strings.Contains(err.Error(), "4 attempts") || !strings.Contains(err.Error(), "500 Internal Server Error") {
		t.Fatalf("got %v, want ErrUnavailable after 4 attempts of 500", err)
	}
	if n := len(f.hub.Requests()) - start; n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

func TestOfflineUsesOnlyTheCache(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	offline := f.client(t, func(c *hfhub.Config) { c.Offline = true })
	_, err := offline.Resolve(ctx, repoID, "main")
	if !errors.Is(err, hfhub.ErrOffline) || !strings.Contains(err.Error(), "HF_HUB_OFFLINE is set and the cache "+f.cache+" has no snapshot of it") {
		t.Fatalf("offline with an empty cache: %v", err)
	}
	online := f.client(t, nil)
	repo, err := online.Resolve(ctx, repoID, "main")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := online.Download(ctx, repo, "tokenizer.json", nil); err != nil {
		t.Fatal(err)
	}
	before := len(f.hub.Requests())
	cached, err := offline.Resolve(ctx, repoID, "main")
	if err != nil {
		t.Fatal(err)
	}
	if cached.Commit != repo.Commit || len(cached.Files) != 1 || cached.Files[0].Path != "tokenizer.json" || cached.Files[0].Size != int64(len(f.files["tokenizer.json"])) {
		t.Fatalf("offline listing %+v", cached)
	}
	if _, err := offline.Download(ctx, cached, "tokenizer.json", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := offline.Download(ctx, cached, "onnx/model.onnx", nil); !errors.Is(err, hfhub.ErrOffline) {
		t.Fatalf("offline download of an uncached file: %v", err)
	}
	if n := len(f.hub.Requests()) - before; n != 0 {
		t.Errorf("offline client sent %d requests", n)
	}

	// An unreachable Hub: the cache answers what it has.
	f.hub.HangAll(true)
	defer f.hub.HangAll(false)
	flaky := f.client(t, func(c *hfhub.Config) { c.Attempts, c.StallTimeout = 2, 100*time.Millisecond })
	if got, err := flaky.Resolve(ctx, repoID, "main"); err != nil || got.Commit != repo.Commit {
		t.Fatalf("unreachable Hub with a cached ref: %+v, %v", got, err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	home := t.TempDir()
	env := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	cfg := hfhub.ConfigFromEnv(env("HOME", home))
	if cfg.Endpoint != hfhub.DefaultEndpoint || cfg.CacheDir != filepath.Join(home, ".cache/huggingface/hub") || cfg.Token != "" || cfg.Offline {
		t.Errorf("defaults: %+v", cfg)
	}
	hfHome := filepath.Join(home, "hf")
	if err := os.MkdirAll(hfHome, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hfHome, "token"), []byte("hf_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = hfhub.ConfigFromEnv(env("HOME", home, "HF_HOME", hfHome, "HF_ENDPOINT", "http://mirror.local/", "HF_HUB_OFFLINE", "1"))
	if cfg.Endpoint != "http://mirror.local" || cfg.CacheDir != filepath.Join(hfHome, "hub") || cfg.Token != "hf_file" ||
		cfg.TokenSource != filepath.Join(hfHome, "token") || !cfg.Offline {
		t.Errorf("HF_HOME with a token file: %+v", cfg)
	}
	cfg = hfhub.ConfigFromEnv(env("HF_HOME", hfHome, "HF_TOKEN", "hf_env", "HF_HUB_CACHE", "/srv/hub", "XDG_CACHE_HOME", "/x"))
	if cfg.Token != "hf_env" || cfg.TokenSource != "HF_TOKEN" || cfg.CacheDir != "/srv/hub" {
		t.Errorf("HF_TOKEN and HF_HUB_CACHE: %+v", cfg)
	}
	if cfg := hfhub.ConfigFromEnv(env("XDG_CACHE_HOME", "/x")); cfg.CacheDir != "/x/huggingface/hub" {
		t.Errorf("XDG_CACHE_HOME: %+v", cfg)
	}
}

func TestDownloadRecoversFromTheCDN(t *testing.T) {
	f := newFixture(t)
	c, repo := f.resolved(t, nil)
	ctx := context.Background()
	const graph = "onnx/model.onnx"
	heads := func() int {
		n := 0
		for _, r := range f.hub.Requests() {
			if r.Method == "HEAD" && strings.HasSuffix(r.Path, "/"+graph) {
				n++
			}
		}
		return n
	}

	// A signed URL that expired: the Hub is asked for a fresh one.
	f.hub.Expire(graph, 1)
	if _, err := c.Download(ctx, repo, graph, nil); err != nil {
		t.Fatal(err)
	}
	if n := heads(); n != 2 {
		t.Errorf("%d metadata requests, want 2 (the second for a fresh URL)", n)
	}

	// A partial download left by an earlier run is resumed; a server that
	// ignores Range sends the whole file again, and the file is right.
	for _, ignore := range []bool{false, true} {
		cache := t.TempDir()
		c := f.client(t, func(c *hfhub.Config) { c.CacheDir = cache })
		if ignore {
			f.hub.IgnoreRange(graph)
		}
		want := f.files[graph]
		blobs := filepath.Join(cache, "models--intfloat--multilingual-e5-small", "blobs")
		if err := os.MkdirAll(blobs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(blobs, sha256Hex(want)+".incomplete"), want[:1000], 0o644); err != nil {
			t.Fatal(err)
		}
		start := len(f.hub.Requests())
		var progressed atomic.Int64
		p, err := c.Download(ctx, repo, graph, func(n int64) { progressed.Add(n) })
		if err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(p); !bytes.Equal(data, want) {
			t.Fatalf("ignore range %v: the file differs from the Hub's", ignore)
		}
		if progressed.Load() != int64(len(want)) {
			t.Errorf("ignore range %v: progress %d, want %d", ignore, progressed.Load(), len(want))
		}
		var ranges []string
		for _, r := range f.hub.Requests()[start:] {
			if r.Host == "cdn" {
				ranges = append(ranges, r.Range)
			}
		}
		if len(ranges) != 1 || ranges[0] != "bytes=1000-" {
			t.Errorf("ignore range %v: CDN ranges %q, want one resume at 1000", ignore, ranges)
		}
	}
}

func TestTokenStaysWithTheEndpoint(t *testing.T) {
	f := newFixture(t)
	// An endpoint that redirects everything to the fake Hub: the same host
	// name on another port, which Go's client would send the token to.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, f.hub.URL()+r.URL.RequestURI(), http.StatusFound)
	}))
	t.Cleanup(front.Close)
	c := f.client(t, func(c *hfhub.Config) { c.Endpoint, c.Token = front.URL, "hf_secret" })
	if _, err := c.Resolve(context.Background(), repoID, "main"); err != nil {
		t.Fatal(err)
	}
	reqs := f.hub.Requests()
	if len(reqs) != 1 || reqs[0].Authorization != "" {
		t.Errorf("the redirected listing reached another port with %+v", reqs)
	}
}

func TestUnsafeNamesAreRefused(t *testing.T) {
	f := newFixture(t)
	f.hub.Add(hubtest.Repo{ID: "org/evil", Files: map[string][]byte{"../../escape.onnx": []byte("x"), "model.onnx": []byte("y")}})
	c := f.client(t, nil)
	ctx := context.Background()
	repo, err := c.Resolve(ctx, "org/evil", "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(repo.Files) != 1 || repo.Files[0].Path != "model.onnx" {
		t.Errorf("listing kept %+v", repo.Files)
	}
	if _, err := c.Download(ctx, repo, "../../escape.onnx", nil); err == nil || !strings.Contains(err.Error(), `invalid file path "../../escape.onnx"`) {
		t.Errorf("download of a path outside the snapshot: %v", err)
	}
	if _, err := c.Resolve(ctx, "a--b/c", "main"); err == nil {
		t.Error(`"a--b/c" accepted: it shares models--a--b--c with "a/b--c"`)
	}
}

// TestFullDiskFailsAtOnce: a write that finds the disk full ends the
// download with the cause, removes the partial file and is not retried.
func TestFullDiskFailsAtOnce(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	f := newFixture(t)
	c, repo := f.resolved(t, nil)
	ctx := context.Background()
	// The partial file is /dev/full: every write fails with ENOSPC.
	blobs := filepath.Join(f.cache, "models--intfloat--multilingual-e5-small", "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(blobs, sha256Hex(f.files["onnx/model.onnx"])+".incomplete")
	if err := os.Symlink("/dev/full", part); err != nil {
		t.Fatal(err)
	}
	_, err := c.Download(ctx, repo, "onnx/model.onnx", nil)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("got %v, want ENOSPC", err)
	}
	if n := f.hub.Downloads(repoID, "onnx/model.onnx"); n != 1 {
		t.Errorf("%d downloads, want 1: a full disk is not retried", n)
	}
	if _, err := os.Lstat(part); !os.IsNotExist(err) {
		t.Errorf("the partial file stays (%v)", err)
	}
}

// TestConcurrentDownloadsShareOneTransfer: two downloads of one file into
// one cache (two goroutines here, two processes alike: the lock is a file
// lock) transfer it once.
func TestConcurrentDownloadsShareOneTransfer(t *testing.T) {
	f := newFixture(t)
	f.hub.Slow("onnx/model.onnx", 300*time.Millisecond) // the second asks while the first transfers
	c1, repo := f.resolved(t, nil)
	c2 := f.client(t, nil)
	ctx := context.Background()
	paths := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, c := range []*hfhub.Client{c1, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = c.Download(ctx, repo, "onnx/model.onnx", nil)
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if data, _ := os.ReadFile(paths[i]); !bytes.Equal(data, f.files["onnx/model.onnx"]) {
			t.Errorf("download %d differs from the Hub's file", i)
		}
	}
	if n := f.hub.Downloads(repoID, "onnx/model.onnx"); n != 1 {
		t.Errorf("transferred %d times, want 1", n)
	}
}
