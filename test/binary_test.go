package test

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeBinary runs the real jetinfer binary: it serves, persists
// definitions in its data directory, and exits cleanly on SIGTERM.
func TestServeBinary(t *testing.T) {
	bin := jetinferBinary(t)
	dataDir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr

	serve := func() (*exec.Cmd, *strings.Builder) {
		cmd := exec.Command(bin, "serve", "--http-addr", addr, "--metrics-addr", "127.0.0.1:0", "--data-dir", dataDir, "--model-repository", modelRepo)
		cmd.Env = append(os.Environ(), "JETINFER_NATS_LISTEN=127.0.0.1:0", "JETINFER_LOG_LEVEL=warn")
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			resp, err := http.Get(base + "/")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("jetinfer did not serve: %v\n%s", err, logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		return cmd, &logs
	}
	stop := func(cmd *exec.Cmd, logs *strings.Builder) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("jetinfer exited with %v after SIGTERM\n%s", err, logs.String())
			}
		// Longer than the binary's own 30 s shutdown drain.
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("jetinfer did not exit after SIGTERM\n%s", logs.String())
		}
	}

	cmd, logs := serve()
	n := &testNode{base: base}
	n.do(t, "PUT", "/_inference/sparse_embedding/my-elser", elserBody).expect(t, 200, elserJSON)
	stop(cmd, logs)

	cmd, logs = serve()
	n.do(t, "GET", "/_inference/my-elser", "").expect(t, 200, `{"endpoints":[`+elserJSON+`]}`)
	stop(cmd, logs)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
