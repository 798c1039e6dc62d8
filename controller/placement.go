package controller

import (
	"cmp"
	"maps"
	"slices"

	"github.com/jetinfer/jetinfer/cluster"
)

// Want is what one endpoint asks of the cluster.
type Want struct {
	InferenceID string
	Revision    uint64
	ModelID     string
	Threads     int
	Target      int
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
// with the most free processors. What fits nowhere is Pending.
func Place(wants []Want, nodes []NodeCap, prev map[string]cluster.Plan) map[string]cluster.Plan {
	wants = slices.Clone(wants)
	slices.SortFunc(wants, func(a, b Want) int { return cmp.Compare(a.InferenceID, b.InferenceID) })
	free := map[string]int{}
	models := map[string]map[string]bool{}
	for _, n := range nodes {
		free[n.Name] = n.Processors
		models[n.Name] = n.Models
	}
	out := map[string]cluster.Plan{}
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
	for _, w := range wants {
		got := placed[w.InferenceID]
		for sum(got) < w.Target {
			best := ""
			for _, n := range nodes {
				if free[n.Name] < threads(w) {
					continue
				}
				if best == "" || better(n.Name, best, got, models, w.ModelID, free) {
					best = n.Name
				}
			}
			if best == "" {
				break
			}
			got[best]++
			free[best] -= threads(w)
		}
		out[w.InferenceID] = cluster.Plan{
			InferenceID: w.InferenceID, Revision: w.Revision, Target: w.Target,
			Nodes: got, Pending: w.Target - sum(got),
		}
	}
	return out
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
