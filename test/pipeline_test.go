package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/pipeline"
	"github.com/jetinfer/jetinfer/wire"
)

// e5Body defines a dense endpoint on the E5 stand-in with small word
// chunks, so that mixed-length documents have from one to many chunks.
const e5Body = `{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":2,"num_threads":1},` +
	`"chunking_settings":{"strategy":"word","max_chunk_size":40,"overlap":10}}`

func parseEndpoint(t *testing.T, id string, task config.TaskType, body string) config.Endpoint {
	t.Helper()
	ep, err := config.ParsePut(id, task, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

var words = strings.Fields(`the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches in
	dusty halls; meanwhile engineers measure latency, throughput and memory of inference servers on small machines`)

// document returns a deterministic document of mixed length: from a few
// words to several hundred, in sentences, with some non-ASCII text so that
// UTF-16 offsets differ from byte offsets.
func document(i int) string {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	n := []int{3, 25, 90, 260, 600}[i%5] + r.IntN(20)
	var b strings.Builder
	for w := range n {
		if w > 0 {
			b.WriteByte(' ')
		}
		if w%37 == 36 {
			b.WriteString("naïve café 🙂")
		} else {
			b.WriteString(words[r.IntN(len(words))])
		}
		if w%12 == 11 {
			b.WriteByte('.')
		}
	}
	return b.String()
}

// docIDs names n documents doc-0 … doc-<n-1>.
func docIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("doc-%d", i)
	}
	return ids
}

// docText is the text of the document whose id ends in its number.
func docText(id string) string {
	i := strings.LastIndexByte(id, '-')
	var n int
	fmt.Sscanf(id[i+1:], "%d", &n)
	return document(n)
}

func docBody(id string, inputs ...string) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "input": inputs, "input_type": "ingest"})
	return b
}

// publishDocs publishes documents (id → body) to the endpoint's ingest
// subject, each with its id as Nats-Msg-Id.
func publishDocs(t *testing.T, js jetstream.JetStream, inferenceID string, ids []string, body func(id string) []byte) {
	t.Helper()
	subject := wire.IngestSubject(config.Token(inferenceID))
	var futures []jetstream.PubAckFuture
	for _, id := range ids {
		msg := nats.NewMsg(subject)
		msg.Header.Set("Nats-Msg-Id", id)
		msg.Data = body(id)
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			// The stream may be electing a leader (a cluster server went
			// away): publish again; Nats-Msg-Id makes that safe.
			for attempt := 0; err != nil; attempt++ {
				if attempt == 10 {
					t.Fatalf("publish %s: %v", f.Msg().Header.Get("Nats-Msg-Id"), err)
				}
				time.Sleep(200 * time.Millisecond)
				_, err = js.PublishMsg(context.Background(), f.Msg())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("publish not acknowledged")
		}
	}
}

// results reads an endpoint's results stream as it fills.
type results struct {
	t    *testing.T
	cons jetstream.Consumer
	// byID holds the body of every document's result; dups counts results
	// for documents already seen.
	byID map[string]string
	dups int
}

func watchResults(t *testing.T, js jetstream.JetStream, inferenceID string) *results {
	t.Helper()
	cons, err := js.OrderedConsumer(context.Background(), wire.ResultsStream(config.Token(inferenceID)), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &results{t: t, cons: cons, byID: map[string]string{}}
}

// until reads results until want distinct documents have one or the
// deadline passes.
func (r *results) until(want int, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(r.byID) < want && time.Now().Before(deadline) {
		r.read(200 * time.Millisecond)
	}
	if len(r.byID) < want {
		r.t.Fatalf("%d results after %s, want %d", len(r.byID), timeout, want)
	}
}

// quiet reads whatever more arrives within d (duplicates, late results).
func (r *results) quiet(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		r.read(100 * time.Millisecond)
	}
}

func (r *results) read(wait time.Duration) {
	r.t.Helper()
	batch, err := r.cons.Fetch(500, jetstream.FetchMaxWait(wait))
	if err != nil {
		// A server of a cluster going away makes the stream unreachable
		// for a moment; the callers' deadlines decide when it is too long.
		r.t.Logf("fetch results: %v", err)
		time.Sleep(wait)
		return
	}
	for msg := range batch.Messages() {
		id := msg.Headers().Get(wire.HeaderDocumentID)
		if _, ok := r.byID[id]; ok {
			r.dups++
		}
		r.byID[id] = string(msg.Data())
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		r.t.Logf("fetch results: %v", err)
	}
}

// chunkedResult is a result body read back.
type chunkedResult struct {
	InferenceID      string          `json:"inference_id"`
	ModelSettings    json.RawMessage `json:"model_settings"`
	ChunkingSettings json.RawMessage `json:"chunking_settings"`
	Chunks           [][]struct {
		Start      int             `json:"start_offset"`
		End        int             `json:"end_offset"`
		Embeddings json.RawMessage `json:"embeddings"`
	} `json:"chunks"`
}

// sameChunked compares a result with the engine's own answer: identical
// settings and offsets, embeddings equal to 1e-5 (documents batched
// together are padded differently than one alone).
func sameChunked(got, want string) error {
	var g, w chunkedResult
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		return fmt.Errorf("result %.200s: %w", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return err
	}
	if g.InferenceID != w.InferenceID || string(g.ModelSettings) != string(w.ModelSettings) || string(g.ChunkingSettings) != string(w.ChunkingSettings) {
		return fmt.Errorf("header %.300s\nwant %.300s", got, want)
	}
	if len(g.Chunks) != len(w.Chunks) {
		return fmt.Errorf("%d inputs, want %d", len(g.Chunks), len(w.Chunks))
	}
	for i := range w.Chunks {
		if len(g.Chunks[i]) != len(w.Chunks[i]) {
			return fmt.Errorf("input %d: %d chunks, want %d", i, len(g.Chunks[i]), len(w.Chunks[i]))
		}
		for j, wc := range w.Chunks[i] {
			gc := g.Chunks[i][j]
			if gc.Start != wc.Start || gc.End != wc.End {
				return fmt.Errorf("input %d chunk %d: offsets [%d,%d), want [%d,%d)", i, j, gc.Start, gc.End, wc.Start, wc.End)
			}
			var ge, we []float64
			if err := json.Unmarshal(gc.Embeddings, &ge); err != nil {
				return err
			}
			if err := json.Unmarshal(wc.Embeddings, &we); err != nil {
				return err
			}
			if len(ge) != len(we) || len(we) == 0 {
				return fmt.Errorf("input %d chunk %d: %d dimensions, want %d", i, j, len(ge), len(we))
			}
			for d := range we {
				if math.Abs(ge[d]-we[d]) > 1e-5 {
					return fmt.Errorf("input %d chunk %d dim %d: %v, want %v", i, j, d, ge[d], we[d])
				}
			}
		}
	}
	return nil
}

// TestIngestTwoThousandDocuments: every document published comes back
// once, chunked as the chunker chunks it and embedded as the engine embeds
// it, and the request queue ends empty.
func TestIngestTwoThousandDocuments(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/text_embedding/docs-e5", e5Body).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	res := watchResults(t, js, "docs-e5")

	const docs = 2000
	ids := docIDs(docs)
	// Every tenth document has two inputs.
	inputs := func(id string) []string {
		var i int
		fmt.Sscanf(id, "doc-%d", &i)
		if i%10 == 9 {
			return []string{document(i), document(i + docs)}
		}
		return []string{document(i)}
	}
	publishDocs(t, js, "docs-e5", ids, func(id string) []byte { return docBody(id, inputs(id)...) })
	res.until(docs, 3*time.Minute)
	res.quiet(500 * time.Millisecond)
	if len(res.byID) != docs || res.dups != 0 {
		t.Fatalf("%d documents with results, %d duplicates; want %d, 0", len(res.byID), res.dups, docs)
	}
	// Each document embedded and published once (the stream would hide a
	// second publish).
	requireWork(t, js, "docs-e5", docs, docs)

	m := directModel(t, ".multilingual-e5-small")
	ep := parseEndpoint(t, "docs-e5", config.TextEmbedding, e5Body)
	chunks := 0
	for _, id := range ids {
		want, err := pipeline.ChunkedInfer(context.Background(), m, ep, inputs(id), inferapi.InputIngest)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameChunked(res.byID[id], string(want)); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		chunks += strings.Count(string(want), `"start_offset"`)
	}
	t.Logf("%d documents, %d chunks", docs, chunks)
	requireQueueEmpty(t, js, "docs-e5")
}

// requireQueueEmpty checks that no document of the endpoint is waiting or
// unacknowledged.
func requireQueueEmpty(t *testing.T, js jetstream.JetStream, inferenceID string) {
	t.Helper()
	ctx := context.Background()
	token := config.Token(inferenceID)
	var info *jetstream.ConsumerInfo
	// The last acks may still be on their way: a result is stored before
	// its document is acknowledged.
	for deadline := time.Now().Add(time.Minute); ; {
		c, err := js.Consumer(ctx, wire.RequestsStream(token), wire.ConsumerName(token))
		if err != nil {
			t.Fatal(err)
		}
		if info, err = c.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("pending %d, ack pending %d; want none", info.NumPending, info.NumAckPending)
	}
	s, err := js.Stream(ctx, wire.RequestsStream(token))
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs != 0 {
		t.Fatalf("%d documents left in the queue", si.State.Msgs)
	}
}

// TestIngestErrors: documents that can never succeed get an error result
// at once, in Elasticsearch's error format, and leave the queue.
func TestIngestErrors(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/sparse_embedding/err-elser", elserBody).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/rerank/err-rerank", `{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1}}`).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	sparse, rerank := watchResults(t, js, "err-elser"), watchResults(t, js, "err-rerank")

	// ~20 sentence chunks of a sparse model whose every token weighs
	// something: a result larger than the server's 8 MB message limit.
	var huge strings.Builder
	for range 24 {
		huge.WriteString(strings.Repeat("engineers measure latency ", 80) + "end. ")
	}
	bodies := map[string]string{
		"malformed": `{"id":"malformed","input":["x"]`,
		"unknown":   `{"id":"unknown","input":"x","inputs":["y"]}`,
		"no-id":     `{"input":"x"}`,
		"bad-id":    `{"id":7,"input":"x"}`,
		"empty":     `{"id":"empty","input":[]}`,
		"huge":      string(docBody("huge", huge.String())),
		"good":      string(docBody("good", "a fine document.")),
	}
	ids := []string{"malformed", "unknown", "no-id", "bad-id", "empty", "huge", "good"}
	publishDocs(t, js, "err-elser", ids, func(id string) []byte { return []byte(bodies[id]) })
	publishDocs(t, js, "err-rerank", []string{"no-query", "ranked"}, func(id string) []byte {
		if id == "ranked" {
			return []byte(`{"id":"ranked","query":"fox","input":["a fox","a dog"]}`)
		}
		return []byte(`{"id":"no-query","input":["a fox"]}`)
	})
	// The error results of a group are published when its valid documents
	// (huge and good) are embedded: the huge one took over a minute under
	// the race detector on a loaded 2-core machine.
	sparse.until(6, 5*time.Minute) // no-id and bad-id share the empty id
	rerank.until(2, 2*time.Minute)
	sparse.quiet(300 * time.Millisecond)

	type envelope struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
		Status int `json:"status"`
	}
	check := func(r *results, id string, status int, typ, reason string) {
		t.Helper()
		var e envelope
		if err := json.Unmarshal([]byte(r.byID[id]), &e); err != nil {
			t.Fatalf("%s: %.300s: %v", id, r.byID[id], err)
		}
		if e.Status != status || e.Error.Type != typ || !strings.Contains(e.Error.Reason, reason) {
			t.Errorf("%s: %.400s\nwant %d %s %q", id, r.byID[id], status, typ, reason)
		}
	}
	check(sparse, "malformed", 400, "x_content_parse_exception", "")
	check(sparse, "unknown", 400, "x_content_parse_exception", "[1:29] [cluster:internal/xpack/inference] unknown field [inputs]")
	// no-id and bad-id both have no document id: the later one is kept.
	if got := sparse.byID[""]; !strings.Contains(got, "Validation Failed: 1: Field [id] cannot be null;") && !strings.Contains(got, "[id] must be a string, got 7") {
		t.Errorf("document without an id: %s", got)
	}
	check(sparse, "empty", 400, "action_request_validation_exception", "Validation Failed: 1: Field [input] cannot be an empty array;")
	check(sparse, "huge", 413, "content_too_long_exception", "bytes is larger than the largest message the NATS server accepts [8388608 bytes]")
	check(rerank, "no-query", 400, "action_request_validation_exception", "Validation Failed: 1: Field [query] cannot be null for task type [rerank];")
	if !strings.HasPrefix(sparse.byID["good"], `{"inference_id":"err-elser","model_settings":{"service":"elasticsearch","task_type":"sparse_embedding"},`) {
		t.Errorf("good: %.300s", sparse.byID["good"])
	}
	m := directModel(t, ".rerank-v1")
	want := directInfer(t, m, parseEndpoint(t, "err-rerank", config.Rerank, `{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1}}`),
		`{"query":"fox","input":["a fox","a dog"]}`)
	if rerank.byID["ranked"] != want {
		t.Errorf("ranked: %s\nwant %s", rerank.byID["ranked"], want)
	}
	requireQueueEmpty(t, js, "err-elser")
	requireQueueEmpty(t, js, "err-rerank")
}

// TestLiveAllocationUpdate: _update of num_allocations changes the running
// allocations while documents flow, and none is lost.
func TestLiveAllocationUpdate(t *testing.T) {
	n := startNode(t, nil)
	body := strings.Replace(e5Body, `"num_allocations":2`, `"num_allocations":1`, 1)
	n.do(t, "PUT", "/_inference/text_embedding/live", body).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	states, err := cluster.OpenStates(context.Background(), js, config.StoreConfig{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitAllocations(t, states, "live", 1)
	res := watchResults(t, js, "live")
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("live-%d", i)
	}
	publishDocs(t, js, "live", ids[:150], func(id string) []byte { return docBody(id, docText(id)) })
	n.do(t, "PUT", "/_inference/text_embedding/live/_update", `{"service_settings":{"num_allocations":3}}`).mustStatus(t, 200)
	waitAllocations(t, states, "live", 3)
	publishDocs(t, js, "live", ids[150:], func(id string) []byte { return docBody(id, docText(id)) })
	n.do(t, "PUT", "/_inference/text_embedding/live/_update", `{"service_settings":{"num_allocations":2}}`).mustStatus(t, 200)
	waitAllocations(t, states, "live", 2)
	res.until(len(ids), time.Minute)
	res.quiet(300 * time.Millisecond)
	if res.dups != 0 {
		t.Fatalf("%d duplicate results", res.dups)
	}
	requireWork(t, js, "live", int64(len(ids)), int64(len(ids)))
	r := n.do(t, "GET", "/_inference/live", "")
	if !strings.Contains(r.body, `"num_allocations":2,`) {
		t.Fatalf("GET after update: %s", r.body)
	}

	// An adaptive endpoint shows the allocations it runs.
	n.do(t, "PUT", "/_inference/text_embedding/adaptive", `{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_threads":1,`+
		`"adaptive_allocations":{"enabled":true,"min_number_of_allocations":2,"max_number_of_allocations":4}}}`).mustStatus(t, 200)
	waitAllocations(t, states, "adaptive", 2)
	r = n.do(t, "GET", "/_inference/adaptive", "")
	if !strings.Contains(r.body, `"service_settings":{"num_allocations":2,"num_threads":1,"model_id":".multilingual-e5-small","adaptive_allocations":{"enabled":true,"min_number_of_allocations":2,"max_number_of_allocations":4}}`) {
		t.Fatalf("GET adaptive: %s", r.body)
	}
}

func waitAllocations(t *testing.T, states *cluster.States, id string, want int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		sts, err := states.Of(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(sts) == 1 && sts[0].Allocations == want && sts[0].State == cluster.StateStarted {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment state of %s: %+v; want %d allocations started", id, sts, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeleteWhileBusy: deleting an endpoint in the middle of a bulk ingest
// stops its deployment cleanly: the documents being embedded get their
// results, the queued ones are removed with the consumer, and the endpoint
// answers 404 afterwards.
func TestDeleteWhileBusy(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/text_embedding/busy", e5Body).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	res := watchResults(t, js, "busy")
	ids := make([]string, 1500)
	for i := range ids {
		ids[i] = fmt.Sprintf("busy-%d", i)
	}
	publishDocs(t, js, "busy", ids, func(id string) []byte { return docBody(id, docText(id)) })
	res.until(50, time.Minute)
	n.do(t, "DELETE", "/_inference/busy", "").expect(t, 200, `{"acknowledged":true,"pipelines":[],"indexes":[]}`)

	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	// The queue and the results go with the endpoint: both streams.
	for _, stream := range []string{wire.RequestsStream(config.Token("busy")), wire.ResultsStream(config.Token("busy"))} {
		for {
			_, err := js.Stream(ctx, stream)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream %s still there: %v", stream, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if res.dups != 0 || len(res.byID) >= len(ids) {
		t.Fatalf("%d results (%d duplicates) of %d documents: the delete did not interrupt the ingest", len(res.byID), res.dups, len(ids))
	}
	n.do(t, "POST", "/_inference/busy", `{"input":"x"}`).expect(t, 404, esError(404, "resource_not_found_exception", "Inference endpoint not found [busy]"))
	// The id is free again and serves.
	n.do(t, "PUT", "/_inference/text_embedding/busy", e5Body).mustStatus(t, 200)
	n.do(t, "POST", "/_inference/busy", `{"input":"x"}`).mustStatus(t, 200)
}
