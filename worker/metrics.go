package worker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/metrics"
)

// The worker's metrics, read from what its deployments and models count
// when Prometheus scrapes: serving keeps no metric objects of its own.
var (
	waitingDesc = prometheus.NewDesc(metrics.Namespace+"_inference_requests_waiting",
		"Infer requests waiting in this process for a lane of the endpoint.", []string{"inference_id"}, nil)
	allocationsDesc = prometheus.NewDesc(metrics.Namespace+"_node_allocations",
		"Allocations of the endpoint running in this process.", []string{"inference_id"}, nil)
	modelCounters = []struct {
		desc *prometheus.Desc
		read func(s *inference.Stats) float64
	}{
		{modelDesc("model_batches_total", "Forward passes run."), func(s *inference.Stats) float64 { return float64(s.Batches.Load()) }},
		{modelDesc("model_inputs_total", "Sequences run (rows of the batches)."), func(s *inference.Stats) float64 { return float64(s.Inputs.Load()) }},
		{modelDesc("model_tokens_total", "Tokens run, padding excluded."), func(s *inference.Stats) float64 { return float64(s.RealTokens.Load()) }},
		{modelDesc("model_padded_tokens_total", "Positions run, padding included: 1 - tokens/padded is the share of padding."), func(s *inference.Stats) float64 { return float64(s.PaddedTokens.Load()) }},
		{modelDesc("model_tokenize_seconds_total", "Time spent in the tokenizer."), func(s *inference.Stats) float64 { return time.Duration(s.TokenizeNanos.Load()).Seconds() }},
		{modelDesc("model_run_seconds_total", "Time spent in ONNX Runtime."), func(s *inference.Stats) float64 { return time.Duration(s.RunNanos.Load()).Seconds() }},
	}
)

func modelDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(metrics.Namespace+"_"+name, help, []string{"model_id", "threads"}, nil)
}

// Describe sends nothing: endpoints come and go, so the collector is
// unchecked.
func (w *Worker) Describe(chan<- *prometheus.Desc) {}

// Collect sends the metrics of the endpoints this process has served.
func (w *Worker) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	eps := make([]*endpoint, 0, len(w.served))
	for _, e := range w.served {
		eps = append(eps, e)
	}
	w.mu.Unlock()
	for _, e := range eps {
		dep := e.deployment.Load()
		if dep == nil {
			continue
		}
		dep.Stats().Collect(ch)
		ch <- prometheus.MustNewConstMetric(waitingDesc, prometheus.GaugeValue, float64(dep.Waiting()), e.id)
		ch <- prometheus.MustNewConstMetric(allocationsDesc, prometheus.GaugeValue, float64(dep.Allocations()), e.id)
	}
}

// Describe sends nothing: models come and go.
func (m *ModelCache) Describe(chan<- *prometheus.Desc) {}

// Collect sends the counters of the models loaded.
func (m *ModelCache) Collect(ch chan<- prometheus.Metric) {
	// Sent after the lock is released: a slow scrape must not hold up
	// loads and releases.
	m.mu.Lock()
	ready := make(map[modelKey]*modelEntry, len(m.entries))
	for key, e := range m.entries {
		select {
		case <-e.ready:
			if e.model != nil {
				ready[key] = e
			}
		default:
		}
	}
	m.mu.Unlock()
	for key, e := range ready {
		st := e.model.Stats()
		for _, c := range modelCounters {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, c.read(st), key.id, strconv.Itoa(key.threads))
		}
		e.timings.tokenize.Collect(ch)
		e.timings.run.Collect(ch)
		e.timings.rows.Collect(ch)
	}
}

// modelTimings are a loaded model's latency histograms (inference.Timings).
type modelTimings struct {
	tokenize, run, rows prometheus.Histogram
}

func newModelTimings(key modelKey) *modelTimings {
	labels := prometheus.Labels{"model_id": key.id, "threads": strconv.Itoa(key.threads)}
	return &modelTimings{
		tokenize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metrics.Namespace, Name: "model_tokenize_duration_seconds",
			Help: "Time to tokenize the inputs of one request or group of documents.", ConstLabels: labels, Buckets: metrics.DurationBuckets}),
		run: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metrics.Namespace, Name: "model_run_duration_seconds",
			Help: "Time of one forward pass in ONNX Runtime.", ConstLabels: labels, Buckets: metrics.DurationBuckets}),
		rows: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metrics.Namespace, Name: "model_batch_rows",
			Help: "Sequences per forward pass.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
	}
}

func (t *modelTimings) Tokenized(d time.Duration) { t.tokenize.Observe(d.Seconds()) }

func (t *modelTimings) Ran(rows int, d time.Duration) {
	t.run.Observe(d.Seconds())
	t.rows.Observe(float64(rows))
}

// recordLoad counts a load that began at start and has ended in e.
func (m *ModelCache) recordLoad(modelID string, start time.Time, e *modelEntry) {
	if m.metrics == nil {
		return
	}
	if e.err != nil {
		m.metrics.ModelLoads.WithLabelValues(modelID, "error").Inc()
		return
	}
	m.metrics.ModelLoads.WithLabelValues(modelID, "ok").Inc()
	m.metrics.ModelLoadDuration.WithLabelValues(modelID).Observe(time.Since(start).Seconds())
}
