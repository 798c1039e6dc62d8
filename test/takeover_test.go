package test

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/wire"
)

// TestWorkerKilledMidway: a worker process killed (SIGKILL) in the middle
// of a bulk ingest loses nothing: another worker takes over, and every
// document has exactly one result.
func TestWorkerKilledMidway(t *testing.T) {
	bin := jetinferBinary(t)
	hub := startNodeWith(t, nil, nil) // HTTP API and NATS, no worker
	startWorker := func(name string) (*exec.Cmd, *strings.Builder) {
		cmd := exec.Command(bin, "worker", "--nats-url", hub.NATSURL(), "--metrics-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--model-repository", modelRepo, "--ack-wait", "2s", "--node-name", name, "--processors", "2", "--log-level", "warn")
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, &logs
	}
	w1, logs1 := startWorker("w1")
	r := hub.do(t, "PUT", "/_inference/text_embedding/takeover", e5Body)
	if r.status != 200 {
		t.Fatalf("PUT = %d %s\nworker logs:\n%s", r.status, r.body, logs1)
	}
	js := connectJS(t, hub.NATSURL())
	res := watchResults(t, js, "takeover")
	const docs = 2000
	ids := docIDs(docs)
	publishDocs(t, js, "takeover", ids, func(id string) []byte { return docBody(id, docText(id)) })
	res.until(200, time.Minute)
	if err := w1.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	res.read(100 * time.Millisecond)
	before := len(res.byID)
	if before >= docs {
		t.Fatalf("all %d documents were done before the worker was killed", docs)
	}

	w2, logs2 := startWorker("w2")
	res.until(docs, 3*time.Minute)
	res.quiet(3 * time.Second) // longer than the ack wait: a late redelivery would show
	if len(res.byID) != docs || res.dups != 0 {
		t.Fatalf("%d documents with results, %d duplicates; want %d, 0\nw2 logs:\n%s", len(res.byID), res.dups, docs, logs2)
	}
	s, err := js.Stream(context.Background(), wire.ResultsStream(config.Token("takeover")))
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stored := si.State.Msgs; stored != uint64(docs) {
		t.Fatalf("%d results stored, want %d", stored, docs)
	}
	requireQueueEmpty(t, js, "takeover")
	t.Logf("%d of %d documents done when the first worker was killed", before, docs)
	// w2 did what was left, and at most the groups w1 had in hand again:
	// not every document twice.
	left := int64(docs - before)
	done := workDone(t, js, "takeover", func(c map[string]int64) bool { return c["w2"] >= left })
	if done["w2"] > left+groupSlack(2) {
		t.Fatalf("w2 published %d results for the %d documents left; want at most %d", done["w2"], left, left+groupSlack(2))
	}

	if err := w2.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w2.Wait(); err != nil {
		t.Fatalf("worker exited with %v after SIGTERM\n%s", err, logs2)
	}
}
