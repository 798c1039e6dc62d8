package controller

import (
	"context"
	"sync"
)

// mirror keeps a bucket's values in memory, fed by its watch, so that
// planning reads no bucket every heartbeat: with a thousand endpoints
// re-reading (and re-parsing) every definition each second was most of an
// idle node's CPU. The controller mirrors the endpoint definitions and the
// trained model deployments.
//
// The watch delivers every stored value and then each change; a List when
// the controller is elected makes the mirror complete at once (seeded),
// whatever the watch has delivered by then. Both go through apply, which
// keeps the newest revision of each id and remembers deletions, so that an
// older listed value cannot revive a deleted one.
type mirror[E any] struct {
	mu      sync.Mutex
	entries map[string]versioned[E]
	deleted map[string]uint64 // id → revision of its deletion
	seeded  bool
	// list is entries as a slice, built again only after a change.
	list []E
	// gen counts the changes, so that a reader knows whether anything
	// changed since it last looked.
	gen uint64
}

type versioned[E any] struct {
	value    E
	revision uint64
}

func newMirror[E any]() *mirror[E] {
	return &mirror[E]{entries: map[string]versioned[E]{}, deleted: map[string]uint64{}}
}

// apply records one change seen by the watch or read by a List.
func (m *mirror[E]) apply(id string, revision uint64, deleted bool, value E) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applyLocked(id, revision, deleted, value)
}

func (m *mirror[E]) applyLocked(id string, revision uint64, deleted bool, value E) {
	cur, ok := m.entries[id]
	if deleted {
		if !ok || revision >= cur.revision {
			delete(m.entries, id)
			m.deleted[id] = max(m.deleted[id], revision)
			m.list = nil
			m.gen++
		}
		return
	}
	if ok && revision <= cur.revision || revision <= m.deleted[id] {
		return
	}
	m.entries[id] = versioned[E]{value, revision}
	delete(m.deleted, id)
	m.list = nil
	m.gen++
}

// seed makes the mirror complete with list, once; key gives an entry's id
// and revision.
func (m *mirror[E]) seed(ctx context.Context, list func(context.Context) ([]E, error), key func(E) (string, uint64)) error {
	m.mu.Lock()
	seeded := m.seeded
	m.mu.Unlock()
	if seeded {
		return nil
	}
	entries, err := list(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range entries {
		id, rev := key(e)
		m.applyLocked(id, rev, false, e)
	}
	m.seeded = true
	return nil
}

// all returns every value and the mirror's generation, which changes with
// every change; the caller must not change the slice, which is shared
// until the next change.
func (m *mirror[E]) all() ([]E, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.list == nil {
		m.list = make([]E, 0, len(m.entries))
		for _, e := range m.entries {
			m.list = append(m.list, e.value)
		}
	}
	return m.list, m.gen
}

// generation is what all would return with the values.
func (m *mirror[E]) generation() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen
}
