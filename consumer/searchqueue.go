package consumer

import "sync"

// searchQueue holds the infer requests waiting for a lane of one
// deployment, at most capacity of them. It takes memory only for the
// requests waiting: a channel of that capacity (10,000 by default) would
// hold its buffer, scanned by every garbage collection, for each of a
// thousand idle endpoints.
type searchQueue struct {
	mu       sync.Mutex
	items    []search
	capacity int
	// ready holds a value while requests may be waiting: lanes select on
	// it, and one that takes it passes it on when more remain.
	ready chan struct{}
}

func newSearchQueue(capacity int) *searchQueue {
	return &searchQueue{capacity: capacity, ready: make(chan struct{}, 1)}
}

// push queues s; false when the queue is full.
func (q *searchQueue) push(s search) bool {
	q.mu.Lock()
	if len(q.items) >= q.capacity {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, s)
	q.mu.Unlock()
	q.signal()
	return true
}

// pop takes the request that waited longest, if any.
func (q *searchQueue) pop() (search, bool) {
	q.mu.Lock()
	if len(q.items) == 0 {
		q.mu.Unlock()
		return search{}, false
	}
	s := q.items[0]
	q.items[0] = search{}
	q.items = q.items[1:]
	more := len(q.items) > 0
	if !more {
		q.items = nil // the backing array goes with the last request
	}
	q.mu.Unlock()
	if more {
		q.signal()
	}
	return s, true
}

func (q *searchQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// len is the number of requests waiting.
func (q *searchQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
