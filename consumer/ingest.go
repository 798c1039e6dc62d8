package consumer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/tracing"
	"github.com/jetinfer/jetinfer/wire"
)

// doc is one ingest message in a group.
type doc struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	// attempt is this delivery's number among the document's attempts: its
	// deliveries less those handed back unrun.
	attempt uint64
	// span follows the document through this worker, in the trace its
	// message carries (a publisher's traceparent), else in one of its own.
	span trace.Span
	id   string
	req  inferapi.Request
	body []byte
	err  error
}

// errInvalid marks documents that can never succeed: they are terminated
// after one error result.
var errInvalid = errors.New("invalid document")

// serveGroup embeds a group of documents and settles every message: each is
// acked (after its result is stored), terminated or nakked. ctx cancels the
// work (a stop past its deadline); what was computed is still settled.
func (d *Deployment) serveGroup(ctx context.Context, msgs []jetstream.Msg) {
	docs := make([]*doc, len(msgs))
	var valid []*doc
	for i, msg := range msgs {
		dc := &doc{msg: msg}
		docs[i] = dc
		var err error
		if dc.meta, err = msg.Metadata(); err != nil {
			d.log.Error().Err(err).Msg("message without metadata")
			_ = msg.Term()
			docs[i] = nil
			continue
		}
		if dc.meta.NumDelivered > 1 {
			d.stats.Redeliveries.Add(1)
		} else {
			d.stats.FirstDeliveries.Add(1)
		}
		dc.span = d.startSpan(msg.Headers(), "process ingest", trace.SpanKindConsumer, msg.Subject())
		dc.id, dc.req, dc.err = d.parseDoc(msg.Data())
		if dc.span.IsRecording() {
			dc.span.SetAttributes(attribute.String("document_id", dc.id), attribute.Int64("messaging.message.stream_sequence", int64(dc.meta.Sequence.Stream)),
				attribute.Int64("messaging.message.delivery_count", int64(dc.meta.NumDelivered)))
		}
		dc.attempt = d.attempt(ctx, dc.meta)
		if dc.err == nil && dc.attempt > uint64(d.cfg.Queue.MaxDeliver) {
			dc.err = d.errAttemptsUsedUp()
		}
		if dc.err == nil {
			valid = append(valid, dc)
		}
	}
	stop := d.keepAlive(valid)
	start := time.Now()
	runCtx, group := ctx, trace.SpanFromContext(context.Background())
	if d.cfg.Tracer != nil && len(valid) > 0 {
		// One engine call embeds the group: its span links the documents'.
		links := make([]trace.Link, 0, len(valid))
		for _, dc := range valid {
			links = append(links, trace.Link{SpanContext: dc.span.SpanContext()})
		}
		runCtx, group = d.cfg.Tracer.Tracer(tracing.Name).Start(ctx, "embed group", trace.WithLinks(links...),
			trace.WithAttributes(attribute.String("inference_id", d.cfg.Endpoint.InferenceID), attribute.Int("documents", len(valid))))
	}
	d.run(runCtx, valid)
	group.End()
	d.stats.BusyNanos.Add(int64(time.Since(start)))
	stop()
	d.settleGroup(context.WithoutCancel(ctx), docs)
	for _, dc := range docs {
		if dc != nil {
			tracing.End(dc.span, dc.err)
		}
	}
}

// attempt numbers a delivery among its document's attempts. Only a delivery
// that may be the last attempt looks up the give-backs: most never do.
func (d *Deployment) attempt(ctx context.Context, meta *jetstream.MsgMetadata) uint64 {
	n := meta.NumDelivered
	if n < uint64(d.cfg.Queue.MaxDeliver) || d.cfg.GiveBacks == nil {
		return n
	}
	back, err := d.cfg.GiveBacks.Count(ctx, d.token, meta)
	if err != nil {
		d.log.Warn().Err(err).Uint64("stream_seq", meta.Sequence.Stream).Msg("read the document's give-backs; counting every delivery")
		return n
	}
	return n - min(back, n-1)
}

// errAttemptsUsedUp fails a document delivered more often than it may be
// attempted: its attempts never settled (a worker died on it, or neither
// its result nor an error result could be stored). It is not run again,
// so a document that kills workers kills at most MaxDeliver of them.
func (d *Deployment) errAttemptsUsedUp() error {
	return fmt.Errorf("%w: %w", errInvalid, eserror.New(http.StatusInternalServerError, eserror.TypeStatus,
		"inference did not complete in [%d] attempts", d.cfg.Queue.MaxDeliver))
}

// keepAlive tells the server every third of AckWait that docs are still
// being worked on, so that a long group is not redelivered meanwhile.
func (d *Deployment) keepAlive(docs []*doc) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d.cfg.Queue.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, dc := range docs {
					_ = dc.msg.InProgress()
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// run embeds the valid documents in one engine call; if that fails, each
// is tried alone, so one poison document does not fail its neighbours.
func (d *Deployment) run(ctx context.Context, docs []*doc) {
	if len(docs) == 0 {
		return
	}
	sv, done := d.use()
	defer done()
	runner, err := sv.runnerFor(d.cfg.Endpoint.InferenceID)
	if err != nil {
		for _, dc := range docs {
			dc.err = err
		}
		return
	}
	reqs := make([]inferapi.Request, len(docs))
	for i, dc := range docs {
		reqs[i] = dc.req
	}
	bodies, err := d.ingest(ctx, runner, reqs)
	if err != nil && ctx.Err() != nil {
		// A stop past its deadline cancelled the work: no use trying the
		// documents one by one.
		for _, dc := range docs {
			dc.err = d.errShuttingDown()
		}
		return
	}
	if err == nil && len(bodies) != len(docs) {
		err = fmt.Errorf("runner returned %d results for %d documents", len(bodies), len(docs))
	}
	if err == nil {
		for i, dc := range docs {
			dc.body = bodies[i]
		}
		return
	}
	if len(docs) == 1 {
		docs[0].err = refused(err)
		return
	}
	for _, dc := range docs {
		var one [][]byte
		if one, dc.err = d.ingest(ctx, runner, []inferapi.Request{dc.req}); dc.err == nil {
			dc.body = one[0]
		}
		dc.err = refused(dc.err)
	}
}

// parseDoc cuts the document id out of a body and parses the rest; the
// error wraps errInvalid.
func (d *Deployment) parseDoc(data []byte) (string, inferapi.Request, error) {
	id, rest, err := wire.CutID(data)
	if err == nil {
		err = wire.ValidateDocumentID(id)
	}
	if err != nil {
		// The id cannot go back in the result's header: the result goes
		// without one (its Nats-Msg-Id still names the document).
		return "", inferapi.Request{}, fmt.Errorf("%w: %w", errInvalid, err)
	}
	req, err := d.parse(rest, false)
	if err == nil && id == "" {
		err = eserror.Validation(eserror.TypeActionRequestValidation, "Field [id] cannot be null")
	}
	if err == nil && len(req.Input) > wire.MaxDocumentInputs {
		err = eserror.Validation(eserror.TypeActionRequestValidation,
			fmt.Sprintf("a document has at most [%d] inputs, got [%d]", wire.MaxDocumentInputs, len(req.Input)))
	}
	if err != nil {
		return id, req, fmt.Errorf("%w: %w", errInvalid, err)
	}
	return id, req, nil
}

// resultID is the Nats-Msg-Id of a document's result. A redelivered
// document publishes its result again, and the second copy must be a
// duplicate: the document's stream sequence and the time it was stored
// name it and nothing else. The publisher's Nats-Msg-Id would not (one id
// published again after the duplicate window is a second document, whose
// result must not be dropped as the first's), nor would the sequence alone
// (an endpoint deleted and defined again starts its sequence over).
func resultID(meta *jetstream.MsgMetadata) string {
	return strconv.FormatUint(meta.Sequence.Stream, 10) + "-" + strconv.FormatInt(meta.Timestamp.UnixNano(), 10)
}

// requestMsgID is the Nats-Msg-Id a document was published with; a
// document moved from the legacy shared stream carries it in
// HeaderRequestMsgID.
func requestMsgID(h nats.Header) string {
	if id := h.Get(wire.HeaderRequestMsgID); id != "" {
		return id
	}
	return h.Get(jetstream.MsgIDHeader)
}

// resultMsg is a document's result (or error result) body as published.
func (d *Deployment) resultMsg(dc *doc, body []byte) *nats.Msg {
	out := nats.NewMsg(wire.ResultsSubject(d.token))
	if dc.id != "" {
		out.Header.Set(wire.HeaderDocumentID, dc.id)
	}
	if reqID := requestMsgID(dc.msg.Headers()); reqID != "" {
		out.Header.Set(wire.HeaderRequestMsgID, reqID)
	}
	out.Header.Set(jetstream.MsgIDHeader, resultID(dc.meta))
	if dc.span.IsRecording() {
		tracing.Inject(trace.ContextWithSpan(context.Background(), dc.span), out)
	}
	out.Data = body
	return out
}

// publish sends a document's result and waits for the stream to store it.
func (d *Deployment) publish(ctx context.Context, dc *doc, body []byte) error {
	pctx, cancel := context.WithTimeout(ctx, d.cfg.Queue.AckWait)
	defer cancel()
	_, err := d.cfg.JS.PublishMsg(pctx, d.resultMsg(dc, body))
	return err
}
