package test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/node"
	"github.com/jetinfer/jetinfer/wire"
)

// storedResult is one message of an endpoint's results stream.
type storedResult struct {
	docID, requestMsgID, body string
}

// readResults reads an endpoint's results stream from its start until it
// holds want results (or a minute passes), then checks that no more come
// within quiet.
func readResults(t *testing.T, js jetstream.JetStream, inferenceID string, want int, quiet time.Duration) []storedResult {
	t.Helper()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, wire.ResultsStream(config.Token(inferenceID)), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []storedResult
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
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
		h := msg.Headers()
		out = append(out, storedResult{h.Get(wire.HeaderDocumentID), h.Get(wire.HeaderRequestMsgID), string(msg.Data())})
	}
	t.Fatalf("%s: %d results within a minute, want %d", inferenceID, len(out), want)
	return nil
}

// TestSameDocumentOnTwoEndpoints: one document (id and Nats-Msg-Id)
// published to a dense and a sparse endpoint, the most common use, is
// served by both: deduplication is per endpoint. A document published
// without Nats-Msg-Id and a later one whose Nats-Msg-Id is the first's
// stream sequence both get their result: result ids cannot collide with
// ids publishers choose.
func TestSameDocumentOnTwoEndpoints(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/text_embedding/both-dense", e5Body).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/sparse_embedding/both-sparse", elserBody).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	ctx := context.Background()

	for _, id := range []string{"both-dense", "both-sparse"} {
		publishDocs(t, js, id, []string{"doc-1"}, func(id string) []byte { return docBody(id, "the same text for both") })
	}
	again := nats.NewMsg(wire.IngestSubject("both-dense"))
	again.Header.Set(nats.MsgIdHdr, "doc-1")
	again.Data = docBody("doc-1", "the same text for both")
	if ack, err := js.PublishMsg(ctx, again); err != nil || !ack.Duplicate {
		t.Fatalf("republish to the same endpoint: ack %+v, err %v; want a duplicate", ack, err)
	}

	anon := nats.NewMsg(wire.IngestSubject("both-dense"))
	anon.Data = docBody("anonymous", "published without Nats-Msg-Id")
	ack, err := js.PublishMsg(ctx, anon)
	if err != nil {
		t.Fatal(err)
	}
	named := nats.NewMsg(wire.IngestSubject("both-dense"))
	named.Header.Set(nats.MsgIdHdr, strconv.FormatUint(ack.Sequence, 10))
	named.Data = docBody("named-like-a-sequence", "published with a number as Nats-Msg-Id")
	if _, err := js.PublishMsg(ctx, named); err != nil {
		t.Fatal(err)
	}

	dense := readResults(t, js, "both-dense", 3, 500*time.Millisecond)
	got := map[string]storedResult{}
	for _, r := range dense {
		got[r.docID] = r
	}
	if len(dense) != 3 || len(got) != 3 {
		t.Fatalf("dense results %+v; want doc-1, anonymous, named-like-a-sequence once each", dense)
	}
	for id, msgID := range map[string]string{"doc-1": "doc-1", "anonymous": "", "named-like-a-sequence": strconv.FormatUint(ack.Sequence, 10)} {
		r := got[id]
		if r.requestMsgID != msgID || !strings.Contains(r.body, `"embeddings":[`) || strings.Contains(r.body, `"error"`) {
			t.Errorf("%s: %s %q, body %.120s", id, wire.HeaderRequestMsgID, r.requestMsgID, r.body)
		}
	}
	sparse := readResults(t, js, "both-sparse", 1, 500*time.Millisecond)
	if len(sparse) != 1 || sparse[0].docID != "doc-1" || !strings.Contains(sparse[0].body, `"embeddings":{`) {
		t.Fatalf("sparse results %+v", sparse)
	}
	requireQueueEmpty(t, js, "both-dense")
	requireQueueEmpty(t, js, "both-sparse")
}

// TestMigrateLegacyStreams: a node started on a NATS server holding the
// streams every endpoint shared before each had its own moves their
// messages over: queued documents are served once, results not yet read
// stay readable, messages of an endpoint that no longer exists are
// dropped, and the shared streams are gone.
func TestMigrateLegacyStreams(t *testing.T) {
	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: freeAddr(t)}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	js := connectJS(t, srv.ClientURL())
	ctx := context.Background()
	const id = "legacy-e5"
	store, err := config.OpenStore(ctx, js, config.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, parseEndpoint(t, id, config.TextEmbedding, e5Body)); err != nil {
		t.Fatal(err)
	}
	// The streams and consumer as the previous release created them.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "INFERENCE_REQUESTS", Subjects: []string{"inference.*.ingest"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute, MaxMsgsPerSubject: 10000,
		Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "INFERENCE_RESULTS", Subjects: []string{"inference.*.results"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	legacy, err := js.CreateOrUpdateConsumer(ctx, "INFERENCE_REQUESTS", jetstream.ConsumerConfig{
		Durable: wire.ConsumerName(config.Token(id)), FilterSubject: wire.IngestSubject(config.Token(id)), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	const docs, served = 30, 10
	ids := make([]string, docs)
	for i := range ids {
		ids[i] = fmt.Sprintf("old-%d", i)
	}
	publishDocs(t, js, id, ids, func(id string) []byte { return docBody(id, docText(id)) })
	publishDocs(t, js, "gone", []string{"orphan-1", "orphan-2"}, func(id string) []byte { return docBody(id, "x") })
	// The first documents were served before the upgrade: acked, with their
	// results in the shared results stream, one of them not yet read.
	batch, err := legacy.Fetch(served, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for msg := range batch.Messages() {
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		out := nats.NewMsg(wire.ResultsSubject(config.Token(id)))
		out.Header.Set(wire.HeaderDocumentID, ids[acked])
		out.Header.Set(nats.MsgIdHdr, ids[acked]+"-result")
		out.Data = []byte(`{"served":"before the upgrade"}`)
		if _, err := js.PublishMsg(ctx, out); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	if acked != served {
		t.Fatalf("served %d documents before the upgrade, want %d", acked, served)
	}

	startNodeWith(t, func(c *node.Config) { c.NATSURL = srv.ClientURL() }, testRuntime)
	for _, name := range []string{"INFERENCE_REQUESTS", "INFERENCE_RESULTS"} {
		if _, err := js.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("legacy stream %s after the migration: %v", name, err)
		}
	}
	if _, err := js.Stream(ctx, wire.RequestsStream("gone")); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a stream was made for an endpoint that does not exist: %v", err)
	}
	got := readResults(t, js, id, docs, time.Second)
	byID := map[string]storedResult{}
	for _, r := range got {
		if _, dup := byID[r.docID]; dup {
			t.Errorf("two results for %s", r.docID)
		}
		byID[r.docID] = r
	}
	for i, doc := range ids {
		r, ok := byID[doc]
		switch {
		case !ok:
			t.Errorf("%s: no result", doc)
		case i < served && r.body != `{"served":"before the upgrade"}`:
			t.Errorf("%s: result %.100s; want the one published before the upgrade", doc, r.body)
		case i >= served && (r.requestMsgID != doc || !strings.Contains(r.body, `"embeddings":[`)):
			t.Errorf("%s: %s %q, result %.100s", doc, wire.HeaderRequestMsgID, r.requestMsgID, r.body)
		}
	}
	requireQueueEmpty(t, js, id)
	// The id is served as any other: a new document after the migration.
	publishDocs(t, js, id, []string{"new-1"}, func(id string) []byte { return docBody(id, "after the upgrade") })
	if got := readResults(t, js, id, docs+1, 300*time.Millisecond); len(got) != docs+1 || got[docs].docID != "new-1" {
		t.Fatalf("after the migration: %d results, last %+v", len(got), got[len(got)-1])
	}
}
