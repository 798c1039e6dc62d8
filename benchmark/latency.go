package benchmark

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/pipeline"
	"github.com/jetinfer/jetinfer/wire"
)

// Latencies are one measurement's samples, in the order taken.
type Latencies []time.Duration

// Percentile is the nearest-rank p-th percentile (0 < p ≤ 100).
func (l Latencies) Percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

func (l Latencies) P50() time.Duration { return l.Percentile(50) }
func (l Latencies) P99() time.Duration { return l.Percentile(99) }

// LatencyResult is what Latency measured on one allocation of Threads.
type LatencyResult struct {
	Threads int
	// Engine, NATS and HTTP are one short search input answered
	// sequentially, the three interleaved so that all see the same
	// machine: the engine alone (pipeline.Infer on a directly loaded
	// model); the request as the HTTP API sends it on (wire.Client:
	// NATS request/reply to the deployment's search lane), from a client
	// connection of the benchmark's own; and POST _inference on the node.
	Engine, NATS, HTTP Latencies
	// Idle and Bulk are the same POST _inference searches while the
	// endpoint idles and while a bulk ingest keeps its allocation busy.
	Idle, Bulk Latencies
	// BulkDocs is the number of long documents queued as the bulk.
	BulkDocs int
}

// searchBody is the latency benchmark's request: one short query.
var searchBody = []byte(`{"input":["the quick brown fox"],"input_type":"search"}`)

// Latency measures, on an endpoint of one single-threaded allocation, what
// the NATS and HTTP paths add to the engine's own latency for one short
// input, and the latency of searches while a bulk ingest of long documents
// runs on the same allocation (searches are served on a lane of their own
// beside the bulk group).
func Latency(ctx context.Context, cfg Config) (r LatencyResult, err error) {
	cfg = cfg.withDefaults()
	r.Threads, r.BulkDocs = 1, cfg.BulkDocs
	b, err := startNode(ctx, cfg)
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, b.close(ctx)) }()
	ep, err := b.putEndpoint(ctx, 1, r.Threads)
	if err != nil {
		return r, err
	}
	req, err := inferapi.ParseRequest(searchBody)
	if err != nil {
		return r, err
	}
	m, err := denseModel(ctx, cfg, r.Threads)
	if err != nil {
		return r, err
	}
	engine := func() (time.Duration, error) {
		start := time.Now()
		_, err := pipeline.Infer(ctx, m, ep, req, inferapi.Options{})
		return time.Since(start), err
	}
	search := func() (time.Duration, error) { return b.infer(ctx, searchBody) }
	// What the HTTP API sends on, from a client connection: it splits the
	// overhead between the HTTP layer and the NATS request/reply path.
	client := wire.Client{NC: b.nc}
	viaNATS := func() (time.Duration, error) {
		start := time.Now()
		_, err := client.Infer(ctx, ep, req, inferapi.Options{})
		return time.Since(start), err
	}
	ls, err := interleave(cfg.LatencyRequests, search, viaNATS, engine)
	if err = errors.Join(err, m.Close()); err != nil {
		return r, err
	}
	r.HTTP, r.NATS, r.Engine = ls[0], ls[1], ls[2]

	if r.Idle, err = sample(cfg.LatencyRequests, search); err != nil {
		return r, err
	}
	if err := b.publish(ctx, "bulk", Documents(cfg.BulkDocs, 400, 3)); err != nil {
		return r, err
	}
	if err := waitBusy(ctx, b); err != nil {
		return r, err
	}
	if r.Bulk, err = sample(cfg.LatencyRequests, search); err != nil {
		return r, err
	}
	// The searches only measured "under bulk" if the bulk outlasted them.
	// What is still queued is left for the node's shutdown, which finishes
	// only the group in hand.
	pending, inHand, err := b.backlog(ctx)
	if err != nil {
		return r, err
	}
	if pending == 0 && inHand == 0 {
		return r, fmt.Errorf("the bulk ingest of %d documents ended before the %d searches did: queue more", cfg.BulkDocs, cfg.LatencyRequests)
	}
	return r, nil
}

// waitBusy waits until the allocation has taken bulk documents.
func waitBusy(ctx context.Context, b *benchNode) error {
	return waitQueue(ctx, b, "the deployment took no bulk document", func(_ uint64, inHand int) bool { return inHand > 0 })
}

// waitIdle waits until the endpoint holds no document, pending or in hand.
func waitIdle(ctx context.Context, b *benchNode) error {
	return waitQueue(ctx, b, "the bulk left documents queued", func(pending uint64, inHand int) bool { return pending == 0 && inHand == 0 })
}

// waitQueue waits, a minute at most, until the endpoint's queue is as done says.
func waitQueue(ctx context.Context, b *benchNode, never string, done func(pending uint64, inHand int) bool) error {
	deadline := time.Now().Add(time.Minute)
	for {
		pending, inHand, err := b.backlog(ctx)
		if err != nil {
			return err
		}
		if done(pending, inHand) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s within a minute (%d pending, %d in hand)", never, pending, inHand)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// interleave samples fs in turn, n times each, after a few warm-up calls
// of each outside the timing (first calls set up arenas and connections);
// it returns one Latencies per function.
func interleave(n int, fs ...func() (time.Duration, error)) ([]Latencies, error) {
	for range 5 {
		for _, f := range fs {
			if _, err := f(); err != nil {
				return nil, err
			}
		}
	}
	out := make([]Latencies, len(fs))
	for i := range out {
		out[i] = make(Latencies, 0, n)
	}
	for range n {
		for i, f := range fs {
			d, err := f()
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], d)
		}
	}
	return out, nil
}

func sample(n int, f func() (time.Duration, error)) (Latencies, error) {
	l := make(Latencies, 0, n)
	for range n {
		d, err := f()
		if err != nil {
			return l, err
		}
		l = append(l, d)
	}
	return l, nil
}
