package consumer

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// lane serves infer requests and, when groups is the ingest queue (a bulk
// lane; nil for a search lane), ingest groups, taking waiting infer
// requests first. It returns when quit or the deployment's draining is
// closed, after answering the infer requests waiting.
func (d *Deployment) lane(ctx context.Context, quit <-chan struct{}, groups <-chan []jetstream.Msg) {
	for {
		if s, ok := d.searchQ.pop(); ok {
			d.serveSearch(ctx, s)
			continue
		}
		select {
		case <-quit:
			d.drainSearches(ctx)
			return
		case <-d.draining:
			d.drainSearches(ctx)
			return
		case <-d.searchQ.ready:
			if s, ok := d.searchQ.pop(); ok {
				d.serveSearch(ctx, s)
			}
		case group := <-groups:
			d.serveGroup(ctx, group)
		}
	}
}

// drainSearches answers the infer requests waiting, then returns.
func (d *Deployment) drainSearches(ctx context.Context) {
	for {
		s, ok := d.searchQ.pop()
		if !ok {
			return
		}
		d.serveSearch(ctx, s)
	}
}
