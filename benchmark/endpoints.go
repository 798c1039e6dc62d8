package benchmark

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/node"
	"github.com/jetinfer/jetinfer/wire"
)

// EndpointsResult is one run of Endpoints.
type EndpointsResult struct {
	Endpoints, Docs int
	// Stored is the time from the first publish until JetStream had
	// acknowledged every document; Done until every result had arrived.
	Stored, Done time.Duration
}

// Endpoints measures ingest spread over several endpoints of one model:
// docs short documents published round-robin to endpoints endpoints (one
// single-thread allocation each), how fast JetStream stores them and how
// fast every result comes back. Results are read from a core subscription
// on every endpoint's results subject, so the measurement does not depend
// on which streams hold them.
func Endpoints(ctx context.Context, cfg Config, endpoints, docs int) (EndpointsResult, error) {
	cfg = cfg.withDefaults()
	b, err := startNode(ctx, cfg, func(c *node.Config) { c.Processors = endpoints })
	if err != nil {
		return EndpointsResult{}, err
	}
	defer func() { _ = b.close(ctx) }()
	ids := make([]string, endpoints)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", benchEndpoint, i)
		if _, err := b.do(ctx, http.MethodPut, "/_inference/text_embedding/"+ids[i]+"?timeout=5m", endpointBody(1, 1)); err != nil {
			return EndpointsResult{}, err
		}
	}

	var mu sync.Mutex
	seen := map[string]bool{}
	done := make(chan struct{})
	var failed error
	sub, err := b.nc.Subscribe(wire.ResultsSubject("*"), func(msg *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		id := msg.Header.Get(wire.HeaderDocumentID)
		if seen[id] || len(seen) == docs {
			return
		}
		if failed == nil && len(msg.Data) > 0 && string(msg.Data[:min(len(msg.Data), 8)]) == `{"error"` {
			failed = fmt.Errorf("document %s failed: %s", id, msg.Data)
		}
		seen[id] = true
		if len(seen) == docs {
			close(done)
		}
	})
	if err != nil {
		return EndpointsResult{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.Flush(); err != nil {
		return EndpointsResult{}, err
	}

	start := time.Now()
	futures := make([]jetstream.PubAckFuture, docs)
	for i := range docs {
		id := docID("endpoints", i)
		data, err := json.Marshal(struct {
			ID    string   `json:"id"`
			Input []string `json:"input"`
		}{id, []string{fmt.Sprintf("short document number %d about queues and streams", i)}})
		if err != nil {
			return EndpointsResult{}, err
		}
		msg := nats.NewMsg(wire.IngestSubject(config.Token(ids[i%endpoints])))
		msg.Header.Set(nats.MsgIdHdr, id)
		msg.Data = data
		if futures[i], err = b.js.PublishMsgAsync(msg); err != nil {
			return EndpointsResult{}, fmt.Errorf("publish %s: %w", id, err)
		}
	}
	if err := awaitAcks(ctx, futures); err != nil {
		return EndpointsResult{}, err
	}
	r := EndpointsResult{Endpoints: endpoints, Docs: docs, Stored: time.Since(start)}
	select {
	case <-done:
		r.Done = time.Since(start)
	case <-time.After(resultStall):
		mu.Lock()
		defer mu.Unlock()
		return r, fmt.Errorf("%d of %d results after %s", len(seen), docs, resultStall)
	case <-ctx.Done():
		return r, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	return r, failed
}

// WriteEndpoints prints r as a Markdown table.
func WriteEndpoints(w io.Writer, r EndpointsResult) {
	fmt.Fprintln(w, "| endpoints | documents | stored in | documents/s stored | all results in | documents/s end to end |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d | %d | %.2f s | %.0f | %.2f s | %.0f |\n", r.Endpoints, r.Docs,
		r.Stored.Seconds(), float64(r.Docs)/r.Stored.Seconds(), r.Done.Seconds(), float64(r.Docs)/r.Done.Seconds())
}
