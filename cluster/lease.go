package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/kv"
)

// LeaseBucket holds the controller lease: the key "controller" names the
// worker that runs the controller. It expires unless renewed, so another
// worker takes over within the TTL when the holder dies.
const LeaseBucket = "inference_controller"

const leaseKey = "controller"

// Lease is one worker's claim on the controller role.
type Lease struct {
	b        *kv.Bucket[string]
	node     string
	ttl      time.Duration
	revision uint64
}

// TTL is how long the lease outlives its last renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }

// OpenLease creates the bucket if needed; ttl is how long a lease outlives
// its holder's last renewal.
func OpenLease(ctx context.Context, js jetstream.JetStream, cfg config.StoreConfig, ttl time.Duration, node string) (*Lease, error) {
	b, err := kv.Open(ctx, js, kv.Config{Bucket: LeaseBucket, Description: "jetinfer controller lease",
		TTL: ttl, Replicas: cfg.Replicas, Log: cfg.Log}, kv.Text())
	if err != nil {
		return nil, err
	}
	return &Lease{b: b, node: node, ttl: ttl}, nil
}

// ErrLeaseHeld is returned by Acquire when another node holds the lease.
var ErrLeaseHeld = errors.New("controller lease held by another node")

// Acquire takes the lease if nobody holds it (create-if-absent).
func (l *Lease) Acquire(ctx context.Context) error {
	rev, err := l.b.Create(ctx, leaseKey, l.node)
	if errors.Is(err, kv.ErrExists) {
		return ErrLeaseHeld
	}
	if err != nil {
		return err
	}
	l.revision = rev
	return nil
}

// Renew extends a held lease; it fails (ErrLeaseHeld) when the lease was
// lost meanwhile: expired, and perhaps taken by another node.
func (l *Lease) Renew(ctx context.Context) error {
	rev, err := l.b.Update(ctx, leaseKey, l.node, l.revision)
	if errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrNotFound) {
		return ErrLeaseHeld
	}
	if err != nil {
		return err
	}
	l.revision = rev
	return nil
}

// Release gives the lease up, if still held, so that another node takes
// over at once.
func (l *Lease) Release(ctx context.Context) error {
	if err := l.b.DeleteRevision(ctx, leaseKey, l.revision); err != nil && !errors.Is(err, kv.ErrConflict) {
		return err
	}
	return nil
}

// Holder returns the node holding the lease, "" when none does.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	e, err := l.b.Get(ctx, leaseKey)
	if errors.Is(err, kv.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return e.Value, nil
}
