package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/consumer"
)

// The results stream drops a result republished within its duplicate
// window, so counting the stream's results cannot show a document embedded
// twice. The workers' own counters can: each node announces, with every
// heartbeat, how many results it published per endpoint (duplicates the
// stream dropped included).

// groupSlack bounds the documents a worker may redo legitimately after
// another lost them mid-way: a group per lane in the hands of the worker
// that died, and the group fetched for the next free lane.
func groupSlack(lanes int) int64 { return int64(lanes+1) * consumer.DefaultGroupDocs }

// workNow returns the results each node in the registry has published for
// inferenceID, by node name, as last announced.
func workNow(t *testing.T, js jetstream.JetStream, inferenceID string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	nodes, err := js.KeyValue(ctx, cluster.NodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := nodes.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for k := range keys.Keys() {
		e, err := nodes.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // left or expired meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		var n cluster.Node
		if err := json.Unmarshal(e.Value(), &n); err != nil {
			t.Fatal(err)
		}
		if d, ok := n.Deployments[inferenceID]; ok {
			out[n.Name] = d.Documents
		}
	}
	return out
}

// workDone returns workNow once ready accepts it and it stayed the same for
// more than two test heartbeats, so that every node has announced its last
// counts.
func workDone(t *testing.T, js jetstream.JetStream, inferenceID string, ready func(map[string]int64) bool) map[string]int64 {
	t.Helper()
	const readEvery = 300 * time.Millisecond
	deadline := time.Now().Add(time.Minute)
	var last map[string]int64
	stable := 0
	for {
		got := workNow(t, js, inferenceID)
		if fmt.Sprint(got) == fmt.Sprint(last) && ready(got) {
			if stable++; time.Duration(stable)*readEvery > 2*testHeartbeat {
				return got
			}
		} else {
			stable = 0
		}
		last = got
		if time.Now().After(deadline) {
			t.Fatalf("nodes' published results of %s: %v after a minute, not ready", inferenceID, last)
		}
		time.Sleep(readEvery)
	}
}

func sum(counts map[string]int64) int64 {
	var s int64
	for _, n := range counts {
		s += n
	}
	return s
}

// requireWork fails unless the nodes published between least and most
// results of inferenceID in all.
func requireWork(t *testing.T, js jetstream.JetStream, inferenceID string, least, most int64) map[string]int64 {
	t.Helper()
	got := workDone(t, js, inferenceID, func(c map[string]int64) bool { return sum(c) >= least })
	if s := sum(got); s < least || s > most {
		want := fmt.Sprint(least)
		if most != least {
			want = fmt.Sprintf("%d to %d", least, most)
		}
		t.Fatalf("the nodes published %d results of %s (%v); want %s", s, inferenceID, got, want)
	}
	return got
}
