package consumer

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/eserror"
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
// its delivered-th delivery of at most maxDeliver: a success is acked, an
// invalid document (errInvalid) fails at once, another failure is retried
// until its last delivery, which fails.
func decide(err error, delivered uint64, maxDeliver int) outcome {
	switch {
	case err == nil:
		return outcomeAck
	case errors.Is(err, errInvalid), delivered >= uint64(maxDeliver):
		return outcomeFail
	}
	return outcomeRetry
}

// afterPublishFailure settles a document whose result (outcome o) could not
// be published, with perr: a result larger than any message the server
// accepts can never be stored, so the document fails with an error result
// in its place; any other failure is retried, since without a stored result
// the document is not done.
func afterPublishFailure(o outcome, perr error) outcome {
	if o == outcomeAck && errors.Is(perr, nats.ErrMaxPayload) {
		return outcomeFail
	}
	return outcomeRetry
}

// errorBody is the error result of a document that failed with err.
func errorBody(err error) []byte {
	body, merr := eserror.As(err).MarshalJSON()
	if merr != nil {
		return []byte(`{"error":{"type":"status_exception","reason":"internal error"},"status":500}`)
	}
	return body
}

// settle publishes a document's result and acks it, or naks it for another
// attempt, or publishes an error result and terminates it, as decide and
// afterPublishFailure say.
func (d *Deployment) settle(ctx context.Context, dc *doc) {
	log := d.log.With().Uint64("stream_seq", dc.meta.Sequence.Stream).Uint64("delivered", dc.meta.NumDelivered).Logger()
	o := decide(dc.err, dc.meta.NumDelivered, d.cfg.MaxDeliver)
	if dc.err != nil {
		log.Warn().Err(dc.err).Str("document_id", dc.id).Str("outcome", o.String()).Msg("document failed")
	}
	if o == outcomeRetry {
		d.settled(log, dc.msg.NakWithDelay(d.cfg.NakDelay), "nak")
		return
	}
	body := dc.body
	if o == outcomeFail {
		body = errorBody(dc.err)
	}
	err := d.publish(ctx, dc, body)
	if err != nil && afterPublishFailure(o, err) == outcomeFail {
		o = outcomeFail
		dc.err = fmt.Errorf("%w: %w", errInvalid, eserror.New(http.StatusRequestEntityTooLarge, eserror.TypeContentTooLong,
			"the result of [%d] bytes is larger than the largest message the NATS server accepts [%d bytes]", len(body), d.cfg.NC.MaxPayload()))
		log.Warn().Err(dc.err).Str("document_id", dc.id).Msg("document failed")
		err = d.publish(ctx, dc, errorBody(dc.err))
	}
	if err != nil {
		// Without a result the document is not done: try again later. On
		// the last delivery the server delivers no more and the document
		// stays in the stream for an operator to see.
		log.Error().Err(err).Msg("publish result")
		d.settled(log, dc.msg.NakWithDelay(d.cfg.NakDelay), "nak")
		return
	}
	d.stats.Documents.Add(1)
	d.stats.done(1)
	if o == outcomeFail {
		d.stats.Errors.Add(1)
		d.settled(log, dc.msg.TermWithReason(dc.err.Error()), "term")
		return
	}
	d.settled(log, dc.msg.DoubleAck(ctx), "ack")
}

func (d *Deployment) settled(log zerolog.Logger, err error, op string) {
	if err != nil {
		log.Error().Err(err).Str("op", op).Msg("settle message")
	}
}
