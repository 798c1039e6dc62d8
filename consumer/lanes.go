package consumer

import (
	"context"
)

// bulkLane serves ingest groups, taking waiting search requests first.
func (d *Deployment) bulkLane(ctx context.Context, quit <-chan struct{}) {
	for {
		select {
		case msg := <-d.searchQ:
			d.serveSearch(ctx, msg)
			continue
		default:
		}
		select {
		case <-quit:
			d.drainSearches(ctx)
			return
		case <-d.draining:
			d.drainSearches(ctx)
			return
		case msg := <-d.searchQ:
			d.serveSearch(ctx, msg)
		case group := <-d.ingestQ:
			d.serveGroup(ctx, group)
		}
	}
}

// searchLane serves infer requests only.
func (d *Deployment) searchLane(ctx context.Context, quit <-chan struct{}) {
	for {
		select {
		case <-quit:
			d.drainSearches(ctx)
			return
		case <-d.draining:
			d.drainSearches(ctx)
			return
		case msg := <-d.searchQ:
			d.serveSearch(ctx, msg)
		}
	}
}

// drainSearches answers the infer requests waiting, then returns.
func (d *Deployment) drainSearches(ctx context.Context) {
	for {
		select {
		case msg := <-d.searchQ:
			d.serveSearch(ctx, msg)
		default:
			return
		}
	}
}
