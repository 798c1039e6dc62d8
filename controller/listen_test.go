package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats/natstest"
	"github.com/jetinfer/jetinfer/wire"
)

// harness is a controller planning on a real JetStream, with one node announced and no worker: nothing consumes
// the documents queued.
type harness struct {
	js        jetstream.JetStream
	endpoints *config.Store
	plans     *cluster.Plans
}

// interval paces the harness's controller.
const interval = 200 * time.Millisecond

func startHarness(t *testing.T, processors int) harness {
	t.Helper()
	nc, js := natstest.Start(t)
	ctx := context.Background()
	sc := config.StoreConfig{Replicas: 1}
	endpoints, err := config.OpenStore(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	deployments, err := config.OpenDeploymentStore(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	// The lease and the node outlive any stall of a loaded machine: only the scaler's timing is short here.
	registry, err := cluster.OpenRegistry(ctx, js, sc, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	plans, err := cluster.OpenPlans(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cluster.OpenLease(ctx, js, sc, registry.TTL(), "w1")
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.Announce(ctx, cluster.Node{Name: "w1", Processors: processors}); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{NC: nc, JS: js, Endpoints: endpoints, Deployments: deployments, Registry: registry, Plans: plans,
		Lease: lease, Interval: interval, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Scaling: ScalerConfig{ScaleToZeroAfter: time.Second, Cooldown: interval}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var run sync.WaitGroup
	run.Go(func() { c.Run(runCtx) })
	t.Cleanup(func() { stop(); run.Wait() })
	return harness{js: js, endpoints: endpoints, plans: plans}
}

// define stores an adaptive endpoint of 0 to 2 allocations.
func (h harness) define(t *testing.T, id string) {
	t.Helper()
	ep, err := config.ParsePut(id, config.TextEmbedding, []byte(`{"service":"elasticsearch","service_settings":{`+
		`"model_id":".multilingual-e5-small","num_threads":1,`+
		`"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":2}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.endpoints.Create(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
}

// waitTargets waits until every endpoint's plan has a target want accepts.
func (h harness) waitTargets(t *testing.T, ids []string, want func(int) bool, within time.Duration) {
	t.Helper()
	h.waitTargetsWhile(t, ids, want, within, func() {})
}

// waitTargetsWhile is waitTargets calling meanwhile before each look at the plans.
func (h harness) waitTargetsWhile(t *testing.T, ids []string, want func(int) bool, within time.Duration, meanwhile func()) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		meanwhile()
		all, err := h.plans.All(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, id := range ids {
			if p, ok := all[id]; !ok || !want(p.Target) {
				missing = append(missing, fmt.Sprintf("%s (%+v)", id, p))
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d plans not there after %s: %v", len(missing), len(ids), within, missing)
		}
		time.Sleep(interval / 4)
	}
}

// queueUnseen queues a document for each endpoint where only a look at its stream can see it: its consumer,
// which the controller measures an allocated endpoint's backlog by, is deleted first (no worker runs to make it
// again), so that the endpoint goes to zero with the document queued, before its subject is listened to.
func (h harness) queueUnseen(t *testing.T, ids []string) {
	t.Helper()
	ctx := context.Background()
	// The controller writes plans before it has ensured every endpoint's streams when that takes a loaded server
	// longer than half a plan: the consumer may come a few plans after the target.
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for !h.deleteConsumer(t, id) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the controller made no consumer", id)
			}
			time.Sleep(interval / 4)
		}
		if _, err := h.js.Publish(ctx, wire.IngestSubject(config.Token(id)), []byte(`{"id":"`+id+`","input":"queued while nobody listened"}`)); err != nil {
			t.Fatal(err)
		}
	}
}

// deleteConsumer deletes an endpoint's consumer, and reports whether there was one.
func (h harness) deleteConsumer(t *testing.T, id string) bool {
	t.Helper()
	token := config.Token(id)
	err := h.js.DeleteConsumer(context.Background(), wire.RequestsStream(token), wire.ConsumerName(token))
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return true
}

// waitZeroUnseen waits until the endpoints' plans are at zero, their documents unseen by a consumer: one the
// controller makes again (ensuring streams it had no time for in earlier plans) is deleted again.
func (h harness) waitZeroUnseen(t *testing.T, ids []string, within time.Duration) {
	t.Helper()
	h.waitTargetsWhile(t, ids, zero, within, func() {
		for _, id := range ids {
			h.deleteConsumer(t, id)
		}
	})
}

var (
	one  = func(n int) bool { return n == 1 }
	zero = func(n int) bool { return n == 0 }
	some = func(n int) bool { return n >= 1 }
)

// A document queued before an endpoint at zero is listened to wakes it: the controller looks at the stream once it
// listens, not a minute later at its next sweep of every queue, and without the consumer (which the worker makes
// again when an allocation starts).
func TestQueuedBeforeListeningWakes(t *testing.T) {
	h := startHarness(t, 2)
	ids := []string{"sleepy"}
	h.define(t, ids[0])
	h.waitTargets(t, ids, one, 10*time.Second) // it starts with one allocation
	h.queueUnseen(t, ids)
	h.waitZeroUnseen(t, ids, 10*time.Second) // idle for a second, as far as the controller can see
	woke := time.Now()
	h.waitTargets(t, ids, some, sweepEvery/4)
	t.Logf("woken %s after the plan went to zero", time.Since(woke).Round(time.Millisecond))
}

// More endpoints go to zero at once than one plan looks at: those left over are looked at by the next plans.
func TestLooksBeyondOnePlan(t *testing.T) {
	h := startHarness(t, 100)
	var ids []string
	for i := range 2*maxLookPerPlan + 1 {
		ids = append(ids, fmt.Sprintf("sleepy-%02d", i))
		h.define(t, ids[i])
	}
	h.waitTargets(t, ids, one, 20*time.Second)
	h.queueUnseen(t, ids)
	h.waitZeroUnseen(t, ids, 20*time.Second)
	h.waitTargets(t, ids, some, sweepEvery/4)
}
