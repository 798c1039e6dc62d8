package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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
	"github.com/jetinfer/jetinfer/eserror"
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
	if _, err := wire.EnsureEndpoint(ctx, js, testID, wire.QueueConfig{Capacity: capacity}); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// queueCapacity is the capacity startJS gave the test endpoint's queue,
// which its deployment keeps.
func queueCapacity(t *testing.T, js jetstream.JetStream) int64 {
	t.Helper()
	s, err := js.Stream(context.Background(), wire.RequestsStream(testToken))
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.MaxMsgs
}

// fakeRunner answers with what it was given, unless its hooks say
// otherwise.
type fakeRunner struct {
	ingest func(ctx context.Context, docs []inferapi.Request) ([][]byte, error)
	infer  func(ctx context.Context, req inferapi.Request) ([]byte, error)
}

func (f fakeRunner) Infer(ctx context.Context, req inferapi.Request, _ inferapi.Options) (inferapi.Result, error) {
	var body []byte
	var err error
	if f.infer != nil {
		body, err = f.infer(ctx, req)
	} else {
		body, err = json.Marshal(map[string]any{"inputs": req.Input, "input_type": req.InputType})
	}
	return inferapi.Result{Body: body}, err
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
	return startRunWith(t, newTestDeployment(t, nc, js, maxDeliver, nil), r)
}

// startRunWith runs d with one allocation of r, as startRun.
func startRunWith(t *testing.T, d *Deployment, r Runner) (stop func() error) {
	t.Helper()
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

// deliver takes n deliveries from the test endpoint's consumer, one at a
// time, and gives each to settle.
func deliver(t *testing.T, js jetstream.JetStream, n int, settle func(jetstream.Msg)) {
	t.Helper()
	cons, err := js.Consumer(context.Background(), wire.RequestsStream(testToken), wire.ConsumerName(testToken))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		msg, ok := <-batch.Messages()
		if !ok {
			t.Fatalf("delivery %d did not come: %v", i+1, batch.Error())
		}
		settle(msg)
	}
}

// newTestDeployment is the test endpoint's deployment, not started.
func newTestDeployment(t *testing.T, nc *nats.Conn, js jetstream.JetStream, maxDeliver int, giveBacks GiveBacks) *Deployment {
	t.Helper()
	d, err := NewDeployment(DeploymentConfig{
		NC: nc, JS: js, Endpoint: config.Endpoint{InferenceID: testID},
		Queue:     wire.QueueConfig{MaxDeliver: maxDeliver, AckWait: 5 * time.Second, Capacity: queueCapacity(t, js)},
		GiveBacks: giveBacks,
		NakDelay:  20 * time.Millisecond, PollWait: 100 * time.Millisecond, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type result struct {
	// msgID is the Nats-Msg-Id the document was published with; resultID
	// the result's own.
	docID, msgID, resultID string
	body                   string
}

// collect reads results until want arrived, then waits quiet for more.
// The deadline only bounds a hang: it is far longer than the second or so
// these tests take, so that a loaded machine does not fail them.
func collect(t *testing.T, js jetstream.JetStream, want int, quiet time.Duration) []result {
	t.Helper()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, wire.ResultsStream(testToken), jetstream.OrderedConsumerConfig{})
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
		out = append(out, result{msg.Headers().Get(wire.HeaderDocumentID), msg.Headers().Get(wire.HeaderRequestMsgID), msg.Headers().Get("Nats-Msg-Id"), string(msg.Data())})
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
		c, err := js.Consumer(ctx, wire.RequestsStream(testToken), wire.ConsumerName(testToken))
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
	s, err := js.Stream(ctx, wire.RequestsStream(testToken))
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs != left {
		t.Fatalf("%d documents left in %s, want %d", si.State.Msgs, wire.RequestsStream(testToken), left)
	}
}

func TestFiftyDocuments(t *testing.T) {
	nc, js := startJS(t, 0)
	published := time.Now()
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
		if want := fmt.Sprintf("m-%d", i); r.msgID != want {
			t.Errorf("%s: %s %s, want %s", r.docID, wire.HeaderRequestMsgID, r.msgID, want)
		}
		// The stream sequence of the document (published in order) and
		// the time it was stored.
		seq, stored, _ := strings.Cut(r.resultID, "-")
		ns, err := strconv.ParseInt(stored, 10, 64)
		if want := strconv.Itoa(i + 1); seq != want || err != nil || ns < published.UnixNano() || ns > time.Now().UnixNano() {
			t.Errorf("%s: Nats-Msg-Id %s, want %s-<its storage time>", r.docID, r.resultID, want)
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
		if want := "doc-" + r.msgID; r.docID != want {
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
	if _, err := wire.EnsureEndpoint(context.Background(), js, "other", wire.QueueConfig{Capacity: 5}); err != nil {
		t.Fatal(err)
	}
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
	requireDrained(t, js, 0)
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
		Queue: wire.QueueConfig{AckWait: time.Minute}, NakDelay: 50 * time.Millisecond, PollWait: 100 * time.Millisecond, Log: zerolog.Nop(),
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
	cons, err := js.Consumer(context.Background(), wire.RequestsStream(testToken), wire.ConsumerName(testToken))
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
	s, err := js.Stream(context.Background(), wire.ResultsStream(testToken))
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
		"m-huge": {"", `{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long, must be no longer than 512 bytes but was: 70000;"}],"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long, must be no longer than 512 bytes but was: 70000;"},"status":400}`},
		"m-crlf": {"", `{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: id must not contain control characters, found U+000D;"}],"type":"action_request_validation_exception","reason":"Validation Failed: 1: id must not contain control characters, found U+000D;"},"status":400}`},
		"m-long": {"", `{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long, must be no longer than 512 bytes but was: 513;"}],"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long, must be no longer than 512 bytes but was: 513;"},"status":400}`},
		"m-ok":   {strings.Repeat("z", wire.MaxDocumentIDBytes), `{"input_type":"unspecified","inputs":["x"]}`},
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

// TestUnstorableResultEndsAsErrorResult: a result the results stream keeps
// refusing (here: larger than the stream's message size limit, though
// within the server's max payload) is retried, and on the last attempt an
// error result takes its place: the document does not stay queued.
func TestUnstorableResultEndsAsErrorResult(t *testing.T) {
	nc, js := startJS(t, 0)
	ctx := context.Background()
	s, err := js.Stream(ctx, wire.ResultsStream(testToken))
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	sc.MaxMsgSize = 1000
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 2000)
	publishDoc(t, js, "m-big", `{"id":"doc-big","input":"`+big+`"}`)
	publishDoc(t, js, "m-small", `{"id":"doc-small","input":"fits"}`)
	var calls atomic.Int32
	stop := startRun(t, nc, js, fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		calls.Add(int32(len(docs)))
		return echo(ctx, docs)
	}}, 3)
	got := collect(t, js, 2, 500*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"doc-small": `{"input_type":"unspecified","inputs":["fits"]}`,
		"doc-big":   `{"error":{"root_cause":[{"type":"status_exception","reason":"the result of [2042] bytes could not be stored: nats: API error: code=400 err_code=10054 description=message size exceeds maximum allowed"}],"type":"status_exception","reason":"the result of [2042] bytes could not be stored: nats: API error: code=400 err_code=10054 description=message size exceeds maximum allowed"},"status":500}`,
	}
	if len(got) != 2 {
		t.Fatalf("got %d results, want 2: %+v", len(got), got)
	}
	for _, r := range got {
		if r.body != want[r.docID] {
			t.Errorf("%s: %s\nwant %s", r.docID, r.body, want[r.docID])
		}
	}
	// Three attempts at the big document (each ran), one at the small.
	if n := calls.Load(); n != 4 {
		t.Errorf("runner got %d documents; want the big one three times and the small one", n)
	}
	requireDrained(t, js, 0)
}

// TestAttemptsUsedUpWithoutSettling: a document delivered more often than
// it may be attempted, its attempts never settled (workers died on it), is
// not run again: it ends as an error result at once.
func TestAttemptsUsedUpWithoutSettling(t *testing.T) {
	nc, js := startJS(t, 0)
	publishDoc(t, js, "m-1", `{"id":"doc-1","input":"kills workers"}`)
	// Three deliveries that end without an ack, as a worker that dies.
	deliver(t, js, 3, func(msg jetstream.Msg) {
		if err := msg.Nak(); err != nil {
			t.Fatal(err)
		}
	})
	var calls atomic.Int32
	stop := startRun(t, nc, js, fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		calls.Add(1)
		return echo(ctx, docs)
	}}, 3)
	got := collect(t, js, 1, 300*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	const want = `{"error":{"root_cause":[{"type":"status_exception","reason":"inference did not complete in [3] attempts"}],"type":"status_exception","reason":"inference did not complete in [3] attempts"},"status":500}`
	if len(got) != 1 || got[0].docID != "doc-1" || got[0].body != want {
		t.Fatalf("results %+v; want doc-1: %s", got, want)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("runner ran %d times on a document whose attempts were used up", n)
	}
	requireDrained(t, js, 0)
}

// TestHostileDocumentsFailAtOnce: a document with more inputs than a
// document may have gets its error result at parse, and one the runner
// refuses as a client error (a result too large, 413) is not attempted
// again; a document beside them is served.
func TestHostileDocumentsFailAtOnce(t *testing.T) {
	nc, js := startJS(t, 0)
	many := `"` + strings.Repeat(`","`, wire.MaxDocumentInputs) + `"`
	publishDoc(t, js, "m-many", `{"id":"doc-many","input":[`+many+`]}`)
	publishDoc(t, js, "m-huge", `{"id":"doc-huge","input":"makes a huge result"}`)
	publishDoc(t, js, "m-ok", `{"id":"doc-ok","input":"fine"}`)
	tooLarge := eserror.New(http.StatusRequestEntityTooLarge, eserror.TypeContentTooLong, "the result would be too large")
	var attempts atomic.Int32
	stop := startRun(t, nc, js, fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		for _, d := range docs {
			if len(d.Input) > wire.MaxDocumentInputs {
				t.Errorf("runner got a document of %d inputs", len(d.Input))
			}
			if d.Input[0] == "makes a huge result" {
				attempts.Add(1)
				return nil, tooLarge
			}
		}
		return echo(ctx, docs)
	}}, 5)
	got := collect(t, js, 3, 300*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"doc-many": `{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: a document has at most [2048] inputs, got [2049];"}],"type":"action_request_validation_exception","reason":"Validation Failed: 1: a document has at most [2048] inputs, got [2049];"},"status":400}`,
		"doc-huge": `{"error":{"root_cause":[{"type":"content_too_long_exception","reason":"the result would be too large"}],"type":"content_too_long_exception","reason":"the result would be too large"},"status":413}`,
		"doc-ok":   `{"input_type":"unspecified","inputs":["fine"]}`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(got), len(want), got)
	}
	for _, r := range got {
		if r.body != want[r.docID] {
			t.Errorf("%s: %s\nwant %s", r.docID, r.body, want[r.docID])
		}
	}
	// Tried in its group, then alone (or only alone): never on another
	// delivery.
	if n := attempts.Load(); n < 1 || n > 2 {
		t.Errorf("the refused document was run %d times; want once or twice (its group, then alone)", n)
	}
	requireDrained(t, js, 0)
}

// TestGivenBackDeliveriesAreNotAttempts: a document handed back unrun more
// often than it may be attempted (its allocations stopped each time before
// a lane took it) is still served, once, when the give-backs are recorded;
// TestAttemptsUsedUpWithoutSettling is the same deliveries unrecorded.
func TestGivenBackDeliveriesAreNotAttempts(t *testing.T) {
	nc, js := startJS(t, 0)
	ctx := context.Background()
	ledger, err := wire.OpenGiveBacks(ctx, js, 1, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	publishDoc(t, js, "m-1", `{"id":"doc-1","input":"patient"}`)
	handing := newTestDeployment(t, nc, js, 2, ledger)
	deliver(t, js, 3, func(msg jetstream.Msg) { handing.giveBack(ctx, msg) })
	var calls atomic.Int32
	stop := startRunWith(t, newTestDeployment(t, nc, js, 2, ledger), fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		calls.Add(1)
		return echo(ctx, docs)
	}})
	got := collect(t, js, 1, 300*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].docID != "doc-1" || got[0].body != `{"input_type":"unspecified","inputs":["patient"]}` {
		t.Fatalf("results %+v; want doc-1 served", got)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("runner ran %d times; want 1", n)
	}
	requireDrained(t, js, 0)
}

// TestLanesGoneGiveBackRecorded: a document fetched while the only lane is
// busy, whose allocation then stops, is handed back and recorded as such.
func TestLanesGoneGiveBackRecorded(t *testing.T) {
	nc, js := startJS(t, 0)
	ctx := context.Background()
	ledger, err := wire.OpenGiveBacks(ctx, js, 1, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDeployment(t, nc, js, 2, ledger)
	d.cfg.GroupDocs = 1
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	running, release := make(chan string, 4), make(chan struct{})
	var calls atomic.Int32
	r := fakeRunner{ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
		calls.Add(1)
		running <- docs[0].Input[0]
		<-release
		return echo(ctx, docs)
	}}
	d.SetRunner(r, 1)
	publishDoc(t, js, "m-1", `{"id":"busy","input":"busy"}`)
	if got := <-running; got != "busy" {
		t.Fatalf("the lane runs %q, want busy", got)
	}
	ack := publishDoc(t, js, "m-2", `{"id":"waiting","input":"waiting"}`)
	cons, err := js.Consumer(ctx, wire.RequestsStream(testToken), wire.ConsumerName(testToken))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 2 {
			break // the second is in the fetcher's hands
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second document was not fetched: %+v", info)
		}
	}
	wait := d.SetRunner(r, 0)
	stored, err := js.Stream(ctx, wire.RequestsStream(testToken))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stored.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	meta := &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: ack.Sequence}, Timestamp: raw.Time}
	var n uint64
	for deadline := time.Now().Add(30 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, err = ledger.Count(ctx, testToken, meta); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	wait()
	if n != 1 {
		t.Fatalf("give-backs recorded for the waiting document: %d, want 1", n)
	}
	if c := calls.Load(); c != 1 {
		t.Errorf("runner ran %d times; want 1 (the busy document)", c)
	}
}
