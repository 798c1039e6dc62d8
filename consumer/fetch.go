package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/wire"
)

// fetch pulls documents while the deployment has allocations and hands
// them to the bulk lanes, as many as have arrived when a lane is free.
func (d *Deployment) fetch(ctx context.Context) {
	for ctx.Err() == nil {
		if d.current().lanes == 0 {
			// Every change of the lanes wakes the fetcher: an idle
			// deployment (a thousand on a node) costs no timer.
			select {
			case <-ctx.Done():
			case <-d.wake:
			}
			continue
		}
		batch, err := d.cons.Fetch(d.cfg.GroupDocs, jetstream.FetchMaxWait(d.cfg.PollWait))
		if err == nil {
			err = d.handOut(ctx, batch)
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrStreamNotFound) {
			// Removed by a worker cleaning up after a delete of the same
			// id that raced with its re-creation: the endpoint exists, so
			// its streams and consumer must too.
			if cons, cerr := wire.EnsureEndpoint(ctx, d.cfg.JS, d.cfg.Endpoint.InferenceID, d.cfg.Queue); cerr == nil {
				d.cons = cons
				continue
			}
		}
		if err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("fetch")
			select {
			case <-ctx.Done():
			case <-time.After(d.cfg.PollWait):
			}
		}
	}
}

// handOut forwards one pull request's messages to the lanes and returns the
// pull request's error. Messages in hand when ctx ends are handed back to
// the server for redelivery.
func (d *Deployment) handOut(ctx context.Context, batch jetstream.MessageBatch) error {
	var pending []jetstream.Msg
	msgs := batch.Messages()
	// Documents in hand with no lane left to take them (this node's
	// allocations went to zero) go back at once, rather than waiting out
	// their ack wait here and being served twice later.
	check := time.NewTicker(d.cfg.PollWait)
	defer check.Stop()
	giveBack := func() {
		for _, msg := range pending {
			d.giveBack(ctx, msg)
		}
		pending = nil
		if msgs != nil {
			for msg := range msgs {
				d.giveBack(ctx, msg)
			}
			msgs = nil
		}
	}
	for msgs != nil || len(pending) > 0 {
		var out chan []jetstream.Msg
		if len(pending) > 0 {
			out = d.ingestQ
		}
		select {
		case <-check.C:
			if d.current().lanes == 0 {
				giveBack()
			} else {
				for _, msg := range pending {
					_ = msg.InProgress()
				}
			}
		case msg, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			pending = append(pending, msg)
		case out <- pending:
			pending = nil
		case <-ctx.Done():
			giveBack()
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return err
	}
	return nil
}

// giveBack hands a document back for another worker, after recording that
// this delivery was no attempt. A record that fails leaves the delivery
// counted: the document then has one attempt fewer, never more.
func (d *Deployment) giveBack(ctx context.Context, msg jetstream.Msg) {
	if d.cfg.GiveBacks != nil {
		if meta, err := msg.Metadata(); err == nil {
			if err := d.cfg.GiveBacks.Add(context.WithoutCancel(ctx), d.token, meta); err != nil {
				d.log.Warn().Err(err).Uint64("stream_seq", meta.Sequence.Stream).Msg("record a document handed back")
			}
		}
	}
	_ = msg.Nak()
}
