package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/kv"
)

// Bucket is the JetStream KV bucket that holds endpoint definitions.
const Bucket = "inference_endpoints"

// Errors callers branch on.
var (
	ErrNotFound = errors.New("inference endpoint not found")
	ErrExists   = errors.New("inference endpoint already exists")
	// ErrConflict means the definition changed since it was read.
	ErrConflict = errors.New("inference endpoint changed concurrently")
	// ErrUnavailable wraps failures to reach the bucket itself.
	ErrUnavailable = errors.New("inference endpoint store unavailable")
)

// Entry is one stored definition. Err is set when the stored value does not
// validate (it was written by another tool); Endpoint is then zero.
type Entry struct {
	ID       string
	Endpoint Endpoint
	Revision uint64
	Err      error
}

// StoreConfig configures the endpoint and deployment buckets.
type StoreConfig struct {
	// Replicas is the buckets' replication factor in a JetStream cluster.
	Replicas int
	// Log reports watches that broke and restarted.
	Log zerolog.Logger
}

// Store keeps endpoint definitions in the JetStream KV bucket, keyed by
// Token(inference_id), each value being the endpoint's GET JSON.
type Store struct {
	b *kv.Bucket[Endpoint]
}

// OpenStore creates the bucket if needed and returns a store on it.
func OpenStore(ctx context.Context, js jetstream.JetStream, cfg StoreConfig) (*Store, error) {
	b, err := kv.Open(ctx, js, kv.Config{Bucket: Bucket, Description: "jetinfer inference endpoint definitions", Replicas: cfg.Replicas, Log: cfg.Log},
		kv.Codec[Endpoint]{Encode: func(ep Endpoint) ([]byte, error) { return json.Marshal(ep) }, Decode: ParseStored})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return &Store{b: b}, nil
}

// unavailable is a failure to reach a bucket, named by op and the cause.
func unavailable(op string, err error) error {
	if oe, ok := errors.AsType[*kv.OpError](err); ok {
		err = oe.Err
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// Create stores a new definition; ErrExists if the id is taken. Creation is
// atomic in JetStream, so of two concurrent creates exactly one wins.
func (s *Store) Create(ctx context.Context, ep Endpoint) (uint64, error) {
	rev, err := s.b.Create(ctx, Token(ep.InferenceID), ep)
	switch {
	case errors.Is(err, kv.ErrExists):
		return 0, ErrExists
	case err != nil:
		return 0, unavailable("create "+ep.InferenceID, err)
	}
	return rev, nil
}

// Update replaces the definition if it is still at revision; ErrConflict if
// another writer got there first, ErrNotFound if it was deleted.
func (s *Store) Update(ctx context.Context, ep Endpoint, revision uint64) (uint64, error) {
	rev, err := s.b.Update(ctx, Token(ep.InferenceID), ep, revision)
	switch {
	case errors.Is(err, kv.ErrConflict):
		return 0, ErrConflict
	case errors.Is(err, kv.ErrNotFound):
		return 0, ErrNotFound
	case err != nil:
		return 0, unavailable("update "+ep.InferenceID, err)
	}
	return rev, nil
}

// Get returns the stored definition of id.
func (s *Store) Get(ctx context.Context, id string) (Entry, error) {
	if len(id) > MaxIDLength { // no such key, and too long for a subject
		return Entry{}, ErrNotFound
	}
	e, err := s.b.Get(ctx, Token(id))
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return Entry{}, ErrNotFound
	case err != nil:
		return Entry{}, unavailable("get "+id, err)
	}
	return entry(e), nil
}

func entry(e kv.Entry[Endpoint]) Entry {
	return Entry{ID: IDFromToken(e.Key), Endpoint: e.Value, Revision: e.Revision, Err: e.Err}
}

// List returns every stored definition, sorted by id.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	all, err := s.b.List(ctx, ">")
	if err != nil {
		return nil, unavailable("list", err)
	}
	out := make([]Entry, len(all))
	for i, e := range all {
		out[i] = entry(e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete removes the definition of id if it is still at revision, so that
// what a caller checked is what gets deleted; ErrConflict if it changed,
// ErrNotFound if there is none.
func (s *Store) Delete(ctx context.Context, id string, revision uint64) error {
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	err := s.b.DeleteRevision(ctx, Token(id), revision)
	switch {
	case errors.Is(err, kv.ErrConflict):
		return ErrConflict
	case err != nil:
		return unavailable("delete "+id, err)
	}
	return nil
}

// EnsureDefaults stores each reserved endpoint that is not stored yet, so
// that everything watching the bucket sees them. A reserved endpoint that a
// user force-deleted comes back here, as it does in Elasticsearch.
func (s *Store) EnsureDefaults(ctx context.Context) error {
	for _, ep := range DefaultEndpoints() {
		if _, err := s.Create(ctx, ep); err != nil && !errors.Is(err, ErrExists) {
			return err
		}
	}
	return nil
}

// Change is one update seen by Watch: a definition stored (Deleted false)
// or removed (Deleted true).
type Change struct {
	Entry
	Deleted bool
}

// Watch calls fn for every definition currently stored, then for every
// later change, until ctx ends; a broken watch restarts by itself. Invalid
// definitions arrive with Entry.Err set, so the caller reports them instead
// of acting on them.
func (s *Store) Watch(ctx context.Context, fn func(Change)) {
	s.b.Watch(ctx, ">", func(c kv.Change[Endpoint]) {
		fn(Change{Entry: entry(c.Entry), Deleted: c.Deleted})
	})
}
