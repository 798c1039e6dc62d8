package consumer

import (
	"sync"
	"sync/atomic"
	"time"
)

// DeploymentStats counts what a deployment did in this process.
type DeploymentStats struct {
	Documents  atomic.Int64 // results published, errors included
	Errors     atomic.Int64 // error results published
	Inferences atomic.Int64 // infer requests answered, errors included
	Rejected   atomic.Int64 // infer requests refused with 429
	// BusyNanos is the time spent computing documents and requests.
	BusyNanos atomic.Int64

	mu sync.Mutex
	// minute is the minute (Unix time / 60) count belongs to; last the
	// count of the minute before; peak the highest whole-minute count.
	minute, count, last, peak int64
	lastAccess                time.Time
}

// done counts n documents or requests finished now.
func (s *DeploymentStats) done(n int64) {
	now := time.Now()
	m := now.Unix() / 60
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roll(m)
	s.count += n
	s.peak = max(s.peak, s.count)
	s.lastAccess = now
}

func (s *DeploymentStats) roll(m int64) {
	if m == s.minute {
		return
	}
	if m == s.minute+1 {
		s.last = s.count
	} else {
		s.last = 0
	}
	s.minute, s.count = m, 0
}

// Throughput returns the documents and requests finished in the last whole
// minute, the most in any minute so far (the current one included), and
// when the last one finished.
func (s *DeploymentStats) Throughput() (lastMinute, peakPerMinute int64, lastAccess time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roll(time.Now().Unix() / 60)
	return s.last, s.peak, s.lastAccess
}
