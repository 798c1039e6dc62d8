package benchmark

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/wire"
)

// HostileResult is one run of Hostile.
type HostileResult struct {
	Docs, Inputs int
	// Baseline is the resident memory with the endpoint deployed and idle,
	// Peak the highest while the documents were served.
	Baseline, Peak int64
	// Statuses counts the results by HTTP status (200 for embeddings).
	Statuses map[int]int
	Elapsed  time.Duration
}

// Hostile measures the peak resident memory of a node serving one group of
// the largest documents the limits let through to the engine: a group of
// consumer.DefaultGroupDocs documents of wire.MaxDocumentInputs short inputs
// each, on the dense model without chunking. Each result (about 9 MB of
// JSON) passes the bound checked before embedding and is refused (413) once
// it outgrows the embedded server's 8 MB message while it is written.
func Hostile(ctx context.Context, cfg Config) (HostileResult, error) {
	cfg = cfg.withDefaults()
	b, err := startNode(ctx, cfg)
	if err != nil {
		return HostileResult{}, err
	}
	defer func() { _ = b.close(ctx) }()
	if _, err := b.putEndpoint(ctx, 1, runtime.NumCPU()); err != nil {
		return HostileResult{}, err
	}
	r := HostileResult{Docs: consumer.DefaultGroupDocs, Inputs: wire.MaxDocumentInputs, Statuses: map[int]int{}}
	inputs := make([]string, r.Inputs)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("input %d", i)
	}

	var mu sync.Mutex
	done := make(chan struct{})
	sub, err := b.nc.Subscribe(wire.ResultsSubject(config.Token(benchEndpoint)), func(msg *nats.Msg) {
		var status struct {
			Status int `json:"status"`
		}
		_ = json.Unmarshal(msg.Data, &status)
		if status.Status == 0 {
			status.Status = 200
		}
		mu.Lock()
		defer mu.Unlock()
		r.Statuses[status.Status]++
		if n := sumCounts(r.Statuses); n == r.Docs {
			close(done)
		}
	})
	if err != nil {
		return r, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.Flush(); err != nil {
		return r, err
	}

	runtime.GC()
	debug.FreeOSMemory()
	// Writing 5 resets the peak (VmHWM) to the current resident size.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return r, fmt.Errorf("reset the peak resident memory: %w", err)
	}
	if r.Baseline, err = procStatus("VmRSS"); err != nil {
		return r, err
	}
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, r.Docs)
	for i := range futures {
		data, err := json.Marshal(map[string]any{"id": docID("hostile", i), "input": inputs})
		if err != nil {
			return r, err
		}
		msg := nats.NewMsg(wire.IngestSubject(config.Token(benchEndpoint)))
		msg.Data = data
		if futures[i], err = b.js.PublishMsgAsync(msg); err != nil {
			return r, err
		}
	}
	if err := awaitAcks(ctx, futures); err != nil {
		return r, err
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		return r, fmt.Errorf("not every result within 10 minutes: %v", r.Statuses)
	case <-ctx.Done():
		return r, ctx.Err()
	}
	r.Elapsed = time.Since(start)
	r.Peak, err = procStatus("VmHWM")
	return r, err
}

func sumCounts(m map[int]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// WriteHostile prints r as a Markdown table.
func WriteHostile(w io.Writer, r HostileResult) {
	fmt.Fprintln(w, "| documents | inputs each | results by status | resident before | peak | peak - before | per document | time |")
	fmt.Fprintln(w, "|---:|---:|---|---:|---:|---:|---:|---:|")
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "| %d | %d | %v | %s | %s | %s | %s | %.1f s |\n", r.Docs, r.Inputs, r.Statuses,
		mib(r.Baseline), mib(r.Peak), mib(r.Peak-r.Baseline), mib((r.Peak-r.Baseline)/int64(r.Docs)), r.Elapsed.Seconds())
}
