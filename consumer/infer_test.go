package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/wire"
)

// inferRunner answers infer requests with infer.
type inferRunner struct {
	fakeRunner
	infer func(ctx context.Context, req inferapi.Request) ([]byte, error)
}

func (r inferRunner) Infer(ctx context.Context, req inferapi.Request, _ inferapi.Options) (inferapi.Result, error) {
	body, err := r.infer(ctx, req)
	return inferapi.Result{Body: body}, err
}

func TestInferRequestReply(t *testing.T) {
	nc, js := startJS(t, 0)
	d, err := NewDeployment(DeploymentConfig{
		NC: nc, JS: js, Endpoint: config.Endpoint{InferenceID: testID, TaskType: config.TextEmbedding},
		SearchCapacity: 1, PollWait: 100 * time.Millisecond, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Nothing subscribed yet: no responders.
	_, err = wire.Request(ctx, nc, testID, []byte(`{"input":"x"}`), inferapi.Options{})
	if e := eserror.As(err); e.Status != http.StatusConflict || e.Reason != "Trained model deployment [my.endpoint] is not allocated to any nodes" {
		t.Fatalf("no deployment: %v", err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Stop(ctx) }()

	// A reply larger than a message arrives whole.
	big := strings.Repeat("y", int(nc.MaxPayload())+12345)
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	var calls atomic.Int32
	d.SetRunner(inferRunner{infer: func(ctx context.Context, req inferapi.Request) ([]byte, error) {
		calls.Add(1)
		switch req.Input[0] {
		case "big":
			return []byte(big), nil
		case "block":
			started <- struct{}{}
			<-release
		case "fail":
			return nil, eserror.BadRequest("no good")
		}
		return json.Marshal(req.Input)
	}}, 1)
	got, err := wire.Request(ctx, nc, testID, []byte(`{"input":"big"}`), inferapi.Options{})
	if err != nil || string(got.Body) != big {
		t.Fatalf("big reply: %d bytes, %v", len(got.Body), err)
	}
	_, err = wire.Request(ctx, nc, testID, []byte(`{"input":"fail"}`), inferapi.Options{})
	var re *wire.ReplyError
	if !errors.As(err, &re) || re.Status != 400 || !strings.Contains(string(re.Body), `"reason":"no good"`) {
		t.Fatalf("error reply: %v", err)
	}
	_, err = wire.Request(ctx, nc, testID, []byte(`{"input":"x","bad":1}`), inferapi.Options{})
	if !errors.As(err, &re) || re.Status != 400 || !strings.Contains(string(re.Body), "unknown field [bad]") {
		t.Fatalf("invalid body: %v", err)
	}

	// One allocation is two lanes; with both blocked the queue holds one
	// more request and refuses the next with 429.
	var wg sync.WaitGroup
	results := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = wire.Request(ctx, nc, testID, []byte(`{"input":"block"}`), inferapi.Options{})
		}()
		<-started
	}
	queued := make(chan error, 1)
	go func() {
		_, err := wire.Request(ctx, nc, testID, []byte(`{"input":"queued"}`), inferapi.Options{})
		queued <- err
	}()
	for deadline := time.Now().Add(time.Minute); d.Waiting() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests waiting, want 1", d.Waiting())
		}
	}
	_, err = wire.Request(ctx, nc, testID, []byte(`{"input":"refused"}`), inferapi.Options{})
	if !errors.As(err, &re) || re.Status != 429 || !strings.Contains(string(re.Body), "inference process queue is full. Unable to execute command") {
		t.Fatalf("full queue: %v", err)
	}
	close(release)
	wg.Wait()
	if err := errors.Join(append(results, <-queued)...); err != nil {
		t.Fatal(err)
	}

	// A request whose client gave up is not run.
	before := calls.Load()
	short, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	if _, err := wire.Request(short, nc, testID, []byte(`{"input":"late"}`), inferapi.Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired request: %v", err)
	}
	// The queue holds one: let a lane drop the late one first (the flush
	// makes sure the server has passed it on).
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	for deadline := time.Now().Add(time.Minute); d.Waiting() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the expired request is still waiting")
		}
	}
	if _, err := wire.Request(ctx, nc, testID, []byte(`{"input":"after"}`), inferapi.Options{}); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load() - before; n != 1 {
		t.Fatalf("%d runs after the expired request, want 1", n)
	}

	// A failed deployment answers with its failure.
	d.Fail(eserror.NotFound("model gone"))
	_, err = wire.Request(ctx, nc, testID, []byte(`{"input":"x"}`), inferapi.Options{})
	if !errors.As(err, &re) || re.Status != 404 || !strings.Contains(string(re.Body), "model gone") {
		t.Fatalf("failed deployment: %v", err)
	}
}

// TestGroupsAndPoison: documents waiting together are embedded by one call,
// and a document that fails does not fail the others of its group.
func TestGroupsAndPoison(t *testing.T) {
	nc, js := startJS(t, 0)
	for i := range 20 {
		publishDoc(t, js, fmt.Sprintf("m-%d", i), fmt.Sprintf(`{"id":"doc-%d","input":["text %d"]}`, i, i))
	}
	var mu sync.Mutex
	var sizes []int
	poisonTries := 0
	stop := startRun(t, nc, js, fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		mu.Lock()
		sizes = append(sizes, len(docs))
		for _, d := range docs {
			if d.Input[0] == "text 7" {
				if len(docs) == 1 {
					poisonTries++
				}
				mu.Unlock()
				return nil, errors.New("poison")
			}
		}
		mu.Unlock()
		return echo(ctx, docs)
	}}, 3)
	got := collect(t, js, 20, 500*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("%d results", len(got))
	}
	for _, r := range got {
		failed := strings.Contains(r.body, `"status":500`)
		if failed != (r.docID == "doc-7") {
			t.Errorf("%s: %s", r.docID, r.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if slices.Max(sizes) < 2 {
		t.Errorf("group sizes %v: documents waiting together were not grouped", sizes)
	}
	if poisonTries != 3 {
		t.Errorf("the poison document was tried alone %d times, want 3 (max deliver)", poisonTries)
	}
	requireDrained(t, js, 0)
}
