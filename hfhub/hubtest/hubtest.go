// Package hubtest runs a fake Hugging Face Hub on loopback for tests: the
// Hub's API and resolve routes with the real Hub's status codes and
// headers, and a CDN on another host that LFS files redirect to, with the
// faults a real download meets (a cut connection, corrupt bytes, 500s, a
// server that hangs) on demand.
//
// What it imitates, from huggingface_hub's file_download.py and
// utils/_http.py and the Hub's answers:
//   - GET /api/models/{repo}/revision/{rev}[?blobs=true]: sha, siblings
//     (rfilename; size and lfs with blobs=true).
//   - HEAD/GET /{repo}/resolve/{rev}/{path}: a plain (git) file answers 307
//     to a relative /api/resolve-cache/ URL whose answer has ETag = its git
//     blob id; an LFS file answers 302 to the CDN with
//     X-Linked-Etag = its SHA-256 and X-Linked-Size, headers the CDN's
//     answer does not repeat. Both carry X-Repo-Commit.
//   - 404 X-Error-Code RevisionNotFound / EntryNotFound (with X-Repo-Commit);
//     401 RepoNotFound for an unknown repository without a token (404 with
//     one); 401 GatedRepo for a gated repository without a token, 403 with
//     a token that has no access.
//   - Range requests answered 206 by both hosts.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LFSThreshold is the size from which a file is stored in LFS, unless the
// Repo says otherwise (the Hub puts *.onnx in LFS whatever the size).
const LFSThreshold = 10 << 20

// Repo is one model repository at one commit.
type Repo struct {
	ID     string
	Commit string
	// Branches lists the revisions that resolve to Commit besides itself
	// (default: main).
	Branches []string
	Files    map[string][]byte
	// Gated repositories need a token in Tokens.
	Gated bool
}

func (r *Repo) lfs(path string) bool {
	return strings.HasSuffix(path, ".onnx") || strings.HasSuffix(path, ".onnx_data") || len(r.Files[path]) >= LFSThreshold
}

// Hub is the fake Hub and its CDN.
type Hub struct {
	hub, cdn *httptest.Server

	mu     sync.Mutex
	repos  map[string]*Repo
	tokens map[string]bool
	// faults by file path, consumed as they fire
	cuts     map[string][]int64
	corrupt  map[string]int
	fail     map[string]int
	hangs    map[string]int
	slow     map[string]time.Duration
	expired  map[string]int
	noRange  map[string]bool
	hangAll  bool
	requests []Request
}

// Request is one request either host received.
type Request struct {
	Host   string // "hub" or "cdn"
	Method string
	Path   string
	Range  string
	// Authorization is the header as received.
	Authorization string
}

// Start runs the Hub and its CDN on two loopback ports.
func Start() *Hub {
	h := &Hub{repos: map[string]*Repo{}, tokens: map[string]bool{}, cuts: map[string][]int64{},
		corrupt: map[string]int{}, fail: map[string]int{}, hangs: map[string]int{}, slow: map[string]time.Duration{},
		expired: map[string]int{}, noRange: map[string]bool{}}
	h.hub = httptest.NewServer(http.HandlerFunc(h.serveHub))
	h.cdn = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	return h
}

// URL is the Hub's base URL (HF_ENDPOINT).
func (h *Hub) URL() string { return h.hub.URL }

// Close stops both servers.
func (h *Hub) Close() {
	h.hub.CloseClientConnections()
	h.cdn.CloseClientConnections()
	h.hub.Close()
	h.cdn.Close()
}

// Add publishes a repository; a commit is derived from its files if empty.
func (h *Hub) Add(r Repo) {
	if r.Commit == "" {
		s := sha1.New()
		paths := make([]string, 0, len(r.Files))
		for p := range r.Files {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			fmt.Fprintf(s, "%s\x00%x\x00", p, sha256.Sum256(r.Files[p]))
		}
		r.Commit = hex.EncodeToString(s.Sum(nil))
	}
	if r.Branches == nil {
		r.Branches = []string{"main"}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repos[r.ID] = &r
}

// Commit returns the commit of a published repository.
func (h *Hub) Commit(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.repos[id].Commit
}

// File returns the content of a published file.
func (h *Hub) File(repoID, path string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.repos[repoID].Files[path]
}

// AllowToken makes token grant access to gated repositories.
func (h *Hub) AllowToken(token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tokens[token] = true
}

// CutAfter makes the next download of path end after n bytes with a
// broken connection.
func (h *Hub) CutAfter(path string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cuts[path] = append(h.cuts[path], n)
}

// Corrupt makes the next times downloads of path serve bytes that do not
// match its etag.
func (h *Hub) Corrupt(path string, times int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.corrupt[path] += times
}

// Fail makes the next times requests about path (metadata or bytes)
// answer 500.
func (h *Hub) Fail(path string, times int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail[path] += times
}

// Hang makes the next times downloads of path send headers and then
// nothing until the client gives up.
func (h *Hub) Hang(path string, times int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hangs[path] += times
}

// Expire makes the CDN refuse the next times downloads of path with 403,
// as it does a signed URL past its expiry.
func (h *Hub) Expire(path string, times int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expired[path] += times
}

// IgnoreRange makes both hosts answer a ranged GET of path with the whole
// file (200), as some proxies do.
func (h *Hub) IgnoreRange(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noRange[path] = true
}

// Slow makes every download of path send half of it, pause, then the
// rest: long enough for a test to see a download in progress.
func (h *Hub) Slow(path string, pause time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.slow[path] = pause
}

// HangAll makes every request hang until the client gives up (an
// unreachable Hub), or stops it.
func (h *Hub) HangAll(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hangAll = on
}

// Requests returns what both hosts received, in order.
func (h *Hub) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.requests...)
}

// Downloads counts the GETs of a repository file's bytes that either host
// received.
func (h *Hub) Downloads(repoID, path string) int {
	n := 0
	for _, r := range h.Requests() {
		if r.Method != http.MethodGet {
			continue
		}
		var parts []string
		switch {
		case r.Host == "cdn": // /repos/{sum}/{org}/{name}/{path}
			parts = strings.SplitN(strings.TrimPrefix(r.Path, "/repos/"), "/", 4)
		case strings.HasPrefix(r.Path, "/api/resolve-cache/models/"): // {org}/{name}/{commit}/{path}
			parts = strings.SplitN(strings.TrimPrefix(r.Path, "/api/resolve-cache/models/"), "/", 4)
		}
		if len(parts) == 4 && parts[3] == path && (r.Host == "cdn" && parts[1]+"/"+parts[2] == repoID || r.Host == "hub" && parts[0]+"/"+parts[1] == repoID) {
			n++
		}
	}
	return n
}

func (h *Hub) record(host string, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = append(h.requests, Request{Host: host, Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"),
		Authorization: r.Header.Get("Authorization")})
}

func (h *Hub) take(m map[string]int, path string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m[path] > 0 {
		m[path]--
		return true
	}
	return false
}

func (h *Hub) hangIfAsked(w http.ResponseWriter, r *http.Request) bool {
	h.mu.Lock()
	all := h.hangAll
	h.mu.Unlock()
	if !all {
		return false
	}
	select {
	case <-r.Context().Done():
	case <-time.After(time.Minute):
	}
	return true
}

func errorHeaders(w http.ResponseWriter, code, msg string) {
	w.Header().Set("X-Error-Code", code)
	w.Header().Set("X-Error-Message", msg)
}

// access checks the token against the repository; ok false means the
// answer was written.
func (h *Hub) access(w http.ResponseWriter, r *http.Request, id string) (*Repo, bool) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	h.mu.Lock()
	repo := h.repos[id]
	granted := h.tokens[token]
	h.mu.Unlock()
	switch {
	case repo == nil && token == "":
		errorHeaders(w, "RepoNotFound", "Repository not found")
		http.Error(w, "Repository not found", http.StatusUnauthorized)
		return nil, false
	case repo == nil:
		errorHeaders(w, "RepoNotFound", "Repository not found")
		http.Error(w, "Repository not found", http.StatusNotFound)
		return nil, false
	case repo.Gated && token == "":
		errorHeaders(w, "GatedRepo", "Access to model "+id+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
		http.Error(w, "gated", http.StatusUnauthorized)
		return nil, false
	case repo.Gated && !granted:
		errorHeaders(w, "GatedRepo", "Access to model "+id+" is restricted and you are not in the authorized list.")
		http.Error(w, "gated", http.StatusForbidden)
		return nil, false
	}
	return repo, true
}

func (r *Repo) resolves(rev string) bool {
	if rev == r.Commit {
		return true
	}
	for _, b := range r.Branches {
		if b == rev {
			return true
		}
	}
	return false
}

func (h *Hub) serveHub(w http.ResponseWriter, r *http.Request) {
	h.record("hub", r)
	if h.hangIfAsked(w, r) {
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/api/resolve-cache/models/"); ok {
		h.serveResolveCache(w, r, rest)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/api/models/"); ok {
		h.serveInfo(w, r, rest)
		return
	}
	// /{org}/{name}/resolve/{rev}/{path...}; the revision is escaped.
	parts := strings.SplitN(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/", 5)
	if len(parts) < 5 || parts[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	id := parts[0] + "/" + parts[1]
	rev, err1 := url.PathUnescape(parts[3])
	path, err2 := url.PathUnescape(parts[4])
	if err1 != nil || err2 != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	repo, ok := h.access(w, r, id)
	if !ok {
		return
	}
	if !repo.resolves(rev) {
		errorHeaders(w, "RevisionNotFound", "Invalid rev id: "+rev)
		http.Error(w, "Invalid rev id", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", repo.Commit)
	data, ok := repo.Files[path]
	if !ok {
		errorHeaders(w, "EntryNotFound", "Entry not found")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	if h.take(h.fail, path) {
		http.Error(w, "Internal Error", http.StatusInternalServerError)
		return
	}
	if repo.lfs(path) {
		sum := sha256.Sum256(data)
		w.Header().Set("X-Linked-Etag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		// The redirect's own ETag is not the file's: a client that reads
		// it instead of X-Linked-Etag fails the checksum.
		w.Header().Set("ETag", `W/"redirect-`+repo.Commit[:8]+`"`)
		w.Header().Set("Location", h.cdn.URL+"/repos/"+hex.EncodeToString(sum[:8])+"/"+id+"/"+path+"?X-Amz-Signature=fake")
		w.WriteHeader(http.StatusFound)
		return
	}
	// A plain file: a relative redirect to the resolve cache, whose answer
	// has the ETag (and the bytes).
	w.Header().Set("Location", "/api/resolve-cache/models/"+id+"/"+repo.Commit+"/"+path+"?etag=%22"+gitBlobID(data)+"%22")
	w.WriteHeader(http.StatusTemporaryRedirect)
}

func gitBlobID(data []byte) string {
	git := sha1.New()
	fmt.Fprintf(git, "blob %d\x00", len(data))
	git.Write(data)
	return hex.EncodeToString(git.Sum(nil))
}

// serveResolveCache answers /api/resolve-cache/models/{org}/{name}/{commit}/{path}.
func (h *Hub) serveResolveCache(w http.ResponseWriter, r *http.Request, rest string) {
	parts := strings.SplitN(rest, "/", 4)
	if len(parts) != 4 {
		http.NotFound(w, r)
		return
	}
	id, path := parts[0]+"/"+parts[1], parts[3]
	repo, ok := h.access(w, r, id)
	if !ok {
		return
	}
	data, ok := repo.Files[path]
	if !ok || parts[2] != repo.Commit {
		errorHeaders(w, "EntryNotFound", "Entry not found")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", repo.Commit)
	w.Header().Set("ETag", `"`+gitBlobID(data)+`"`)
	h.serveBytes(w, r, path, data)
}

func (h *Hub) serveInfo(w http.ResponseWriter, r *http.Request, rest string) {
	// {org}/{name}/revision/{rev}
	parts := strings.SplitN(rest, "/", 4)
	if len(parts) != 4 || parts[2] != "revision" {
		http.NotFound(w, r)
		return
	}
	id := parts[0] + "/" + parts[1]
	repo, ok := h.access(w, r, id)
	if !ok {
		return
	}
	if !repo.resolves(parts[3]) {
		errorHeaders(w, "RevisionNotFound", "Invalid rev id: "+parts[3])
		http.Error(w, "Invalid rev id", http.StatusNotFound)
		return
	}
	type lfs struct {
		SHA256 string `json:"sha256"`
		Size   int    `json:"size"`
	}
	type sibling struct {
		RFilename string `json:"rfilename"`
		Size      *int   `json:"size,omitempty"`
		LFS       *lfs   `json:"lfs,omitempty"`
	}
	blobs := r.URL.Query().Get("blobs") == "true"
	var sib []sibling
	for p, data := range repo.Files {
		s := sibling{RFilename: p}
		if blobs {
			n := len(data)
			s.Size = &n
			if repo.lfs(p) {
				sum := sha256.Sum256(data)
				s.LFS = &lfs{SHA256: hex.EncodeToString(sum[:]), Size: n}
			}
		}
		sib = append(sib, s)
	}
	sort.Slice(sib, func(i, j int) bool { return sib[i].RFilename < sib[j].RFilename })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "modelId": id, "sha": repo.Commit, "private": false,
		"gated": repo.Gated, "siblings": sib})
}

func (h *Hub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.record("cdn", r)
	if h.hangIfAsked(w, r) {
		return
	}
	// /repos/{sum}/{org}/{name}/{path...}
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/repos/"), "/", 4)
	if len(parts) != 4 || r.URL.Query().Get("X-Amz-Signature") == "" {
		http.Error(w, "<Error><Code>AccessDenied</Code></Error>", http.StatusForbidden)
		return
	}
	h.mu.Lock()
	repo := h.repos[parts[1]+"/"+parts[2]]
	h.mu.Unlock()
	var data []byte
	if repo != nil {
		data = repo.Files[parts[3]]
	}
	if data == nil {
		http.Error(w, "<Error><Code>NoSuchKey</Code></Error>", http.StatusNotFound)
		return
	}
	if h.take(h.expired, parts[3]) {
		http.Error(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", http.StatusForbidden)
		return
	}
	h.serveBytes(w, r, parts[3], data)
}

// serveBytes answers a GET or HEAD for data, ranged if asked, with the
// faults queued for path.
func (h *Hub) serveBytes(w http.ResponseWriter, r *http.Request, path string, data []byte) {
	h.mu.Lock()
	ignoreRange := h.noRange[path]
	h.mu.Unlock()
	if ignoreRange {
		r.Header.Del("Range")
	}
	if r.Method == http.MethodGet {
		if h.take(h.fail, path) {
			http.Error(w, "Internal Error", http.StatusInternalServerError)
			return
		}
		if h.take(h.corrupt, path) {
			data = bytes.Clone(data)
			data[len(data)/2] ^= 0xff
		}
		if h.take(h.hangs, path) {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		h.mu.Lock()
		var cut int64 = -1
		if c := h.cuts[path]; len(c) > 0 {
			cut, h.cuts[path] = c[0], c[1:]
		}
		h.mu.Unlock()
		if cut >= 0 {
			http.ServeContent(&cutWriter{ResponseWriter: w, left: cut}, r, "", time.Time{}, bytes.NewReader(data))
			panic(http.ErrAbortHandler) // close the connection mid-body
		}
		h.mu.Lock()
		pause := h.slow[path]
		h.mu.Unlock()
		if pause > 0 && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(pause):
			}
			_, _ = w.Write(data[len(data)/2:])
			return
		}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// cutWriter passes on the first left bytes of the body and drops the rest.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("cut")
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ResponseWriter.Write(p)
	c.left -= int64(n)
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	return n, err
}
