package controller

import (
	"math"
	"time"
)

// Thresholds of Elasticsearch's AdaptiveAllocationsScaler: scale up while
// the load per allocation exceeds 0.9, down while it would stay under 0.85
// with one allocation fewer.
const (
	scaleUpThreshold   = 0.9
	scaleDownThreshold = 0.85
	// DefaultMaxAllocations caps adaptive endpoints without a maximum.
	DefaultMaxAllocations = 32
)

// kalman1d is Elasticsearch's KalmanFilter1d: a one-dimensional Kalman
// filter whose process noise follows the measurements' variance, and which
// can detect a change of dynamics (a burst) and then follow it at once.
type kalman1d struct {
	smoothing  float64
	autoDetect bool

	value, variance float64
	has             bool
	changedLast     bool
}

func (k *kalman1d) add(x, v float64, dynamicsChanged bool) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return
	}
	// No measurement is exact: a zero variance (an inference time of 0,
	// when a heartbeat splits a group's time from its documents) would
	// make the gain 0/0.
	v = math.Max(v, 1e-12)
	if !k.has {
		k.value, k.variance, k.has = x, v, true
		return
	}
	q := v / k.smoothing
	changed := dynamicsChanged || k.autoDetect && (x-k.value)*(x-k.value)/(v+k.variance) > 100
	if changed || k.changedLast {
		q = x * x
	}
	k.changedLast = changed
	gain := (k.variance + q) / (k.variance + q + v)
	k.value += gain * (x - k.value)
	k.variance = (1 - gain) * (k.variance + q)
}

func (k *kalman1d) lower() float64 { return k.value - math.Sqrt(k.variance) }
func (k *kalman1d) upper() float64 { return k.value + math.Sqrt(k.variance) }

// ScalerConfig bounds and paces one adaptive endpoint's scaler.
type ScalerConfig struct {
	Min, Max int
	// ScaleToZeroAfter is the idle time after which an endpoint whose
	// minimum is 0 drops to no allocation.
	ScaleToZeroAfter time.Duration
	// Cooldown is how long after a scale-up no scale-down happens.
	Cooldown time.Duration
	// DrainTime is how fast a backlog should be worked off: queued work
	// counts as load of backlog × inference time / DrainTime. Elasticsearch
	// has no such term; it is what makes a burst of queued documents scale
	// an endpoint up within seconds instead of after the rate filter has
	// caught up.
	DrainTime time.Duration
}

// Sample is one interval's measurement of an endpoint.
type Sample struct {
	Elapsed time.Duration
	// Completed counts the documents and requests finished in the
	// interval, Busy the compute time they took.
	Completed int64
	Busy      time.Duration
	// Backlog is the work waiting at the end of the interval: documents
	// pending or unacknowledged and requests queued.
	Backlog int64
	// Demand reports a request that found no allocation (scale from zero).
	Demand bool
}

// Scaler decides an adaptive endpoint's allocations from its load, as
// Elasticsearch's AdaptiveAllocationsScaler does, and reacts to backlog.
type Scaler struct {
	cfg     ScalerConfig
	current int
	rate    kalman1d
	time    kalman1d
	// timeChanged forces the time filter to follow the next sample: the
	// allocation count changed.
	timeChanged bool
	prevBacklog int64
	primed      bool
	idle        time.Duration
	lastUp      time.Time
	last        estimate
}

// estimate is the scaler's last view, for stats.
type estimate struct {
	rate, time float64
	backlog    int64
	needed     int
}

// NewScaler starts a scaler at current allocations.
func NewScaler(cfg ScalerConfig, current int) *Scaler {
	if cfg.Max <= 0 {
		cfg.Max = DefaultMaxAllocations
	}
	return &Scaler{cfg: cfg, current: current,
		rate: kalman1d{smoothing: 100, autoDetect: true}, time: kalman1d{smoothing: 100}}
}

// SetBounds changes the minimum and maximum (an _update).
func (s *Scaler) SetBounds(minimum, maximum int) {
	if maximum <= 0 {
		maximum = DefaultMaxAllocations
	}
	s.cfg.Min, s.cfg.Max = minimum, maximum
}

// Current is the allocation count last decided.
func (s *Scaler) Current() int { return s.current }

// Min is the endpoint's minimum allocations.
func (s *Scaler) Min() int { return s.cfg.Min }

// Set makes n the current count: placement gave the endpoint fewer
// allocations than decided (none fitted, or an idle one was reclaimed).
func (s *Scaler) Set(n int) {
	if n != s.current {
		s.current = n
		s.timeChanged = true
	}
}

// Observe records one interval and returns the allocations the endpoint
// should have now.
func (s *Scaler) Observe(now time.Time, in Sample) int {
	dt := in.Elapsed.Seconds()
	// What arrived is what finished plus what the queue grew by: a burst
	// counts once, when it queues, not again as it drains.
	grew := in.Backlog
	if s.primed {
		grew -= s.prevBacklog
	}
	arrivals := max(0, in.Completed+grew)
	s.prevBacklog, s.primed = in.Backlog, true
	if dt > 0 {
		r := float64(arrivals) / dt
		est := r
		if s.rate.has {
			est = s.rate.value
		}
		s.rate.add(r, math.Max(1, est*dt)/(dt*dt), false)
	}
	if in.Completed > 0 {
		t := in.Busy.Seconds() / float64(in.Completed)
		est := t
		if s.time.has {
			est = s.time.value
		}
		s.time.add(t, est*est/float64(in.Completed), s.timeChanged)
		s.timeChanged = false
	}
	busy := arrivals > 0 || in.Backlog > 0 || in.Demand
	if busy {
		s.idle = 0
	} else {
		s.idle += in.Elapsed
	}
	n := s.decide(now, in, busy)
	if n != s.current {
		if n > s.current {
			s.lastUp = now
		}
		s.current = n
		s.timeChanged = true
	}
	return n
}

func (s *Scaler) decide(now time.Time, in Sample, busy bool) int {
	timeLower, timeUpper, timeEst := 1.0, 1.0, 1.0
	if s.time.has {
		timeLower, timeUpper, timeEst = math.Max(0, s.time.lower()), s.time.upper(), s.time.value
	}
	loadLower, loadUpper := 0.0, 0.0
	if s.rate.has {
		loadLower = math.Max(0, s.rate.lower()) * timeLower
		loadUpper = s.rate.upper() * timeUpper
	}
	if in.Backlog > 0 && s.cfg.DrainTime > 0 {
		drain := float64(in.Backlog) * timeEst / s.cfg.DrainTime.Seconds()
		loadLower += drain
		loadUpper += drain
	}
	n := max(s.current, 1)
	for loadLower/float64(n) > scaleUpThreshold {
		n++
	}
	for n > 1 && loadUpper/float64(n-1) < scaleDownThreshold {
		n--
	}
	s.last = estimate{rate: s.rate.value, time: s.time.value, backlog: in.Backlog, needed: n}
	n = min(max(n, s.cfg.Min), s.cfg.Max)
	if s.current == 0 && !busy && s.cfg.Min == 0 {
		n = 0 // stays at zero until work arrives; a minimum raised by an _update is met at once
	}
	// Never give up allocations while work waits, nor right after adding
	// some: on steady load the count must not flap.
	if n < s.current && (in.Backlog > 0 || now.Sub(s.lastUp) < s.cfg.Cooldown) {
		n = s.current
	}
	if s.cfg.Min == 0 && s.cfg.ScaleToZeroAfter > 0 && s.idle >= s.cfg.ScaleToZeroAfter {
		n = 0
	}
	return n
}

// Stats returns the scaler's current estimates.
func (s *Scaler) Stats() (rate, inferenceTime float64, backlog int64, needed int) {
	return s.last.rate, s.last.time, s.last.backlog, s.last.needed
}
