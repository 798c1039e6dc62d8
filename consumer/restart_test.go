package consumer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/wire"
)

// TestAcksIgnoredAfterStateRegressed: a nats-server restarted with its
// consumer state older than what it had delivered (killed before it was
// flushed) ignores, without an answer, the acks of documents delivered
// before the restart: they are past what it believes it delivered. The
// group in the worker's hands at the restart must not wait for those acks
// (waiting for each took the ack timeout, one document at a time); the
// server delivers the documents again and the duplicate window drops their
// second results.
func TestAcksIgnoredAfterStateRegressed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	dir := t.TempDir()
	start := func() *embeddednats.Server {
		srv, err := embeddednats.Start(embeddednats.Config{StoreDir: dir, Listen: addr}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	t.Cleanup(func() { srv.Shutdown() })
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q := wire.QueueConfig{AckWait: 5 * time.Second}
	if _, err := wire.EnsureEndpoint(ctx, js, testID, q); err != nil {
		t.Fatal(err)
	}
	const docs = 20
	for i := range docs {
		publishDoc(t, js, fmt.Sprintf("m-%d", i), fmt.Sprintf(`{"id":"doc-%d","input":"text %d"}`, i, i))
	}
	// The consumer's state before it delivered anything.
	state := filepath.Join(dir, "jetstream", "$G", "streams", wire.RequestsStream(testToken), "obs", wire.ConsumerName(testToken), "o.dat")
	old, err := os.ReadFile(state)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}

	inHand, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	d, err := NewDeployment(DeploymentConfig{
		NC: nc, JS: js, Endpoint: config.Endpoint{InferenceID: testID}, Queue: q,
		NakDelay: 20 * time.Millisecond, PollWait: 100 * time.Millisecond, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	d.SetRunner(fakeRunner{ingest: func(ctx context.Context, reqs []inferapi.Request) ([][]byte, error) {
		if calls.Add(1) == 1 {
			close(inHand)
			<-release
		}
		return echo(ctx, reqs)
	}}, 1)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = d.Stop(sctx)
	})

	<-inHand // every document delivered, in one group
	srv.Shutdown()
	if old == nil {
		err = os.Remove(state)
	} else {
		err = os.WriteFile(state, old, 0o644)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	srv = start()
	for deadline := time.Now().Add(30 * time.Second); !nc.IsConnected(); {
		if time.Now().After(deadline) {
			t.Fatal("no reconnect to the restarted server within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	began := time.Now()
	close(release)

	got := collect(t, js, docs, 300*time.Millisecond)
	if len(got) != docs {
		t.Fatalf("got %d results, want %d", len(got), docs)
	}
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r.docID] {
			t.Fatalf("two results for %s", r.docID)
		}
		seen[r.docID] = true
	}
	requireDrained(t, js, 0)
	// A lane that awaited each ack waited out JetStream's API timeout
	// (5s) on the first one the server left unanswered; everything here
	// takes well under a second.
	if took := time.Since(began); took >= 5*time.Second {
		t.Fatalf("the documents took %s after the restart: the lane waited for an ack", took)
	}
	// The first group's acks were ignored: the server delivered its
	// documents again.
	if n := calls.Load(); n < 2 {
		t.Errorf("runner called %d times; want the group again after the ignored acks", n)
	}
}
