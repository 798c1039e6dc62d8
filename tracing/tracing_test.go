package tracing

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

// TestExportsOverOTLP: with an endpoint, spans reach the collector's
// /v1/traces as OTLP protobuf; without one, nothing is recorded.
func TestExportsOverOTLP(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, body)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	ctx := context.Background()
	tp, shutdown, err := Setup(ctx, collector.URL, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer(Name).Start(ctx, "a span")
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Method != "POST" || got[0].URL.Path != "/v1/traces" || got[0].Header.Get("Content-Type") != "application/x-protobuf" ||
		!bytes.Contains(bodies[0], []byte("a span")) || !bytes.Contains(bodies[0], []byte("node-1")) {
		t.Fatalf("collector received %d requests: %+v", len(got), got)
	}

	if off, _, err := Setup(ctx, "", "node-1"); off != nil || err != nil {
		t.Errorf("without an endpoint: %v, %v; want no provider", off, err)
	}
	if _, _, err := Setup(ctx, "collector:4318", "node-1"); err == nil {
		t.Error("an endpoint without a scheme was accepted")
	}
}

// TestTraceparentThroughNATSHeaders: injected as W3C's lowercase header,
// read back whatever its case.
func TestTraceparentThroughNATSHeaders(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, key := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		h := nats.Header{}
		h.Set(key, parent)
		sc := trace.SpanContextFromContext(Extract(context.Background(), h))
		if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" || !sc.IsRemote() {
			t.Errorf("%s: extracted %v", key, sc)
		}
	}
	msg := nats.NewMsg("s")
	h := nats.Header{}
	h.Set("traceparent", parent)
	Inject(Extract(context.Background(), h), msg)
	if got := msg.Header.Get("traceparent"); got != parent {
		t.Errorf("injected traceparent %q; want %q", got, parent)
	}
	plain := nats.NewMsg("s")
	Inject(context.Background(), plain)
	if len(plain.Header) != 0 {
		t.Errorf("a context without a span wrote headers %v", plain.Header)
	}
}
