package consumer

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/pipeline"
)

// DefaultPartInputs is how many inputs one infer message carries at most
// when Client splits a request.
const DefaultPartInputs = 64

// Client sends POST _inference requests through the infer subject; it is
// the HTTP API's Inferer.
type Client struct {
	NC *nats.Conn
	// PartInputs bounds the inputs per message; 0 means DefaultPartInputs.
	PartInputs int
}

// Infer splits a request too large for one message (or one allocation)
// into parts, sends them at once, so that several allocations serve them,
// and merges the answers. The first failing part's error is returned.
func (c Client) Infer(ctx context.Context, ep config.Endpoint, req pipeline.Request) ([]byte, error) {
	maxInputs := c.PartInputs
	if maxInputs <= 0 {
		maxInputs = DefaultPartInputs
	}
	// Half the payload for input text leaves room for JSON escaping.
	parts := pipeline.SplitRequest(req, maxInputs, int(c.NC.MaxPayload())/2)
	bodies := make([][]byte, len(parts))
	if len(parts) == 1 {
		body, err := req.Marshal()
		if err != nil {
			return nil, err
		}
		if bodies[0], err = Request(ctx, c.NC, ep.InferenceID, body); err != nil {
			return nil, err
		}
		return bodies[0], nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(parts))
	for i, p := range parts {
		go func() {
			body, err := p.Marshal()
			if err == nil {
				bodies[i], err = Request(ctx, c.NC, ep.InferenceID, body)
			}
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	var first error
	for range parts {
		if err := <-errs; err != nil && (first == nil || first == context.Canceled) {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	return pipeline.MergeResponses(ep, req, bodies)
}
