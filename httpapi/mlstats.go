package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inference/quantize"
)

// StatsSource gives the cluster's deployment state.
type StatsSource interface {
	Snapshot(ctx context.Context) (cluster.Snapshot, error)
}

// The trained model stats, in Elasticsearch's field order
// (GetTrainedModelsStatsAction, AssignmentStats).
type modelStatsResponse struct {
	Count int          `json:"count"`
	Stats []modelStats `json:"trained_model_stats"`
}

type modelStats struct {
	ModelID         string           `json:"model_id"`
	PipelineCount   int              `json:"pipeline_count"`
	DeploymentStats *deploymentStats `json:"deployment_stats,omitempty"`
	// Source is jetinfer's own: where a stored model came from and the
	// precision it runs in.
	Source *modelSource `json:"model_source,omitempty"`
}

// StoredModel is a model in the model store.
type StoredModel struct {
	ID string
	// Source is the Hub file it was downloaded from (hf://…); empty for a
	// directory import.
	Source string
	// StandsIn names the Elastic model an open model replaces under a
	// built-in id.
	StandsIn string
	// Precision is what the model's weights run in (float32, float16,
	// int8, int4); "" when its import did not record it.
	Precision string
	// Quantized, when jetinfer made the model int8 at import, says from
	// what and how closely it followed the float model.
	Quantized *Quantized
}

// Quantized is an int8 copy's record.
type Quantized struct {
	From      string             `json:"from"`
	Agreement quantize.Agreement `json:"agreement"`
	// Forced says it was stored beyond its accuracy bound.
	Forced bool `json:"forced,omitempty"`
}

type modelSource struct {
	URI       string     `json:"uri,omitempty"`
	StandsIn  string     `json:"stands_in_for,omitempty"`
	Precision string     `json:"precision,omitempty"`
	Quantized *Quantized `json:"quantized,omitempty"`
}

type deploymentStats struct {
	DeploymentID        string                      `json:"deployment_id"`
	ModelID             string                      `json:"model_id"`
	ThreadsPerAlloc     int                         `json:"threads_per_allocation"`
	NumberOfAllocations int                         `json:"number_of_allocations"`
	Adaptive            *config.AdaptiveAllocations `json:"adaptive_allocations,omitempty"`
	QueueCapacity       int                         `json:"queue_capacity"`
	State               string                      `json:"state"`
	Reason              string                      `json:"reason,omitempty"`
	AllocationStatus    allocationStatus            `json:"allocation_status"`
	Priority            string                      `json:"priority"`
	StartTime           int64                       `json:"start_time"`
	ErrorCount          int64                       `json:"error_count,omitempty"`
	Rejected            int64                       `json:"rejected_execution_count,omitempty"`
	InferenceCount      int64                       `json:"inference_count,omitempty"`
	PeakThroughput      int64                       `json:"peak_throughput_per_minute"`
	Nodes               []nodeStats                 `json:"nodes"`
	// Scaler is jetinfer's own: the adaptive scaler's estimates.
	Scaler *scalerStats `json:"adaptive_allocations_scaler,omitempty"`
	// Download is jetinfer's own: the built-in model's download that the
	// deployment waits for, or its recent failure.
	Download *downloadStats `json:"model_download,omitempty"`
}

type downloadStats struct {
	State  string `json:"state"`
	Source string `json:"source"`
	Node   string `json:"node"`
	Done   int64  `json:"bytes_done"`
	Total  int64  `json:"bytes_total"`
	Error  string `json:"error,omitempty"`
}

type allocationStatus struct {
	AllocationCount int    `json:"allocation_count"`
	TargetCount     int    `json:"target_allocation_count"`
	State           string `json:"state"`
}

type nodeStats struct {
	Node                map[string]nodeName `json:"node"`
	RoutingState        routingState        `json:"routing_state"`
	InferenceCount      int64               `json:"inference_count"`
	AvgInferenceTimeMs  *float64            `json:"average_inference_time_ms,omitempty"`
	LastAccess          int64               `json:"last_access,omitempty"`
	Pending             int                 `json:"number_of_pending_requests"`
	ErrorCount          int64               `json:"error_count,omitempty"`
	Rejected            int64               `json:"rejected_execution_count,omitempty"`
	StartTime           int64               `json:"start_time"`
	ThreadsPerAlloc     int                 `json:"threads_per_allocation"`
	NumberOfAllocations int                 `json:"number_of_allocations"`
	PeakThroughput      int64               `json:"peak_throughput_per_minute"`
	ThroughputLastMin   int64               `json:"throughput_last_minute"`
}

type nodeName struct {
	Name string `json:"name"`
}

type routingState struct {
	State  string `json:"routing_state"`
	Reason string `json:"reason,omitempty"`
}

type scalerStats struct {
	RequestRate     float64 `json:"request_rate"`
	InferenceTimeMs float64 `json:"inference_time_ms"`
	Backlog         int64   `json:"backlog"`
	Needed          int     `json:"needed_number_of_allocations"`
}

// modelStats serves GET _ml/trained_models/[{id}/]_stats: every endpoint's
// deployment (its deployment id is the inference id, as in Elasticsearch)
// and every stored model without one. id may be a model id or a deployment
// id, "_all" or "*".
func (a *API) modelStats(w http.ResponseWriter, r *http.Request, id string) {
	if a.cfg.Stats == nil {
		a.writeError(w, r, eserror.New(http.StatusServiceUnavailable, eserror.TypeStatus, "trained model stats are not available on this node"))
		return
	}
	ctx := r.Context()
	snap, err := a.cfg.Stats.Snapshot(ctx)
	if err != nil {
		a.writeError(w, r, storeError("_stats", err))
		return
	}
	entries, err := a.cfg.Store.List(ctx)
	if err != nil {
		a.writeError(w, r, storeError("_stats", err))
		return
	}
	all := id == "_all" || id == "*"
	var out []modelStats
	deployed := map[string]bool{}
	// Deployments: every endpoint's own, and those of the _ml API; the
	// endpoints attached to one count in its stats.
	var units []config.Endpoint
	attached := map[string][]string{}
	// queues holds the _ml deployments' own queue capacity and priority.
	queues := map[string]config.Deployment{}
	for _, e := range entries {
		if e.Err != nil {
			continue
		}
		if d := e.Endpoint.ServiceSettings.DeploymentID; d != "" {
			attached[d] = append(attached[d], e.ID)
			continue
		}
		units = append(units, e.Endpoint)
	}
	if a.cfg.Trained != nil {
		ds, err := a.cfg.Trained.List(ctx)
		if err != nil {
			a.writeError(w, r, storeError("_stats", err))
			return
		}
		for _, d := range ds {
			units = append(units, d.Deployment.Endpoint())
			queues[d.Deployment.DeploymentID] = d.Deployment
		}
	}
	for _, ep := range units {
		deployed[ep.ServiceSettings.ModelID] = true
		if !all && id != ep.InferenceID && id != ep.ServiceSettings.ModelID {
			continue
		}
		d := deploymentOf(ep, snap, attached[ep.InferenceID], a.cfg.QueueCapacity)
		if q, ok := queues[ep.InferenceID]; ok {
			d.QueueCapacity, d.Priority = q.QueueCapacity, q.Priority
		}
		out = append(out, modelStats{ModelID: ep.ServiceSettings.ModelID, DeploymentStats: d})
	}
	if a.cfg.Models != nil {
		stored, err := a.cfg.Models(ctx)
		if err != nil {
			a.writeError(w, r, storeError("_stats", err))
			return
		}
		sources := map[string]*modelSource{}
		for _, m := range stored {
			if m.Source != "" || m.Precision != "" {
				sources[m.ID] = &modelSource{URI: m.Source, StandsIn: m.StandsIn, Precision: m.Precision, Quantized: m.Quantized}
			}
			if !deployed[m.ID] && (all || id == m.ID) {
				out = append(out, modelStats{ModelID: m.ID})
			}
		}
		for i := range out {
			out[i].Source = sources[out[i].ModelID]
		}
	}
	if len(out) == 0 && !all {
		a.writeError(w, r, eserror.NotFound("Could not find trained model [%s]", id))
		return
	}
	slices.SortStableFunc(out, func(x, y modelStats) int { return strings.Compare(x.ModelID, y.ModelID) })
	a.writeJSON(w, r, http.StatusOK, modelStatsResponse{Count: len(out), Stats: nonNil(out)})
}

// deploymentOf gathers one endpoint's deployment from the plan, the
// workers' states and their registry counters.
func deploymentOf(ep config.Endpoint, snap cluster.Snapshot, attached []string, queueCapacity int) *deploymentStats {
	plan := snap.Plans[ep.InferenceID]
	d := &deploymentStats{
		DeploymentID: ep.InferenceID, ModelID: ep.ServiceSettings.ModelID,
		ThreadsPerAlloc: ep.ServiceSettings.NumThreads, NumberOfAllocations: plan.Target,
		Adaptive: ep.ServiceSettings.AdaptiveAllocations, QueueCapacity: queueCapacity, Priority: "normal",
		Nodes: []nodeStats{},
	}
	if n := ep.ServiceSettings.NumAllocations; n != nil {
		d.NumberOfAllocations = *n
	}
	if d.ThreadsPerAlloc == 0 {
		d.ThreadsPerAlloc = 1
	}
	if s := plan.Scaler; s != nil {
		d.Scaler = &scalerStats{RequestRate: s.RequestRate, InferenceTimeMs: s.InferenceTimeSec * 1000, Backlog: s.Backlog, Needed: s.Needed}
	}
	routing := map[string]routingState{}
	failed := ""
	for _, st := range snap.States {
		if st.InferenceID != ep.InferenceID {
			continue
		}
		rs := routingState{State: st.State}
		if st.State == cluster.StateFailed {
			rs.Reason = errorReason(st.Error)
			failed = rs.Reason
		}
		routing[st.Node] = rs
	}
	start := time.Now()
	for _, n := range snap.Nodes {
		ds, ok := n.Deployments[ep.InferenceID]
		for _, e := range attached {
			if x, found := n.Deployments[e]; found {
				ok = true
				ds.Documents += x.Documents
				ds.Inferences += x.Inferences
				ds.Errors += x.Errors
				ds.Rejected += x.Rejected
				ds.BusyNanos += x.BusyNanos
				ds.Waiting += x.Waiting
				ds.PeakPerMinute += x.PeakPerMinute
				ds.LastMinute += x.LastMinute
				if x.LastAccess.After(ds.LastAccess) {
					ds.LastAccess = x.LastAccess
				}
			}
		}
		rs, planned := routing[n.Name]
		if !ok || !planned && ds.Allocations == 0 {
			continue
		}
		if !planned {
			rs = routingState{State: cluster.StateStarted}
		}
		count := ds.Documents + ds.Inferences
		ns := nodeStats{
			Node: map[string]nodeName{n.Name: {Name: n.Name}}, RoutingState: rs, InferenceCount: count,
			Pending: ds.Waiting, ErrorCount: ds.Errors, Rejected: ds.Rejected, StartTime: ds.Started.UnixMilli(),
			ThreadsPerAlloc: ds.Threads, NumberOfAllocations: ds.Allocations,
			PeakThroughput: ds.PeakPerMinute, ThroughputLastMin: ds.LastMinute,
		}
		if count > 0 {
			avg := float64(ds.BusyNanos) / float64(count) / 1e6
			ns.AvgInferenceTimeMs = &avg
		}
		if !ds.LastAccess.IsZero() {
			ns.LastAccess = ds.LastAccess.UnixMilli()
		}
		if ds.Started.Before(start) {
			start = ds.Started
		}
		d.Nodes = append(d.Nodes, ns)
		d.AllocationStatus.AllocationCount += ds.Allocations
		d.InferenceCount += count
		d.ErrorCount += ds.Errors
		d.Rejected += ds.Rejected
		d.PeakThroughput += ds.PeakPerMinute
	}
	slices.SortFunc(d.Nodes, func(x, y nodeStats) int { return strings.Compare(nodeKeyOf(x), nodeKeyOf(y)) })
	d.StartTime = start.UnixMilli()
	d.AllocationStatus.TargetCount = d.NumberOfAllocations
	// AllocationStatus.calculateState; a deployment scaled to zero is
	// fully allocated (and started) with no allocation.
	count, target := d.AllocationStatus.AllocationCount, d.AllocationStatus.TargetCount
	switch {
	case count == 0 && target > 0:
		d.AllocationStatus.State = "starting"
	case count < target:
		d.AllocationStatus.State = "started"
	default:
		d.AllocationStatus.State = "fully_allocated"
	}
	switch {
	case count > 0 || target == 0:
		d.State = cluster.StateStarted
	case failed != "":
		d.State, d.Reason = cluster.StateFailed, failed
	default:
		d.State = cluster.StateStarting
	}
	if dl, ok := snap.Downloads[d.ModelID]; ok && d.State != cluster.StateStarted {
		d.Download = &downloadStats{State: dl.State, Source: dl.Source, Node: dl.Node, Done: dl.Done, Total: dl.Total, Error: dl.Error}
		if dl.State == cluster.DownloadRunning && d.Reason == "" {
			d.Reason = fmt.Sprintf("downloading model [%s] from [%s]: %d of %d bytes", dl.ModelID, dl.Source, dl.Done, dl.Total)
		}
	}
	return d
}

func nodeKeyOf(n nodeStats) string {
	for k := range n.Node {
		return k
	}
	return ""
}

// errorReason is the reason of a stored error envelope.
func errorReason(envelope []byte) string {
	var e struct {
		Error struct {
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(envelope, &e) != nil {
		return string(envelope)
	}
	return e.Error.Reason
}
