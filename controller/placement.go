package controller

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/cluster"
)

// Want is what one endpoint asks of the cluster.
type Want struct {
	InferenceID string
	Revision    uint64
	ModelID     string
	Threads     int
	Target      int
	// Elastic: an adaptive endpoint whose minimum is 0 and that no request
	// waits for. When none of its allocations fits it is planned at zero,
	// not pending: it starts (or stays) at zero, and a request scales it up.
	Elastic bool
	// Reclaim: allocations of this endpoint that fit nowhere may take those
	// of Idle endpoints (a request waits for it, or its allocations are
	// fixed).
	Reclaim bool
	// Idle: an adaptive endpoint whose minimum is 0 and that has no work:
	// its allocations may be reclaimed, the least recently used first, as
	// ollama evicts idle models. Fixed allocations are never idle.
	Idle     bool
	LastUsed time.Time
	// Held is how many of its allocations are never reclaimed nor scaled
	// away: all of fixed ones, an adaptive endpoint's minimum. Room they
	// hold is room no request can ever get.
	Held int
}

// NodeCap is what placement knows of a node.
type NodeCap struct {
	Name       string
	Processors int
	// Models are the model ids the node has cached.
	Models map[string]bool
}

// Place assigns every endpoint's Target allocations to nodes so that no
// node's allocations × threads exceed its processors. Allocations already
// placed on a live node stay where they are (a deployment is not moved
// while it serves); new ones go to the node with the fewest allocations of
// that endpoint (spreading it), then one holding its model, then the one
// with the most free processors. An allocation that fits nowhere and may
// Reclaim takes one of an Idle endpoint (least recently used first), whose
// Target drops by one. What still fits nowhere is Pending, with the reason
// Elasticsearch gives, except for an Elastic endpoint with nothing placed:
// its Target becomes 0.
func Place(wants []Want, nodes []NodeCap, prev map[string]cluster.Plan) map[string]cluster.Plan {
	wants = slices.Clone(wants)
	slices.SortFunc(wants, func(a, b Want) int { return cmp.Compare(a.InferenceID, b.InferenceID) })
	free := map[string]int{}
	models := map[string]map[string]bool{}
	for _, n := range nodes {
		free[n.Name] = n.Processors
		models[n.Name] = n.Models
	}
	placed := map[string]map[string]int{}
	threads := func(w Want) int { return max(w.Threads, 1) }

	// Keep what runs, within the new target and the budgets.
	for _, w := range wants {
		keep := map[string]int{}
		for node, n := range prev[w.InferenceID].Nodes {
			if _, alive := free[node]; alive && n > 0 {
				keep[node] = n
			}
		}
		// Shrink from the nodes with the most of this endpoint.
		for sum(keep) > w.Target {
			node := maxNode(keep)
			if keep[node]--; keep[node] == 0 {
				delete(keep, node)
			}
		}
		for _, node := range slices.Sorted(maps.Keys(keep)) {
			n := min(keep[node], free[node]/threads(w))
			if n <= 0 {
				delete(keep, node)
				continue
			}
			keep[node] = n
			free[node] -= n * threads(w)
		}
		placed[w.InferenceID] = keep
	}
	// Add what is missing, one allocation at a time.
	targets := map[string]int{}
	for _, w := range wants {
		targets[w.InferenceID] = w.Target
	}
	for _, w := range wants {
		got := placed[w.InferenceID]
		for sum(got) < targets[w.InferenceID] {
			best := ""
			for _, n := range nodes {
				if free[n.Name] < threads(w) {
					continue
				}
				if best == "" || better(n.Name, best, got, models, w.ModelID, free) {
					best = n.Name
				}
			}
			if best == "" && w.Reclaim {
				best = reclaim(wants, w, threads, placed, targets, free)
			}
			if best == "" {
				break
			}
			got[best]++
			free[best] -= threads(w)
		}
	}
	out := map[string]cluster.Plan{}
	for _, w := range wants {
		got, target := placed[w.InferenceID], targets[w.InferenceID]
		if w.Elastic && sum(got) == 0 {
			target = 0
		}
		p := cluster.Plan{InferenceID: w.InferenceID, Revision: w.Revision, Target: target, Nodes: got, Pending: target - sum(got)}
		if p.Pending > 0 {
			p.Reason = noRoom(nodes, free, threads(w))
			p.NeverFits = neverFits(wants, w, nodes, placed, threads)
		}
		out[w.InferenceID] = p
	}
	return out
}

// reclaim frees room for one allocation of w by taking one from the least
// recently used Idle endpoint that has one on a node where that makes
// enough room, and returns that node ("" when there is none).
func reclaim(wants []Want, w Want, threads func(Want) int, placed map[string]map[string]int, targets map[string]int, free map[string]int) string {
	var victim *Want
	node := ""
	for i := range wants {
		v := &wants[i]
		if !v.Idle || v.InferenceID == w.InferenceID || victim != nil && !v.LastUsed.Before(victim.LastUsed) {
			continue
		}
		for _, n := range slices.Sorted(maps.Keys(placed[v.InferenceID])) {
			if free[n]+threads(*v) >= threads(w) {
				victim, node = v, n
				break
			}
		}
	}
	if victim == nil {
		return ""
	}
	got := placed[victim.InferenceID]
	if got[node]--; got[node] == 0 {
		delete(got, node)
	}
	targets[victim.InferenceID]--
	free[node] += threads(*victim)
	return node
}

// neverFits reports whether no node could take an allocation of w even
// with every allocation that is not Held gone. With no node registered
// (a cluster starting) nothing is known yet.
func neverFits(wants []Want, w Want, nodes []NodeCap, placed map[string]map[string]int, threads func(Want) int) bool {
	if len(nodes) == 0 {
		return false
	}
	for _, n := range nodes {
		room := n.Processors
		for _, h := range wants {
			if h.Held > 0 && h.InferenceID != w.InferenceID {
				room -= min(placed[h.InferenceID][n.Name], h.Held) * threads(h)
			}
		}
		if room >= threads(w) {
			return false
		}
	}
	return true
}

// noRoom explains, as Elasticsearch's assignment reason does, why no node
// takes another allocation needing threads processors.
func noRoom(nodes []NodeCap, free map[string]int, threads int) string {
	if len(nodes) == 0 {
		return "No worker nodes are registered"
	}
	reasons := make([]string, len(nodes))
	for i, n := range nodes {
		reasons[i] = fmt.Sprintf("Could not assign (more) allocations on node [%s]. Reason: This node has insufficient allocated processors. "+
			"Available processors [%d], free processors [%d], processors required for each allocation of this model [%d]", n.Name, n.Processors, free[n.Name], threads)
	}
	return strings.Join(reasons, "|")
}

// better reports whether node a is a better home than b for one more
// allocation of an endpoint placed as got.
func better(a, b string, got map[string]int, models map[string]map[string]bool, modelID string, free map[string]int) bool {
	if got[a] != got[b] {
		return got[a] < got[b]
	}
	if ma, mb := models[a][modelID], models[b][modelID]; ma != mb {
		return ma
	}
	if free[a] != free[b] {
		return free[a] > free[b]
	}
	return a < b
}

func sum(m map[string]int) int {
	s := 0
	for _, n := range m {
		s += n
	}
	return s
}

// maxNode is the node with the most allocations (the last by name on a tie).
func maxNode(m map[string]int) string {
	best := ""
	for node, n := range m {
		if best == "" || n > m[best] || n == m[best] && node > best {
			best = node
		}
	}
	return best
}
