package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/wire"
)

// TestPanicBecomesErrorResult: a panic while serving (injected by the
// test's runner, as a chunker or response writer could panic) turns the
// document that caused it into an error result at once and an infer
// request into an error reply; its neighbours are served and the process
// lives on.
func TestPanicBecomesErrorResult(t *testing.T) {
	nc, js := startJS(t, 0)
	for _, d := range []struct{ id, body string }{
		{"m-1", `{"id":"doc-1","input":"first"}`},
		{"m-2", `{"id":"doc-2","input":"boom"}`},
		{"m-3", `{"id":"doc-3","input":"third"}`},
	} {
		publishDoc(t, js, d.id, d.body)
	}
	var boomCalls atomic.Int32 // runner calls that saw doc-2
	boom := func(input []string) {
		if slices.Contains(input, "boom") {
			var none []string
			_ = none[len(input)] // a real runtime panic: index out of range
		}
	}
	stop := startRun(t, nc, js, fakeRunner{
		ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
			if slices.ContainsFunc(docs, func(d inferapi.Request) bool { return slices.Contains(d.Input, "boom") }) {
				boomCalls.Add(1)
			}
			for _, d := range docs {
				boom(d.Input)
			}
			return echo(ctx, docs)
		},
		infer: func(_ context.Context, req inferapi.Request) ([]byte, error) {
			boom(req.Input)
			return []byte(`{"ok":true}`), nil
		},
	}, 5)

	got := collect(t, js, 3, 300*time.Millisecond)
	if len(got) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(got), got)
	}
	for _, r := range got {
		switch r.docID {
		case "doc-1", "doc-3":
			if r.body != `{"input_type":"unspecified","inputs":["`+map[string]string{"doc-1": "first", "doc-3": "third"}[r.docID]+`"]}` {
				t.Errorf("%s: %s", r.docID, r.body)
			}
		case "doc-2":
			var env struct {
				Error struct {
					Type     string `json:"type"`
					Reason   string `json:"reason"`
					CausedBy struct {
						Reason string `json:"reason"`
					} `json:"caused_by"`
				} `json:"error"`
				Status int `json:"status"`
			}
			if err := json.Unmarshal([]byte(r.body), &env); err != nil {
				t.Fatalf("%s: %v", r.body, err)
			}
			if env.Status != 500 || env.Error.Reason != "inference failed on an internal error" ||
				env.Error.CausedBy.Reason != "runtime error: index out of range [1] with length 0" {
				t.Errorf("doc-2: %s", r.body)
			}
		default:
			t.Errorf("result for %q", r.docID)
		}
	}
	// The document that panicked ran in its group (when the fetch grouped
	// it with others: that depends on timing), then alone, and got its
	// error result then: on its first delivery, not after MaxDeliver tries.
	if n := boomCalls.Load(); n < 1 || n > 2 {
		t.Errorf("doc-2 ran %d times; want at most 2 (in its group, then alone)", n)
	}
	requireDrained(t, js, 0)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var reply *wire.ReplyError
	if _, err := wire.Request(ctx, nc, testID, []byte(`{"input":"boom"}`), inferapi.Options{}); !errors.As(err, &reply) || reply.Status != http.StatusInternalServerError {
		t.Fatalf("infer request that panics = %v; want a 500 reply", err)
	}
	if out, err := wire.Request(ctx, nc, testID, []byte(`{"input":"fine"}`), inferapi.Options{}); err != nil || string(out.Body) != `{"ok":true}` {
		t.Fatalf("infer request after the panic = %s, %v", out.Body, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
