package test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/node"
	"github.com/jetinfer/jetinfer/wire"
)

// natsServerProcess is a nats-server process with JetStream, on loopback.
type natsServerProcess struct {
	bin, addr, storeDir string
	cmd                 *exec.Cmd
	logs                *strings.Builder
}

func startNATSServer(t *testing.T) *natsServerProcess {
	t.Helper()
	p := &natsServerProcess{bin: natsServerBinary(t), addr: freeAddr(t), storeDir: t.TempDir()}
	p.start(t)
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *natsServerProcess) url() string { return "nats://" + p.addr }

// start runs the server on its address and store and returns once
// JetStream answers.
func (p *natsServerProcess) start(t *testing.T) time.Time {
	t.Helper()
	host, port, err := net.SplitHostPort(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.logs = &strings.Builder{}
	p.cmd = exec.Command(p.bin, "--jetstream", "--store_dir", p.storeDir, "--addr", host, "--port", port)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return waitAnswering(t, p.url())
}

// kill ends the server with SIGKILL.
func (p *natsServerProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	p.cmd = nil
}

// waitAnswering returns when a new connection to url gets JetStream's
// account info: the moment the server answers.
func waitAnswering(t *testing.T, url string) time.Time {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server at %s not answering after a minute: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recoveryBound is how soon after a restarted nats-server answers again the
// pipeline is back at its normal speed.
const recoveryBound = 15 * time.Second

// TestNATSServerRestartMidIngest: the nats-server process killed (SIGKILL)
// in the middle of an ingest and started again on its store: no document is
// lost or has two results, and the documents left are done within
// recoveryBound more than they take at the speed before the kill, counted
// from the moment the server answers again.
//
// "consumer state regressed" restarts the server with the endpoint
// consumer's state as it was a few hundred documents earlier, as a server
// killed before it flushed that state does: it ignores the acks of the
// documents the worker has in hand (they are past what it believes it
// delivered) and delivers them again. A worker that waited for each ack to
// be confirmed crawled at one document per ack timeout; the duplicate
// window keeps the second results out of the stream.
func TestNATSServerRestartMidIngest(t *testing.T) {
	t.Run("restart", func(t *testing.T) { restartMidIngest(t, false) })
	t.Run("consumer state regressed", func(t *testing.T) { restartMidIngest(t, true) })
}

func restartMidIngest(t *testing.T, regress bool) {
	srv := startNATSServer(t)
	const ackWait = 5 * time.Second
	n := startNodeWith(t, func(c *node.Config) {
		c.NATSURL = srv.url()
		c.AckWait = ackWait
		c.Heartbeat = testHeartbeat
	}, testRuntime)
	n.do(t, "PUT", "/_inference/text_embedding/restart?timeout=2m", e5Body).mustStatus(t, 200)
	js := connectJS(t, srv.url())
	res := watchResults(t, js, "restart")
	const docs = 3000
	ids := docIDs(docs)
	publishDocs(t, js, "restart", ids, func(id string) []byte { return docBody(id, docText(id)) })
	res.until(100, time.Minute)
	first, firstAt := len(res.byID), time.Now()
	state := filepath.Join(srv.storeDir, "jetstream", "$G", "streams", wire.RequestsStream("restart"), "obs", wire.ConsumerName("restart"), "o.dat")
	old, err := os.ReadFile(state) // written atomically by the server
	if err != nil {
		t.Fatal(err)
	}
	res.until(first+500, time.Minute)
	rate := float64(len(res.byID)-first) / time.Since(firstAt).Seconds()

	srv.kill(t)
	killed := len(res.byID)
	if regress {
		if err := os.WriteFile(state, old, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Started again at once: groups in the worker's hands at the kill
	// finish after the restart, and their acks meet the restarted state.
	answered := srv.start(t)
	res.until(killed+1, time.Minute)
	resumedAt := time.Now()
	res.until(docs, 3*time.Minute)
	drained := time.Since(answered)
	res.quiet(ackWait + time.Second) // a late redelivery would show
	if len(res.byID) != docs || res.dups != 0 {
		t.Fatalf("%d documents with results, %d duplicates; want %d, 0", len(res.byID), res.dups, docs)
	}
	requireQueueEmpty(t, js, "restart")
	left := docs - killed
	normal := time.Duration(float64(left) / rate * float64(time.Second))
	t.Logf("before the kill %.0f documents/s; %d documents left at the kill; first result %.1fs after the server answered, all %.1fs after (%.1fs at the speed before)",
		rate, left, resumedAt.Sub(answered).Seconds(), drained.Seconds(), normal.Seconds())
	if drained > recoveryBound+normal {
		t.Fatalf("the %d documents left took %.1fs after the server answered; want at most %s more than the %.1fs they take at the speed before the kill\nnats-server:\n%s",
			left, drained.Seconds(), recoveryBound, normal.Seconds(), srv.logs)
	}
}
