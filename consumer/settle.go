package consumer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/wire"
)

// outcome is what becomes of a document once its group has run.
type outcome int

const (
	// outcomeAck: its result is published, then it is acknowledged.
	outcomeAck outcome = iota
	// outcomeRetry: it is handed back (nak with a delay) for another
	// attempt, with nothing published.
	outcomeRetry
	// outcomeFail: an error result is published in its place, then it is
	// terminated: it can never succeed, or this was its last attempt.
	outcomeFail
)

func (o outcome) String() string {
	switch o {
	case outcomeAck:
		return "ack"
	case outcomeRetry:
		return "retry"
	}
	return "fail"
}

// decide settles a document that ran with err (nil when it succeeded) on
// its attempt-th attempt of at most maxDeliver: a success is
// acked, an invalid document (errInvalid) fails at once, another failure
// is retried until its last attempt, which fails.
func decide(err error, attempt uint64, maxDeliver int) outcome {
	switch {
	case err == nil:
		return outcomeAck
	case errors.Is(err, errInvalid), attempt >= uint64(maxDeliver):
		return outcomeFail
	}
	return outcomeRetry
}

// afterPublishFailure settles a document whose result (outcome o) could not
// be published, with perr, on its last attempt or not: a result that can
// never be stored (larger than any message the server accepts), or could
// not be on the last attempt, fails with an error result in its place; any
// other failure is retried, since without a stored result the document is
// not done. An error result that could not be stored is retried too: the
// consumer delivers without limit, so the document comes back.
func afterPublishFailure(o outcome, perr error, last bool) outcome {
	if o == outcomeAck && (last || errors.Is(perr, nats.ErrMaxPayload)) {
		return outcomeFail
	}
	return outcomeRetry
}

// unpublishable is the error a document fails with when its result could
// not be stored (perr).
func unpublishable(size int, perr error, maxPayload int64) error {
	if errors.Is(perr, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: %w", errInvalid, eserror.New(http.StatusRequestEntityTooLarge, eserror.TypeContentTooLong,
			"the result of [%d] bytes is larger than the largest message the NATS server accepts [%d bytes]", size, maxPayload))
	}
	return fmt.Errorf("%w: %w", errInvalid, eserror.New(http.StatusInternalServerError, eserror.TypeStatus,
		"the result of [%d] bytes could not be stored: %s", size, perr))
}

// refused marks a runner's error that no other attempt can mend as
// errInvalid: a client error (4xx: the document itself is refused, as a
// result too large to store), but not a timeout or a full queue.
func refused(err error) error {
	var e *eserror.Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 &&
		e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	return err
}

// errorBody is the error result of a document that failed with err.
func errorBody(err error) []byte {
	body, merr := eserror.As(err).MarshalJSON()
	if merr != nil {
		return []byte(`{"error":{"type":"status_exception","reason":"internal error"},"status":500}`)
	}
	return body
}

// publishing is a document whose result is on its way to the stream.
type publishing struct {
	dc      *doc
	outcome outcome
	size    int
	ack     jetstream.PubAckFuture
	err     error
}

// settleGroup publishes the results of a group's documents and acks them,
// or naks them for another attempt, or publishes error results and
// terminates them, as decide and afterPublishFailure say. The results are
// published together and awaited once; acks are not awaited: a lane that
// waited for each ack crawled at one document per timeout when a restarted
// server left acks unanswered. An ack that is lost brings the document
// back after the ack wait, and its result, published again under the same
// Nats-Msg-Id, is dropped by the stream as a duplicate.
func (d *Deployment) settleGroup(ctx context.Context, docs []*doc) {
	var out []*publishing
	for _, dc := range docs {
		if dc == nil {
			continue
		}
		log := d.docLog(dc)
		o := decide(dc.err, dc.attempt, d.cfg.Queue.MaxDeliver)
		if dc.err != nil {
			log.Warn().Err(dc.err).Str("document_id", dc.id).Str("outcome", o.String()).Msg("document failed")
		}
		if o == outcomeRetry {
			d.settled(log, dc.msg.NakWithDelay(d.cfg.NakDelay), "nak")
			continue
		}
		body := dc.body
		if o == outcomeFail {
			body = errorBody(dc.err)
		}
		p := &publishing{dc: dc, outcome: o, size: len(body)}
		p.ack, p.err = d.cfg.JS.PublishMsgAsync(d.resultMsg(dc, body))
		out = append(out, p)
	}
	d.awaitPublished(ctx, out)
	d.mu.Lock()
	stopping := d.stopping // a deleted endpoint's streams go while it stops
	d.mu.Unlock()
	if !stopping && slices.ContainsFunc(out, func(p *publishing) bool { return errors.Is(p.err, jetstream.ErrNoStreamResponse) }) {
		// The results stream is gone: removed by a worker cleaning up
		// after a delete of the same id that raced with its definition
		// again. The endpoint exists, so its streams must too; the
		// documents come back for another attempt.
		if _, err := wire.EnsureEndpoint(ctx, d.cfg.JS, d.cfg.Endpoint.InferenceID, d.cfg.Queue); err != nil {
			d.log.Warn().Err(err).Msg("create the endpoint's streams again")
		}
	}
	for _, p := range out {
		d.finish(ctx, p)
	}
}

// awaitPublished waits, up to the ack wait in all, for the stream to store
// the results published.
func (d *Deployment) awaitPublished(ctx context.Context, out []*publishing) {
	timeout := time.NewTimer(d.cfg.Queue.AckWait)
	defer timeout.Stop()
	late := errors.New("the results stream did not acknowledge the result in time")
	expired := false
	for _, p := range out {
		if p.err != nil {
			continue
		}
		if expired {
			// The timer has fired: what has not resolved by now failed
			// (a closed connection never resolves its futures).
			select {
			case <-p.ack.Ok():
			case p.err = <-p.ack.Err():
			default:
				p.err = late
			}
			continue
		}
		select {
		case <-p.ack.Ok():
		case p.err = <-p.ack.Err():
		case <-timeout.C:
			p.err, expired = late, true
		case <-ctx.Done():
			p.err = ctx.Err()
		}
	}
}

// finish settles one document once its result is stored, or could not be.
func (d *Deployment) finish(ctx context.Context, p *publishing) {
	dc, o := p.dc, p.outcome
	log := d.docLog(dc)
	if p.err != nil {
		o = afterPublishFailure(o, p.err, dc.attempt >= uint64(d.cfg.Queue.MaxDeliver))
		if o == outcomeRetry {
			log.Error().Err(p.err).Msg("publish result")
			dc.span.RecordError(p.err)
			d.settled(log, dc.msg.NakWithDelay(d.cfg.NakDelay), "nak")
			return
		}
		dc.err = unpublishable(p.size, p.err, d.cfg.NC.MaxPayload())
		log.Warn().Err(dc.err).Str("document_id", dc.id).Msg("document failed")
		if err := d.publish(ctx, dc, errorBody(dc.err)); err != nil {
			log.Error().Err(err).Msg("publish error result")
			d.settled(log, dc.msg.NakWithDelay(d.cfg.NakDelay), "nak")
			return
		}
	}
	d.stats.Documents.Add(1)
	d.stats.done(1)
	if o == outcomeFail {
		d.stats.Errors.Add(1)
		d.stats.Terminated.Add(1)
		d.settled(log, dc.msg.TermWithReason(dc.err.Error()), "term")
		return
	}
	d.stats.ResultsOK.Add(1)
	d.settled(log, dc.msg.Ack(), "ack")
}

func (d *Deployment) docLog(dc *doc) zerolog.Logger {
	return d.log.With().Uint64("stream_seq", dc.meta.Sequence.Stream).Uint64("delivered", dc.meta.NumDelivered).Uint64("attempt", dc.attempt).Logger()
}

func (d *Deployment) settled(log zerolog.Logger, err error, op string) {
	if err != nil {
		log.Error().Err(err).Str("op", op).Msg("settle message")
	}
}
