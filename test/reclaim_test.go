package test

import (
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/node"
)

// TestEndpointsBeyondProcessors: on a node of two processors, adaptive
// endpoints with a minimum of 0 that find no free processor start at zero
// (their PUT does not wait for one); a request to one reclaims the
// allocation of the least recently used idle one, and so does a document
// queued for one; fixed allocations are never reclaimed; and a request that can never get a processor (fixed
// allocations hold both) is refused at once with Elasticsearch's 429.
func TestEndpointsBeyondProcessors(t *testing.T) {
	n := startNode(t, func(c *node.Config) {
		c.Processors = 2
		c.Heartbeat = testHeartbeat
	})
	js := connectJS(t, n.NATSURL())
	fixed := strings.Replace(e5Body, `"num_allocations":2`, `"num_allocations":1`, 1)
	lazy := strings.Replace(e5Body, `"num_allocations":2`, `"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":1}`, 1)
	n.do(t, "PUT", "/_inference/text_embedding/fixed-1?timeout=2m", fixed).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/text_embedding/lazy-1?timeout=2m", lazy).mustStatus(t, 200)
	running(t, js, 1, "lazy-1", map[string]int{"test-node": 1})
	// No processor left: defined at zero, answered at once (a 408 after
	// the 5s timeout otherwise).
	for _, id := range []string{"lazy-2", "lazy-3"} {
		start := time.Now()
		n.do(t, "PUT", "/_inference/text_embedding/"+id+"?timeout=5s", lazy).mustStatus(t, 200)
		t.Logf("PUT %s at zero: %s", id, time.Since(start).Round(time.Millisecond))
		if p := planOf(t, js, 1, id, func(p cluster.Plan) bool { return true }); p.Target != 0 || p.Pending != 0 {
			t.Fatalf("%s planned %+v; want at zero", id, p)
		}
	}

	// A request to lazy-2 takes lazy-1's processor (idle, never used);
	// then one to lazy-3 takes lazy-2's once it is idle again.
	post := func(id string) {
		t.Helper()
		start := time.Now()
		n.do(t, "POST", "/_inference/"+id+"?timeout=1m", `{"input":"wake up"}`).mustStatus(t, 200)
		t.Logf("POST %s from zero: %s", id, time.Since(start).Round(time.Millisecond))
	}
	post("lazy-2")
	running(t, js, 1, "lazy-1", map[string]int{})
	post("lazy-3")
	running(t, js, 1, "lazy-2", map[string]int{})
	running(t, js, 1, "lazy-3", map[string]int{"test-node": 1})
	running(t, js, 1, "fixed-1", map[string]int{"test-node": 1})
	// A document queued for lazy-1, at zero, wants an allocation too.
	publishDocs(t, js, "lazy-1", []string{"doc-1"}, func(id string) []byte { return docBody(id, "queued at zero") })
	if got := readResults(t, js, "lazy-1", 1, 100*time.Millisecond); len(got) != 1 || !strings.Contains(got[0].body, `"embeddings":[`) {
		t.Fatalf("lazy-1 results %+v", got)
	}
	running(t, js, 1, "lazy-1", map[string]int{"test-node": 1})

	// A second fixed endpoint takes the idle adaptive allocation; now
	// fixed allocations hold both processors: a request to an adaptive
	// endpoint is refused at once.
	n.do(t, "PUT", "/_inference/text_embedding/fixed-2?timeout=2m", fixed).mustStatus(t, 200)
	running(t, js, 1, "lazy-1", map[string]int{})
	start := time.Now()
	r := n.do(t, "POST", "/_inference/lazy-2?timeout=1m", `{"input":"no room"}`)
	const explanation = "Could not assign (more) allocations on node [test-node]. Reason: This node has insufficient allocated processors. " +
		"Available processors [2], free processors [0], processors required for each allocation of this model [1]"
	want := `{"error":{"root_cause":[{"type":"status_exception","reason":"Could not start deployment because no ML nodes with sufficient capacity were found"}],` +
		`"type":"status_exception","reason":"Could not start deployment because no ML nodes with sufficient capacity were found",` +
		`"caused_by":{"type":"illegal_state_exception","reason":"Could not start deployment because no suitable nodes were found, allocation explanation [` + explanation + `]"}},"status":429}`
	r.expect(t, 429, want)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the refusal took %s; want it at once, not after the request's timeout", took)
	}
	running(t, js, 1, "fixed-1", map[string]int{"test-node": 1})
	running(t, js, 1, "fixed-2", map[string]int{"test-node": 1})
}
