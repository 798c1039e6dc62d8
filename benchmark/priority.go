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
	Allocations int
	Docs        int
	// Idle is paced as the searches during the bulk are (searchEvery), so that the ratio measures the bulk's
	// effect alone; BackToBack is the same searches one after the other, which run warmer.
	Idle, BackToBack, Saturated Latencies
	BulkAlone, BulkSearched     time.Duration
}

// searchEvery paces the searches, idle and during the bulk: ten a second, a search
// load that takes a few percent of the machine, so that what the bulk
// loses beyond that is what the searches' priority costs it.
const searchEvery = 100 * time.Millisecond

// Priority measures whether searches come first on a saturated machine
// (bulk lanes run at a lower OS priority, consumer.lowerPriority): the
// same searches idle and while the bulk runs, searchEvery apart both times
// (and idle back to back), and the same bulk alone and with those searches.
// The paced idle searches last as long as the bulk alone did, so that both
// p99s rest on about as many searches: a p99 of a few hundred is its three
// slowest, and moved from 0.83× to 1.97× idle between runs of the same code.
func Priority(ctx context.Context, cfg Config) (r PriorityResult, err error) {
	cfg = cfg.withDefaults()
	r.Allocations, r.Docs = runtime.NumCPU(), cfg.PriorityDocs
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
	if r.BackToBack, err = sample(cfg.LatencyRequests, search); err != nil {
		return r, err
	}
	docs := Documents(cfg.PriorityDocs, 400, 5)
	if r.BulkAlone, _, err = b.ingest(ctx, "alone", docs); err != nil {
		return r, err
	}
	// A document redelivered while it was embedded may still run after its
	// result came: the idle searches wait for the lanes to be idle.
	if err := waitIdle(ctx, b); err != nil {
		return r, err
	}
	// A search that comes after a pause runs colder than one that follows
	// another: on this project's VM the paced idle p99 was up to twice the
	// back-to-back one, which made the bulk look guilty of it.
	tick := time.NewTicker(searchEvery)
	defer tick.Stop()
	paced := func() (time.Duration, error) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return search()
	}
	if r.Idle, err = sample(max(cfg.LatencyRequests, int(r.BulkAlone/searchEvery)), paced); err != nil {
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
	tick.Reset(searchEvery)
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
	fmt.Fprintf(w, "| searches, idle, back to back | %s | %s | |\n", ms(r.BackToBack.P50()), ms(r.BackToBack.P99()))
	fmt.Fprintf(w, "| searches, idle, ten a second | %s | %s | |\n", ms(r.Idle.P50()), ms(r.Idle.P99()))
	fmt.Fprintf(w, "| searches during the bulk (%d) | %s | %s | %.1f |\n", len(r.Saturated), ms(r.Saturated.P50()), ms(r.Saturated.P99()), rate(r.BulkSearched))
	fmt.Fprintf(w, "| bulk alone | | | %.1f |\n", rate(r.BulkAlone))
	fmt.Fprintf(w, "| ratio | %.2f× idle | %.2f× idle | %.2f× alone |\n",
		r.Saturated.P50().Seconds()/r.Idle.P50().Seconds(), r.Saturated.P99().Seconds()/r.Idle.P99().Seconds(),
		rate(r.BulkSearched)/rate(r.BulkAlone))
}
