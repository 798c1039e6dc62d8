package controller

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats/natstest"
	"github.com/jetinfer/jetinfer/wire"
)

// Documents queued while an endpoint went to zero, before its ingest subject was listened to, wake it even when
// the first look at its queue failed: the look is made again at the next plans, not left to the sweep a minute
// later. The look fails here because the endpoint's consumer is gone; it succeeds once the consumer is back.
func TestFailedLookAtZeroIsRetried(t *testing.T) {
	nc, js := natstest.Start(t)
	ctx := context.Background()
	const interval = 200 * time.Millisecond
	sc := config.StoreConfig{Replicas: 1}
	endpoints, err := config.OpenStore(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	deployments, err := config.OpenDeploymentStore(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	registry, err := cluster.OpenRegistry(ctx, js, sc, 5*interval)
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
	if err := registry.Announce(ctx, cluster.Node{Name: "w1", Processors: 2}); err != nil {
		t.Fatal(err)
	}
	log := &logLines{}
	c, err := New(Config{NC: nc, JS: js, Endpoints: endpoints, Deployments: deployments, Registry: registry, Plans: plans,
		Lease: lease, Interval: interval, Log: zerolog.New(log).Level(zerolog.WarnLevel),
		Scaling: ScalerConfig{ScaleToZeroAfter: time.Second, Cooldown: interval}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var run sync.WaitGroup
	run.Go(func() { c.Run(runCtx) })
	t.Cleanup(func() { stop(); run.Wait() })

	ep, err := config.ParsePut("sleepy", config.TextEmbedding, []byte(`{"service":"elasticsearch","service_settings":{`+
		`"model_id":".multilingual-e5-small","num_threads":1,`+
		`"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":2}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := endpoints.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	target := func(want func(int) bool, within time.Duration) cluster.Plan {
		t.Helper()
		deadline := time.Now().Add(within)
		var last cluster.Plan
		for time.Now().Before(deadline) {
			all, err := plans.All(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if p, ok := all["sleepy"]; ok {
				if last = p; want(p.Target) {
					return p
				}
			}
			time.Sleep(interval / 4)
		}
		t.Fatalf("plan of sleepy: %+v", last)
		return last
	}
	// It starts with one allocation, whose consumer the controller made.
	target(func(n int) bool { return n == 1 }, 10*time.Second)
	token := config.Token("sleepy")
	if _, err := js.Consumer(ctx, wire.RequestsStream(token), wire.ConsumerName(token)); err != nil {
		t.Fatalf("the controller made no consumer: %v", err)
	}
	// The consumer goes and three documents queue; nothing consumes them, nothing sees them (the controller's
	// looks fail), and after a second of idleness the endpoint goes to zero and then to sleep.
	if err := js.DeleteConsumer(ctx, wire.RequestsStream(token), wire.ConsumerName(token)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := js.Publish(ctx, wire.IngestSubject(token), []byte(`{"id":"`+id+`","input":"queued while nobody listened"}`)); err != nil {
			t.Fatal(err)
		}
	}
	target(func(n int) bool { return n == 0 }, 10*time.Second)
	// Asleep, its subject is listened to and the look at its queue fails (the consumer is gone), plan after plan
	// (logged once).
	deadline := time.Now().Add(10 * time.Second)
	for log.count(lookFailed) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no look at the queue of the endpoint at zero failed; the log:\n%s", log.String())
		}
		time.Sleep(interval / 4)
	}
	time.Sleep(3 * interval)
	if n := log.count(lookFailed); n != 1 {
		t.Errorf("the failed look logged %d times, want once:\n%s", n, log.String())
	}
	// The consumer back, with the three documents pending: the next look finds them, long before the next sweep.
	if _, err := wire.EnsureEndpoint(ctx, js, "sleepy", wire.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	woke := time.Now()
	p := target(func(n int) bool { return n >= 1 }, sweepEvery/4)
	t.Logf("woken to %d allocations %s after the consumer came back", p.Target, time.Since(woke).Round(time.Millisecond))
}

// lookFailed is what the controller logs when it could not look at a queue.
const lookFailed = "look at the queue of an endpoint at zero"

// logLines keeps what a logger wrote, for a test to read while the logger writes.
type logLines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logLines) count(s string) int { return strings.Count(l.String(), s) }
