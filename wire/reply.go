package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/tracing"
)

// Headers of the infer subject.
const (
	// HeaderStatus carries a reply's HTTP status; the body is the response
	// body, or an Elasticsearch error envelope when the status is not 200.
	HeaderStatus = "Jetinfer-Status"
	// HeaderMore marks every part of a reply but the last: a reply larger
	// than the server's max_payload is sent in parts, in order.
	HeaderMore = "Jetinfer-More"
	// HeaderNotAllocated marks a reply from a process that had no
	// allocation left for the request (it was scaling down): the requester
	// treats it as no responders.
	HeaderNotAllocated = "Jetinfer-Not-Allocated"
	// HeaderDeadline is the time (Unix nanoseconds) after which the
	// requester no longer waits; a request found expired is not served.
	HeaderDeadline = "Jetinfer-Deadline"
	// HeaderOptions carries a request's inferapi.Options as JSON;
	// HeaderOptionsApplied marks the last part of a reply to a request with
	// options (a worker older than the header would ignore them);
	// HeaderTokens answers CountTokens there.
	HeaderOptions        = "Jetinfer-Options"
	HeaderOptionsApplied = "Jetinfer-Options-Applied"
	HeaderTokens         = "Jetinfer-Tokens"
)

// SetOptions writes opts into an infer request's headers; the zero
// Options write nothing.
func SetOptions(msg *nats.Msg, opts inferapi.Options) {
	if opts == (inferapi.Options{}) {
		return
	}
	b, _ := json.Marshal(opts) // plain fields: it cannot fail
	msg.Header.Set(HeaderOptions, string(b))
}

// Options reads an infer request's inferapi.Options. An option this
// process does not know is an error, not ignored: a worker older than the
// option refuses the request rather than answering something else than was
// asked. (A worker older than the header itself ignores it; Request tells
// by the reply's missing HeaderOptionsApplied.)
func Options(msg *nats.Msg) (inferapi.Options, error) {
	var opts inferapi.Options
	v := msg.Header.Get(HeaderOptions)
	if v == "" {
		return opts, nil
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&opts); err != nil {
		return opts, fmt.Errorf("%s header: %w", HeaderOptions, err)
	}
	if opts.Dimensions < 0 {
		return opts, fmt.Errorf("%s header: dimensions [%d] is negative", HeaderOptions, opts.Dimensions)
	}
	return opts, nil
}

// replyOverhead leaves room for the headers in each part of a reply.
const replyOverhead = 512

// Reply sends an infer reply of the given status, in parts when it does
// not fit in one message; notAllocated marks it as HeaderNotAllocated says.
func Reply(nc *nats.Conn, subject string, status int, body []byte, notAllocated bool) error {
	return reply(nc, subject, status, body, notAllocated, -1, false)
}

// ReplyResult sends a successful infer reply, with the tokens counted
// when the request asked for them, and HeaderOptionsApplied when it had
// options.
func ReplyResult(nc *nats.Conn, subject string, res inferapi.Result, opts inferapi.Options) error {
	tokens := -1
	if opts.CountTokens {
		tokens = res.Tokens
	}
	return reply(nc, subject, http.StatusOK, res.Body, false, tokens, opts != (inferapi.Options{}))
}

// reply is Reply with HeaderTokens on the last part unless tokens < 0, and
// HeaderOptionsApplied there when applied.
func reply(nc *nats.Conn, subject string, status int, body []byte, notAllocated bool, tokens int, applied bool) error {
	partSize := int(nc.MaxPayload()) - replyOverhead
	if partSize < 1024 {
		partSize = 1024
	}
	for {
		msg := nats.NewMsg(subject)
		msg.Header.Set(HeaderStatus, strconv.Itoa(status))
		if notAllocated {
			msg.Header.Set(HeaderNotAllocated, "true")
		}
		part := body
		if len(part) > partSize {
			part = body[:partSize]
			msg.Header.Set(HeaderMore, "true")
		} else {
			if tokens >= 0 {
				msg.Header.Set(HeaderTokens, strconv.Itoa(tokens))
			}
			if applied {
				msg.Header.Set(HeaderOptionsApplied, "true")
			}
		}
		msg.Data = part
		if err := nc.PublishMsg(msg); err != nil {
			return err
		}
		body = body[len(part):]
		if len(body) == 0 {
			return nil
		}
	}
}

// Deadline reads a request's HeaderDeadline.
func Deadline(msg *nats.Msg) (time.Time, bool) {
	if msg.Header == nil {
		return time.Time{}, false
	}
	v := msg.Header.Get(HeaderDeadline)
	if v == "" {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// ReplyError is an error reply: an Elasticsearch error envelope and its
// HTTP status, passed on unchanged.
type ReplyError struct {
	Status int
	Body   []byte
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("inference reply %d: %s", e.Status, e.Body)
}

// HTTPStatus and HTTPBody let the HTTP layer write the reply as it came.
func (e *ReplyError) HTTPStatus() int  { return e.Status }
func (e *ReplyError) HTTPBody() []byte { return e.Body }

// Request sends body to the endpoint's infer subject and returns the whole
// reply body; a reply with another status than 200 is a *ReplyError. When
// no process serves the endpoint the error is ErrNotDeployed's. ctx bounds
// the wait, and its deadline travels with the request.
func Request(ctx context.Context, nc *nats.Conn, inferenceID string, body []byte, opts inferapi.Options) (_ inferapi.Result, err error) {
	subject := InferSubject(config.Token(inferenceID))
	ctx, span := tracing.Tracer(ctx).Start(ctx, "send infer", trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() { // nothing to build when tracing is off
		span.SetAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject),
			attribute.String("inference_id", inferenceID))
	}
	defer func() { tracing.End(span, err) }()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return inferapi.Result{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg := nats.NewMsg(subject)
	msg.Reply = inbox
	tracing.Inject(ctx, msg)
	msg.Data = body
	SetOptions(msg, opts)
	if dl, ok := ctx.Deadline(); ok {
		msg.Header.Set(HeaderDeadline, strconv.FormatInt(dl.UnixNano(), 10))
	}
	if err := nc.PublishMsg(msg); err != nil {
		return inferapi.Result{}, err
	}
	var out []byte
	for {
		part, err := sub.NextMsgWithContext(ctx)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return inferapi.Result{}, ErrNotDeployed(inferenceID)
		case err != nil && ctx.Err() != nil:
			return inferapi.Result{}, ctx.Err()
		case err != nil:
			return inferapi.Result{}, err
		}
		if part.Header.Get(HeaderNotAllocated) != "" {
			return inferapi.Result{}, ErrNotDeployed(inferenceID)
		}
		out = append(out, part.Data...)
		if part.Header.Get(HeaderMore) != "" {
			continue
		}
		status, err := strconv.Atoi(part.Header.Get(HeaderStatus))
		if err != nil {
			return inferapi.Result{}, eserror.Internal(errors.New("infer reply without a status"), "internal error")
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status != http.StatusOK {
			return inferapi.Result{}, &ReplyError{Status: status, Body: out}
		}
		if opts != (inferapi.Options{}) && part.Header.Get(HeaderOptionsApplied) == "" {
			// A worker older than HeaderOptions (a rolling upgrade) answered
			// as if the request had none.
			return inferapi.Result{}, eserror.Internal(errors.New("request options ignored"), "the worker that served [%s] does not apply request options: upgrade it", inferenceID)
		}
		res := inferapi.Result{Body: out}
		if opts.CountTokens {
			res.Tokens, _ = strconv.Atoi(part.Header.Get(HeaderTokens))
		}
		return res, nil
	}
}

// ErrNoAllocation is wrapped by ErrNotDeployed's errors: a client that gets
// it may announce demand and try again.
var ErrNoAllocation = errors.New("no allocation")

// ErrNotDeployed is the answer for an endpoint no allocation serves.
func ErrNotDeployed(id string) error {
	return fmt.Errorf("%w: %w", ErrNoAllocation, eserror.New(http.StatusConflict, eserror.TypeStatus,
		"Trained model deployment [%s] is not allocated to any nodes", id))
}
