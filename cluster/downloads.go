package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/kv"
)

// DownloadBucket holds one key per built-in model being downloaded into the
// model store: the lock that makes one worker of the cluster download it,
// renewed while the download runs, and its progress for the API. A failed
// download stays as its cause until the key expires or a worker retries.
const DownloadBucket = "inference_model_downloads"

// downloadTTL is how long a download's lock outlives its last renewal: a
// worker that died mid-download is replaced after it.
const downloadTTL = 30 * time.Second

// Download states.
const (
	DownloadRunning = "downloading"
	DownloadFailed  = "failed"
)

// Download is one model's download.
type Download struct {
	ModelID string `json:"model_id"`
	Node    string `json:"node"`
	// Source is where the model comes from (hf://org/name@revision/file).
	Source string `json:"source"`
	State  string `json:"state"`
	// Done and Total count the bytes of the whole model; Total is 0 until
	// the repository was listed.
	Done  int64  `json:"bytes_done"`
	Total int64  `json:"bytes_total"`
	Error string `json:"error,omitempty"`
	// ErrorStatus and ErrorBody are the failure as the Elasticsearch error
	// the downloading worker reported, passed on to the workers that waited.
	ErrorStatus int             `json:"error_status,omitempty"`
	ErrorBody   json.RawMessage `json:"error_body,omitempty"`
	Started     time.Time       `json:"started"`
	Updated     time.Time       `json:"updated"`
}

// Downloads coordinates downloads through DownloadBucket.
type Downloads struct {
	b     *kv.Bucket[Download]
	node  string
	renew time.Duration
	poll  time.Duration
	log   zerolog.Logger
}

// OpenDownloads creates the bucket if needed.
func OpenDownloads(ctx context.Context, js jetstream.JetStream, cfg config.StoreConfig, node string) (*Downloads, error) {
	return openDownloads(ctx, js, cfg, node, downloadTTL)
}

func openDownloads(ctx context.Context, js jetstream.JetStream, cfg config.StoreConfig, node string, ttl time.Duration) (*Downloads, error) {
	b, err := kv.Open(ctx, js, kv.Config{Bucket: DownloadBucket, Description: "jetinfer model downloads: one worker each, with progress",
		TTL: ttl, Replicas: cfg.Replicas, Log: cfg.Log}, kv.JSON[Download]())
	if err != nil {
		return nil, err
	}
	// Renewed every second, the key carries the progress the API shows.
	return &Downloads{b: b, node: node, renew: time.Second, poll: 250 * time.Millisecond, log: cfg.Log}, nil
}

func downloadKey(modelID string) string { return config.Token(modelID) }

// Get returns a model's download; kv.ErrNotFound when none runs or failed
// recently.
func (d *Downloads) Get(ctx context.Context, modelID string) (Download, error) {
	e, err := d.b.Get(ctx, downloadKey(modelID))
	if err != nil {
		return Download{}, err
	}
	return e.Value, e.Err
}

// All returns the downloads running or recently failed, by model id.
func (d *Downloads) All(ctx context.Context) (map[string]Download, error) {
	list, err := values(d.b.List(ctx, ">"))
	if err != nil {
		return nil, err
	}
	out := make(map[string]Download, len(list))
	for _, dl := range list {
		out[dl.ModelID] = dl
	}
	return out, nil
}

// ErrDownloadFailed is wrapped by the error a waiting worker returns when
// the download it waited for failed; the error also holds that failure as
// a *StartError, the Elasticsearch error the downloading worker reported.
var ErrDownloadFailed = errors.New("model download failed")

// Fetch is one download: it reports the bytes done of total as they come.
type Fetch func(ctx context.Context, progress func(done, total int64)) error

// Once makes sure a model is downloaded by one worker of the cluster.
// stored reports whether the model is in the model store already. If it
// is not and no worker downloads it, this worker takes the key and runs
// fetch, renewing the key with its progress; if another worker does, Once
// waits until that download ends: nil once the model is stored, the other
// worker's recorded failure (ErrDownloadFailed) if it failed. A failure
// recorded earlier does not stop a new call from trying again.
func (d *Downloads) Once(ctx context.Context, modelID, source string, stored func(context.Context) (bool, error), fetch Fetch) error {
	key := downloadKey(modelID)
	waited := false // for another worker's download: what it ended with is the answer
	for {
		if ok, err := stored(ctx); err != nil || ok {
			return err
		}
		now := time.Now().UTC()
		mine := Download{ModelID: modelID, Node: d.node, Source: source, State: DownloadRunning, Started: now, Updated: now}
		rev, err := d.b.Create(ctx, key, mine)
		if errors.Is(err, kv.ErrExists) {
			e, gerr := d.b.Get(ctx, key)
			switch {
			case errors.Is(gerr, kv.ErrNotFound):
				continue // ended meanwhile
			case gerr != nil:
				return gerr
			case e.Err != nil || e.Value.State == DownloadFailed && !waited:
				// A failure was reported to whoever waited then (and a
				// value nobody can read helps nobody): this call is a new
				// attempt.
				rev, err = d.b.Update(ctx, key, mine, e.Revision)
				if errors.Is(err, kv.ErrConflict) {
					continue
				}
			case e.Value.State == DownloadFailed:
				return fmt.Errorf("%w on %s: %w", ErrDownloadFailed, e.Value.Node,
					&StartError{Status: e.Value.ErrorStatus, Body: e.Value.ErrorBody})
			default:
				if err := d.wait(ctx, key); err != nil {
					return err
				}
				waited = true
				continue
			}
		}
		if err != nil {
			return err
		}
		// Another worker may have finished between the look and the take.
		if ok, err := stored(ctx); err != nil || ok {
			d.release(ctx, key, rev, modelID)
			return err
		}
		return d.run(ctx, key, rev, mine, fetch)
	}
}

// release deletes the key this worker holds, so that nobody waits on it.
func (d *Downloads) release(ctx context.Context, key string, rev uint64, modelID string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kv.Timeout)
	defer cancel()
	if err := d.b.DeleteRevision(cctx, key, rev); err != nil && !errors.Is(err, kv.ErrConflict) {
		d.log.Warn().Err(err).Str("model_id", modelID).Msg("clear model download")
	}
}

// wait returns when the key no longer holds a running download: deleted
// (done), failed, or expired (its holder died without renewing it).
func (d *Downloads) wait(ctx context.Context, key string) error {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		e, err := d.b.Get(ctx, key)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			return nil
		case err != nil:
			return err
		case e.Err != nil || e.Value.State != DownloadRunning:
			return nil
		}
	}
}

// run downloads while renewing the key with the progress, then deletes
// the key, or records the failure in it. A download ended by ctx (this
// worker stopping) deletes the key: a waiting worker takes over.
func (d *Downloads) run(ctx context.Context, key string, rev uint64, rec Download, fetch Fetch) error {
	var mu sync.Mutex
	progress := func(done, total int64) {
		mu.Lock()
		rec.Done, rec.Total = done, total
		mu.Unlock()
	}
	// The renewal stops on a channel, not by cancelling its context: an
	// update in flight completes, so rev stays the key's revision.
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(d.renew)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			mu.Lock()
			rec.Updated = time.Now().UTC()
			v := rec
			mu.Unlock()
			next, err := d.b.Update(ctx, key, v, rev)
			if errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrNotFound) {
				// Lost (a stall past the TTL): another worker may download
				// too; the model store keeps one import.
				d.log.Warn().Err(err).Str("model_id", rec.ModelID).Msg("model download lock lost")
				return
			}
			if err == nil {
				rev = next
			}
		}
	}()
	err := fetch(ctx, progress)
	close(stop)
	<-renewed
	if err == nil || ctx.Err() != nil {
		d.release(ctx, key, rev, rec.ModelID)
		return err
	}
	mu.Lock()
	rec.State, rec.Error, rec.Updated = DownloadFailed, err.Error(), time.Now().UTC()
	es := eserror.As(err)
	rec.ErrorStatus = es.Status
	rec.ErrorBody, _ = es.MarshalJSON()
	v := rec
	mu.Unlock()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kv.Timeout)
	defer cancel()
	if _, uerr := d.b.Update(cctx, key, v, rev); uerr != nil && !errors.Is(uerr, kv.ErrConflict) {
		d.log.Warn().Err(uerr).Str("model_id", rec.ModelID).Msg("record failed model download")
	}
	return err
}
