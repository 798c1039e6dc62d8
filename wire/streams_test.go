package wire

import (
	"context"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats/natstest"
)

// TestEnsureEndpointLeavesUnchangedStreams: what the server stores for an
// endpoint's streams compares equal to what EnsureEndpoint asks for, so a
// second call updates nothing (an update races with consumer creation).
func TestEnsureEndpointLeavesUnchangedStreams(t *testing.T) {
	_, js := natstest.Start(t)
	ctx := context.Background()
	cfg := QueueConfig{Capacity: 7, ResultsMaxAge: time.Hour, AckWait: time.Second}
	if _, err := EnsureEndpoint(ctx, js, "a.b", cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range streamConfigs(config.Token("a.b"), cfg.WithDefaults()) {
		s, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if have := s.CachedInfo().Config; !sameStream(have, want) {
			t.Errorf("stream %s stored as %+v; want %+v", want.Name, have, want)
		}
	}
	if err := RemoveEndpoint(ctx, js, "a.b"); err != nil {
		t.Fatal(err)
	}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		t.Errorf("stream %s left after RemoveEndpoint", name)
	}
}

// TestBacklogs: one listing gives every endpoint's queued documents.
func TestBacklogs(t *testing.T) {
	nc, js := natstest.Start(t)
	ctx := context.Background()
	for _, id := range []string{"a.b", "c"} {
		if _, err := EnsureEndpoint(ctx, js, id, QueueConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := js.Publish(ctx, IngestSubject(config.Token("a.b")), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	// A result is not a queued document.
	if err := nc.Publish(ResultsSubject("c"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	got, err := Backlogs(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a.b"] != 3 || got["c"] != 0 {
		t.Fatalf("backlogs %v; want a.b: 3, c: 0", got)
	}
}
