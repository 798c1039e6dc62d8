package consumer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/metrics"
)

// DeploymentStats counts what a deployment did in this process. It is a
// prometheus.Collector of the deployment's metrics, labelled with its
// inference id.
type DeploymentStats struct {
	Documents  atomic.Int64 // results published, errors included
	Errors     atomic.Int64 // error results published
	Inferences atomic.Int64 // infer requests answered, errors included
	Rejected   atomic.Int64 // infer requests refused with 429
	// BusyNanos is the time spent computing documents and requests.
	BusyNanos atomic.Int64
	// FirstDeliveries and Redeliveries count documents taken from the
	// queue; ResultsOK the results stored that are not error results;
	// Terminated the documents ended for good after an error result
	// (invalid, or out of attempts). Each event adds to one of them only, so
	// that no counter a scrape reads can appear to go back.
	FirstDeliveries, Redeliveries, ResultsOK, Terminated atomic.Int64

	id string
	// task is the endpoint's task type, known for a trained model
	// deployment only once its model is loaded (SetTask).
	task atomic.Pointer[string]
	// requests counts infer requests by task type and outcome ("ok", or
	// the error type); queueWait is how long they waited for a lane,
	// duration how long they took in this process, waiting included.
	requests            *prometheus.CounterVec
	queueWait, duration prometheus.Histogram

	mu sync.Mutex
	// minute is the minute (Unix time / 60) count belongs to; last the
	// count of the minute before; peak the highest whole-minute count.
	minute, count, last, peak int64
	lastAccess                time.Time
}

func newDeploymentStats(inferenceID string, task config.TaskType) *DeploymentStats {
	labels := prometheus.Labels{"inference_id": inferenceID}
	s := &DeploymentStats{
		id: inferenceID,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: "inference_requests_total",
			Help:        "Infer requests answered by this process, by task type and outcome: ok, or the Elasticsearch error type.",
			ConstLabels: labels}, []string{"task_type", "outcome"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metrics.Namespace, Name: "inference_queue_wait_seconds",
			Help: "Time infer requests waited for a lane.", ConstLabels: labels, Buckets: metrics.DurationBuckets}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metrics.Namespace, Name: "inference_request_duration_seconds",
			Help: "Time infer requests took in the worker, waiting for a lane included.", ConstLabels: labels, Buckets: metrics.DurationBuckets}),
	}
	s.SetTask(task)
	return s
}

// SetTask records the endpoint's task type.
func (s *DeploymentStats) SetTask(task config.TaskType) {
	t := string(task)
	s.task.Store(&t)
}

// request counts an infer request answered with outcome.
func (s *DeploymentStats) request(outcome string) {
	s.requests.WithLabelValues(*s.task.Load(), outcome).Inc()
}

var (
	docsDesc = prometheus.NewDesc(metrics.Namespace+"_documents_total",
		"Documents taken from the endpoint's queue (deliveries), by whether it was a redelivery.", []string{"inference_id", "delivery"}, nil)
	resultsDesc = prometheus.NewDesc(metrics.Namespace+"_document_results_total",
		"Results stored for documents, by outcome: ok, or error (an error result).", []string{"inference_id", "outcome"}, nil)
	terminatedDesc = prometheus.NewDesc(metrics.Namespace+"_documents_terminated_total",
		"Documents ended for good after their error result (invalid, or out of attempts).", []string{"inference_id"}, nil)
	busyDesc = prometheus.NewDesc(metrics.Namespace+"_busy_seconds_total",
		"Time spent computing documents and requests.", []string{"inference_id"}, nil)
)

// Describe sends nothing: the deployments of a process come and go, so
// their collector is unchecked.
func (s *DeploymentStats) Describe(chan<- *prometheus.Desc) {}

// Collect sends the deployment's metrics.
func (s *DeploymentStats) Collect(ch chan<- prometheus.Metric) {
	s.requests.Collect(ch)
	s.queueWait.Collect(ch)
	s.duration.Collect(ch)
	ch <- prometheus.MustNewConstMetric(docsDesc, prometheus.CounterValue, float64(s.FirstDeliveries.Load()), s.id, "first")
	ch <- prometheus.MustNewConstMetric(docsDesc, prometheus.CounterValue, float64(s.Redeliveries.Load()), s.id, "redelivery")
	ch <- prometheus.MustNewConstMetric(resultsDesc, prometheus.CounterValue, float64(s.ResultsOK.Load()), s.id, "ok")
	ch <- prometheus.MustNewConstMetric(resultsDesc, prometheus.CounterValue, float64(s.Errors.Load()), s.id, "error")
	ch <- prometheus.MustNewConstMetric(terminatedDesc, prometheus.CounterValue, float64(s.Terminated.Load()), s.id)
	ch <- prometheus.MustNewConstMetric(busyDesc, prometheus.CounterValue, time.Duration(s.BusyNanos.Load()).Seconds(), s.id)
}

// done counts n documents or requests finished now.
func (s *DeploymentStats) done(n int64) {
	now := time.Now()
	m := now.Unix() / 60
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roll(m)
	s.count += n
	s.peak = max(s.peak, s.count)
	s.lastAccess = now
}

func (s *DeploymentStats) roll(m int64) {
	if m == s.minute {
		return
	}
	if m == s.minute+1 {
		s.last = s.count
	} else {
		s.last = 0
	}
	s.minute, s.count = m, 0
}

// Throughput returns the documents and requests finished in the last whole
// minute, the most in any minute so far (the current one included), and
// when the last one finished.
func (s *DeploymentStats) Throughput() (lastMinute, peakPerMinute int64, lastAccess time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roll(time.Now().Unix() / 60)
	return s.last, s.peak, s.lastAccess
}
