package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"
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

// StoreConfig configures the endpoint bucket.
type StoreConfig struct {
	// Replicas is the bucket's replication factor in a JetStream cluster.
	Replicas int
}

// Store keeps endpoint definitions in the JetStream KV bucket, keyed by
// Token(inference_id), each value being the endpoint's GET JSON.
type Store struct {
	kv jetstream.KeyValue
}

// OpenStore creates the bucket if needed and returns a store on it.
func OpenStore(ctx context.Context, js jetstream.JetStream, cfg StoreConfig) (*Store, error) {
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "jetinfer inference endpoint definitions",
		History:     1,
		Replicas:    cfg.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: open bucket %s: %w", ErrUnavailable, Bucket, err)
	}
	return &Store{kv: kv}, nil
}

func encode(ep Endpoint) ([]byte, error) {
	return json.Marshal(ep)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// Create stores a new definition; ErrExists if the id is taken. Creation is
// atomic in JetStream, so of two concurrent creates exactly one wins.
func (s *Store) Create(ctx context.Context, ep Endpoint) (uint64, error) {
	value, err := encode(ep)
	if err != nil {
		return 0, err
	}
	rev, err := s.kv.Create(ctx, Token(ep.InferenceID), value)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return 0, ErrExists
	case err != nil:
		return 0, unavailable("create "+ep.InferenceID, err)
	}
	return rev, nil
}

// Update replaces the definition if it is still at revision; ErrConflict if
// another writer got there first, ErrNotFound if it was deleted.
func (s *Store) Update(ctx context.Context, ep Endpoint, revision uint64) (uint64, error) {
	value, err := encode(ep)
	if err != nil {
		return 0, err
	}
	rev, err := s.kv.Update(ctx, Token(ep.InferenceID), value, revision)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, ErrConflict
	case errors.Is(err, jetstream.ErrKeyNotFound):
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
	kve, err := s.kv.Get(ctx, Token(id))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrInvalidKey):
		return Entry{}, ErrNotFound
	case err != nil:
		return Entry{}, unavailable("get "+id, err)
	}
	return decodeEntry(kve), nil
}

func decodeEntry(kve jetstream.KeyValueEntry) Entry {
	ep, err := ParseStored(kve.Key(), kve.Value())
	return Entry{ID: IDFromToken(kve.Key()), Endpoint: ep, Revision: kve.Revision(), Err: err}
}

// List returns every stored definition, sorted by id.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	if err := listKV(ctx, s.kv, "list", func(kve jetstream.KeyValueEntry) { out = append(out, decodeEntry(kve)) }); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// listKV calls fn for every value stored in kv now.
func listKV(ctx context.Context, kv jetstream.KeyValue, op string, fn func(jetstream.KeyValueEntry)) error {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return unavailable(op, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return unavailable(op, ctx.Err())
		case kve, ok := <-w.Updates():
			if !ok {
				return unavailable(op, errors.New("watcher closed"))
			}
			if kve == nil { // all current values delivered
				return nil
			}
			fn(kve)
		}
	}
}

// Delete removes the definition of id if it is still at revision, so that
// what a caller checked is what gets deleted; ErrConflict if it changed,
// ErrNotFound if there is none.
func (s *Store) Delete(ctx context.Context, id string, revision uint64) error {
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	err := s.kv.Delete(ctx, Token(id), jetstream.LastRevision(revision))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
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
// later change, until ctx ends. Invalid definitions arrive with Entry.Err
// set, so the caller reports them instead of acting on them.
func (s *Store) Watch(ctx context.Context, fn func(Change)) error {
	return watchKV(ctx, s.kv, "watch", func(kve jetstream.KeyValueEntry, deleted bool) {
		if deleted {
			fn(Change{Entry: Entry{ID: IDFromToken(kve.Key()), Revision: kve.Revision()}, Deleted: true})
			return
		}
		fn(Change{Entry: decodeEntry(kve)})
	})
}

// watchKV calls fn for every value stored in kv, then for every change
// (deleted for a delete or purge), until ctx ends or the watch breaks.
func watchKV(ctx context.Context, kv jetstream.KeyValue, op string, fn func(kve jetstream.KeyValueEntry, deleted bool)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return unavailable(op, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case kve, ok := <-w.Updates():
			if !ok {
				return unavailable(op, errors.New("watcher closed"))
			}
			if kve == nil { // end of the initial values
				continue
			}
			fn(kve, kve.Operation() != jetstream.KeyValuePut)
		}
	}
}
