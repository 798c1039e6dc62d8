package worker

import "sync"

// budget shares the process's processors between its deployments: an
// endpoint holds allocations × num_threads of them.
type budget struct {
	mu    sync.Mutex
	total int
	held  map[string]int
	// changed is closed (and replaced) whenever processors are freed.
	changed chan struct{}
}

func newBudget(total int) *budget {
	return &budget{total: total, held: map[string]int{}, changed: make(chan struct{})}
}

// grant gives id as many of want allocations of threads each as fit next to
// what the others hold, replacing what id held before.
func (b *budget) grant(id string, want, threads int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	free := b.total
	for other, n := range b.held {
		if other != id {
			free -= n
		}
	}
	n := 0
	if threads > 0 {
		n = min(want, max(free, 0)/threads)
	}
	if n*threads < b.held[id] {
		b.notifyLocked()
	}
	if n == 0 {
		delete(b.held, id)
	} else {
		b.held[id] = n * threads
	}
	return n
}

// release frees what id holds.
func (b *budget) release(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.held[id]; ok {
		delete(b.held, id)
		b.notifyLocked()
	}
}

// freed returns a channel closed the next time processors are freed.
func (b *budget) freed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func (b *budget) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}
