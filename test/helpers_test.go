package test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/node"
	"github.com/jetinfer/jetinfer/xcontent"
)

// testNode is a jetinfer process started in-process: a real embedded
// nats-server on a random port and a temp dir, and the HTTP API on a random
// port.
type testNode struct {
	*node.Node
	base string
}

func startNode(t *testing.T, adjust func(*node.Config)) *testNode {
	t.Helper()
	return startNodeWith(t, adjust, testRuntime)
}

// startNodeWith starts a node whose worker runs on rt; without rt the node
// has no worker: other processes serve its endpoints.
func startNodeWith(t *testing.T, adjust func(*node.Config), rt *inference.Runtime) *testNode {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.NodeName = "test-node"
	// Bounds the drain in Close: generous, so that a loaded machine does
	// not fail the cleanup.
	cfg.ShutdownTimeout = time.Minute
	cfg.ModelRepository = modelRepo
	// No test reaches the real Hub: built-in models come from modelRepo,
	// or from a fake Hub that a test starts.
	cfg.Hub = hfhub.Config{Endpoint: "http://127.0.0.1:9", CacheDir: filepath.Join(cfg.DataDir, "huggingface"), Offline: true}
	// The budget is a setting, not a measurement: tests deploy more
	// endpoints at once than this machine has cores.
	cfg.Processors = 64
	if adjust != nil {
		adjust(&cfg)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	n, err := node.Start(context.Background(), cfg, rt, log)
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("node.Close: %v", err)
		}
	})
	return &testNode{Node: n, base: "http://" + n.HTTPAddr()}
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request with a JSON body (when body is not empty).
func (n *testNode) do(t *testing.T, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, n.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: strings.TrimSuffix(string(b), "\n")}
}

// expect checks the status and the exact body.
func (r response) expect(t *testing.T, status int, body string) {
	t.Helper()
	if r.status != status || r.body != body {
		t.Fatalf("response = %d %s\nwant     %d %s", r.status, r.body, status, body)
	}
	if got := r.header.Get("X-Elastic-Product"); got != "Elasticsearch" {
		t.Errorf("X-Elastic-Product = %q; want Elasticsearch", got)
	}
}

// esError renders Elasticsearch's error envelope for a single exception.
func esError(status int, typ, reason string) string {
	return `{"error":{"root_cause":[{"type":` + quote(typ) + `,"reason":` + quote(reason) + `}],"type":` +
		quote(typ) + `,"reason":` + quote(reason) + `},"status":` + strconv.Itoa(status) + `}`
}

// esErrorCausedBy renders an exception with one cause, which Elasticsearch
// leaves out of root_cause when the outer exception is the one thrown.
func esErrorCausedBy(status int, typ, reason, causeType, causeReason string) string {
	return `{"error":{"root_cause":[{"type":` + quote(typ) + `,"reason":` + quote(reason) + `}],"type":` +
		quote(typ) + `,"reason":` + quote(reason) + `,"caused_by":{"type":` + quote(causeType) + `,"reason":` + quote(causeReason) +
		`}},"status":` + strconv.Itoa(status) + `}`
}

func quote(s string) string {
	b, _ := xcontent.Marshal(s)
	return string(b)
}
