package cluster

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats/natstest"
)

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Start(t)
	return js
}

func TestLease(t *testing.T) {
	js := startJS(t)
	ctx := context.Background()
	// Renewed every third of the TTL, a lease lost to a stall of a loaded
	// machine would fail the test: the TTL leaves two seconds of slack.
	const ttl = 3 * time.Second
	a, err := OpenLease(ctx, js, config.StoreConfig{Replicas: 1}, ttl, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenLease(ctx, js, config.StoreConfig{Replicas: 1}, ttl, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second acquire: %v", err)
	}
	// Renewed, the lease outlives its TTL.
	for range 4 {
		time.Sleep(ttl / 3)
		if err := a.Renew(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if h, _ := b.Holder(ctx); h != "a" {
		t.Fatalf("holder %q", h)
	}
	// Not renewed, it expires and b takes it; a learns it lost it.
	deadline := time.Now().Add(time.Minute)
	for b.Acquire(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the lease never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.Renew(ctx); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("renew of a lost lease: %v", err)
	}
	// A release hands it over at once; a stale release does nothing.
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := a.Holder(ctx); h != "b" {
		t.Fatalf("a's stale release took b's lease: holder %q", h)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Acquire(ctx); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}

func TestRegistryForgetsSilentNodes(t *testing.T) {
	js := startJS(t)
	ctx := context.Background()
	// As in TestLease: two seconds of slack for each heartbeat.
	const ttl = 3 * time.Second
	reg, err := OpenRegistry(ctx, js, config.StoreConfig{Replicas: 1}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"w1", "w.2"} {
		if err := reg.Announce(ctx, Node{Name: name, Processors: 2, Models: []string{"m"}}); err != nil {
			t.Fatal(err)
		}
	}
	nodes, err := reg.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes %+v, %v", nodes, err)
	}
	if err := reg.Leave(ctx, "w.2"); err != nil {
		t.Fatal(err)
	}
	// w1 keeps heartbeating past the TTL; w.2 left.
	for range 4 {
		time.Sleep(ttl / 3)
		if err := reg.Announce(ctx, Node{Name: "w1", Processors: 2}); err != nil {
			t.Fatal(err)
		}
	}
	nodes, _ = reg.Nodes(ctx)
	if len(nodes) != 1 || nodes[0].Name != "w1" {
		t.Fatalf("nodes %+v", nodes)
	}
	// Silent, w1 is gone once the server expires its entry. A read may
	// fail meanwhile: nats.go's KV watch never signals the end of its
	// initial values when the one pending entry expires between the watch's
	// creation and its delivery, so that read ends at kv.Timeout.
	deadline := time.Now().Add(time.Minute)
	for {
		nodes, err = reg.Nodes(ctx)
		if err == nil && len(nodes) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a silent node is still listed: %+v (%v)", nodes, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLiveNodes: the registry kept by a watch lists what Nodes lists: a
// node silent past the TTL is dropped (its entry expires without a delete
// marker), one that leaves is dropped at once, a new one appears.
func TestLiveNodes(t *testing.T) {
	js := startJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ttl = time.Second
	r, err := OpenRegistry(ctx, js, config.StoreConfig{Replicas: 1}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := r.Announce(ctx, Node{Name: name, Processors: 2}); err != nil {
			t.Fatal(err)
		}
	}
	live := r.Live()
	// Listed at once, before the watch runs: complete from the start.
	names := func() string {
		t.Helper()
		nodes, err := live.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range nodes {
			out = append(out, n.Name)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	if got := names(); got != "a,b,c" {
		t.Fatalf("seeded: %s", got)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); live.Keep(watchCtx) }()
	defer func() { stopWatch(); <-done }()

	// a keeps announcing, b stops, c leaves, d comes.
	if err := r.Leave(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := r.Announce(ctx, Node{Name: "d", Processors: 1}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got := names(); got != "a,d"; got = names() {
		if time.Now().After(deadline) {
			t.Fatalf("live nodes %s, want a,d", got)
		}
		if err := r.Announce(ctx, Node{Name: "a", Processors: 2}); err != nil {
			t.Fatal(err)
		}
		if err := r.Announce(ctx, Node{Name: "d", Processors: 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// What the bucket itself says agrees.
	listed, err := r.Nodes(ctx)
	if err != nil || len(listed) != 2 {
		t.Errorf("Nodes = %v, %v", listed, err)
	}
}
