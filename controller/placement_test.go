package controller

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/cluster"
)

func nodes(spec map[string]int, cached ...string) []NodeCap {
	var out []NodeCap
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		if p, ok := spec[name]; ok {
			m := map[string]bool{}
			for _, c := range cached {
				m[c] = true
			}
			out = append(out, NodeCap{Name: name, Processors: p, Models: m})
		}
	}
	return out
}

func placed(p cluster.Plan) string { return fmt.Sprint(p.Nodes, " pending ", p.Pending) }

func TestPlaceSpreadsWithinBudgets(t *testing.T) {
	ns := nodes(map[string]int{"n1": 2, "n2": 2, "n3": 1})
	got := Place([]Want{{InferenceID: "a", ModelID: "m", Threads: 1, Target: 4}, {InferenceID: "b", ModelID: "m", Threads: 2, Target: 1}}, ns, nil)
	// a spreads over all three nodes (the largest first), b then needs two
	// free processors on one node: only n2 has them.
	if s := placed(got["a"]); s != "map[n1:2 n2:1 n3:1] pending 0" {
		t.Errorf("a: %s", s)
	}
	if s := placed(got["b"]); s != "map[] pending 1" {
		t.Errorf("b: %s (no node has two free processors)", s)
	}
	for _, n := range ns {
		used := 0
		for _, w := range []Want{{InferenceID: "a", Threads: 1}, {InferenceID: "b", Threads: 2}} {
			used += got[w.InferenceID].Nodes[n.Name] * w.Threads
		}
		if used > n.Processors {
			t.Errorf("%s: %d of %d processors", n.Name, used, n.Processors)
		}
	}
}

func TestPlacePrefersCachedModelAfterSpread(t *testing.T) {
	ns := []NodeCap{{Name: "n1", Processors: 4, Models: map[string]bool{}}, {Name: "n2", Processors: 4, Models: map[string]bool{"m": true}}}
	got := Place([]Want{{InferenceID: "a", ModelID: "m", Threads: 1, Target: 1}}, ns, nil)
	if s := placed(got["a"]); s != "map[n2:1] pending 0" {
		t.Errorf("a: %s; want the node holding the model", s)
	}
	got = Place([]Want{{InferenceID: "a", ModelID: "m", Threads: 1, Target: 3}}, ns, nil)
	if s := placed(got["a"]); s != "map[n1:1 n2:2] pending 0" {
		t.Errorf("a: %s; want spread first", s)
	}
}

func TestPlaceKeepsWhatRunsAndReplacesTheLost(t *testing.T) {
	ns := nodes(map[string]int{"n1": 4, "n2": 4, "n3": 4})
	prev := map[string]cluster.Plan{"a": {InferenceID: "a", Nodes: map[string]int{"n2": 1, "n3": 2}}}
	want := []Want{{InferenceID: "a", ModelID: "m", Threads: 1, Target: 3}}
	if s := placed(Place(want, ns, prev)["a"]); s != "map[n2:1 n3:2] pending 0" {
		t.Errorf("stable: %s", s)
	}
	// n3 is gone: its two allocations go where a has the fewest.
	ns = nodes(map[string]int{"n1": 4, "n2": 4})
	if s := placed(Place(want, ns, prev)["a"]); s != "map[n1:1 n2:2] pending 0" && s != "map[n1:2 n2:1] pending 0" {
		t.Errorf("re-placed: %s", s)
	}
	// Scaling down takes from the node with the most.
	want[0].Target = 1
	prev["a"] = cluster.Plan{InferenceID: "a", Nodes: map[string]int{"n1": 1, "n2": 2}}
	if s := placed(Place(want, ns, prev)["a"]); s != "map[n1:1] pending 0" {
		t.Errorf("scaled down: %s", s)
	}
	// Zero removes every allocation.
	want[0].Target = 0
	if p := Place(want, ns, prev)["a"]; len(p.Nodes) != 0 || p.Pending != 0 {
		t.Errorf("zero: %s", placed(p))
	}
}

func TestPlaceShrunkBudget(t *testing.T) {
	// A node that now announces fewer processors keeps what fits.
	prev := map[string]cluster.Plan{"a": {InferenceID: "a", Nodes: map[string]int{"n1": 3}}}
	got := Place([]Want{{InferenceID: "a", Threads: 1, Target: 3}}, nodes(map[string]int{"n1": 2}), prev)
	if s := placed(got["a"]); s != "map[n1:2] pending 1" {
		t.Errorf("a: %s", s)
	}
	if !maps.Equal(got["a"].Nodes, map[string]int{"n1": 2}) {
		t.Errorf("nodes %v", got["a"].Nodes)
	}
}

// TestPlaceReclaimsLeastRecentlyUsedIdle: an allocation that fits nowhere
// and may reclaim takes the one of the idle adaptive endpoint used least
// recently; busy and fixed allocations stay; an elastic endpoint with no
// room starts at zero instead of pending; what can take nothing is pending
// with Elasticsearch's reason.
func TestPlaceReclaimsLeastRecentlyUsedIdle(t *testing.T) {
	ns := nodes(map[string]int{"n1": 2, "n2": 1})
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	prev := map[string]cluster.Plan{
		"fixed":  {InferenceID: "fixed", Target: 1, Nodes: map[string]int{"n1": 1}},
		"old":    {InferenceID: "old", Target: 1, Nodes: map[string]int{"n2": 1}},
		"recent": {InferenceID: "recent", Target: 1, Nodes: map[string]int{"n1": 1}},
	}
	wants := []Want{
		{InferenceID: "fixed", Threads: 1, Target: 1, Reclaim: true, Held: 1},
		{InferenceID: "old", Threads: 1, Target: 1, Idle: true, LastUsed: t0},
		{InferenceID: "recent", Threads: 1, Target: 1, Idle: true, LastUsed: t0.Add(time.Minute)},
		{InferenceID: "wanted", Threads: 1, Target: 1, Reclaim: true},
		{InferenceID: "new", Threads: 1, Target: 1, Elastic: true},
	}
	got := Place(wants, ns, prev)
	for id, want := range map[string]string{
		"fixed":  "target 1 map[n1:1] pending 0",
		"old":    "target 0 map[] pending 0", // reclaimed: least recently used
		"recent": "target 1 map[n1:1] pending 0",
		"wanted": "target 1 map[n2:1] pending 0",
		"new":    "target 0 map[] pending 0", // no room: starts at zero
	} {
		if s := fmt.Sprint("target ", got[id].Target, " ", placed(got[id])); s != want {
			t.Errorf("%s: %s; want %s", id, s, want)
		}
	}

	// Two more requests: the first takes "recent", the second finds only
	// the fixed allocation and the busy one just given, and is pending:
	// it fits once "wanted" is idle.
	prev = got
	wants = []Want{
		{InferenceID: "fixed", Threads: 1, Target: 1, Reclaim: true, Held: 1},
		{InferenceID: "recent", Threads: 1, Target: 1, Idle: true, LastUsed: t0.Add(time.Minute)},
		{InferenceID: "wanted", Threads: 1, Target: 1},
		{InferenceID: "x", Threads: 1, Target: 1, Reclaim: true},
		{InferenceID: "y", Threads: 1, Target: 1, Reclaim: true},
	}
	got = Place(wants, ns, prev)
	if s := placed(got["x"]); s != "map[n1:1] pending 0" {
		t.Errorf("x: %s", s)
	}
	if got["recent"].Target != 0 {
		t.Errorf("recent: target %d; want reclaimed", got["recent"].Target)
	}
	const reason = "Could not assign (more) allocations on node [n1]. Reason: This node has insufficient allocated processors. Available processors [2], free processors [0], processors required for each allocation of this model [1]" +
		"|Could not assign (more) allocations on node [n2]. Reason: This node has insufficient allocated processors. Available processors [1], free processors [0], processors required for each allocation of this model [1]"
	if p := got["y"]; placed(p) != "map[] pending 1" || p.Reason != reason || p.NeverFits {
		t.Errorf("y: %s, reason %q, never fits %t", placed(p), p.Reason, p.NeverFits)
	}
	// Fixed allocations on every processor: never.
	got = Place([]Want{
		{InferenceID: "f1", Threads: 2, Target: 1, Reclaim: true, Held: 1},
		{InferenceID: "f2", Threads: 1, Target: 1, Reclaim: true, Held: 1},
		{InferenceID: "z", Threads: 1, Target: 1, Reclaim: true},
	}, ns, nil)
	if p := got["z"]; placed(p) != "map[] pending 1" || !p.NeverFits {
		t.Errorf("z: %s, never fits %t; want pending for ever", placed(p), p.NeverFits)
	}
	// An adaptive endpoint above its minimum holds only the minimum: the
	// rest comes free when it scales down.
	prev = map[string]cluster.Plan{"busy": {InferenceID: "busy", Target: 3, Nodes: map[string]int{"n1": 2, "n2": 1}}}
	got = Place([]Want{
		{InferenceID: "busy", Threads: 1, Target: 3, Held: 1},
		{InferenceID: "z", Threads: 1, Target: 1, Reclaim: true},
	}, ns, prev)
	if p := got["z"]; placed(p) != "map[] pending 1" || p.NeverFits {
		t.Errorf("z beside an adaptive endpoint above its minimum: %s, never fits %t; want it to wait", placed(p), p.NeverFits)
	}
	// No node registered yet: nothing is known, nothing is refused.
	if p := Place([]Want{{InferenceID: "z", Threads: 1, Target: 1, Reclaim: true}}, nil, nil)["z"]; p.NeverFits {
		t.Error("with no node registered a request is refused for ever")
	}
}
