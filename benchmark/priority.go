package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"
)

// PriorityResult is searches and bulk ingest on one endpoint whose
// allocations (one thread each) take every core, so that the bulk
// saturates the CPU: search latency idle and under the bulk, and the
// bulk's documents per second without and with searches.
type PriorityResult struct {
	Allocations             int
	Docs                    int
	Idle, Saturated         Latencies
	BulkAlone, BulkSearched time.Duration
}

// searchEvery paces the searches during the bulk: ten a second, a search
// load that takes a few percent of the machine, so that what the bulk
// loses beyond that is what the searches' priority costs it.
const searchEvery = 100 * time.Millisecond

// Priority measures whether searches come first on a saturated machine
// (bulk lanes run at a lower OS priority, consumer.lowerPriority): the
// same searches idle and while the bulk runs (searchEvery apart), and the
// same bulk alone and with those searches.
func Priority(ctx context.Context, cfg Config) (r PriorityResult, err error) {
	cfg = cfg.withDefaults()
	r.Allocations, r.Docs = runtime.NumCPU(), cfg.BulkDocs
	b, err := startNode(ctx, cfg)
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, b.close(ctx)) }()
	if _, err := b.putEndpoint(ctx, r.Allocations, 1); err != nil {
		return r, err
	}
	search := func() (time.Duration, error) { return b.infer(ctx, searchBody) }
	for range 5 { // warm-up
		if _, err := search(); err != nil {
			return r, err
		}
	}
	if r.Idle, err = sample(cfg.LatencyRequests, search); err != nil {
		return r, err
	}
	docs := Documents(cfg.BulkDocs, 400, 5)
	if r.BulkAlone, _, err = b.ingest(ctx, "alone", docs); err != nil {
		return r, err
	}
	// The same bulk again, searched all along.
	type ingested struct {
		d   time.Duration
		err error
	}
	done := make(chan ingested, 1)
	go func() {
		d, _, err := b.ingest(ctx, "searched", docs)
		done <- ingested{d, err}
	}()
	if err := waitBusy(ctx, b); err != nil {
		return r, err
	}
	tick := time.NewTicker(searchEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case in := <-done:
			r.BulkSearched = in.d
			if in.err != nil {
				return r, in.err
			}
			if len(r.Saturated) < 20 {
				return r, fmt.Errorf("only %d searches ran during the bulk: queue more documents", len(r.Saturated))
			}
			return r, nil
		case <-ctx.Done():
			return r, ctx.Err()
		}
		d, err := search()
		if err != nil {
			return r, err
		}
		r.Saturated = append(r.Saturated, d)
	}
}

// WritePriority prints r as a Markdown table.
func WritePriority(w io.Writer, r PriorityResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	rate := func(d time.Duration) float64 { return float64(r.Docs) / d.Seconds() }
	fmt.Fprintln(w, "| | p50 | p99 | bulk documents/s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	fmt.Fprintf(w, "| searches, idle | %s | %s | |\n", ms(r.Idle.P50()), ms(r.Idle.P99()))
	fmt.Fprintf(w, "| searches during the bulk (%d) | %s | %s | %.1f |\n", len(r.Saturated), ms(r.Saturated.P50()), ms(r.Saturated.P99()), rate(r.BulkSearched))
	fmt.Fprintf(w, "| bulk alone | | | %.1f |\n", rate(r.BulkAlone))
	fmt.Fprintf(w, "| ratio | %.2f× idle | %.2f× idle | %.2f× alone |\n",
		r.Saturated.P50().Seconds()/r.Idle.P50().Seconds(), r.Saturated.P99().Seconds()/r.Idle.P99().Seconds(),
		rate(r.BulkSearched)/rate(r.BulkAlone))
}
