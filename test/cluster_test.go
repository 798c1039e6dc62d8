package test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/node"
)

// Cluster timing for these tests: a node or controller silent for five
// heartbeats (five seconds) is replaced, and the controller gives each
// round of KV reads two heartbeats. This is the service's default; at
// 400 ms (reads bounded by 800 ms) a busy 2-core CI machine under the race
// detector timed the controller's reads out over and over ("plan: nodes:
// context deadline exceeded", "controller lease lost").
const testHeartbeat = time.Second

// workerSettings makes a worker-only node named name with the given
// processor budget on the NATS at url.
func workerSettings(name string, processors int, url string) func(*node.Config) {
	return func(c *node.Config) {
		c.WorkerOnly = true
		c.NATSURL = url
		c.NodeName = name
		c.Processors = processors
		c.Heartbeat = testHeartbeat
		c.AckWait = 2 * time.Second
		c.ScaleToZeroAfter = 3 * time.Second
		c.ScaleDownCooldown = time.Second
	}
}

// startCluster starts a hub (HTTP API and the embedded NATS, no worker)
// and one worker-only node per budget, named w1, w2, …
func startCluster(t *testing.T, budgets ...int) (*testNode, []*testNode) {
	t.Helper()
	hub := startNodeWith(t, func(c *node.Config) { c.Heartbeat = testHeartbeat }, nil)
	var workers []*testNode
	for i, p := range budgets {
		workers = append(workers, startNodeWith(t, workerSettings(fmt.Sprintf("w%d", i+1), p, hub.NATSURL()), testRuntime))
	}
	waitRegistered(t, connectJS(t, hub.NATSURL()), 1, len(budgets))
	return hub, workers
}

// planTargets records every target the controller plans for an endpoint.
type planTargets struct {
	mu   sync.Mutex
	seen []int
}

// watchTargets records the plan targets of id from now until the test ends.
func watchTargets(t *testing.T, js jetstream.JetStream, id string) *planTargets {
	t.Helper()
	plans, err := cluster.OpenPlans(context.Background(), js, config.StoreConfig{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	pt := &planTargets{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		plans.Watch(ctx, func(c cluster.PlanChange) {
			if c.InferenceID == id && !c.Deleted {
				pt.mu.Lock()
				pt.seen = append(pt.seen, c.Target)
				pt.mu.Unlock()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			pt.mu.Lock()
			t.Logf("targets planned for %s: %v", id, pt.seen)
			pt.mu.Unlock()
		}
	})
	return pt
}

// waitFor waits until target has been planned.
func (pt *planTargets) waitFor(t *testing.T, target int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		pt.mu.Lock()
		seen := slices.Contains(pt.seen, target)
		history := slices.Clone(pt.seen)
		pt.mu.Unlock()
		if seen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets planned %v; want %d among them", history, target)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRegistered waits until the registry lists n live nodes: placement
// depends on who is there, so a test places nothing before everyone has
// announced itself.
func waitRegistered(t *testing.T, js jetstream.JetStream, replicas, n int) {
	t.Helper()
	reg, err := cluster.OpenRegistry(context.Background(), js, config.StoreConfig{Replicas: replicas}, 5*testHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		nodes, err := reg.Nodes(context.Background())
		if err == nil && len(nodes) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("registered nodes %+v (%v), want %d", nodes, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// planOf waits until the endpoint's plan satisfies ok and returns it. The
// wait is bounded generously: planning follows heartbeats, scaler samples
// and cooldowns, which a loaded machine stretches.
func planOf(t *testing.T, js jetstream.JetStream, replicas int, id string, ok func(cluster.Plan) bool) cluster.Plan {
	t.Helper()
	plans, err := cluster.OpenPlans(context.Background(), js, config.StoreConfig{Replicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	var last cluster.Plan
	for time.Now().Before(deadline) {
		all, err := plans.All(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if p, found := all[id]; found {
			last = p
			if ok(p) {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("plan of %s: %+v", id, last)
	return last
}

// running waits until the workers run exactly the allocations given.
func running(t *testing.T, js jetstream.JetStream, replicas int, id string, want map[string]int) {
	t.Helper()
	states, err := cluster.OpenStates(context.Background(), js, config.StoreConfig{Replicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	got := map[string]int{}
	for time.Now().Before(deadline) {
		sts, err := states.Of(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]int{}
		for _, st := range sts {
			if st.Allocations > 0 {
				got[st.Node] = st.Allocations
			}
		}
		if maps.Equal(got, want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s runs %v, want %v", id, got, want)
}

func nodesAre(want map[string]int) func(cluster.Plan) bool {
	return func(p cluster.Plan) bool { return maps.Equal(p.Nodes, want) }
}

// TestPlacementAcrossWorkers: allocations spread over the workers within
// each one's processor budget; what fits nowhere is pending until room is
// made.
func TestPlacementAcrossWorkers(t *testing.T) {
	hub, _ := startCluster(t, 2, 2, 1)
	js := connectJS(t, hub.NATSURL())
	body := strings.Replace(e5Body, `"num_allocations":2`, `"num_allocations":4`, 1)
	hub.do(t, "PUT", "/_inference/text_embedding/spread?timeout=2m", body).mustStatus(t, 200)
	// Spread over all three, w3 (one processor) holding one: w1 or w2 takes
	// the fourth, whichever has the model cached by then (a tie otherwise
	// goes to w1).
	p := planOf(t, js, 1, "spread", func(p cluster.Plan) bool {
		return p.Nodes["w3"] == 1 && p.Nodes["w1"]+p.Nodes["w2"] == 3 && p.Nodes["w1"] >= 1 && p.Nodes["w2"] >= 1
	})
	running(t, js, 1, "spread", p.Nodes)

	// Two threads per allocation: no worker has two processors free.
	two := `{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":1,"num_threads":2}}`
	hub.do(t, "PUT", "/_inference/text_embedding/wide?timeout=1s", two).expect(t, 408, esError(408, "status_exception",
		"Timed out after [1s] waiting for model deployment to start. Use the trained model stats API to track the state of the deployment."))
	planOf(t, js, 1, "wide", func(p cluster.Plan) bool { return p.Pending == 1 && len(p.Nodes) == 0 })

	// One allocation of spread stays (on w1); wide fits on w2.
	hub.do(t, "PUT", "/_inference/text_embedding/spread/_update", `{"service_settings":{"num_allocations":1}}`).mustStatus(t, 200)
	planOf(t, js, 1, "spread", nodesAre(map[string]int{"w1": 1}))
	planOf(t, js, 1, "wide", nodesAre(map[string]int{"w2": 1}))
	running(t, js, 1, "wide", map[string]int{"w2": 1})
	running(t, js, 1, "spread", map[string]int{"w1": 1})
	hub.do(t, "POST", "/_inference/wide", `{"input":"fits now"}`).mustStatus(t, 200)

	// The counters travel with the workers' heartbeats.
	waitModelStats(t, hub, "wide", func(st modelStatsBody) bool {
		if len(st.Stats) != 1 || st.Stats[0].ModelID != ".multilingual-e5-small" {
			return false
		}
		d := st.Stats[0].Deployment
		return d.DeploymentID == "wide" && d.State == "started" && d.Threads == 2 && d.Allocations == 1 &&
			d.Status.Count == 1 && d.Status.Target == 1 && d.Status.State == "fully_allocated" && len(d.Nodes) == 1 &&
			d.Nodes[0].Allocations == 1 && d.Nodes[0].Node["w2"].Name == "w2" && d.Nodes[0].Count == 1 && d.Nodes[0].AvgMs > 0
	})
	hub.do(t, "GET", "/_ml/trained_models/nope/_stats", "").expect(t, 404, esError(404, "resource_not_found_exception", "Could not find trained model [nope]"))
}

// modelStats is GET _ml/trained_models/<id>/_stats read back.
type modelStatsBody struct {
	Count int `json:"count"`
	Stats []struct {
		ModelID    string `json:"model_id"`
		Deployment struct {
			DeploymentID string `json:"deployment_id"`
			State        string `json:"state"`
			Threads      int    `json:"threads_per_allocation"`
			Allocations  int    `json:"number_of_allocations"`
			Count        int64  `json:"inference_count"`
			Queue        int    `json:"queue_capacity"`
			Status       struct {
				Count  int    `json:"allocation_count"`
				Target int    `json:"target_allocation_count"`
				State  string `json:"state"`
			} `json:"allocation_status"`
			Nodes []struct {
				Node        map[string]struct{ Name string } `json:"node"`
				Allocations int                              `json:"number_of_allocations"`
				Count       int64                            `json:"inference_count"`
				AvgMs       float64                          `json:"average_inference_time_ms"`
			} `json:"nodes"`
			Scaler *struct {
				Rate   float64 `json:"request_rate"`
				Needed int     `json:"needed_number_of_allocations"`
			} `json:"adaptive_allocations_scaler"`
		} `json:"deployment_stats"`
	} `json:"trained_model_stats"`
}

// waitModelStats polls GET _ml/trained_models/<id>/_stats until ok.
func waitModelStats(t *testing.T, n *testNode, id string, ok func(modelStatsBody) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := n.do(t, "GET", "/_ml/trained_models/"+id+"/_stats", "")
		r.mustStatus(t, 200)
		var out modelStatsBody
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatalf("%s: %v", r.body, err)
		}
		if ok(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats of %s: %s", id, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNodeLossReplacesAllocations: a worker that dies has its allocations
// placed on the others, and its documents are served there: none lost,
// none twice.
func TestNodeLossReplacesAllocations(t *testing.T) {
	hub, workers := startCluster(t, 2, 2, 2)
	js := connectJS(t, hub.NATSURL())
	body := strings.Replace(e5Body, `"num_allocations":2`, `"num_allocations":3`, 1)
	hub.do(t, "PUT", "/_inference/text_embedding/survivor?timeout=2m", body).mustStatus(t, 200)
	planOf(t, js, 1, "survivor", nodesAre(map[string]int{"w1": 1, "w2": 1, "w3": 1}))
	res := watchResults(t, js, "survivor")
	ids := docIDs(1500)
	publishDocs(t, js, "survivor", ids, func(id string) []byte { return docBody(id, docText(id)) })
	res.until(100, time.Minute)
	workers[1].Abort()
	// What w2 announced last: every result it counted was stored, so its
	// document is not redone unless its ack was lost with w2 (a group in
	// hand and the one fetched for its lane at most).
	w2Done := workNow(t, js, "survivor")["w2"]
	p := planOf(t, js, 1, "survivor", func(p cluster.Plan) bool { return p.Nodes["w2"] == 0 && p.Target == 3 && p.Pending == 0 })
	t.Logf("after w2 died: %v", p.Nodes)
	res.until(len(ids), 2*time.Minute)
	res.quiet(3 * time.Second) // longer than the ack wait
	if len(res.byID) != len(ids) || res.dups != 0 {
		t.Fatalf("%d documents with results, %d duplicates; want %d, 0", len(res.byID), res.dups, len(ids))
	}
	requireQueueEmpty(t, js, "survivor")
	// The survivors did every document w2 had not: nothing near
	// everything twice.
	done := workDone(t, js, "survivor", func(map[string]int64) bool { return true })
	survivors := done["w1"] + done["w3"]
	if most := int64(len(ids)) - w2Done + groupSlack(1); survivors > most {
		t.Fatalf("w1 and w3 published %d results of %d documents, w2 %d before it died; want at most %d", survivors, len(ids), w2Done, most)
	}
	t.Logf("w2 published %d results before it died, w1 and w3 %d", w2Done, survivors)
}

// TestControllerFailover: when the controller's worker dies another worker
// takes the lease within seconds and plans from then on.
func TestControllerFailover(t *testing.T) {
	hub, workers := startCluster(t, 2, 2, 2)
	js := connectJS(t, hub.NATSURL())
	hub.do(t, "PUT", "/_inference/text_embedding/steady?timeout=2m", e5Body).mustStatus(t, 200)
	leader := waitLeader(t, workers, nil)
	workers[leader].Abort()
	start := time.Now()
	next := waitLeader(t, workers, workers[leader])
	t.Logf("controller w%d died; w%d took over after %s", leader+1, next+1, time.Since(start).Round(time.Millisecond))
	hub.do(t, "PUT", "/_inference/text_embedding/steady/_update", `{"service_settings":{"num_allocations":4}}`).mustStatus(t, 200)
	// The new controller plans the update, and moves the dead worker's
	// allocations once its registry entry has expired.
	dead := fmt.Sprintf("w%d", leader+1)
	planOf(t, js, 1, "steady", func(p cluster.Plan) bool { return p.Target == 4 && p.Pending == 0 && p.Nodes[dead] == 0 })
}

// waitLeader returns the index of the one worker (not dead) holding the
// controller lease.
func waitLeader(t *testing.T, workers []*testNode, dead *testNode) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		leaders := []int{}
		for i, w := range workers {
			if w != dead && w.Controller() {
				leaders = append(leaders, i)
			}
		}
		if len(leaders) == 1 {
			return leaders[0]
		}
		if len(leaders) > 1 {
			t.Fatalf("workers %v all think they are the controller", leaders)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no controller elected")
	return -1
}

// TestAdaptiveBurstAndScaleToZero: a burst of documents scales an adaptive
// endpoint up, the backlog drains, it returns to zero after the idle time,
// and a request or a document at zero is served after a scale from zero.
func TestAdaptiveBurstAndScaleToZero(t *testing.T) {
	hub, _ := startCluster(t, 2, 2, 2)
	js := connectJS(t, hub.NATSURL())
	body := `{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_threads":1,` +
		`"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":4}}}`
	targets := watchTargets(t, js, "bursty")
	hub.do(t, "PUT", "/_inference/text_embedding/bursty?timeout=2m", body).mustStatus(t, 200)
	// It starts with one allocation (which, idle, may be gone again by the
	// time a slow machine looks: the plan's history says).
	targets.waitFor(t, 1)
	res := watchResults(t, js, "bursty")
	ids := docIDs(800)
	start := time.Now()
	publishDocs(t, js, "bursty", ids, func(id string) []byte { return docBody(id, docText(id)) })
	p := planOf(t, js, 1, "bursty", func(p cluster.Plan) bool { return p.Target > 1 })
	t.Logf("scaled to %d allocations %s after the burst: %v", p.Target, time.Since(start).Round(time.Millisecond), p.Nodes)
	res.until(len(ids), 2*time.Minute)
	if res.dups != 0 {
		t.Fatalf("%d duplicates", res.dups)
	}
	// With a 2s ack wait on a loaded machine a group may be redelivered
	// while it is being embedded; at most one per allocation, not all.
	requireWork(t, js, "bursty", int64(len(ids)), int64(len(ids))+groupSlack(4))
	p = planOf(t, js, 1, "bursty", func(p cluster.Plan) bool { return p.Target == 0 })
	running(t, js, 1, "bursty", map[string]int{})
	t.Logf("back to zero %s after the burst", time.Since(start).Round(time.Millisecond))
	waitModelStats(t, hub, "bursty", func(st modelStatsBody) bool {
		d := st.Stats[0].Deployment
		return d.State == "started" && d.Allocations == 0 && d.Status.Count == 0 && d.Status.State == "fully_allocated" && d.Scaler != nil
	})

	m := directModel(t, ".multilingual-e5-small")
	ep := parseEndpoint(t, "bursty", config.TextEmbedding, body)
	hub.do(t, "POST", "/_inference/bursty", `{"input":"wake up"}`).expect(t, 200, directInfer(t, m, ep, `{"input":"wake up"}`))
	p = planOf(t, js, 1, "bursty", func(p cluster.Plan) bool { return p.Target == 0 })
	publishDocs(t, js, "bursty", []string{"late"}, func(id string) []byte { return docBody(id, "a document at zero.") })
	res.until(len(ids)+1, time.Minute)

	// Back at zero, a minimum raised from 0 by an _update is met without waiting for work.
	planOf(t, js, 1, "bursty", func(p cluster.Plan) bool { return p.Target == 0 })
	hub.do(t, "PUT", "/_inference/text_embedding/bursty/_update",
		`{"service_settings":{"adaptive_allocations":{"enabled":true,"min_number_of_allocations":1,"max_number_of_allocations":4}}}`).mustStatus(t, 200)
	p = planOf(t, js, 1, "bursty", func(p cluster.Plan) bool { return p.Target == 1 })
	t.Logf("minimum 1 planned: %v", p.Nodes)
}
