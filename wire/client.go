package wire

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
)

// DefaultPartInputs is how many inputs one infer message carries at most
// when Client splits a request.
const DefaultPartInputs = 64

// MaxWaitingForAllocation is how many requests may wait for an endpoint to
// get an allocation at once (Elasticsearch's MAX_PENDING_REQUEST_COUNT).
const MaxWaitingForAllocation = 100

// ErrNoAllocationInTime wraps the context's error when a request's timeout
// passed while its endpoint had no allocation.
var ErrNoAllocationInTime = errors.New("no allocation of the endpoint started in time")

// Client sends POST _inference requests through the infer subject; it is
// the HTTP API's Inferer. A request that finds no allocation (the endpoint
// is scaled to zero, or still starting) announces the demand, so that the
// controller starts one, and waits for it until its context ends.
type Client struct {
	NC *nats.Conn
	// PartInputs bounds the inputs per message; 0 means DefaultPartInputs.
	PartInputs int

	waiting atomic.Int64
}

// Infer splits a request too large for one message (or one allocation)
// into parts, sends them at once, so that several allocations serve them,
// and merges the answers. The first failing part's error is returned.
func (c *Client) Infer(ctx context.Context, ep config.Endpoint, req inferapi.Request, opts inferapi.Options) (inferapi.Result, error) {
	maxInputs := c.PartInputs
	if maxInputs <= 0 {
		maxInputs = DefaultPartInputs
	}
	// Half the payload for input text leaves room for JSON escaping.
	parts := inferapi.SplitRequest(req, maxInputs, int(c.NC.MaxPayload())/2)
	if len(parts) == 1 {
		body, err := req.Marshal()
		if err != nil {
			return inferapi.Result{}, err
		}
		return c.request(ctx, ep.InferenceID, body, opts)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]inferapi.Result, len(parts))
	errs := make(chan error, len(parts))
	for i, p := range parts {
		go func() {
			body, err := p.Marshal()
			if err == nil {
				results[i], err = c.request(ctx, ep.InferenceID, body, opts)
			}
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	var first error
	for range parts {
		// A part cut short because another failed reports that cancel,
		// not the cause: keep the first real error.
		if err := <-errs; err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return inferapi.Result{}, first
	}
	bodies := make([][]byte, len(parts))
	tokens := 0
	for i, r := range results {
		bodies[i] = r.Body
		tokens += r.Tokens
	}
	body, err := inferapi.MergeResponses(ep, req, opts, bodies)
	return inferapi.Result{Body: body, Tokens: tokens}, err
}

// request is Request, waiting for an allocation when there is none.
func (c *Client) request(ctx context.Context, inferenceID string, body []byte, opts inferapi.Options) (inferapi.Result, error) {
	out, err := Request(ctx, c.NC, inferenceID, body, opts)
	if !errors.Is(err, ErrNoAllocation) {
		return out, err
	}
	if c.waiting.Add(1) > MaxWaitingForAllocation {
		c.waiting.Add(-1)
		return inferapi.Result{}, eserror.New(http.StatusTooManyRequests, eserror.TypeStatus,
			"Rejected inference request waiting for an allocation of deployment [%s]. Too many pending requests", inferenceID)
	}
	defer c.waiting.Add(-1)
	demand := DemandSubject(config.Token(inferenceID))
	if err := c.announce(ctx, demand); err != nil {
		return inferapi.Result{}, err
	}
	wait := 20 * time.Millisecond
	for {
		_ = c.NC.Publish(demand, nil)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return inferapi.Result{}, fmt.Errorf("%w: %w", ErrNoAllocationInTime, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 500*time.Millisecond)
		out, err = Request(ctx, c.NC, inferenceID, body, opts)
		if !errors.Is(err, ErrNoAllocation) {
			return out, err
		}
	}
}

// announceWait bounds the wait for the controller's verdict on a demand.
const announceWait = 2 * time.Second

// announce asks the controller for an allocation of the endpoint of the
// demand subject and returns its refusal, Elasticsearch's 429, when none
// can ever start (fixed allocations hold every processor and nothing idle
// can be reclaimed). Without a verdict in time (no controller yet, or a
// slow one) the request waits as if the answer were yes.
func (c *Client) announce(ctx context.Context, demand string) error {
	actx, cancel := context.WithTimeout(ctx, announceWait)
	defer cancel()
	msg, err := c.NC.RequestWithContext(actx, demand, nil)
	if err != nil {
		return nil
	}
	if status, _ := strconv.Atoi(msg.Header.Get(HeaderStatus)); status != 0 && status != http.StatusOK {
		return &ReplyError{Status: status, Body: msg.Data}
	}
	return nil
}
