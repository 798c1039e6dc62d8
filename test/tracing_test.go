package test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/auth"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/node"
	"github.com/jetinfer/jetinfer/wire"
)

// TestTraceSpansHTTPNATSAndWorker: a request with a client's traceparent is
// one trace from the HTTP API through its NATS request to the worker's
// tokenizer and model run; a document published with a traceparent
// continues the publisher's trace in the worker, and its result carries it.
func TestTraceSpansHTTPNATSAndWorker(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	n := startNode(t, func(c *node.Config) { c.Tracer = tp })
	const id = "traced"
	n.do(t, "PUT", "/_inference/text_embedding/"+id+"?timeout=2m",
		`{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":1,"num_threads":1},"chunking_settings":{"strategy":"none"}}`).mustStatus(t, 200)
	exp.Reset()

	const client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req, err := http.NewRequest("POST", n.base+"/_inference/"+id, strings.NewReader(`{"input":"a traced search"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", client)
	send(t, req).mustStatus(t, 200)
	spans := waitSpans(t, exp, "process infer")
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		if s.SpanContext.TraceID().String() == "0af7651916cd43dd8448eb211c80319c" {
			byName[s.Name] = s
		}
	}
	server, sent, worker := byName["POST "+auth.ActionInferencePost], byName["send infer"], byName["process infer"]
	tokenize, run := byName["tokenize"], byName["run batch"]
	for _, c := range []struct {
		name          string
		span, parent  tracetest.SpanStub
		kind          trace.SpanKind
		wantParentHex string
	}{
		{"HTTP server span", server, tracetest.SpanStub{}, trace.SpanKindServer, "b7ad6b7169203331"},
		{"NATS request", sent, server, trace.SpanKindClient, ""},
		{"worker", worker, sent, trace.SpanKindServer, ""},
		{"tokenizer", tokenize, worker, trace.SpanKindInternal, ""},
		{"model run", run, worker, trace.SpanKindInternal, ""},
	} {
		want := c.wantParentHex
		if want == "" {
			want = c.parent.SpanContext.SpanID().String()
		}
		if c.span.Name == "" || c.span.Parent.SpanID().String() != want || c.span.SpanKind != c.kind {
			t.Errorf("%s: %q parent %s kind %v; want parent %s kind %v (trace has %v)", c.name, c.span.Name, c.span.Parent.SpanID(), c.span.SpanKind, want, c.kind, names(spans))
		}
	}

	// A publisher's document.
	exp.Reset()
	js := connectJS(t, n.NATSURL())
	res := watchResults(t, js, id)
	const publisher = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	msg := nats.NewMsg(wire.IngestSubject(config.Token(id)))
	msg.Header.Set("Nats-Msg-Id", "doc-t")
	msg.Header.Set("traceparent", publisher)
	msg.Data = docBody("doc-t", "a traced document")
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	res.until(1, time.Minute)
	spans = waitSpans(t, exp, "process ingest")
	var doc, group tracetest.SpanStub
	for _, s := range spans {
		switch s.Name {
		case "process ingest":
			doc = s
		case "embed group":
			group = s
		}
	}
	if doc.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || doc.Parent.SpanID().String() != "00f067aa0ba902b7" || doc.SpanKind != trace.SpanKindConsumer {
		t.Errorf("document span %+v; want a consumer span in the publisher's trace, child of its span", doc.SpanContext)
	}
	if len(group.Links) != 1 || group.Links[0].SpanContext.SpanID() != doc.SpanContext.SpanID() {
		t.Errorf("the group's span links %v; want the document's span", group.Links)
	}
	// The result carries the document's span as its parent.
	cons, err := js.OrderedConsumer(context.Background(), wire.ResultsStream(config.Token(id)), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Headers().Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-"+doc.SpanContext.SpanID().String()+"-01"; got != want {
		t.Errorf("result traceparent %q; want %q", got, want)
	}
}

// waitSpans waits until a span named last has ended, and returns those ended.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, last string) tracetest.SpanStubs {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		spans := exp.GetSpans()
		for _, s := range spans {
			if s.Name == last {
				return spans
			}
		}
	}
	t.Fatalf("no span %q ended; have %v", last, names(exp.GetSpans()))
	return nil
}

func names(spans tracetest.SpanStubs) string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return strings.Join(out, ", ")
}
