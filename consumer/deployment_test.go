package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats/natstest"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/wire"
)

// The processor in these tests is deterministic, not an ORT model: this
// package's contract is the message flow, and pipeline's tests own
// ChunkedInfer.

const testID = "my.endpoint"

var testToken = config.Token(testID)

func startJS(t *testing.T, capacity int64) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.Start(t)
	// Generous: stream creation is quick, but a loaded CI machine is slow.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := wire.EnsureStreams(ctx, js, wire.StreamsConfig{Replicas: 1, QueueCapacity: capacity}); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// fakeRunner answers with what it was given, unless its hooks say
// otherwise.
type fakeRunner struct {
	ingest func(ctx context.Context, docs []inferapi.Request) ([][]byte, error)
	infer  func(ctx context.Context, req inferapi.Request) ([]byte, error)
}

func (f fakeRunner) Infer(ctx context.Context, req inferapi.Request) ([]byte, error) {
	if f.infer != nil {
		return f.infer(ctx, req)
	}
	return json.Marshal(map[string]any{"inputs": req.Input, "input_type": req.InputType})
}

func (f fakeRunner) Ingest(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
	if f.ingest != nil {
		return f.ingest(ctx, docs)
	}
	return echo(ctx, docs)
}

func echo(_ context.Context, docs []inferapi.Request) ([][]byte, error) {
	out := make([][]byte, len(docs))
	for i, d := range docs {
		var err error
		if out[i], err = json.Marshal(map[string]any{"inputs": d.Input, "input_type": d.InputType}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func publishDoc(t *testing.T, js jetstream.JetStream, msgID, body string) *jetstream.PubAck {
	t.Helper()
	m := nats.NewMsg(wire.IngestSubject(testToken))
	m.Header.Set("Nats-Msg-Id", msgID)
	m.Data = []byte(body)
	ack, err := js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatalf("publish %s: %v", msgID, err)
	}
	return ack
}

// startRun runs a Deployment with one allocation of r until the returned
// stop is called; stop returns Stop's error.
func startRun(t *testing.T, nc *nats.Conn, js jetstream.JetStream, r Runner, maxDeliver int) (stop func() error) {
	t.Helper()
	d, err := NewDeployment(DeploymentConfig{
		NC: nc, JS: js, Endpoint: config.Endpoint{InferenceID: testID}, MaxDeliver: maxDeliver,
		AckWait: 5 * time.Second, NakDelay: 20 * time.Millisecond, PollWait: 100 * time.Millisecond, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.SetRunner(r, 1)
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stopErr = d.Stop(ctx)
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

type result struct {
	docID, msgID string
	body         string
}

// collect reads results until want arrived, then waits quiet for more.
// The deadline only bounds a hang: it is far longer than the second or so
// these tests take, so that a loaded machine does not fail them.
func collect(t *testing.T, js jetstream.JetStream, want int, quiet time.Duration) []result {
	t.Helper()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, wire.ResultsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []result
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		wait := time.Second
		if len(out) >= want {
			wait = quiet
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			if len(out) >= want {
				return out
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, result{msg.Headers().Get(wire.HeaderDocumentID), msg.Headers().Get("Nats-Msg-Id"), string(msg.Data())})
	}
	t.Fatalf("got %d results, want %d", len(out), want)
	return nil
}

// requireDrained waits for the last acks to be settled (a result is stored
// before its document is acknowledged), then checks what is left.
func requireDrained(t *testing.T, js jetstream.JetStream, left uint64) {
	t.Helper()
	ctx := context.Background()
	var info *jetstream.ConsumerInfo
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := js.Consumer(ctx, wire.RequestsStream, wire.ConsumerName(testToken))
		if err != nil {
			t.Fatal(err)
		}
		if info, err = c.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("pending %d, ack pending %d; want none", info.NumPending, info.NumAckPending)
	}
	s, err := js.Stream(ctx, wire.RequestsStream)
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs != left {
		t.Fatalf("%d documents left in %s, want %d", si.State.Msgs, wire.RequestsStream, left)
	}
}

func TestFiftyDocuments(t *testing.T) {
	nc, js := startJS(t, 0)
	for i := range 50 {
		publishDoc(t, js, fmt.Sprintf("m-%d", i), fmt.Sprintf(`{"id":"doc-%d","input":["text %d"],"input_type":"ingest"}`, i, i))
	}
	if ack := publishDoc(t, js, "m-7", `{"id":"doc-7","input":["text 7"],"input_type":"ingest"}`); !ack.Duplicate {
		t.Fatal("republish with the same Nats-Msg-Id was not a duplicate")
	}
	stop := startRun(t, nc, js, fakeRunner{}, 0)
	got := collect(t, js, 50, 300*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 {
		t.Fatalf("got %d results, want 50", len(got))
	}
	seen := map[string]bool{}
	for _, r := range got {
		var i int
		if _, err := fmt.Sscanf(r.docID, "doc-%d", &i); err != nil {
			t.Fatalf("document id %q", r.docID)
		}
		if seen[r.docID] {
			t.Fatalf("two results for %s", r.docID)
		}
		seen[r.docID] = true
		if want := fmt.Sprintf(`{"input_type":"ingest","inputs":["text %d"]}`, i); r.body != want {
			t.Errorf("%s: body %s, want %s", r.docID, r.body, want)
		}
		if want := fmt.Sprintf("m-%d-result", i); r.msgID != want {
			t.Errorf("%s: Nats-Msg-Id %s, want %s", r.docID, r.msgID, want)
		}
	}
	requireDrained(t, js, 0)
}

func TestMalformedBodyIsTerminated(t *testing.T) {
	nc, js := startJS(t, 0)
	var calls atomic.Int32
	publishDoc(t, js, "bad", `{"id":"doc-bad","input":["x"]`)
	publishDoc(t, js, "unknown", `{"input":["x"], "id":"doc-unknown", "nope":1}`)
	stop := startRun(t, nc, js, fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		calls.Add(1)
		return echo(ctx, docs)
	}}, 3)
	got := collect(t, js, 2, 500*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d results, want 2: %+v", len(got), got)
	}
	for _, r := range got {
		var env struct {
			Error struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
			Status int `json:"status"`
		}
		if err := json.Unmarshal([]byte(r.body), &env); err != nil {
			t.Fatalf("%s: %v", r.body, err)
		}
		if env.Error.Type != "x_content_parse_exception" || env.Status != 400 {
			t.Errorf("%s: %s", r.docID, r.body)
		}
		if r.docID == "doc-unknown" && !strings.Contains(env.Error.Reason, "unknown field [nope]") {
			t.Errorf("reason %q", env.Error.Reason)
		}
		// An id that precedes the syntax error is still found.
		if want := strings.TrimSuffix("doc-"+r.msgID, "-result"); r.docID != want {
			t.Errorf("document id %q, want %q", r.docID, want)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("processor ran %d times", calls.Load())
	}
	requireDrained(t, js, 0)
}

func TestFailingProcessorGivesUp(t *testing.T) {
	nc, js := startJS(t, 0)
	var calls atomic.Int32
	publishDoc(t, js, "m-1", `{"id":"doc-1","input":"x"}`)
	stop := startRun(t, nc, js, fakeRunner{ingest: func(context.Context, []inferapi.Request) ([][]byte, error) {
		calls.Add(1)
		return nil, errors.New("model exploded")
	}}, 3)
	got := collect(t, js, 1, time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].docID != "doc-1" || !strings.Contains(got[0].body, `"status":500`) {
		t.Fatalf("results %+v", got)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("processor ran %d times, want 3", n)
	}
	requireDrained(t, js, 0)
}

func TestStopCompletesMessageInHand(t *testing.T) {
	nc, js := startJS(t, 0)
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	publishDoc(t, js, "m-1", `{"id":"doc-1","input":"x"}`)
	stop := startRun(t, nc, js, fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return echo(ctx, docs)
	}}, 0)
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(200 * time.Millisecond) // Stop has begun; the document is still in hand
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a document in hand", err)
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	got := collect(t, js, 1, 300*time.Millisecond)
	if len(got) != 1 || got[0].docID != "doc-1" || strings.Contains(got[0].body, "error") {
		t.Fatalf("results %+v", got)
	}
	if calls.Load() != 1 {
		t.Fatalf("processor ran %d times", calls.Load())
	}
	requireDrained(t, js, 0)
}

func TestFullQueueRefusesPublishes(t *testing.T) {
	nc, js := startJS(t, 5)
	for i := range 5 {
		publishDoc(t, js, fmt.Sprintf("m-%d", i), fmt.Sprintf(`{"id":"doc-%d","input":"x"}`, i))
	}
	m := nats.NewMsg(wire.IngestSubject(testToken))
	m.Header.Set("Nats-Msg-Id", "m-5")
	m.Data = []byte(`{"id":"doc-5","input":"x"}`)
	if _, err := js.PublishMsg(context.Background(), m); err == nil {
		t.Fatal("publish to a full queue succeeded")
	}
	// Another endpoint's queue is separate.
	other := nats.NewMsg(wire.IngestSubject("other"))
	other.Data = []byte(`{"id":"o","input":"x"}`)
	if _, err := js.PublishMsg(context.Background(), other); err != nil {
		t.Fatalf("other endpoint: %v", err)
	}
	// Served documents leave the queue, so it takes documents again.
	stop := startRun(t, nc, js, fakeRunner{}, 0)
	collect(t, js, 5, 300*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	requireDrained(t, js, 1) // the other endpoint's
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish after the queue drained: %v", err)
	}
}

// TestStopDeadlineCancelsWork: a stop whose deadline passes cancels the
// work in hand through its context (as it cancels an ONNX Runtime run),
// and the document goes back to the queue (nak) instead of being lost or
// given an error result.
func TestStopDeadlineCancelsWork(t *testing.T) {
	nc, js := startJS(t, 0)
	publishDoc(t, js, "m-1", `{"id":"doc-1","input":"x"}`)
	started := make(chan struct{})
	cancelled := make(chan error, 1)
	d, err := NewDeployment(DeploymentConfig{
		NC: nc, JS: js, Endpoint: config.Endpoint{InferenceID: testID},
		// Only a nak brings the document back within the test's wait; an
		// ack wait expiry would take a minute.
		AckWait: time.Minute, NakDelay: 50 * time.Millisecond, PollWait: 100 * time.Millisecond, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.SetRunner(fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		close(started)
		<-ctx.Done() // a run that only a cancellation ends
		cancelled <- ctx.Err()
		return nil, ctx.Err()
	}}, 1)
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the document was not taken within a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := d.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v; want the deadline's error", err)
	}
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the run ended with %v; want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the run was not cancelled within a minute of the stop's deadline")
	}
	d.laneWG.Wait() // settled
	// Back in the queue at once, on its second delivery, and no result.
	cons, err := js.Consumer(context.Background(), wire.RequestsStream, wire.ConsumerName(testToken))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg, ok := <-batch.Messages()
	if !ok {
		t.Fatalf("the document did not come back within 30s (%v): it was not nakked", batch.Error())
	}
	meta, err := msg.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if meta.NumDelivered != 2 {
		t.Fatalf("document delivered %d times; want 2", meta.NumDelivered)
	}
	s, err := js.Stream(context.Background(), wire.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs != 0 {
		t.Fatalf("%d results published for a cancelled document", si.State.Msgs)
	}
}

// TestInvalidDocumentIDs: an id larger than a header may be, or one with
// CR/LF, gets an error result at once (without the id header, which could
// not hold it unchanged) instead of failing every publish and staying
// queued, or coming back altered.
func TestInvalidDocumentIDs(t *testing.T) {
	nc, js := startJS(t, 0)
	var calls atomic.Int32
	huge := strings.Repeat("x", 70_000)
	publishDoc(t, js, "m-huge", `{"id":"`+huge+`","input":"x"}`)
	publishDoc(t, js, "m-crlf", `{"id":"a\r\nb","input":"x"}`)
	publishDoc(t, js, "m-long", `{"id":"`+strings.Repeat("y", wire.MaxDocumentIDBytes+1)+`","input":"x"}`)
	publishDoc(t, js, "m-ok", `{"id":"`+strings.Repeat("z", wire.MaxDocumentIDBytes)+`","input":"x"}`)
	stop := startRun(t, nc, js, fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		calls.Add(int32(len(docs)))
		return echo(ctx, docs)
	}}, 5)
	got := collect(t, js, 4, 300*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ docID, body string }{
		"m-huge-result": {"", `{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long, must be no longer than 512 bytes but was: 70000;"}],"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long, must be no longer than 512 bytes but was: 70000;"},"status":400}`},
		"m-crlf-result": {"", `{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: id must not contain control characters, found U+000D;"}],"type":"action_request_validation_exception","reason":"Validation Failed: 1: id must not contain control characters, found U+000D;"},"status":400}`},
		"m-long-result": {"", `{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long, must be no longer than 512 bytes but was: 513;"}],"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long, must be no longer than 512 bytes but was: 513;"},"status":400}`},
		"m-ok-result":   {strings.Repeat("z", wire.MaxDocumentIDBytes), `{"input_type":"unspecified","inputs":["x"]}`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(got), len(want), got)
	}
	for _, r := range got {
		w, ok := want[r.msgID]
		if !ok || r.docID != w.docID || r.body != w.body {
			t.Errorf("result %s: id %.20q body %s; want id %.20q body %s", r.msgID, r.docID, r.body, w.docID, w.body)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("runner got %d documents; want only the valid one", n)
	}
	requireDrained(t, js, 0)
}
