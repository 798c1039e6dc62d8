package modelsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/modelstore"
)

// ErrMirror wraps failures to get a model from a mirror: an HTTP server
// that holds artifact directories as <base>/<model_id>/<file>, as
// Elasticsearch's xpack.ml.model_repository serves its models.
var ErrMirror = errors.New("model mirror")

// mirrorFiles are the artifact files a mirror is asked for; a mirror has
// no listing, so the names the artifact format reads are all there is.
func mirrorFiles() []string {
	files := []string{artifact.ONNXFile, artifact.TokenizerFile, artifact.ConfigFile, artifact.HFConfigFile,
		artifact.ONNXFile + "_data", artifact.ONNXFile + ".data", "1_Pooling/config.json"}
	return append(files, stFiles...)
}

// mirrorAttempts bounds the tries of one mirror request.
const mirrorAttempts = 3

// NewMirrorClient returns the client StageMirror needs: connect and header
// timeouts (each file's transfer is bounded by its size).
func NewMirrorClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       time.Minute,
	}}
}

// transferTimeout bounds one file's transfer: a minute plus the time it
// takes at 1 MiB/s, far below what a mirror on the cluster's network
// delivers; a stalled transfer is retried.
func transferTimeout(size int64) time.Duration {
	return time.Minute + time.Duration(max(size, 0)/(1<<20))*time.Second
}

// StageMirror downloads an artifact directory from a mirror URL into a new
// directory under parent (files of hundreds of megabytes: not a tmpfs).
// progress is told the bytes done of the whole model.
func StageMirror(ctx context.Context, client *http.Client, base, parent string, progress func(done, total int64)) (Staged, error) {
	if progress == nil {
		progress = func(int64, int64) {}
	}
	base = strings.TrimRight(base, "/")
	sizes := map[string]int64{}
	var total int64
	for _, f := range mirrorFiles() {
		size, err := mirrorHead(ctx, client, base+"/"+f)
		if errors.Is(err, os.ErrNotExist) {
			switch f {
			case artifact.ONNXFile:
				return Staged{}, fmt.Errorf("%w: %s/%s is not on the mirror", ErrNoONNX, base, f)
			case artifact.TokenizerFile:
				return Staged{}, fmt.Errorf("%w: %s/%s is not on the mirror", ErrNoTokenizer, base, f)
			}
			continue
		}
		if err != nil {
			return Staged{}, err
		}
		sizes[f] = size
		total += max(size, 0)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Staged{}, err
	}
	dir, err := os.MkdirTemp(parent, ".stage-")
	if err != nil {
		return Staged{}, err
	}
	staged := Staged{Dir: dir, Origin: modelstore.Origin{URI: base}}
	var done int64
	progress(0, total)
	for f := range sizes {
		dst := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			_ = staged.Close()
			return Staged{}, err
		}
		n, err := mirrorGet(ctx, client, base+"/"+f, dst, sizes[f], func(n int64) { done += n; progress(done, total) })
		if err == nil && sizes[f] >= 0 && n != sizes[f] {
			err = fmt.Errorf("%w: %s/%s: got %d bytes, the mirror said %d", ErrMirror, base, f, n, sizes[f])
		}
		if err != nil {
			_ = staged.Close()
			return Staged{}, err
		}
	}
	if err := checkTokenizer(dir, base); err != nil {
		_ = staged.Close()
		return Staged{}, err
	}
	return staged, nil
}

// mirrorHead returns a file's size (-1 if unknown); os.ErrNotExist for 404.
func mirrorHead(ctx context.Context, client *http.Client, u string) (int64, error) {
	var size int64
	err := mirrorRetry(ctx, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return true, fmt.Errorf("%w: HEAD %s: %w", ErrMirror, u, err)
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return false, os.ErrNotExist
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			return true, fmt.Errorf("%w: HEAD %s: %s", ErrMirror, u, resp.Status)
		case resp.StatusCode != http.StatusOK:
			return false, fmt.Errorf("%w: HEAD %s: %s", ErrMirror, u, resp.Status)
		}
		size = -1
		if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil {
			size = n
		}
		return false, nil
	})
	return size, err
}

// mirrorGet downloads u into dst, from the start on every try.
func mirrorGet(ctx context.Context, client *http.Client, u, dst string, size int64, progress func(int64)) (int64, error) {
	var written int64
	err := mirrorRetry(ctx, func(ctx context.Context) (bool, error) {
		if written > 0 {
			progress(-written)
			written = 0
		}
		ctx, cancel := context.WithTimeout(ctx, transferTimeout(size))
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return true, fmt.Errorf("%w: GET %s: %w", ErrMirror, u, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode >= 500, fmt.Errorf("%w: GET %s: %s", ErrMirror, u, resp.Status)
		}
		f, err := os.Create(dst)
		if err != nil {
			return false, err
		}
		n, err := io.Copy(f, io.TeeReader(resp.Body, progressWriter(progress)))
		written = n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return true, fmt.Errorf("%w: GET %s: %w", ErrMirror, u, err)
		}
		return false, nil
	})
	return written, err
}

type progressWriter func(int64)

func (p progressWriter) Write(b []byte) (int, error) {
	p(int64(len(b)))
	return len(b), nil
}

// mirrorRetry runs op until it succeeds, fails for good, or the attempts
// run out; op says whether its failure is worth another try.
func mirrorRetry(ctx context.Context, op func(context.Context) (retry bool, err error)) error {
	wait := time.Second
	for attempt := 1; ; attempt++ {
		retry, err := op(ctx)
		if err == nil || !retry || attempt == mirrorAttempts || ctx.Err() != nil {
			if err != nil && retry {
				return fmt.Errorf("%d attempts: %w", attempt, err)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}
