package hfhub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fileMeta is what the Hub's first answer for a file says, as
// huggingface_hub's get_hf_file_metadata reads it.
type fileMeta struct {
	commit string
	// etag is the SHA-256 of an LFS file, the git blob id of another.
	etag string
	// size is -1 when unknown.
	size int64
	// location is where the bytes are: the CDN for an LFS file.
	location string
}

func (c *Client) resolveURL(repoID, revision, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return c.cfg.Endpoint + "/" + repoID + "/resolve/" + url.PathEscape(revision) + "/" + strings.Join(segs, "/")
}

// Download makes one file of repo available in the cache and returns its
// path there (snapshots/<commit>/<path>). A file already in the cache is
// not downloaded again. progress, if set, is told the bytes added to the
// file as they arrive (the bytes an interrupted download left count when
// it resumes; a download that starts over reports them negative).
func (c *Client) Download(ctx context.Context, repo Repo, path string, progress func(delta int64)) (string, error) {
	if err := validatePath(path); err != nil {
		return "", err
	}
	if err := ValidateRepoID(repo.ID); err != nil {
		return "", err
	}
	if !isCommit(repo.Commit) {
		return "", fmt.Errorf("hfhub: %s: resolve the revision before downloading", repo.ID)
	}
	if progress == nil {
		progress = func(int64) {}
	}
	snap := c.snapshotPath(repo.ID, repo.Commit, path)
	if st, err := os.Stat(snap); err == nil && st.Mode().IsRegular() {
		progress(st.Size()) // done already: the model's total counts it
		return snap, nil
	}
	if c.cfg.Offline {
		return "", fmt.Errorf("%w: %s of %s@%s (HF_HUB_OFFLINE is set)", ErrOffline, path, repo.ID, repo.Commit)
	}
	meta, err := c.fileMeta(ctx, repo, path)
	if err != nil {
		return "", err
	}
	if meta.commit != "" && meta.commit != repo.Commit {
		return "", fmt.Errorf("%w: asked for %s of %s at commit %s, the Hub answered for commit %s",
			ErrUnavailable, path, repo.ID, repo.Commit, meta.commit)
	}
	unlock, err := c.lockBlob(ctx, repo.ID, meta.etag)
	if err != nil {
		return "", err
	}
	defer unlock()
	blob := filepath.Join(c.repoDir(repo.ID), "blobs", meta.etag)
	if st, err := os.Stat(blob); err != nil || (meta.size >= 0 && st.Size() != meta.size) {
		if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
			return "", err
		}
		if err := c.fetchBlob(ctx, repo, path, meta, blob, progress); err != nil {
			return "", err
		}
	}
	if _, err := c.linkSnapshot(repo.ID, repo.Commit, path, meta.etag); err != nil {
		return "", err
	}
	if err := c.writeRef(repo.ID, repo.Revision, repo.Commit); err != nil {
		return "", err
	}
	return snap, nil
}

// fileMeta asks the Hub about one file without following its redirect to
// the CDN, whose answer carries none of the headers read here. Relative
// redirects (a renamed repository) are followed, as huggingface_hub does.
func (c *Client) fileMeta(ctx context.Context, repo Repo, path string) (fileMeta, error) {
	u := c.resolveURL(repo.ID, repo.Commit, path)
	var meta fileMeta
	err := c.retry(ctx, "metadata of "+path+" in "+repo.ID, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.StallTimeout)
		defer cancel()
		target := u
		for hops := 0; ; hops++ {
			resp, err := c.send(ctx, c.noRedirect, http.MethodHead, target, nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if err := c.statusError(resp, repo.ID, repo.Commit, path); err != nil {
				return err
			}
			loc := resp.Header.Get("Location")
			if resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
				next, err := resp.Request.URL.Parse(loc)
				if err != nil {
					return fmt.Errorf("%w: %s redirects to %q: %w", ErrUnavailable, redact(target), loc, err)
				}
				if l, _ := url.Parse(loc); l != nil && l.Host == "" && hops < 10 {
					target = next.String()
					continue
				}
				meta.location = next.String()
			} else {
				meta.location = target
			}
			meta.commit = resp.Header.Get("X-Repo-Commit")
			meta.etag = normalizeETag(firstHeader(resp.Header, "X-Linked-Etag", "ETag"))
			meta.size = -1
			size := resp.Header.Get("X-Linked-Size")
			if size == "" && meta.location == target { // a redirect's length is its own body's
				size = resp.Header.Get("Content-Length")
			}
			if s := size; s != "" {
				if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
					meta.size = n
				}
			}
			return nil
		}
	})
	if err != nil {
		return fileMeta{}, err
	}
	// The etag names the blob file: it must be one path element.
	if meta.etag == "" || strings.ContainsAny(meta.etag, `/\`) || strings.HasPrefix(meta.etag, ".") || len(meta.etag) > 255 {
		return fileMeta{}, fmt.Errorf("%w: %s of %s: the Hub gave no usable etag (%q)", ErrUnavailable, path, repo.ID, meta.etag)
	}
	return meta, nil
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// normalizeETag strips a weak marker and quotes: W/"abc" → abc.
func normalizeETag(e string) string {
	return strings.Trim(strings.TrimPrefix(strings.TrimSpace(e), "W/"), `"`)
}

// fetchBlob downloads meta.location into blob via blob.incomplete,
// resuming what an earlier try left, and checks it before the rename.
func (c *Client) fetchBlob(ctx context.Context, repo Repo, path string, meta fileMeta, blob string, progress func(int64)) error {
	part := blob + ".incomplete"
	reported := int64(0) // bytes of part that progress was told about
	stale := false       // the CDN refused meta.location
	err := c.retry(ctx, "download "+path+" of "+repo.ID, func(ctx context.Context) error {
		if stale {
			fresh, err := c.fileMeta(ctx, repo, path)
			if err != nil {
				return err
			}
			if fresh.etag != meta.etag {
				return fmt.Errorf("%w: %s of %s changed during the download (etag %s, was %s)", ErrUnavailable, path, repo.ID, fresh.etag, meta.etag)
			}
			meta.location, stale = fresh.location, false
		}
		f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		have, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return err
		}
		restart := func() error {
			if err := f.Truncate(0); err != nil {
				return err
			}
			have = 0
			_, err := f.Seek(0, io.SeekStart)
			return err
		}
		if meta.size >= 0 && have > meta.size {
			if err := restart(); err != nil {
				return err
			}
		}
		if have != reported {
			progress(have - reported)
			reported = have
		}
		if meta.size >= 0 && have == meta.size {
			return nil
		}
		// A stall (no bytes for StallTimeout, headers included) cancels
		// this try only; the next one resumes.
		tryCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		stall := time.AfterFunc(c.cfg.StallTimeout, cancel)
		defer stall.Stop()
		header := http.Header{}
		if have > 0 {
			header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := c.send(tryCtx, c.http, http.MethodGet, meta.location, header)
		if err != nil {
			return stalled(ctx, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			if err := restart(); err != nil {
				return err
			}
			return retryable(fmt.Errorf("%w: %s: the server refused to resume", ErrUnavailable, path))
		}
		if err := c.statusError(resp, repo.ID, repo.Commit, path); err != nil {
			stale = errors.Is(err, errStaleLocation)
			return err
		}
		switch {
		case resp.StatusCode == http.StatusPartialContent && !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", have)):
			if err := restart(); err != nil {
				return err
			}
			return retryable(fmt.Errorf("%w: %s: resumed at the wrong offset (%s)", ErrUnavailable, path, resp.Header.Get("Content-Range")))
		case resp.StatusCode != http.StatusPartialContent && have > 0:
			// The server ignored Range: take the whole file again.
			if err := restart(); err != nil {
				return err
			}
		}
		if have != reported {
			progress(have - reported)
			reported = have
		}
		n, err := io.Copy(f, &stallReader{r: resp.Body, stall: stall, timeout: c.cfg.StallTimeout, progress: progress})
		reported += n
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				_ = os.Remove(part)
				progress(-reported)
				reported = 0
				return fmt.Errorf("download %s of %s: %w", path, repo.ID, err)
			}
			var pe *os.PathError
			if errors.As(err, &pe) { // writing, not reading
				return fmt.Errorf("download %s of %s: %w", path, repo.ID, err)
			}
			return stalled(ctx, retryable(fmt.Errorf("%w: %s of %s cut after %d bytes: %w", ErrUnavailable, path, repo.ID, have+n, err)))
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if meta.size >= 0 && have+n != meta.size {
			return retryable(fmt.Errorf("%w: %s of %s: got %d bytes of %d", ErrUnavailable, path, repo.ID, have+n, meta.size))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := verify(part, meta); err != nil {
		_ = os.Remove(part)
		progress(-reported)
		return fmt.Errorf("%s of %s: %w", path, repo.ID, err)
	}
	return os.Rename(part, blob)
}

// stalled explains a try that ended because its own stall timer fired,
// as a retryable failure; the caller's cancellation stays what it is.
func stalled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, context.Canceled) {
		return retryable(fmt.Errorf("%w: no data for too long: %w", ErrUnavailable, err))
	}
	return err
}

// stallReader pushes the stall deadline back on every read that brings
// bytes and reports them.
type stallReader struct {
	r        io.Reader
	stall    *time.Timer
	timeout  time.Duration
	progress func(int64)
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.stall.Reset(s.timeout)
		s.progress(int64(n))
	}
	return n, err
}

// verify checks a downloaded file against its size and etag: the SHA-256
// of an LFS file (64 hex digits) or the git blob id of another (40). An
// etag of another form (a mirror's) is checked by size only.
func verify(p string, meta fileMeta) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if meta.size >= 0 && st.Size() != meta.size {
		return fmt.Errorf("%w: %d bytes, the Hub says %d", ErrChecksum, st.Size(), meta.size)
	}
	var h hash.Hash
	switch {
	case len(meta.etag) == 64 && isHex(meta.etag):
		h = sha256.New()
	case len(meta.etag) == 40 && isHex(meta.etag):
		h = sha1.New()
		fmt.Fprintf(h, "blob %d\x00", st.Size())
	default:
		return nil
	}
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != meta.etag {
		return fmt.Errorf("%w: content hashes to %s, the Hub's etag is %s", ErrChecksum, got, meta.etag)
	}
	return nil
}
