package consumer

import (
	"sync"
	"testing"
	"time"
)

func TestSearchQueue(t *testing.T) {
	q := newSearchQueue(2)
	a, b, c := search{queued: time.Unix(1, 0)}, search{queued: time.Unix(2, 0)}, search{queued: time.Unix(3, 0)}
	if !q.push(a) || !q.push(b) || q.push(c) {
		t.Fatal("capacity 2: want two pushes taken and the third refused")
	}
	if q.len() != 2 {
		t.Fatalf("len %d", q.len())
	}
	if got, ok := q.pop(); !ok || got.queued != a.queued {
		t.Fatalf("first pop %v %v; want the oldest", got.queued, ok)
	}
	if got, ok := q.pop(); !ok || got.queued != b.queued {
		t.Fatalf("second pop %v %v", got.queued, ok)
	}
	if _, ok := q.pop(); ok || q.items != nil {
		t.Fatalf("empty queue popped, or kept its array (%d)", cap(q.items))
	}
}

// TestSearchQueueWakesEveryLane: requests pushed while lanes wait on ready
// are all served, whichever lane takes the signal.
func TestSearchQueueWakesEveryLane(t *testing.T) {
	q := newSearchQueue(1000)
	const lanes, requests = 4, 500
	served := make(chan struct{}, requests)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, ok := q.pop(); ok {
					served <- struct{}{}
					continue
				}
				select {
				case <-done:
					return
				case <-q.ready:
				}
			}
		}()
	}
	for range requests {
		if !q.push(search{}) {
			t.Fatal("push refused")
		}
	}
	timeout := time.After(30 * time.Second)
	for i := range requests {
		select {
		case <-served:
		case <-timeout:
			t.Fatalf("%d of %d requests served", i, requests)
		}
	}
	close(done)
	wg.Wait()
}
