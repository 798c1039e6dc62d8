package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket holds the controller lease: the key "controller" names the
// worker that runs the controller. It expires unless renewed, so another
// worker takes over within the TTL when the holder dies.
const LeaseBucket = "inference_controller"

const leaseKey = "controller"

// Lease is one worker's claim on the controller role.
type Lease struct {
	kv       jetstream.KeyValue
	node     string
	ttl      time.Duration
	revision uint64
}

// TTL is how long the lease outlives its last renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }

// OpenLease creates the bucket if needed; ttl is how long a lease outlives
// its holder's last renewal.
func OpenLease(ctx context.Context, js jetstream.JetStream, replicas int, ttl time.Duration, node string) (*Lease, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket,
		Description: "jetinfer controller lease",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", LeaseBucket, err)
	}
	return &Lease{kv: kv, node: node, ttl: ttl}, nil
}

// ErrLeaseHeld is returned by Acquire when another node holds the lease.
var ErrLeaseHeld = errors.New("controller lease held by another node")

// Acquire takes the lease if nobody holds it (create-if-absent).
func (l *Lease) Acquire(ctx context.Context) error {
	rev, err := l.kv.Create(ctx, leaseKey, []byte(l.node))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return ErrLeaseHeld
	}
	if err != nil {
		return err
	}
	l.revision = rev
	return nil
}

// Renew extends a held lease; it fails (ErrLeaseHeld) when the lease was
// lost meanwhile: expired and taken by another node.
func (l *Lease) Renew(ctx context.Context) error {
	rev, err := l.kv.Update(ctx, leaseKey, []byte(l.node), l.revision)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || errors.Is(err, jetstream.ErrKeyNotFound) {
			return ErrLeaseHeld
		}
		return err
	}
	l.revision = rev
	return nil
}

// Release gives the lease up, if still held, so that another node takes
// over at once.
func (l *Lease) Release(ctx context.Context) error {
	err := l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.revision))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil
		}
		return err
	}
	return nil
}

// Holder returns the node holding the lease, "" when none does.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	e, err := l.kv.Get(ctx, leaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}
