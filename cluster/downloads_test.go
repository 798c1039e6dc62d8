package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/kv"
)

func TestDownloadOnce(t *testing.T) {
	js := startJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(node string) *Downloads {
		d, err := OpenDownloads(ctx, js, config.StoreConfig{Replicas: 1}, node)
		if err != nil {
			t.Fatal(err)
		}
		d.renew, d.poll = 50*time.Millisecond, 20*time.Millisecond
		return d
	}
	a, b := open("a"), open("b")
	var stored atomic.Bool
	isStored := func(context.Context) (bool, error) { return stored.Load(), nil }
	var fetches atomic.Int32
	release := make(chan error)
	fetch := func(ctx context.Context, progress func(int64, int64)) error {
		fetches.Add(1)
		progress(40, 100)
		err := <-release
		if err == nil {
			stored.Store(true)
		}
		return err
	}

	// b must wait, never fetch: if it did (the test's timing failed), it
	// says so instead of blocking.
	fetchB := func(context.Context, func(int64, int64)) error {
		fetches.Add(100)
		return errors.New("b fetched")
	}

	// a downloads; b waits for it; the progress is readable meanwhile.
	var wg sync.WaitGroup
	results := make([]error, 2)
	wg.Add(1)
	go func() { defer wg.Done(); results[0] = a.Once(ctx, ".m", "hf://org/m", isStored, fetch) }()
	waitDownload(t, a, ".m", func(d Download) bool {
		return d.Done == 40 && d.Total == 100 && d.Node == "a" && d.State == DownloadRunning
	})
	wg.Add(1)
	go func() { defer wg.Done(); results[1] = b.Once(ctx, ".m", "hf://org/m", isStored, fetchB) }()
	time.Sleep(200 * time.Millisecond) // b finds a's key and waits
	release <- nil
	wg.Wait()
	if results[0] != nil || results[1] != nil || fetches.Load() != 1 {
		t.Fatalf("results %v, %d fetches; want nil, nil and 1", results, fetches.Load())
	}
	if _, err := a.Get(ctx, ".m"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("a finished download stays in the bucket: %v", err)
	}
	// Stored: nothing more to do.
	if err := b.Once(ctx, ".m", "hf://org/m", isStored, fetch); err != nil || fetches.Load() != 1 {
		t.Errorf("stored model: %v, %d fetches", err, fetches.Load())
	}

	// A failure reaches the waiter with its cause; the next call retries.
	stored.Store(false)
	fetches.Store(0)
	wg.Add(1)
	go func() { defer wg.Done(); results[0] = a.Once(ctx, ".n", "hf://org/n", isStored, fetch) }()
	waitDownload(t, a, ".n", func(d Download) bool { return d.State == DownloadRunning })
	wg.Add(1)
	go func() { defer wg.Done(); results[1] = b.Once(ctx, ".n", "hf://org/n", isStored, fetchB) }()
	time.Sleep(200 * time.Millisecond)
	release <- eserror.Internal(errors.New("checksum mismatch"), "Could not download model [.n] from [hf://org/n]")
	wg.Wait()
	var start *StartError
	if results[0] == nil || !strings.Contains(results[0].Error(), "checksum mismatch") || !errors.Is(results[1], ErrDownloadFailed) ||
		!errors.As(results[1], &start) || start.Status != 500 || fetches.Load() != 1 {
		t.Fatalf("results %v; %d fetches", results, fetches.Load())
	}
	// The waiter gets the downloader's Elasticsearch error as it was.
	if want, _ := eserror.As(results[0]).MarshalJSON(); string(start.Body) != string(want) {
		t.Errorf("waiter's error %s, want %s", start.Body, want)
	}
	if d, err := b.Get(ctx, ".n"); err != nil || d.State != DownloadFailed || !strings.Contains(d.Error, "checksum mismatch") {
		t.Errorf("recorded failure %+v, %v", d, err)
	}
	all, err := a.All(ctx)
	if err != nil || len(all) != 1 || all[".n"].State != DownloadFailed {
		t.Errorf("All = %v, %v", all, err)
	}
	go func() { release <- nil }()
	if err := b.Once(ctx, ".n", "hf://org/n", isStored, fetch); err != nil || fetches.Load() != 2 {
		t.Errorf("retry after a failure: %v, %d fetches", err, fetches.Load())
	}
}

func waitDownload(t *testing.T, d *Downloads, modelID string, ok func(Download) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := d.Get(context.Background(), modelID)
		if err == nil && ok(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("download of %s: %+v, %v", modelID, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDownloadTakenOverFromADeadWorker: a download whose worker stopped
// renewing it expires, and a waiting worker downloads instead.
func TestDownloadTakenOverFromADeadWorker(t *testing.T) {
	js := startJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := openDownloads(ctx, js, config.StoreConfig{Replicas: 1}, "b", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d.poll = 50 * time.Millisecond
	// What a worker leaves when it dies mid-download: a running record
	// nobody renews.
	if _, err := d.b.Create(ctx, downloadKey(".m"), Download{ModelID: ".m", Node: "dead", State: DownloadRunning}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fetched := false
	err = d.Once(ctx, ".m", "hf://org/m", func(context.Context) (bool, error) { return fetched, nil },
		func(context.Context, func(int64, int64)) error { fetched = true; return nil })
	if err != nil || !fetched {
		t.Fatalf("Once = %v, fetched %v", err, fetched)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("took over after %s, before the dead worker's record expired", waited)
	}
}

// TestDownloadReleasedWhenItsWorkerStops: a download ended by its worker
// stopping leaves no failure behind; a waiting worker takes over at once.
func TestDownloadReleasedWhenItsWorkerStops(t *testing.T) {
	js := startJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := OpenDownloads(ctx, js, config.StoreConfig{Replicas: 1}, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenDownloads(ctx, js, config.StoreConfig{Replicas: 1}, "b")
	if err != nil {
		t.Fatal(err)
	}
	b.poll = 20 * time.Millisecond
	var stored atomic.Bool
	isStored := func(context.Context) (bool, error) { return stored.Load(), nil }
	stopA, cancelA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() {
		aDone <- a.Once(stopA, ".m", "hf://org/m", isStored, func(ctx context.Context, _ func(int64, int64)) error {
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	waitDownload(t, a, ".m", func(d Download) bool { return d.Node == "a" })
	bDone := make(chan error, 1)
	go func() {
		bDone <- b.Once(ctx, ".m", "hf://org/m", isStored, func(context.Context, func(int64, int64)) error {
			stored.Store(true)
			return nil
		})
	}()
	time.Sleep(100 * time.Millisecond) // b waits on a's key
	cancelA()
	if err := <-aDone; !errors.Is(err, context.Canceled) {
		t.Errorf("a: %v", err)
	}
	select {
	case err := <-bDone:
		if err != nil || !stored.Load() {
			t.Errorf("b: %v, stored %v; want b to download", err, stored.Load())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b still waits for a download whose worker stopped")
	}
}
