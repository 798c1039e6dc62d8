// Package kv is jetinfer's one typed layer over JetStream key-value
// buckets: open with a codec, get, put, create-if-absent, compare-and-set,
// delete, list what is stored now, and a watch that restarts itself. Every
// bucket of jetinfer (endpoint definitions, trained model deployments, the
// node registry, the controller lease, the plan, deployment states) is a
// Bucket, so that they all map nats.go's errors the same way and none reads
// a closed watcher as the end of the initial values.
package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Errors callers branch on.
var (
	// ErrNotFound: the key holds no value (never written, deleted, or not
	// a valid key).
	ErrNotFound = errors.New("key not found")
	// ErrExists: Create found a value under the key.
	ErrExists = errors.New("key exists")
	// ErrConflict: the key's revision is not the one the caller read.
	ErrConflict = errors.New("key changed concurrently")
	// ErrWatchClosed: a watch ended before it delivered what it promised.
	ErrWatchClosed = errors.New("watch closed")
)

// Timeout bounds one operation whose context has no deadline of its own,
// so that a caller stopping (with context.WithoutCancel) cannot hang on an
// unreachable server.
const Timeout = 5 * time.Second

// watchRetry is how long a broken watch waits before it starts again.
const watchRetry = time.Second

// Config describes a bucket.
type Config struct {
	Bucket      string
	Description string
	// TTL expires values not rewritten within it; 0 keeps them.
	TTL time.Duration
	// Replicas in a JetStream cluster; 0 means 1.
	Replicas int
	// Log reports watches that broke and restarted.
	Log zerolog.Logger
}

// Codec turns values into bytes and back; Decode gets the key too, for
// values that must agree with it.
type Codec[T any] struct {
	Encode func(T) ([]byte, error)
	Decode func(key string, data []byte) (T, error)
}

// JSON is the codec of values stored as JSON.
func JSON[T any]() Codec[T] {
	return Codec[T]{
		Encode: func(v T) ([]byte, error) { return json.Marshal(v) },
		Decode: func(_ string, data []byte) (T, error) {
			var v T
			err := json.Unmarshal(data, &v)
			return v, err
		},
	}
}

// Text is the codec of values stored as plain text.
func Text() Codec[string] {
	return Codec[string]{
		Encode: func(s string) ([]byte, error) { return []byte(s), nil },
		Decode: func(_ string, data []byte) (string, error) { return string(data), nil },
	}
}

// Bucket is a KV bucket of values of type T. It is safe for concurrent use.
type Bucket[T any] struct {
	kv    jetstream.KeyValue
	codec Codec[T]
	name  string
	log   zerolog.Logger
}

// Open creates the bucket, or updates its configuration, and returns it.
// Values are kept once (history 1) in file storage, so that they outlive a
// restart of the server.
func Open[T any](ctx context.Context, js jetstream.JetStream, cfg Config, codec Codec[T]) (*Bucket[T], error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	want := jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: cfg.Description,
		History:     1,
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	}
	// Every process opens every bucket at start. An update of an unchanged
	// bucket is not free: nats-server rewrites its stream's configuration,
	// racing with the consumers (watches) other processes create on it.
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil {
		if st, serr := kv.Status(ctx); serr == nil && sameConfig(st.Config(), want) {
			return &Bucket[T]{kv: kv, codec: codec, name: cfg.Bucket, log: cfg.Log.With().Str("bucket", cfg.Bucket).Logger()}, nil
		}
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", cfg.Bucket, err)
	}
	return &Bucket[T]{kv: kv, codec: codec, name: cfg.Bucket, log: cfg.Log.With().Str("bucket", cfg.Bucket).Logger()}, nil
}

// sameConfig reports whether a bucket already has what Open sets.
func sameConfig(have, want jetstream.KeyValueConfig) bool {
	return have.Description == want.Description && have.History == want.History && have.TTL == want.TTL &&
		have.Storage == want.Storage && have.Replicas == want.Replicas
}

// Entry is one stored value. Err is the codec's error, and Value what it
// returned with it, when the stored bytes do not decode.
type Entry[T any] struct {
	Key      string
	Value    T
	Revision uint64
	// Created is when the server stored this revision.
	Created time.Time
	Err     error
}

func (b *Bucket[T]) entry(kve jetstream.KeyValueEntry) Entry[T] {
	v, err := b.codec.Decode(kve.Key(), kve.Value())
	return Entry[T]{Key: kve.Key(), Value: v, Revision: kve.Revision(), Created: kve.Created(), Err: err}
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, Timeout)
}

// OpError is an operation on a bucket that failed; Err is the cause
// (nats.go's error, or the codec's).
type OpError struct {
	Op, Bucket, Key string
	Err             error
}

func (e *OpError) Error() string { return e.Op + " " + e.Bucket + " " + e.Key + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

func (b *Bucket[T]) fail(op, key string, err error) error {
	return &OpError{Op: op, Bucket: b.name, Key: key, Err: err}
}

// Get returns the value stored under key; ErrNotFound when there is none.
// A value that does not decode is returned with its Err set, and no error.
func (b *Bucket[T]) Get(ctx context.Context, key string) (Entry[T], error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	kve, err := b.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrInvalidKey):
		return Entry[T]{}, ErrNotFound
	case err != nil:
		return Entry[T]{}, b.fail("get", key, err)
	}
	return b.entry(kve), nil
}

// Put stores v under key whatever is there, and returns its revision.
func (b *Bucket[T]) Put(ctx context.Context, key string, v T) (uint64, error) {
	data, err := b.codec.Encode(v)
	if err != nil {
		return 0, b.fail("encode", key, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rev, err := b.kv.Put(ctx, key, data)
	if err != nil {
		return 0, b.fail("put", key, err)
	}
	return rev, nil
}

// Create stores v under key if the key holds no value; ErrExists if it
// does. Of two concurrent creates exactly one succeeds.
func (b *Bucket[T]) Create(ctx context.Context, key string, v T) (uint64, error) {
	data, err := b.codec.Encode(v)
	if err != nil {
		return 0, b.fail("encode", key, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rev, err := b.kv.Create(ctx, key, data)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return 0, ErrExists
	case err != nil:
		return 0, b.fail("create", key, err)
	}
	return rev, nil
}

// Update replaces the value under key if it is still at revision:
// ErrConflict if another writer (or a delete) got there first.
func (b *Bucket[T]) Update(ctx context.Context, key string, v T, revision uint64) (uint64, error) {
	data, err := b.codec.Encode(v)
	if err != nil {
		return 0, b.fail("encode", key, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rev, err := b.kv.Update(ctx, key, data, revision)
	switch {
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		return 0, ErrConflict
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, ErrNotFound
	case err != nil:
		return 0, b.fail("update", key, err)
	}
	return rev, nil
}

// Delete removes the value under key; a key that holds none is not an
// error.
func (b *Bucket[T]) Delete(ctx context.Context, key string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err := b.kv.Delete(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return b.fail("delete", key, err)
	}
	return nil
}

// DeleteRevision removes the value under key if it is still at revision;
// ErrConflict if it changed (or was removed) meanwhile.
func (b *Bucket[T]) DeleteRevision(ctx context.Context, key string, revision uint64) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err := b.kv.Delete(ctx, key, jetstream.LastRevision(revision))
	switch {
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		return ErrConflict
	case err != nil:
		return b.fail("delete", key, err)
	}
	return nil
}

// List returns the values stored now under the keys filter matches (">"
// for all), sorted by key. A watcher that closes before it has delivered
// them all is an error (ErrWatchClosed), never a shorter list.
//
// nats.go signals the end of a watch's initial values after as many
// messages as were pending when it started, or at a message with nothing
// pending after it. A key rewritten while the watch reads (a heartbeat)
// counts twice, so that signal can come before another key's value: List
// reads on until a message with nothing pending after it has arrived.
func (b *Bucket[T]) List(ctx context.Context, filter string) ([]Entry[T], error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	w, err := b.kv.Watch(ctx, filter)
	if err != nil {
		return nil, b.fail("list", filter, err)
	}
	defer func() { _ = w.Stop() }()
	byKey := map[string]Entry[T]{}
	received, caughtUp, marked := false, false, false
	for !marked || (received && !caughtUp) {
		select {
		case <-ctx.Done():
			return nil, b.fail("list", filter, ctx.Err())
		case kve, ok := <-w.Updates():
			if !ok {
				return nil, b.fail("list", filter, ErrWatchClosed)
			}
			if kve == nil {
				marked = true
				continue
			}
			received, caughtUp = true, kve.Delta() == 0
			if kve.Operation() != jetstream.KeyValuePut {
				delete(byKey, kve.Key())
				continue
			}
			byKey[kve.Key()] = b.entry(kve)
		}
	}
	out := make([]Entry[T], 0, len(byKey))
	for _, e := range byKey {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Change is one update a watch delivers: a value stored, or the key's
// value removed (Deleted, with only Key and Revision set).
type Change[T any] struct {
	Entry[T]
	Deleted bool
}

// Watch calls fn for every value stored under the keys filter matches,
// then for every change, until ctx ends. A watch that breaks (its
// connection closed, the server lost it) starts again after a pause; fn
// then sees the values that changed meanwhile, and a deletion for each key
// gone meanwhile, so that what it has seen always adds up to the bucket's
// content. fn runs on the caller's goroutine, one change at a time.
func (b *Bucket[T]) Watch(ctx context.Context, filter string, fn func(Change[T])) {
	seen := map[string]uint64{} // key → revision delivered
	for ctx.Err() == nil {
		err := b.watchOnce(ctx, filter, seen, fn)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn().Err(err).Str("filter", filter).Msg("watch broke; restarting")
		t := time.NewTimer(watchRetry)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// watchOnce runs one watcher until it breaks or ctx ends. Values whose
// revision fn has seen are not delivered again.
func (b *Bucket[T]) watchOnce(ctx context.Context, filter string, seen map[string]uint64, fn func(Change[T])) error {
	w, err := b.kv.Watch(ctx, filter)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	// present collects the keys of the initial values, until the marker.
	present := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case kve, ok := <-w.Updates():
			if !ok {
				return ErrWatchClosed
			}
			if kve == nil {
				for key, rev := range seen {
					if !present[key] {
						delete(seen, key)
						fn(Change[T]{Entry: Entry[T]{Key: key, Revision: rev}, Deleted: true})
					}
				}
				present = nil
				continue
			}
			deleted := kve.Operation() != jetstream.KeyValuePut
			if present != nil && !deleted {
				present[kve.Key()] = true
			}
			if deleted {
				if _, known := seen[kve.Key()]; !known && present != nil {
					continue // removed before fn ever saw it
				}
				delete(seen, kve.Key())
				fn(Change[T]{Entry: Entry[T]{Key: kve.Key(), Revision: kve.Revision()}, Deleted: true})
				continue
			}
			if seen[kve.Key()] == kve.Revision() {
				continue
			}
			seen[kve.Key()] = kve.Revision()
			fn(Change[T]{Entry: b.entry(kve)})
		}
	}
}
