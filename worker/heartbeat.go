package worker

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/cluster"
)

// availableMemory is MemAvailable from /proc/meminfo, 0 where there is none.
func availableMemory() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// machineEvery paces the facts of the machine in the registry entry (the
// models in the local cache, the memory available): listing the cache and
// reading /proc/meminfo every heartbeat was a third of an idle node's
// heartbeat, for facts that placement only uses as a preference.
const machineEvery = 10 * time.Second

// machine is what the heartbeat last read of the machine.
type machine struct {
	read   time.Time
	models []string
	memory uint64
}

// heartbeat announces the node, its budget, cached models and the load of
// its deployments, until ctx ends; then it leaves the registry.
func (w *Worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	var m machine
	for {
		if now := time.Now(); now.Sub(m.read) >= machineEvery {
			m = machine{read: now, models: w.cfg.Models.Cached(), memory: availableMemory()}
		}
		if err := w.cfg.Registry.Announce(ctx, w.describe(m)); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("announce node")
		}
		select {
		case <-ctx.Done():
			if err := w.cfg.Registry.Leave(context.WithoutCancel(ctx), w.cfg.NodeName); err != nil {
				w.log.Warn().Err(err).Msg("leave node registry")
			}
			return
		case <-t.C:
		}
	}
}

// describe is the node's registry entry.
func (w *Worker) describe(m machine) cluster.Node {
	n := cluster.Node{Name: w.cfg.NodeName, Processors: w.cfg.Processors, MemoryBytes: m.memory,
		Models: m.models, Deployments: map[string]cluster.DeploymentStats{}, Started: w.started}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, e := range w.served {
		dep := e.deployment.Load()
		if dep == nil {
			continue
		}
		st := dep.Stats()
		// A deployment not planned here that never ran says nothing
		// (a loading or failed one is planned): leaving it out keeps the
		// entry (written every heartbeat, read by the controller) small.
		if !e.allocated.Load() && st.Documents.Load() == 0 && st.Inferences.Load() == 0 && st.Errors.Load() == 0 &&
			st.Rejected.Load() == 0 && dep.Waiting() == 0 && dep.Allocations() == 0 {
			continue
		}
		lastMinute, peak, lastAccess := st.Throughput()
		d := cluster.DeploymentStats{
			Allocations: dep.Allocations(), Threads: int(e.threads.Load()),
			Documents: st.Documents.Load(), Inferences: st.Inferences.Load(), Errors: st.Errors.Load(),
			Rejected: st.Rejected.Load(), BusyNanos: st.BusyNanos.Load(), Waiting: dep.Waiting(),
			PeakPerMinute: peak, LastMinute: lastMinute, LastAccess: lastAccess, Started: e.started,
		}
		n.Deployments[id] = d
	}
	return n
}
