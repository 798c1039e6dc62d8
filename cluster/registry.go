package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/kv"
)

// NodesBucket is the node registry: one key per worker process, rewritten
// every heartbeat; a key not rewritten within the bucket's TTL expires, and
// its node is gone.
const NodesBucket = "inference_nodes"

// Node is what a worker process announces about itself.
type Node struct {
	Name string `json:"node"`
	// Processors is the node's processor budget: the allocations ×
	// num_threads placed on it never exceed it.
	Processors int `json:"processors"`
	// MemoryBytes is the memory the machine has available.
	MemoryBytes uint64 `json:"memory_bytes"`
	// Models are the model ids in the node's local cache.
	Models []string `json:"models"`
	// Deployments are the node's counters per inference id.
	Deployments map[string]DeploymentStats `json:"deployments"`
	Started     time.Time                  `json:"started"`
	Updated     time.Time                  `json:"updated"`
}

// DeploymentStats are one node's counters of one endpoint, cumulative
// since the node started serving it.
type DeploymentStats struct {
	Allocations int `json:"allocations"`
	Threads     int `json:"threads_per_allocation"`
	// Documents and Inferences count results published and infer requests
	// answered (errors included); Errors those that were errors.
	Documents  int64 `json:"documents"`
	Inferences int64 `json:"inferences"`
	Errors     int64 `json:"errors"`
	Rejected   int64 `json:"rejected"`
	// BusyNanos is the time spent computing them.
	BusyNanos int64 `json:"busy_nanos"`
	// Waiting is the infer requests queued on the node now.
	Waiting int `json:"waiting"`
	// PeakPerMinute and LastMinute count what finished in the busiest
	// minute and in the last whole one.
	PeakPerMinute int64 `json:"peak_throughput_per_minute"`
	LastMinute    int64 `json:"throughput_last_minute"`
	// LastAccess is when the node last served something of the endpoint;
	// Started when it began serving it.
	LastAccess time.Time `json:"last_access,omitzero"`
	Started    time.Time `json:"started"`
}

// Registry reads and writes the node registry.
type Registry struct {
	b   *kv.Bucket[Node]
	ttl time.Duration
}

// OpenRegistry creates the bucket if needed; ttl is how long a node that
// stopped heartbeating stays listed.
func OpenRegistry(ctx context.Context, js jetstream.JetStream, cfg config.StoreConfig, ttl time.Duration) (*Registry, error) {
	b, err := kv.Open(ctx, js, kv.Config{Bucket: NodesBucket, Description: "jetinfer worker nodes, rewritten every heartbeat",
		TTL: ttl, Replicas: cfg.Replicas, Log: cfg.Log}, kv.JSON[Node]())
	if err != nil {
		return nil, err
	}
	return &Registry{b: b, ttl: ttl}, nil
}

// TTL is how long a node stays listed after its last heartbeat.
func (r *Registry) TTL() time.Duration { return r.ttl }

// Announce writes a node's entry.
func (r *Registry) Announce(ctx context.Context, n Node) error {
	n.Updated = time.Now().UTC()
	_, err := r.b.Put(ctx, nodeKey(n.Name), n)
	return err
}

// Leave removes a node's entry at once (a graceful stop).
func (r *Registry) Leave(ctx context.Context, name string) error {
	return r.b.Delete(ctx, nodeKey(name))
}

// Nodes lists the nodes alive: those whose entry was written within the
// TTL of the newest entry. The server expires silent entries too, but late;
// comparing server timestamps with each other (not with this process's
// clock) keeps a skewed clock from making every node look dead.
func (r *Registry) Nodes(ctx context.Context) ([]Node, error) {
	entries, err := r.b.List(ctx, ">")
	if err != nil {
		return nil, err
	}
	return alive(entries, r.ttl), nil
}

// alive keeps the nodes whose entry was written within ttl of the newest.
func alive(entries []kv.Entry[Node], ttl time.Duration) []Node {
	var newest time.Time
	for _, e := range entries {
		if e.Err == nil && e.Created.After(newest) {
			newest = e.Created
		}
	}
	var out []Node
	for _, e := range entries {
		if e.Err == nil && newest.Sub(e.Created) <= ttl {
			out = append(out, e.Value)
		}
	}
	return out
}

// LiveNodes is the registry in memory, kept by a watch (Keep), so that
// the controller reads no bucket every heartbeat. A node whose entry
// expired leaves no delete marker for the watch: the rule of Nodes (alive
// within the TTL of the newest entry) drops it, and an entry silent for
// ten TTLs is forgotten.
type LiveNodes struct {
	r       *Registry
	mu      sync.Mutex
	entries map[string]kv.Entry[Node]
	seeded  bool
}

// Live returns an empty LiveNodes of the registry.
func (r *Registry) Live() *LiveNodes {
	return &LiveNodes{r: r, entries: map[string]kv.Entry[Node]{}}
}

// Keep fills l from the registry's watch until ctx ends.
func (l *LiveNodes) Keep(ctx context.Context) {
	l.r.b.Watch(ctx, ">", func(c kv.Change[Node]) {
		l.mu.Lock()
		defer l.mu.Unlock()
		cur, ok := l.entries[c.Key]
		switch {
		case c.Deleted:
			if ok && c.Revision >= cur.Revision {
				delete(l.entries, c.Key)
			}
		case c.Err == nil && (!ok || c.Revision > cur.Revision):
			l.entries[c.Key] = c.Entry
		}
	})
}

// Nodes returns the nodes alive; the first call lists the registry, so
// that l is complete whatever the watch has delivered yet.
func (l *LiveNodes) Nodes(ctx context.Context) ([]Node, error) {
	l.mu.Lock()
	seeded := l.seeded
	l.mu.Unlock()
	if !seeded {
		listed, err := l.r.b.List(ctx, ">")
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		for _, e := range listed {
			if cur, ok := l.entries[e.Key]; e.Err == nil && (!ok || e.Revision > cur.Revision) {
				l.entries[e.Key] = e
			}
		}
		l.seeded = true
		l.mu.Unlock()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	entries := make([]kv.Entry[Node], 0, len(l.entries))
	var newest time.Time
	for _, e := range l.entries {
		entries = append(entries, e)
		if e.Created.After(newest) {
			newest = e.Created
		}
	}
	for key, e := range l.entries {
		if newest.Sub(e.Created) > 10*l.r.ttl {
			delete(l.entries, key)
		}
	}
	return alive(entries, l.r.ttl), nil
}

// Snapshot is what the cluster knows of its deployments at one moment.
type Snapshot struct {
	Nodes  []Node
	Plans  map[string]Plan
	States []State
	// Downloads of built-in models running or recently failed, by model id.
	Downloads map[string]Download
}

// View reads snapshots.
type View struct {
	Registry  *Registry
	Plans     *Plans
	States    *States
	Downloads *Downloads
}

// Snapshot reads the registry, the plans, the deployment states and the
// model downloads.
func (v View) Snapshot(ctx context.Context) (Snapshot, error) {
	var s Snapshot
	var err error
	if s.Nodes, err = v.Registry.Nodes(ctx); err != nil {
		return s, err
	}
	if s.Plans, err = v.Plans.All(ctx); err != nil {
		return s, err
	}
	if s.States, err = v.States.list(ctx, ">"); err != nil {
		return s, err
	}
	if v.Downloads != nil {
		s.Downloads, err = v.Downloads.All(ctx)
	}
	return s, err
}

// WaitStarted is States.WaitStarted, and also returns nil once the plan of
// the definition's revision (or a later one) starts it at zero: an
// adaptive endpoint whose minimum is 0 that found no free processor is
// defined and waits for its first request, rather than for a processor.
func (v View) WaitStarted(ctx context.Context, inferenceID string, revision uint64, timeout string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	atZero := make(chan struct{})
	var once sync.Once
	wg.Add(2)
	go func() {
		defer wg.Done()
		v.Plans.b.Watch(ctx, config.Token(inferenceID), func(c kv.Change[Plan]) {
			p := c.Value
			if c.Err == nil && !c.Deleted && p.Revision >= revision && p.Target == 0 && p.Pending == 0 {
				once.Do(func() { close(atZero) })
			}
		})
	}()
	started := make(chan error, 1)
	go func() {
		defer wg.Done()
		started <- v.States.WaitStarted(ctx, inferenceID, revision, timeout)
	}()
	select {
	case <-atZero:
		return nil
	case err := <-started:
		return err
	}
}

// Allocations is States.Allocations.
func (v View) Allocations(ctx context.Context) (map[string]int, error) {
	return v.States.Allocations(ctx)
}
