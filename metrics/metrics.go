// Package metrics holds a jetinfer process's Prometheus metrics: its
// registry (with Go and process collectors), the metrics that several
// parts update (HTTP requests, the NATS connection, model loads), the
// collectors other packages register for what they keep themselves
// (deployments, plans), and the /metrics handler.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every jetinfer metric.
const Namespace = "jetinfer"

// DurationBuckets are the buckets of every latency histogram, in seconds:
// from a cached single-input request to a long download.
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Metrics is one process's registry and its shared metrics. Parts that
// may run without metrics (tests, the CLI) are given a nil *Metrics and
// check for it.
type Metrics struct {
	reg *prometheus.Registry

	// HTTPRequests counts HTTP API requests by the Elasticsearch action
	// they ran as, HTTP status, and the error type of a failure ("" for
	// success).
	HTTPRequests *prometheus.CounterVec
	// HTTPDuration is their latency, by action.
	HTTPDuration *prometheus.HistogramVec
	// NATSConnected is 1 while the NATS connection is up.
	NATSConnected prometheus.Gauge
	// NATSReconnects counts reconnections.
	NATSReconnects prometheus.Counter
	// ModelLoads counts model loads by model id and outcome (ok, error);
	// ModelLoadDuration is how long the successful ones took, fetching
	// and downloading included.
	ModelLoads        *prometheus.CounterVec
	ModelLoadDuration *prometheus.HistogramVec
	// ModelDownloadBytes counts the bytes of built-in models downloaded
	// (from the Hub or a mirror), retries included, by model id.
	ModelDownloadBytes *prometheus.CounterVec
}

// New returns a registry with the Go and process collectors and the
// shared metrics.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.HTTPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "http_requests_total",
		Help: "HTTP API requests by Elasticsearch action, status and error type (empty on success)."}, []string{"action", "status", "error_type"})
	m.HTTPDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "http_request_duration_seconds",
		Help: "HTTP API request latency by Elasticsearch action.", Buckets: DurationBuckets}, []string{"action"})
	m.NATSConnected = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "nats_connected",
		Help: "1 while the NATS connection is up."})
	m.NATSReconnects = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "nats_reconnects_total",
		Help: "Reconnections of the NATS connection."})
	m.ModelLoads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "model_loads_total",
		Help: "Model loads by model id and outcome (ok, error)."}, []string{"model_id", "outcome"})
	m.ModelLoadDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "model_load_duration_seconds",
		Help: "Time to make a model ready (download, fetch from the model store, session creation), by model id.", Buckets: DurationBuckets}, []string{"model_id"})
	m.ModelDownloadBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "model_download_bytes_total",
		Help: "Bytes of built-in models downloaded from their source, retries included, by model id."}, []string{"model_id"})
	m.reg.MustRegister(m.HTTPRequests, m.HTTPDuration, m.NATSConnected, m.NATSReconnects, m.ModelLoads, m.ModelLoadDuration, m.ModelDownloadBytes)
	return m
}

// Register adds a collector (a package's view of what it keeps).
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(c)
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Gatherer is the registry, for tests and in-process scrapes.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }
