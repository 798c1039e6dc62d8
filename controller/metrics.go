package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/metrics"
)

var (
	leaderDesc = prometheus.NewDesc(metrics.Namespace+"_controller_leader",
		"1 while this process holds the controller lease and plans.", nil, nil)
	allocationsDesc = prometheus.NewDesc(metrics.Namespace+"_allocations",
		"The controller's plan of an endpoint (or trained model deployment): target allocations, running ones (placed on nodes), pending ones (fitting nowhere).", []string{"inference_id", "state"}, nil)
	scalerRateDesc = prometheus.NewDesc(metrics.Namespace+"_scaler_request_rate",
		"The adaptive scaler's estimate of documents and requests per second.", []string{"inference_id"}, nil)
	scalerTimeDesc = prometheus.NewDesc(metrics.Namespace+"_scaler_inference_time_seconds",
		"The adaptive scaler's estimate of the time one document or request takes.", []string{"inference_id"}, nil)
	scalerBacklogDesc = prometheus.NewDesc(metrics.Namespace+"_scaler_backlog",
		"Documents queued or in progress and requests waiting, as the adaptive scaler last measured them.", []string{"inference_id"}, nil)
	queueDesc = prometheus.NewDesc(metrics.Namespace+"_queue_documents",
		"Documents of the endpoint's queue: pending (not yet delivered) and unacknowledged (in a worker's hands), as the controller last looked (each interval while it has allocations, each minute otherwise).", []string{"inference_id", "state"}, nil)
	scalerNeededDesc = prometheus.NewDesc(metrics.Namespace+"_scaler_needed_allocations",
		"The allocations the adaptive scaler estimates the load needs.", []string{"inference_id"}, nil)
)

// Describe sends nothing: endpoints come and go, so the collector is
// unchecked.
func (c *Controller) Describe(chan<- *prometheus.Desc) {}

// Collect sends whether this process leads and, if it does, the plan it
// last wrote, with the scaler's estimates as written there (refreshed at
// most every ten intervals).
func (c *Controller) Collect(ch chan<- prometheus.Metric) {
	c.planDuration.Collect(ch)
	if !c.leader.Load() {
		ch <- prometheus.MustNewConstMetric(leaderDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(leaderDesc, prometheus.GaugeValue, 1)
	c.queueMu.Lock()
	for id, q := range c.queues {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(q.pending), id, "pending")
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(q.unacknowledged), id, "unacknowledged")
	}
	c.queueMu.Unlock()
	snap := c.planned.Load()
	if snap == nil {
		return
	}
	for id, p := range *snap {
		running := 0
		for _, n := range p.Nodes {
			running += n
		}
		ch <- prometheus.MustNewConstMetric(allocationsDesc, prometheus.GaugeValue, float64(p.Target), id, "target")
		ch <- prometheus.MustNewConstMetric(allocationsDesc, prometheus.GaugeValue, float64(running), id, "running")
		ch <- prometheus.MustNewConstMetric(allocationsDesc, prometheus.GaugeValue, float64(p.Pending), id, "pending")
		if s := p.Scaler; s != nil {
			ch <- prometheus.MustNewConstMetric(scalerRateDesc, prometheus.GaugeValue, s.RequestRate, id)
			ch <- prometheus.MustNewConstMetric(scalerTimeDesc, prometheus.GaugeValue, s.InferenceTimeSec, id)
			ch <- prometheus.MustNewConstMetric(scalerBacklogDesc, prometheus.GaugeValue, float64(s.Backlog), id)
			ch <- prometheus.MustNewConstMetric(scalerNeededDesc, prometheus.GaugeValue, float64(s.Needed), id)
		}
	}
}

func (c *Controller) setQueue(id string, q queueDepth) {
	c.queueMu.Lock()
	defer c.queueMu.Unlock()
	if c.queues == nil {
		c.queues = map[string]queueDepth{}
	}
	c.queues[id] = q
}

// publishPlans makes a copy of the plans written for Collect; called only
// when one changed, so that an idle controller copies nothing.
func (c *Controller) publishPlans() {
	snap := make(map[string]cluster.Plan, len(c.plans))
	for id, p := range c.plans {
		snap[id] = p
	}
	c.planned.Store(&snap)
}
