// Package hfhub downloads model repositories from the Hugging Face Hub, or
// any server that speaks its protocol ($HF_ENDPOINT), into the cache
// layout of the huggingface_hub Python library: files Python tools already
// downloaded are used without a download, and ours serve them.
//
// It behaves as huggingface_hub does where users notice: the token comes
// from HF_TOKEN or the token file, HF_HUB_OFFLINE=1 never touches the
// network, a file's commit, etag and size are read from the Hub's first
// answer (the CDN it redirects to carries none of them), Authorization is
// never sent to another host, downloads go to a .incomplete file that a
// retry resumes with Range, and every file is checked against its etag
// (the SHA-256 of an LFS file, the git blob id of another) before it is
// visible.
package hfhub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultEndpoint is the Hub itself.
const DefaultEndpoint = "https://huggingface.co"

// Errors callers branch on; every error of this package that is about the
// Hub's answer wraps one of them.
var (
	ErrRepoNotFound     = errors.New("repository not found")
	ErrRevisionNotFound = errors.New("revision not found")
	ErrEntryNotFound    = errors.New("file not found in the repository")
	// ErrUnauthorized: the repository is gated or private and the token
	// (or its absence) does not grant access.
	ErrUnauthorized = errors.New("access to the repository denied")
	// ErrOffline: HF_HUB_OFFLINE is set and the cache does not have it.
	ErrOffline = errors.New("offline mode and not in the cache")
	// ErrChecksum: the bytes received do not match the file's etag or size.
	ErrChecksum = errors.New("downloaded file does not match its checksum")
	// ErrUnavailable: the Hub could not be reached or kept failing.
	ErrUnavailable = errors.New("hub unavailable")
)

// Config configures a Client. ConfigFromEnv gives huggingface_hub's
// settings.
type Config struct {
	// Endpoint is the Hub's base URL, without a trailing slash.
	Endpoint string
	// Token is sent as a bearer token to the Endpoint's host only.
	Token string
	// TokenSource names where Token came from, for error messages.
	TokenSource string
	// CacheDir is the hub cache: CacheDir/models--org--name/...
	CacheDir string
	// Offline never touches the network: only the cache answers.
	Offline bool
	// HTTP is the client to use; nil means one with connect and header
	// timeouts (a body may take as long as it needs while bytes flow).
	HTTP *http.Client
	// Attempts bounds the tries of one request or download (default 5).
	Attempts int
	// Backoff is the wait before the second try, doubled for each next
	// one up to a minute (default 1s).
	Backoff time.Duration
	// StallTimeout ends a download that received nothing for this long,
	// to be retried (default 60s).
	StallTimeout time.Duration
}

// ConfigFromEnv reads the environment variables huggingface_hub reads:
// HF_ENDPOINT, HF_TOKEN (or HUGGING_FACE_HUB_TOKEN, or the file
// HF_TOKEN_PATH, default $HF_HOME/token, unless
// HF_HUB_DISABLE_IMPLICIT_TOKEN), HF_HOME (default
// $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface), HF_HUB_CACHE (or
// HUGGINGFACE_HUB_CACHE; default $HF_HOME/hub) and HF_HUB_OFFLINE (or
// TRANSFORMERS_OFFLINE).
func ConfigFromEnv(lookup func(string) (string, bool)) Config {
	get := func(k string) string { v, _ := lookup(k); return v }
	cfg := Config{Endpoint: strings.TrimRight(get("HF_ENDPOINT"), "/")}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	home := get("HF_HOME")
	if home == "" {
		cache := get("XDG_CACHE_HOME")
		if cache == "" {
			if h := get("HOME"); h != "" {
				cache = filepath.Join(h, ".cache")
			}
		}
		home = filepath.Join(cache, "huggingface")
	}
	cfg.CacheDir = get("HF_HUB_CACHE")
	if cfg.CacheDir == "" {
		cfg.CacheDir = get("HUGGINGFACE_HUB_CACHE") // the older name
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(home, "hub")
	}
	truthy := func(k string) bool {
		switch strings.ToLower(get(k)) {
		case "1", "true", "yes", "on":
			return true
		}
		return false
	}
	cfg.Offline = truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE")
	for _, k := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if v := strings.TrimSpace(get(k)); v != "" {
			cfg.Token, cfg.TokenSource = v, k
			return cfg
		}
	}
	if truthy("HF_HUB_DISABLE_IMPLICIT_TOKEN") {
		return cfg
	}
	tokenPath := get("HF_TOKEN_PATH")
	if tokenPath == "" {
		tokenPath = filepath.Join(home, "token")
	}
	if data, err := os.ReadFile(tokenPath); err == nil && strings.TrimSpace(string(data)) != "" {
		cfg.Token, cfg.TokenSource = strings.TrimSpace(string(data)), tokenPath
	}
	return cfg
}

// Client talks to one Hub and keeps its files in one cache.
type Client struct {
	cfg  Config
	http *http.Client
	// noRedirect is http answering 3xx itself: the Hub's first answer
	// carries a file's metadata.
	noRedirect *http.Client
}

// New returns a client; it does not touch the network.
func New(cfg Config) (*Client, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hfhub: endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("hfhub: a cache directory is required")
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = time.Minute
	}
	c := &Client{cfg: cfg, http: cfg.HTTP}
	if c.http == nil {
		c.http = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			MaxIdleConnsPerHost:   4,
		}}
	}
	// Go keeps Authorization on a redirect to the same host name on
	// another port, or to a subdomain: only the endpoint itself gets it.
	follow := *c.http
	follow.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if !c.sameHost(req.URL) {
			req.Header.Del("Authorization")
		}
		return nil
	}
	c.http = &follow
	nr := *c.http
	nr.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.noRedirect = &nr
	return c, nil
}

// Repo is one revision of a model repository, resolved to its commit.
type Repo struct {
	ID string
	// Revision is what was asked for: a branch, tag or commit.
	Revision string
	// FromCache is set when the Hub was not asked (offline, or
	// unreachable): Files lists only what the cache holds.
	FromCache bool
	// Commit is the revision's 40-hex commit id.
	Commit string
	Files  []RepoFile
}

// RepoFile is one file of a Repo.
type RepoFile struct {
	Path string
	// Size is -1 where the Hub (or the cache) did not say.
	Size int64
}

// File returns the file at path.
func (r Repo) File(path string) (RepoFile, bool) {
	for _, f := range r.Files {
		if f.Path == path {
			return f, true
		}
	}
	return RepoFile{}, false
}

// ValidateRepoID accepts the Hub's "org/name" and "name" ids.
func ValidateRepoID(id string) error {
	parts := strings.Split(id, "/")
	if len(parts) > 2 {
		return fmt.Errorf("hfhub: repository id %q: want org/name", id)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || len(p) > 96 || strings.Contains(p, "--") || strings.ContainsFunc(p, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) {
			return fmt.Errorf("hfhub: repository id %q: want org/name of letters, digits, '-', '_' and '.' (no \"--\")", id)
		}
	}
	return nil
}

// Resolve lists the repository's files at revision ("" means main) and
// resolves the revision to its commit. Offline, or when the Hub cannot be
// reached, a revision the cache knows is answered from the cache.
func (c *Client) Resolve(ctx context.Context, repoID, revision string) (Repo, error) {
	if err := ValidateRepoID(repoID); err != nil {
		return Repo{}, err
	}
	if revision == "" {
		revision = "main"
	}
	if c.cfg.Offline {
		r, err := c.cachedRepo(repoID, revision)
		if err != nil {
			return Repo{}, fmt.Errorf("%w: %s@%s (HF_HUB_OFFLINE is set and the cache %s has no snapshot of it)",
				ErrOffline, repoID, revision, c.cfg.CacheDir)
		}
		return r, nil
	}
	u := c.cfg.Endpoint + "/api/models/" + repoID + "/revision/" + url.PathEscape(revision) + "?blobs=true"
	var info struct {
		SHA      string `json:"sha"`
		Siblings []struct {
			RFilename string `json:"rfilename"`
			Size      *int64 `json:"size"`
		} `json:"siblings"`
	}
	err := c.retry(ctx, "list "+repoID+"@"+revision, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.StallTimeout)
		defer cancel()
		resp, err := c.send(ctx, c.http, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := c.statusError(resp, repoID, revision, ""); err != nil {
			return err
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&info); err != nil {
			return retryable(fmt.Errorf("%w: read the listing of %s: %w", ErrUnavailable, repoID, err))
		}
		return nil
	})
	if errors.Is(err, ErrUnavailable) {
		if r, cerr := c.cachedRepo(repoID, revision); cerr == nil {
			return r, nil
		}
	}
	if err != nil {
		return Repo{}, err
	}
	if !isCommit(info.SHA) {
		return Repo{}, fmt.Errorf("%w: the listing of %s@%s has no commit sha (%q)", ErrUnavailable, repoID, revision, info.SHA)
	}
	r := Repo{ID: repoID, Revision: revision, Commit: info.SHA}
	for _, s := range info.Siblings {
		if err := validatePath(s.RFilename); err != nil {
			continue // nothing we would download can have such a name
		}
		size := int64(-1)
		if s.Size != nil {
			size = *s.Size
		}
		r.Files = append(r.Files, RepoFile{Path: s.RFilename, Size: size})
	}
	return r, nil
}

func isCommit(s string) bool { return len(s) == 40 && isHex(s) }

func isHex(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') })
}

// validatePath accepts relative, clean, slash-separated file paths that
// stay inside a snapshot directory.
func validatePath(p string) error {
	if p == "" || strings.Contains(p, "\\") || !filepath.IsLocal(filepath.FromSlash(p)) || filepath.ToSlash(filepath.Clean(p)) != p {
		return fmt.Errorf("hfhub: invalid file path %q", p)
	}
	return nil
}

// send sends one request; Authorization goes only to the endpoint's host
// (on redirects too: see New).
func (c *Client) send(ctx context.Context, client *http.Client, method, u string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "jetinfer")
	// The Hub's sizes and etags are of the bytes as stored.
	req.Header.Set("Accept-Encoding", "identity")
	if c.cfg.Token != "" && c.sameHost(req.URL) {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, retryable(fmt.Errorf("%w: %s %s: %w", ErrUnavailable, method, redact(u), err))
	}
	return resp, nil
}

func (c *Client) sameHost(u *url.URL) bool {
	e, err := url.Parse(c.cfg.Endpoint)
	return err == nil && strings.EqualFold(e.Host, u.Host) && e.Scheme == u.Scheme
}

// redact drops a URL's query (CDN URLs carry signatures).
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// statusError turns a failed answer into the error the Hub's X-Error-Code
// names, as huggingface_hub's hf_raise_for_status does; nil for 2xx/3xx.
func (c *Client) statusError(resp *http.Response, repoID, revision, path string) error {
	if resp.StatusCode < 400 {
		return nil
	}
	if !c.sameHost(resp.Request.URL) {
		// The CDN's 403/404/410 is most often a signed URL that expired
		// (a long resume, a wait for another downloader): the next try
		// asks the Hub for a fresh one.
		return retryable(fmt.Errorf("%w: %w: %s answered %s", ErrUnavailable, errStaleLocation, redact(resp.Request.URL.String()), resp.Status))
	}
	what := repoID
	if revision != "" {
		what += "@" + revision
	}
	msg := resp.Header.Get("X-Error-Message")
	if msg != "" {
		msg = " (" + msg + ")"
	}
	tokenHint := "set HF_TOKEN or write a token to $HF_HOME/token"
	if c.cfg.Token != "" {
		tokenHint = "the token from " + c.cfg.TokenSource + " was refused or has no access"
	}
	switch code := resp.Header.Get("X-Error-Code"); {
	case code == "RevisionNotFound":
		return fmt.Errorf("%w: %s on %s%s", ErrRevisionNotFound, what, c.cfg.Endpoint, msg)
	case code == "EntryNotFound":
		return fmt.Errorf("%w: %s in %s%s", ErrEntryNotFound, path, what, msg)
	case code == "GatedRepo":
		return fmt.Errorf("%w: %s is gated: accept its conditions on %s/%s and pass a token (%s)%s",
			ErrUnauthorized, repoID, c.cfg.Endpoint, repoID, tokenHint, msg)
	case code == "RepoNotFound" && resp.StatusCode == http.StatusNotFound && c.cfg.Token != "":
		return fmt.Errorf("%w: %s on %s%s", ErrRepoNotFound, repoID, c.cfg.Endpoint, msg)
	case code == "RepoNotFound" || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		// Without a token the Hub answers 401 both for a repository that
		// does not exist and for one that is private.
		return fmt.Errorf("%w: %s was not found on %s or is private or gated (%s)%s",
			ErrRepoNotFound, repoID, c.cfg.Endpoint, tokenHint, msg)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s%s", ErrEntryNotFound, resp.Request.URL.Path, msg)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return retryable(fmt.Errorf("%w: %s answered %s%s", ErrUnavailable, redact(resp.Request.URL.String()), resp.Status, msg))
	}
	return fmt.Errorf("%w: %s answered %s%s", ErrUnavailable, redact(resp.Request.URL.String()), resp.Status, msg)
}

// errStaleLocation marks a failure of the CDN that a fresh download URL
// from the Hub may cure.
var errStaleLocation = errors.New("download URL refused")

// retryableError marks a failure worth another try: the network, a 5xx or
// 429, a cut or stalled body.
type retryableError struct{ error }

func (e retryableError) Unwrap() error { return e.error }

func retryable(err error) error { return retryableError{err} }

// retry runs op until it succeeds, fails for good, or the attempts run
// out, waiting with exponential backoff between tries.
func (c *Client) retry(ctx context.Context, what string, op func(context.Context) error) error {
	wait := c.cfg.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		err = op(ctx)
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		var r retryableError
		if err == nil || !errors.As(err, &r) {
			return err
		}
		if attempt == c.cfg.Attempts {
			return fmt.Errorf("%s: %d attempts: %w", what, attempt, r.error)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), r.error)
		case <-t.C:
		}
		wait = min(2*wait, time.Minute)
	}
}
