package consumer

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/tracing"
	"github.com/jetinfer/jetinfer/wire"
)

// onInfer queues one infer request; it runs on the subscription's goroutine.
func (d *Deployment) onInfer(msg *nats.Msg) {
	if msg.Reply == "" {
		return // nobody would read the answer
	}
	if failure := d.current().failure; failure != nil {
		d.replyError(msg, failure)
		if d.cfg.FailedRequest != nil {
			d.cfg.FailedRequest()
		}
		return
	}
	span := d.startSpan(msg.Header, "process infer", trace.SpanKindServer, msg.Subject)
	if !d.searchQ.push(search{msg: msg, queued: time.Now(), span: span}) {
		d.stats.Rejected.Add(1)
		d.replyError(msg, ErrQueueFull)
		tracing.End(span, ErrQueueFull)
	}
}

// ErrQueueFull is Elasticsearch's answer when a deployment's queue is full.
var ErrQueueFull = eserror.New(http.StatusTooManyRequests, eserror.TypeRejectedExecution,
	"inference process queue is full. Unable to execute command")

// startSpan starts a span named name of a message to subject, in the trace
// its headers carry (else a trace of its own); without a tracer it returns
// one that records nothing, having done no work.
func (d *Deployment) startSpan(h nats.Header, name string, kind trace.SpanKind, subject string) trace.Span {
	if d.cfg.Tracer == nil {
		return trace.SpanFromContext(context.Background())
	}
	_, span := d.cfg.Tracer.Tracer(tracing.Name).Start(tracing.Extract(context.Background(), h), name, trace.WithSpanKind(kind),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject),
			attribute.String("inference_id", d.cfg.Endpoint.InferenceID)))
	return span
}

// search is an infer request waiting for a lane, and its span (begun when
// it arrived).
type search struct {
	msg    *nats.Msg
	queued time.Time
	span   trace.Span
}

// serveSearch answers one infer request. A request whose client has
// already given up (its deadline passed) is dropped unanswered.
func (d *Deployment) serveSearch(laneCtx context.Context, s search) {
	d.stats.queueWait.Observe(time.Since(s.queued).Seconds())
	s.span.AddEvent("lane taken")
	var err error
	defer func() {
		d.stats.duration.Observe(time.Since(s.queued).Seconds())
		tracing.End(s.span, err)
	}()
	laneCtx = trace.ContextWithSpan(laneCtx, s.span)
	msg := s.msg
	ctx := laneCtx
	if dl, ok := wire.Deadline(msg); ok {
		if time.Until(dl) <= 0 {
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	sv, done := d.use()
	defer done()
	runner, err := sv.runnerFor(d.cfg.Endpoint.InferenceID)
	if err != nil {
		d.replyError(msg, err)
		return
	}
	opts, err := wire.Options(msg)
	if err != nil {
		err = eserror.BadRequest("%s", err.Error())
	}
	var req inferapi.Request
	if err == nil {
		req, err = d.parse(msg.Data, opts.Tokenize || opts.Describe)
	}
	// Tokenizing and describing run no model: they are not inferences, and
	// must not keep an idle endpoint's allocation busy for its scaler.
	inference := !opts.Tokenize && !opts.Describe
	if err == nil {
		var res inferapi.Result
		start := time.Now()
		res, err = d.infer(ctx, runner, req, opts)
		if inference {
			d.stats.BusyNanos.Add(int64(time.Since(start)))
		}
		if err == nil {
			if inference {
				d.stats.Inferences.Add(1)
				d.stats.done(1)
			}
			d.stats.request("ok")
			if err := wire.ReplyResult(d.cfg.NC, msg.Reply, res, opts); err != nil {
				d.log.Error().Err(err).Msg("reply")
			}
			return
		}
	}
	if ctx.Err() != nil {
		if laneCtx.Err() == nil {
			return // the client's deadline passed: it is gone
		}
		err = d.errShuttingDown() // a stop past its deadline cancelled the work
	}
	d.replyError(msg, err)
}

func (d *Deployment) replyError(msg *nats.Msg, err error) {
	d.stats.Inferences.Add(1)
	e := eserror.As(err)
	d.stats.request(e.Type)
	if e.Status >= 500 {
		d.log.Error().Err(err).Msg("inference failed")
	}
	if rerr := wire.Reply(d.cfg.NC, msg.Reply, e.Status, errorBody(err), errors.Is(err, wire.ErrNoAllocation)); rerr != nil {
		d.log.Error().Err(rerr).Msg("reply")
	}
}

// parse reads and validates a request body against the endpoint's task.
// A request that runs no task (tokenize, describe) is checked as any task's.
func (d *Deployment) parse(body []byte, noTask bool) (inferapi.Request, error) {
	req, err := inferapi.ParseRequest(body)
	if err != nil {
		return req, err
	}
	task := config.Any
	if d.cfg.Endpoint.TaskType == config.Rerank && !noTask {
		task = config.Rerank
	}
	return req, req.Validate(task)
}
