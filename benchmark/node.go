package benchmark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/node"
	"github.com/jetinfer/jetinfer/wire"
)

// benchEndpoint is the endpoint the node benchmarks create.
const benchEndpoint = "bench-e5"

// resultStall is how long ingest waits for the next result before it
// gives up: far longer than a group of long documents takes.
const resultStall = 2 * time.Minute

// benchNode is an in-process jetinfer node serving the dense model as the
// built-in .multilingual-e5-small, with a client connection of its own to
// the node's NATS and HTTP API, as another process would have.
type benchNode struct {
	node *node.Node
	dir  string
	base string
	http *http.Client
	nc   *nats.Conn
	js   jetstream.JetStream
}

// startNode writes a model repository holding the dense model under the
// built-in id (the worker imports it into the model store on first use)
// and starts a node on it with every core as its processor budget; adjust
// then changes the node's settings (the scaling demo's pace and budget).
func startNode(ctx context.Context, cfg Config, adjust ...func(*node.Config)) (_ *benchNode, err error) {
	artifact, err := denseDir(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "jetinfer-bench-")
	if err != nil {
		return nil, err
	}
	b := &benchNode{dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.close(ctx))
		}
	}()
	repo := filepath.Join(dir, "models")
	if err := linkModel(artifact, filepath.Join(repo, config.ModelE5Small)); err != nil {
		return nil, fmt.Errorf("model repository: %w", err)
	}
	sc := node.DefaultConfig()
	sc.HTTPAddr = "127.0.0.1:0"
	sc.MetricsAddr = "" // several benchmark nodes may run at once
	// The benchmark publishes and consumes through a client connection, as
	// producers do, so the embedded server listens on a random port.
	sc.NATSListen = "127.0.0.1:0"
	sc.DataDir = filepath.Join(dir, "data")
	sc.ModelRepository = repo
	sc.NodeName = "bench"
	sc.Processors = runtime.NumCPU()
	for _, f := range adjust {
		f(&sc)
	}
	if b.node, err = node.Start(ctx, sc, cfg.Runtime, zerolog.Nop()); err != nil {
		return nil, fmt.Errorf("start node: %w", err)
	}
	b.base = "http://" + b.node.HTTPAddr()
	b.http = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if b.nc, err = nats.Connect(b.node.NATSURL()); err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", b.node.NATSURL(), err)
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return b, nil
}

// linkModel makes dst an artifact directory with src's files: the graph
// linked (it is large and never rewritten), the small files copied, since
// loading the model again rewrites them in place.
func linkModel(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if err := os.Symlink(filepath.Join(abs, artifact.ONNXFile), filepath.Join(dst, artifact.ONNXFile)); err != nil {
		return err
	}
	for _, f := range []string{artifact.TokenizerFile, artifact.ConfigFile} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// close stops the node (letting the deployment finish the group in hand)
// and removes its files. It is not cut short by an interrupted ctx.
func (b *benchNode) close(ctx context.Context) error {
	var err error
	if b.nc != nil {
		b.nc.Close()
	}
	if b.http != nil {
		b.http.CloseIdleConnections()
	}
	if b.node != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if cerr := b.node.Close(cctx); cerr != nil {
			err = fmt.Errorf("close node: %w", cerr)
		}
	}
	return errors.Join(err, os.RemoveAll(b.dir))
}

// endpointBody defines the benchmark endpoint: one allocation of threads,
// and no chunking, so that a document is one engine input.
func endpointBody(allocations, threads int) []byte {
	return fmt.Appendf(nil, `{"service":"elasticsearch","service_settings":{"model_id":%q,"num_allocations":%d,"num_threads":%d},"chunking_settings":{"strategy":"none"}}`,
		config.ModelE5Small, allocations, threads)
}

// putEndpoint creates the benchmark endpoint and returns once it is
// deployed; it returns the definition the node serves.
func (b *benchNode) putEndpoint(ctx context.Context, allocations, threads int) (config.Endpoint, error) {
	body := endpointBody(allocations, threads)
	// The first deployment imports the model into the object store and
	// fetches it back: more than the default 30s on a busy machine.
	if _, err := b.do(ctx, http.MethodPut, "/_inference/text_embedding/"+benchEndpoint+"?timeout=5m", body); err != nil {
		return config.Endpoint{}, err
	}
	return config.ParsePut(benchEndpoint, config.TextEmbedding, body)
}

// deleteEndpoint deletes the benchmark endpoint; the worker stops its
// deployment before one of the same id starts.
func (b *benchNode) deleteEndpoint(ctx context.Context) error {
	_, err := b.do(ctx, http.MethodDelete, "/_inference/"+benchEndpoint, nil)
	return err
}

// infer sends one POST _inference request and returns how long the answer
// took to arrive in full.
func (b *benchNode) infer(ctx context.Context, body []byte) (time.Duration, error) {
	start := time.Now()
	if _, err := b.do(ctx, http.MethodPost, "/_inference/"+benchEndpoint, body); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// do sends a request and reads the whole answer; a status other than 200
// is an error carrying the body.
func (b *benchNode) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(out))
	}
	return out, nil
}

// docID names document i of a run; run keeps the ids (and so the
// Nats-Msg-Ids) of different runs apart, which the duplicate window would
// otherwise drop.
func docID(run string, i int) string { return fmt.Sprintf("%s-d%d", run, i) }

// publish queues texts as ingest documents of the benchmark endpoint, all
// at once, and waits until the stream has stored every one.
func (b *benchNode) publish(ctx context.Context, run string, texts []string) error {
	subject := wire.IngestSubject(config.Token(benchEndpoint))
	futures := make([]jetstream.PubAckFuture, len(texts))
	for i, text := range texts {
		id := docID(run, i)
		data, err := json.Marshal(struct {
			ID        string   `json:"id"`
			Input     []string `json:"input"`
			InputType string   `json:"input_type"`
		}{id, []string{text}, "ingest"})
		if err != nil {
			return err
		}
		msg := nats.NewMsg(subject)
		msg.Header.Set(nats.MsgIdHdr, id)
		msg.Data = data
		if futures[i], err = b.js.PublishMsgAsync(msg); err != nil {
			return fmt.Errorf("publish %s: %w", id, err)
		}
	}
	return awaitAcks(ctx, futures)
}

// awaitAcks waits for the stream to store every document published, none
// of them dropped as a duplicate.
func awaitAcks(ctx context.Context, futures []jetstream.PubAckFuture) error {
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				return fmt.Errorf("publish %s: dropped as a duplicate", f.Msg().Header.Get(nats.MsgIdHdr))
			}
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", f.Msg().Header.Get(nats.MsgIdHdr), err)
		case <-timeout.C:
			return errors.New("publish: the stream did not acknowledge the documents within a minute")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ingest publishes texts as documents and waits until the results stream
// holds a result for every one: documents through NATS end to end. It
// returns the time from the first publish to the last result and the
// number of documents with a result; an error result fails it.
func (b *benchNode) ingest(ctx context.Context, run string, texts []string) (time.Duration, int, error) {
	results := wire.ResultsStream(config.Token(benchEndpoint))
	stream, err := b.js.Stream(ctx, results)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", results, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", results, err)
	}
	// Results of earlier runs are in the stream already: read from here on.
	cons, err := b.js.OrderedConsumer(ctx, results, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   info.State.LastSeq + 1,
	})
	if err != nil {
		return 0, 0, fmt.Errorf("results consumer: %w", err)
	}
	var (
		mu       sync.Mutex
		seen     = map[string]bool{}
		failed   error
		end      time.Time
		done     = make(chan struct{})
		progress = make(chan struct{}, 1)
	)
	prefix := run + "-"
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		id := msg.Headers().Get(wire.HeaderDocumentID)
		if !strings.HasPrefix(id, prefix) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[id] || len(seen) == len(texts) {
			return // a redelivered document's second result
		}
		if bytes.HasPrefix(msg.Data(), []byte(`{"error"`)) && failed == nil {
			failed = fmt.Errorf("document %s failed: %s", id, msg.Data())
		}
		seen[id] = true
		if len(seen) == len(texts) {
			end = time.Now()
			close(done)
		}
		select {
		case progress <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return 0, 0, fmt.Errorf("consume results: %w", err)
	}
	defer func() {
		cc.Stop()
		<-cc.Closed()
	}()
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}

	start := time.Now()
	if err := b.publish(ctx, run, texts); err != nil {
		return 0, received(), err
	}
	stall := time.NewTimer(resultStall)
	defer stall.Stop()
	for {
		select {
		case <-done:
			mu.Lock()
			elapsed, n, err := end.Sub(start), len(seen), failed
			mu.Unlock()
			return elapsed, n, err
		case <-progress:
			stall.Reset(resultStall)
		case <-stall.C:
			n := received()
			return 0, n, fmt.Errorf("%d of %d results, none for %s", n, len(texts), resultStall)
		case <-ctx.Done():
			return 0, received(), ctx.Err()
		}
	}
}

// backlog is the number of the benchmark endpoint's documents not yet
// settled: queued, or in an allocation's hands.
func (b *benchNode) backlog(ctx context.Context) (pending uint64, inHand int, err error) {
	token := config.Token(benchEndpoint)
	cons, err := b.js.Consumer(ctx, wire.RequestsStream(token), wire.ConsumerName(token))
	if err != nil {
		return 0, 0, fmt.Errorf("endpoint consumer: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("endpoint consumer: %w", err)
	}
	return info.NumPending, info.NumAckPending, nil
}
