// Package tracing sets up OpenTelemetry tracing for a jetinfer process (an
// OTLP exporter when an endpoint is configured, nothing otherwise) and
// carries W3C trace context through NATS message headers, so that a trace
// runs from an HTTP request or a publisher's document through NATS into
// the worker that serves it.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// EndpointEnv is OpenTelemetry's standard variable for the OTLP endpoint;
// --otlp-endpoint takes precedence.
const EndpointEnv = "OTEL_EXPORTER_OTLP_ENDPOINT"

// Name is the instrumentation scope of jetinfer's spans.
const Name = "github.com/jetinfer/jetinfer"

// Setup returns the tracer provider of a process named node: spans
// exported over OTLP/HTTP to endpoint (a URL such as http://collector:4318),
// or nil when endpoint is empty: nothing is traced then, at no cost.
// shutdown flushes what is buffered.
func Setup(ctx context.Context, endpoint, node string) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	if endpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("otlp endpoint %q: want an http:// or https:// URL such as http://collector:4318", endpoint)
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(strings.TrimSuffix(endpoint, "/")+"/v1/traces"))
	if err != nil {
		return nil, nil, fmt.Errorf("otlp exporter: %w", err)
	}
	// The SDK's defaults (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, the
	// SDK's own attributes) under jetinfer's name and the node's.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName("jetinfer"), semconv.ServiceInstanceID(node)))
	if err != nil {
		return nil, nil, fmt.Errorf("otlp resource: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return sdk, sdk.Shutdown, nil
}

// propagator reads and writes the W3C traceparent and tracestate headers.
var propagator = propagation.TraceContext{}

// Inject writes ctx's span context into a NATS message's headers.
func Inject(ctx context.Context, msg *nats.Msg) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	propagator.Inject(ctx, carrier(msg.Header))
}

// Extract returns ctx with the span context of a NATS message's headers,
// if they carry one.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return propagator.Extract(ctx, carrier(h))
}

// carrier adapts NATS headers, whose keys are case-sensitive, to the
// propagator: it writes W3C's lowercase names and reads any case, as a
// publisher may write Traceparent.
type carrier nats.Header

func (c carrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	for k, vs := range c {
		if strings.EqualFold(k, key) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

func (c carrier) Set(key, value string) { nats.Header(c).Set(strings.ToLower(key), value) }

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Tracer is the tracer of the span in ctx (one that records nothing when
// ctx has none): the parts of jetinfer below the HTTP API and the consumer
// start spans only under one they were given, so they need no tracer of
// their own.
func Tracer(ctx context.Context) trace.Tracer {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(Name)
}

// End ends span, marking it failed with err if err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// ExtractHTTP returns ctx with the span context of an HTTP request's
// traceparent header, if any.
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}
