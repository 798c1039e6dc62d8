package consumer

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
)

// A panic while serving (in chunking, the model, a response writer) must
// not take the process down: the document that caused it would then kill
// up to MaxDeliver workers in turn. The lanes run the runner through these
// wrappers, which turn a panic into an error of the work that caused it and
// log it with its stack.

// ingest is runner.Ingest, a panic made an invalid-document error: the same
// input panics again, so the document gets its error result at once.
func (d *Deployment) ingest(ctx context.Context, r Runner, docs []inferapi.Request) (bodies [][]byte, err error) {
	defer d.recovered("ingest", &err)
	return r.Ingest(ctx, docs)
}

// infer is runner.Infer, a panic made an error reply.
func (d *Deployment) infer(ctx context.Context, r Runner, req inferapi.Request, opts inferapi.Options) (res inferapi.Result, err error) {
	defer d.recovered("infer", &err)
	return r.Infer(ctx, req, opts)
}

// recovered turns a panic into *err; it must be deferred.
func (d *Deployment) recovered(what string, err *error) {
	p := recover()
	if p == nil {
		return
	}
	d.log.Error().Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).Msg(what + " panicked")
	*err = fmt.Errorf("%w: %w", errInvalid, eserror.Internal(fmt.Errorf("%v", p), "inference failed on an internal error"))
}
