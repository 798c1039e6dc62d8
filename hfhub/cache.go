package hfhub

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The cache layout of huggingface_hub (file_download.py):
//
//	<cache>/models--org--name/refs/<revision>            the revision's commit
//	<cache>/models--org--name/blobs/<etag>               file contents
//	<cache>/models--org--name/snapshots/<commit>/<path>  → ../../blobs/<etag>
//	<cache>/.locks/models--org--name/<etag>.lock         one downloader per blob

func (c *Client) repoFolder(repoID string) string {
	return "models--" + strings.ReplaceAll(repoID, "/", "--")
}

func (c *Client) repoDir(repoID string) string {
	return filepath.Join(c.cfg.CacheDir, c.repoFolder(repoID))
}

func (c *Client) snapshotPath(repoID, commit, path string) string {
	return filepath.Join(c.repoDir(repoID), "snapshots", commit, filepath.FromSlash(path))
}

// validRevision keeps a revision inside refs/ when it names a file there
// (refs/pr/1 is a nested path, as in huggingface_hub).
func validRevision(rev string) error {
	if rev == "" || strings.Contains(rev, "\\") || !filepath.IsLocal(filepath.FromSlash(rev)) {
		return fmt.Errorf("hfhub: invalid revision %q", rev)
	}
	return nil
}

// cachedRepo answers Resolve from the cache: the commit a ref points to
// (or the commit itself) and the files of its snapshot.
func (c *Client) cachedRepo(repoID, revision string) (Repo, error) {
	commit := revision
	if !isCommit(revision) {
		if err := validRevision(revision); err != nil {
			return Repo{}, err
		}
		data, err := os.ReadFile(filepath.Join(c.repoDir(repoID), "refs", filepath.FromSlash(revision)))
		if err != nil {
			return Repo{}, err
		}
		commit = strings.TrimSpace(string(data))
		if !isCommit(commit) {
			return Repo{}, fmt.Errorf("refs/%s holds %q, not a commit", revision, commit)
		}
	}
	root := filepath.Join(c.repoDir(repoID), "snapshots", commit)
	r := Repo{ID: repoID, Revision: revision, Commit: commit, FromCache: true}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.Contains(d.Name(), ".link-") { // a link being made, or left by a crash
			return nil
		}
		st, err := os.Stat(p) // snapshot files are symbolic links to blobs
		if err != nil {
			return nil // a dangling link is a file we do not have
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		r.Files = append(r.Files, RepoFile{Path: filepath.ToSlash(rel), Size: st.Size()})
		return nil
	})
	if err != nil {
		return Repo{}, err
	}
	sort.Slice(r.Files, func(i, j int) bool { return r.Files[i].Path < r.Files[j].Path })
	return r, nil
}

// writeRef records that revision points at commit, as huggingface_hub does.
func (c *Client) writeRef(repoID, revision, commit string) error {
	if revision == commit || validRevision(revision) != nil {
		return nil
	}
	p := filepath.Join(c.repoDir(repoID), "refs", filepath.FromSlash(revision))
	if data, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(data)) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(p, []byte(commit))
}

// linkSnapshot points snapshots/<commit>/<path> at the blob, with a
// relative link as huggingface_hub makes, replacing whatever is there.
func (c *Client) linkSnapshot(repoID, commit, path, etag string) (string, error) {
	dst := c.snapshotPath(repoID, commit, path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	target := strings.Repeat("../", 2+strings.Count(path, "/")) + "blobs/" + etag
	tmp := dst + ".link-" + fmt.Sprint(time.Now().UnixNano())
	if err := os.Symlink(target, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return dst, nil
}

func writeFileAtomic(p string, data []byte) error {
	tmp := p + ".tmp-" + fmt.Sprint(time.Now().UnixNano())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// lockBlob takes the cache's lock on one blob, shared with other processes
// (and huggingface_hub's own lock files), waiting until ctx ends.
func (c *Client) lockBlob(ctx context.Context, repoID, etag string) (unlock func(), err error) {
	dir := filepath.Join(c.cfg.CacheDir, ".locks", c.repoFolder(repoID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, etag+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
