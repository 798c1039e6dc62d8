package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/embeddednats/natstest"
)

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Start(t)
	return js
}

type value struct {
	N int `json:"n"`
}

func open(t *testing.T, js jetstream.JetStream) *Bucket[value] {
	t.Helper()
	b, err := Open(context.Background(), js, Config{Bucket: "test"}, JSON[value]())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWritesAndTheirErrors(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	b := open(t, js)

	rev, err := b.Create(ctx, "a", value{1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "a", value{2}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create = %v; want ErrExists", err)
	}
	rev2, err := b.Update(ctx, "a", value{3}, rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("Update at the current revision = %d, %v", rev2, err)
	}
	if _, err := b.Update(ctx, "a", value{4}, rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("Update at a stale revision = %v; want ErrConflict", err)
	}
	if err := b.DeleteRevision(ctx, "a", rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("DeleteRevision at a stale revision = %v; want ErrConflict", err)
	}
	e, err := b.Get(ctx, "a")
	if err != nil || e.Value.N != 3 || e.Revision != rev2 {
		t.Fatalf("Get = %+v, %v; want n 3 at revision %d", e, err, rev2)
	}
	if err := b.DeleteRevision(ctx, "a", rev2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete = %v; want ErrNotFound", err)
	}
	if _, err := b.Get(ctx, "not a key!"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an invalid key = %v; want ErrNotFound", err)
	}
	if err := b.Delete(ctx, "never-written"); err != nil {
		t.Fatalf("Delete of a missing key = %v", err)
	}
	// A deleted key can be created again.
	if _, err := b.Create(ctx, "a", value{5}); err != nil {
		t.Fatalf("Create after delete = %v", err)
	}
	// Values that do not decode come back with their error.
	raw, err := js.KeyValue(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Put(ctx, "bad", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	all, err := b.List(ctx, ">")
	if err != nil || len(all) != 2 || all[0].Key != "a" || all[0].Value.N != 5 || all[1].Key != "bad" || all[1].Err == nil {
		t.Fatalf("List = %+v, %v; want a (n 5) and bad (with an error)", all, err)
	}
}

// breakable is a bucket whose watchers can be closed on demand, as a lost
// connection or a cancelled subscription closes them.
type breakable struct {
	jetstream.KeyValue
	mu       sync.Mutex
	watchers []*brokenWatcher
	// closeAfter closes each new watcher after this many entries (0: never).
	closeAfter int
}

type brokenWatcher struct {
	inner jetstream.KeyWatcher
	out   chan jetstream.KeyValueEntry
	stop  chan struct{}
	once  sync.Once
	done  chan struct{}
}

func (k *breakable) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	inner, err := k.KeyValue.Watch(ctx, keys, opts...)
	if err != nil {
		return nil, err
	}
	w := &brokenWatcher{inner: inner, out: make(chan jetstream.KeyValueEntry), stop: make(chan struct{}), done: make(chan struct{})}
	limit := k.closeAfter
	go func() {
		defer close(w.done)
		defer close(w.out)
		n := 0
		for {
			if limit > 0 && n == limit {
				return
			}
			select {
			case <-w.stop:
				return
			case e, ok := <-inner.Updates():
				if !ok {
					return
				}
				select {
				case w.out <- e:
					n++
				case <-w.stop:
					return
				}
			}
		}
	}()
	k.mu.Lock()
	k.watchers = append(k.watchers, w)
	k.mu.Unlock()
	return w, nil
}

func (w *brokenWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.out }

func (w *brokenWatcher) Stop() error {
	w.breakIt()
	<-w.done
	return w.inner.Stop()
}

func (w *brokenWatcher) breakIt() { w.once.Do(func() { close(w.stop) }) }

// breakAll closes every watcher handed out so far.
func (k *breakable) breakAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.watchers {
		w.breakIt()
	}
}

// TestListReportsClosedWatcher: a watcher closed before the end of the
// initial values is an error, not a shorter list with a nil error.
func TestListReportsClosedWatcher(t *testing.T) {
	ctx := context.Background()
	b := open(t, startJS(t))
	for i := range 3 {
		if _, err := b.Put(ctx, fmt.Sprintf("k%d", i), value{i}); err != nil {
			t.Fatal(err)
		}
	}
	if all, err := b.List(ctx, ">"); err != nil || len(all) != 3 {
		t.Fatalf("List = %d values, %v; want 3", len(all), err)
	}
	b.kv = &breakable{KeyValue: b.kv, closeAfter: 1}
	all, err := b.List(ctx, ">")
	if !errors.Is(err, ErrWatchClosed) || all != nil {
		t.Fatalf("List on a watcher closed after one value = %+v, %v; want ErrWatchClosed", all, err)
	}
}

// TestWatchRestarts: after a watch breaks, the restarted watch delivers
// what changed meanwhile (values updated and created, and a deletion for
// each key gone), and not the values fn has already seen.
func TestWatchRestarts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js := startJS(t)
	b := open(t, js)
	for _, k := range []string{"keep", "change", "remove", "purged"} {
		if _, err := b.Put(ctx, k, value{1}); err != nil {
			t.Fatal(err)
		}
	}
	bk := &breakable{KeyValue: b.kv}
	b.kv = bk
	changes := make(chan Change[value], 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Watch(ctx, ">", func(c Change[value]) { changes <- c })
	}()
	next := func() Change[value] {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(30 * time.Second):
			t.Fatal("no change within 30s")
		}
		return Change[value]{}
	}
	got := map[string]int{}
	for range 4 {
		c := next()
		got[c.Key] = c.Value.N
	}
	if len(got) != 4 {
		t.Fatalf("initial values %v; want keep, change, remove and purged", got)
	}
	bk.breakAll()
	// While the watch is broken (it restarts after watchRetry).
	if _, err := b.Put(ctx, "change", value{2}); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "remove"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "new", value{3}); err != nil {
		t.Fatal(err)
	}
	// Gone without a delete marker, as a value expires: only the restart's
	// comparison with what fn has seen can tell.
	stream, err := js.Stream(ctx, "KV_test")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject("$KV.test.purged")); err != nil {
		t.Fatal(err)
	}
	after := map[string]string{}
	for range 4 {
		c := next()
		if c.Deleted {
			after[c.Key] = "deleted"
		} else {
			after[c.Key] = fmt.Sprint(c.Value.N)
		}
	}
	want := map[string]string{"change": "2", "remove": "deleted", "new": "3", "purged": "deleted"}
	if fmt.Sprint(after) != fmt.Sprint(want) {
		t.Fatalf("after the restart %v; want %v", after, want)
	}
	// Nothing more: "keep" is not delivered again. A later write arrives.
	if _, err := b.Put(ctx, "keep", value{4}); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.Key != "keep" || c.Value.N != 4 {
		t.Fatalf("next change %+v; want keep = 4", c)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

// scripted is a bucket whose watch delivers a fixed sequence, as nats.go
// does when a key is rewritten during a read: its end-of-initial-values
// signal counts messages, so it comes before the last key.
type scripted struct {
	jetstream.KeyValue
	updates []jetstream.KeyValueEntry
}

type scriptedWatcher struct{ ch chan jetstream.KeyValueEntry }

func (w scriptedWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.ch }
func (w scriptedWatcher) Stop() error                             { return nil }

func (s *scripted) Watch(context.Context, string, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	ch := make(chan jetstream.KeyValueEntry, len(s.updates))
	for _, u := range s.updates {
		ch <- u
	}
	return scriptedWatcher{ch}, nil // never closed: List must stop by itself
}

type entry struct {
	key   string
	value string
	rev   uint64
	delta uint64
}

func (e entry) Bucket() string                  { return "test" }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return []byte(e.value) }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return time.Time{} }
func (e entry) Delta() uint64                   { return e.delta }
func (e entry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// TestListReadsPastAnEarlyEnd: three nodes' entries, one rewritten while
// the list reads; nats.go signals the end after three messages, before
// the third key. List still returns all three, each at its newest value.
func TestListReadsPastAnEarlyEnd(t *testing.T) {
	b := open(t, startJS(t))
	b.kv = &scripted{KeyValue: b.kv, updates: []jetstream.KeyValueEntry{
		entry{"w1", `{"n":1}`, 10, 2},
		entry{"w2", `{"n":1}`, 11, 2}, // w1 was rewritten meanwhile: still 2 pending
		entry{"w1", `{"n":2}`, 12, 1},
		nil, // three messages received: nats.go's end of the initial values
		entry{"w3", `{"n":1}`, 13, 0},
	}}
	all, err := b.List(context.Background(), ">")
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, e := range all {
		got += fmt.Sprintf("%s=%d@%d ", e.Key, e.Value.N, e.Revision)
	}
	if want := "w1=2@12 w2=1@11 w3=1@13 "; got != want {
		t.Fatalf("List = %s; want %s", got, want)
	}
}
