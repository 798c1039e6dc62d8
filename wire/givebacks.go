package wire

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/kv"
)

// GiveBackBucket counts, per stored document, the deliveries that a worker
// handed back without running the document (its allocation stopped while
// the document waited for a lane). Workers count a document's attempts from
// its delivery count, which such a give-back raises too: without the
// ledger, a healthy document handed back MaxDeliver times would fail as if
// it had killed workers. Only give-backs write here, and a worker reads a
// document's count only once its deliveries reach MaxDeliver, so documents
// served on their first delivery cost the bucket nothing.
const GiveBackBucket = "inference_give_backs"

// giveBackTTL forgets a count: a document given back is redelivered at
// once, so it is served, or reaches MaxDeliver, long before.
const giveBackTTL = 24 * time.Hour

// GiveBacks is the ledger in GiveBackBucket.
type GiveBacks struct {
	b *kv.Bucket[uint64]
}

// OpenGiveBacks opens (creating it if needed) the ledger.
func OpenGiveBacks(ctx context.Context, js jetstream.JetStream, replicas int, log zerolog.Logger) (*GiveBacks, error) {
	codec := kv.Codec[uint64]{
		Encode: func(n uint64) ([]byte, error) { return strconv.AppendUint(nil, n, 10), nil },
		Decode: func(_ string, data []byte) (uint64, error) { return strconv.ParseUint(string(data), 10, 64) },
	}
	b, err := kv.Open(ctx, js, kv.Config{Bucket: GiveBackBucket, Description: "jetinfer documents handed back unrun, not counted as attempts",
		TTL: giveBackTTL, Replicas: replicas, Log: log}, codec)
	if err != nil {
		return nil, err
	}
	return &GiveBacks{b: b}, nil
}

// giveBackKey names one stored document of an endpoint: its stream
// sequence and the time it was stored, since the sequences of an endpoint
// deleted and defined again start over.
func giveBackKey(token string, meta *jetstream.MsgMetadata) string {
	return token + "." + strconv.FormatUint(meta.Sequence.Stream, 10) + "." + strconv.FormatInt(meta.Timestamp.UnixNano(), 10)
}

// maxGiveBackTries bounds the compare-and-set rounds of one Add; two
// workers give the same document back at once only if its ack wait
// expired in the first one's hands.
const maxGiveBackTries = 5

// Add records that the delivery described by meta is handed back unrun.
func (g *GiveBacks) Add(ctx context.Context, token string, meta *jetstream.MsgMetadata) error {
	key := giveBackKey(token, meta)
	for range maxGiveBackTries {
		e, err := g.b.Get(ctx, key)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			_, err = g.b.Create(ctx, key, 1)
		case err == nil && e.Err != nil:
			_, err = g.b.Put(ctx, key, 1)
		case err == nil:
			_, err = g.b.Update(ctx, key, e.Value+1, e.Revision)
		}
		if !errors.Is(err, kv.ErrExists) && !errors.Is(err, kv.ErrConflict) && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
	}
	return fmt.Errorf("give back %s: %w", key, kv.ErrConflict)
}

// Count is how many deliveries of the document described by meta were
// handed back unrun.
func (g *GiveBacks) Count(ctx context.Context, token string, meta *jetstream.MsgMetadata) (uint64, error) {
	e, err := g.b.Get(ctx, giveBackKey(token, meta))
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return e.Value, e.Err
}
