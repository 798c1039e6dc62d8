package controller

import (
	"context"
	"sync"

	"github.com/jetinfer/jetinfer/config"
)

// definitions mirrors the endpoint bucket in memory, kept by its watch, so
// that planning reads no bucket every heartbeat: with a thousand endpoints
// re-reading (and re-parsing) every definition each second was most of an
// idle node's CPU.
//
// The watch delivers every stored definition and then each change; a List
// when the controller is elected makes the mirror complete at once
// (seeded), whatever the watch has delivered by then. Both go through
// apply, which keeps the newest revision of each id and remembers
// deletions, so that an older listed definition cannot revive a deleted
// one.
type definitions struct {
	mu      sync.Mutex
	entries map[string]config.Entry
	deleted map[string]uint64 // id → revision of its deletion
	seeded  bool
	// list is entries as a slice, built again only after a change.
	list []config.Entry
}

func newDefinitions() *definitions {
	return &definitions{entries: map[string]config.Entry{}, deleted: map[string]uint64{}}
}

// apply records one change seen by the watch or read by a List.
func (d *definitions) apply(c config.Change) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.applyLocked(c)
}

func (d *definitions) applyLocked(c config.Change) {
	cur, ok := d.entries[c.ID]
	if c.Deleted {
		if !ok || c.Revision >= cur.Revision {
			delete(d.entries, c.ID)
			d.deleted[c.ID] = max(d.deleted[c.ID], c.Revision)
			d.list = nil
		}
		return
	}
	if ok && c.Revision <= cur.Revision || c.Revision <= d.deleted[c.ID] {
		return
	}
	d.entries[c.ID] = c.Entry
	delete(d.deleted, c.ID)
	d.list = nil
}

// seed makes the mirror complete with a List of the bucket, once.
func (d *definitions) seed(ctx context.Context, store *config.Store) error {
	d.mu.Lock()
	seeded := d.seeded
	d.mu.Unlock()
	if seeded {
		return nil
	}
	entries, err := store.List(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range entries {
		d.applyLocked(config.Change{Entry: e})
	}
	d.seeded = true
	return nil
}

// all returns every definition; the caller must not change the slice,
// which is shared until the next change.
func (d *definitions) all() []config.Entry {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.list == nil {
		d.list = make([]config.Entry, 0, len(d.entries))
		for _, e := range d.entries {
			d.list = append(d.list, e)
		}
	}
	return d.list
}
