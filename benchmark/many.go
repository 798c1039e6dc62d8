package benchmark

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/jetinfer/jetinfer/config"
)

// ManyResult is one run of ManyEndpoints.
type ManyResult struct {
	Endpoints int
	// Puts are the PUT latencies, sorted.
	Puts []time.Duration
	// IdleCPU is the process's CPU time (jetinfer and its embedded
	// nats-server) over Idle, with every endpoint defined and none used.
	IdleCPU, Idle time.Duration
	// Requests are the latencies of POST _inference to idle endpoints,
	// each a different one, one after the other, sorted.
	Requests []time.Duration
}

// manyBody defines one of ManyEndpoints' endpoints: adaptive from 0 to 1
// allocation, so that it takes a processor only while it is used.
func manyBody() []byte {
	return fmt.Appendf(nil, `{"service":"elasticsearch","service_settings":{"model_id":%q,"num_threads":1,`+
		`"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":1}},"chunking_settings":{"strategy":"none"}}`,
		config.ModelE5Small)
}

// ManyConfig shapes ManyEndpoints.
type ManyConfig struct {
	// Endpoints are defined; Requests go to idle ones, each a different one.
	Endpoints, Requests int
	// Settle passes between the last PUT and the idle window: the embedded
	// nats-server writes the full state of each new stream once, two to
	// two and a half minutes after its creation, which is the cost of
	// creating it, not of keeping it idle.
	Settle time.Duration
	// Idle is the window the idle CPU is measured over; it should span
	// nats-server's sync interval (two minutes), its periodic cost.
	Idle time.Duration
	// Profile, when set, is where the idle window's CPU profile is written.
	Profile string
}

// DefaultManyConfig is what jetinfer-bench runs by default.
func DefaultManyConfig() ManyConfig {
	return ManyConfig{Endpoints: 1000, Requests: 50, Settle: 3 * time.Minute, Idle: 150 * time.Second}
}

// ManyEndpoints defines mc.Endpoints adaptive endpoints of one model on a
// node whose processors are this machine's cores, then measures how long
// each PUT took, the CPU the idle node uses, and how long requests to idle
// endpoints take (each reclaims the allocation of one used before it).
func ManyEndpoints(ctx context.Context, cfg Config, mc ManyConfig) (ManyResult, error) {
	cfg = cfg.withDefaults()
	b, err := startNode(ctx, cfg)
	if err != nil {
		return ManyResult{}, err
	}
	defer func() { _ = b.close(ctx) }()
	endpoints, requests, idle, profile := mc.Endpoints, mc.Requests, mc.Idle, mc.Profile
	r := ManyResult{Endpoints: endpoints, Idle: idle}
	id := func(i int) string { return fmt.Sprintf("many-%04d", i) }
	// The first deploys the model (imports it into the store, loads it):
	// not what a PUT costs once the model is there.
	if _, err := b.do(ctx, http.MethodPut, "/_inference/text_embedding/many-warm-up?timeout=5m", manyBody()); err != nil {
		return r, err
	}
	for i := range endpoints {
		start := time.Now()
		if _, err := b.do(ctx, http.MethodPut, "/_inference/text_embedding/"+id(i), manyBody()); err != nil {
			return r, err
		}
		r.Puts = append(r.Puts, time.Since(start))
	}
	slices.Sort(r.Puts)

	select {
	case <-time.After(mc.Settle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	before, err := cpuTime()
	if err != nil {
		return r, err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return r, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return r, err
		}
	}
	select {
	case <-time.After(idle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	if profile != "" {
		pprof.StopCPUProfile()
	}
	after, err := cpuTime()
	if err != nil {
		return r, err
	}
	r.IdleCPU = after - before

	rng := rand.New(rand.NewPCG(1, 2))
	for _, i := range rng.Perm(endpoints)[:min(requests, endpoints)] {
		start := time.Now()
		if _, err := b.do(ctx, http.MethodPost, "/_inference/"+id(i)+"?timeout=1m", []byte(`{"input":"a request to an idle endpoint"}`)); err != nil {
			return r, err
		}
		r.Requests = append(r.Requests, time.Since(start))
	}
	slices.Sort(r.Requests)
	return r, nil
}

// cpuTime is the process's user and system CPU time.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// quantile is the q-quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// WriteMany prints r as a Markdown table.
func WriteMany(w io.Writer, r ManyResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintln(w, "| endpoints | PUT p50 | PUT p99 | idle CPU (jetinfer + nats-server) | requests to idle endpoints | request p50 | request p99 | request max |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d | %s | %s | %.1f%% of a core over %s | %d | %s | %s | %s |\n", r.Endpoints,
		ms(quantile(r.Puts, 0.5)), ms(quantile(r.Puts, 0.99)), 100*r.IdleCPU.Seconds()/r.Idle.Seconds(), r.Idle,
		len(r.Requests), ms(quantile(r.Requests, 0.5)), ms(quantile(r.Requests, 0.99)), ms(quantile(r.Requests, 1)))
}
