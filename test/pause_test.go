package test

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/node"
)

// TestWorkerPausedPastItsHeartbeat: a worker process stopped (SIGSTOP) in
// the middle of an ingest for longer than its registry entry lives is
// replaced: its allocation goes to the other worker, which takes over its
// documents when their ack wait ends. Resumed (SIGCONT), it stops the
// allocation it no longer has; what it finishes of the documents it had in
// hand is dropped by the results stream as duplicates. No document is lost
// or has two results.
func TestWorkerPausedPastItsHeartbeat(t *testing.T) {
	bin := jetinferBinary(t)
	hub := startNodeWith(t, func(c *node.Config) { c.Heartbeat = testHeartbeat }, nil)
	startWorker := func(name string) (*exec.Cmd, *strings.Builder) {
		cmd := exec.Command(bin, "worker", "--nats-url", hub.NATSURL(), "--metrics-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--model-repository", modelRepo, "--ack-wait", "2s", "--heartbeat", testHeartbeat.String(),
			"--node-name", name, "--processors", "2", "--log-level", "warn")
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Kill()
		})
		return cmd, &logs
	}
	w1, logs1 := startWorker("w1")
	js := connectJS(t, hub.NATSURL())
	waitRegistered(t, js, 1, 1)
	body := strings.Replace(e5Body, `"num_allocations":2`, `"num_allocations":1`, 1)
	if r := hub.do(t, "PUT", "/_inference/text_embedding/paused?timeout=2m", body); r.status != 200 {
		t.Fatalf("PUT = %d %s\nw1 logs:\n%s", r.status, r.body, logs1)
	}
	running(t, js, 1, "paused", map[string]int{"w1": 1})
	w2, logs2 := startWorker("w2")
	waitRegistered(t, js, 1, 2)

	res := watchResults(t, js, "paused")
	const docs = 2000
	ids := docIDs(docs)
	publishDocs(t, js, "paused", ids, func(id string) []byte { return docBody(id, docText(id)) })
	res.until(200, time.Minute)
	if err := w1.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	res.read(100 * time.Millisecond)
	atPause := len(res.byID)
	// w1's entry expires (5 heartbeats), the controller (w2, once w1's
	// lease is gone too) moves the allocation, and w2 serves.
	planOf(t, js, 1, "paused", nodesAre(map[string]int{"w2": 1}))
	res.until(atPause+100, time.Minute)
	t.Logf("allocation moved to w2 %.1fs after the pause", time.Since(paused).Seconds())
	if err := w1.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Resumed, w1 learns it no longer holds the allocation and stops it,
	// and says so when it announces itself again.
	running(t, js, 1, "paused", map[string]int{"w2": 1})
	waitRegistered(t, js, 1, 2)
	reg, err := cluster.OpenRegistry(context.Background(), js, config.StoreConfig{}, 5*testHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	w1Done := func() (allocations int, documents int64) {
		nodes, err := reg.Nodes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.Name == "w1" {
				d := n.Deployments["paused"]
				return d.Allocations, d.Documents
			}
		}
		t.Fatal("w1 is not registered")
		return 0, 0
	}

	res.until(docs, 3*time.Minute)
	res.quiet(3 * time.Second) // longer than the ack wait: a late redelivery would show
	if len(res.byID) != docs || res.dups != 0 {
		t.Fatalf("%d documents with results, %d duplicates; want %d, 0\nw1 logs:\n%s\nw2 logs:\n%s", len(res.byID), res.dups, docs, logs1, logs2)
	}
	requireQueueEmpty(t, js, "paused")
	allocations, before := w1Done()
	time.Sleep(3 * testHeartbeat)
	if _, after := w1Done(); allocations != 0 || after != before {
		plan := planOf(t, js, 1, "paused", func(cluster.Plan) bool { return true })
		t.Fatalf("w1 after its pause: %d allocations, results published %d then %d; want 0 and no more work (plan %v)\nw1 logs:\n%s",
			allocations, before, after, plan.Nodes, logs1)
	}
	for _, w := range []struct {
		cmd  *exec.Cmd
		logs *strings.Builder
	}{{w1, logs1}, {w2, logs2}} {
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := w.cmd.Wait(); err != nil {
			t.Fatalf("worker exited with %v after SIGTERM\n%s", err, w.logs)
		}
	}
}
