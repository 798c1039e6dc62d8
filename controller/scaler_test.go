package controller

import (
	"math"
	"testing"
	"time"
)

// run feeds a scaler one sample per second and returns its decisions.
func run(s *Scaler, start time.Time, samples []Sample) []int {
	var out []int
	for i, in := range samples {
		if in.Elapsed == 0 {
			in.Elapsed = time.Second
		}
		out = append(out, s.Observe(start.Add(time.Duration(i+1)*time.Second), in))
	}
	return out
}

func repeat(n int, in Sample) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = in
	}
	return out
}

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cfg() ScalerConfig {
	return ScalerConfig{Min: 0, Max: 4, ScaleToZeroAfter: 30 * time.Second, Cooldown: 20 * time.Second, DrainTime: 10 * time.Second}
}

func TestScalerBurstScalesUpWithinSeconds(t *testing.T) {
	s := NewScaler(cfg(), 1)
	// Idle, then 400 documents queue at once; each takes 100 ms, one
	// allocation finishes 10 a second.
	got := run(s, start, append(repeat(5, Sample{}), Sample{Completed: 0, Backlog: 400}, Sample{Completed: 10, Busy: time.Second, Backlog: 390}))
	if got[5] < 2 {
		t.Fatalf("decisions %v: no scale-up the second the burst queued", got)
	}
	if got[6] != 4 {
		t.Fatalf("decisions %v: want the maximum, 4, while 390 documents wait", got)
	}
}

func TestScalerSteadyLoadDoesNotFlap(t *testing.T) {
	s := NewScaler(cfg(), 2)
	// 15 requests a second of 100 ms: 1.5 allocations of work, noisy.
	var samples []Sample
	for i := range 120 {
		n := int64(15 + []int{-3, 2, 0, 4, -2, 1, -1, 3}[i%8])
		samples = append(samples, Sample{Completed: n, Busy: time.Duration(n) * 100 * time.Millisecond})
	}
	got := run(s, start, samples)
	changes := 0
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1] {
			changes++
		}
	}
	if changes > 1 || got[len(got)-1] != 2 {
		t.Fatalf("decisions changed %d times, ending at %d: %v", changes, got[len(got)-1], got)
	}
}

func TestScalerKeepsAllocationsWhileBacklogRemains(t *testing.T) {
	c := cfg()
	c.Cooldown = 0
	s := NewScaler(c, 4)
	// Work arrives slower than 4 allocations need, but 100 documents wait.
	got := run(s, start, repeat(30, Sample{Completed: 1, Busy: 100 * time.Millisecond, Backlog: 100}))
	for i, n := range got {
		if n < 4 {
			t.Fatalf("second %d: scaled down to %d with a backlog: %v", i, n, got)
		}
	}
	// The backlog gone and the load light, it scales down.
	got = run(s, start.Add(time.Minute), repeat(10, Sample{Completed: 1, Busy: 100 * time.Millisecond}))
	if got[len(got)-1] != 1 {
		t.Fatalf("after the backlog: %v", got)
	}
}

func TestScalerCooldownAfterScaleUp(t *testing.T) {
	s := NewScaler(cfg(), 1)
	got := run(s, start, []Sample{{Backlog: 200}})
	if got[0] < 2 {
		t.Fatalf("no scale-up: %v", got)
	}
	// Idle at once: within the 20 s cooldown nothing is given back.
	got = run(s, start.Add(time.Second), repeat(25, Sample{}))
	for i := range 18 {
		if got[i] != 4 {
			t.Fatalf("second %d of the cooldown: %v", i, got)
		}
	}
	if got[24] >= 4 {
		t.Fatalf("never scaled down after the cooldown: %v", got)
	}
}

func TestScalerToZeroAndBack(t *testing.T) {
	s := NewScaler(cfg(), 1)
	got := run(s, start, repeat(31, Sample{}))
	if got[28] != 1 || got[30] != 0 {
		t.Fatalf("want 1 until 30 s idle, then 0: %v", got)
	}
	// Stays at zero while idle, whatever the estimates.
	if got := run(s, start.Add(time.Minute), repeat(5, Sample{})); got[4] != 0 {
		t.Fatalf("woke up without work: %v", got)
	}
	// A request that found no allocation brings one back at once, and so
	// does a document queued.
	if got := run(s, start.Add(2*time.Minute), []Sample{{Demand: true}}); got[0] != 1 {
		t.Fatalf("demand at zero: %v", got)
	}
	s = NewScaler(cfg(), 0)
	if got := run(s, start, []Sample{{Backlog: 1}}); got[0] != 1 {
		t.Fatalf("one queued document at zero: %v", got)
	}
}

func TestScalerBounds(t *testing.T) {
	c := cfg()
	c.Min, c.Max = 2, 3
	s := NewScaler(c, 2)
	got := run(s, start, append(repeat(3, Sample{Backlog: 10000}), repeat(60, Sample{})...))
	if got[0] != 3 {
		t.Fatalf("max 3: %v", got)
	}
	if got[len(got)-1] != 2 {
		t.Fatalf("min 2 (never zero): %v", got)
	}
	// An endpoint asleep at zero whose minimum an _update raises gets it without waiting for work.
	z := NewScaler(cfg(), 0)
	z.SetBounds(1, 4)
	if got := run(z, start, []Sample{{}}); got[0] != 1 {
		t.Fatalf("minimum raised from 0 to 1 at zero: %v", got)
	}
	s.SetBounds(1, 0) // no maximum: 32
	if got := run(s, start.Add(time.Hour), []Sample{{Backlog: 1000000}}); got[0] != DefaultMaxAllocations {
		t.Fatalf("no maximum: %v", got)
	}
}

func TestScalerSettlesAfterABurstDrains(t *testing.T) {
	c := cfg()
	c.Cooldown = 5 * time.Second
	s := NewScaler(c, 1)
	// 400 documents queue; four allocations finish 40 a second of 100 ms
	// each while 12 a second keep arriving.
	samples := []Sample{{Backlog: 400}}
	backlog := int64(400)
	for backlog > 0 {
		backlog = max(0, backlog-28)
		samples = append(samples, Sample{Completed: 40, Busy: 4 * time.Second, Backlog: backlog})
	}
	drained := len(samples)
	samples = append(samples, repeat(20, Sample{Completed: 12, Busy: 1200 * time.Millisecond})...)
	got := run(s, start, samples)
	if got[1] != 4 {
		t.Fatalf("decisions %v: want 4 during the burst", got)
	}
	// 1.2 allocations of steady work: two, within ten seconds of the drain.
	if n := got[drained+10]; n != 2 {
		t.Fatalf("decisions %v: %d allocations ten seconds after the drain, want 2", got, n)
	}
}

func TestScalerSurvivesZeroTimes(t *testing.T) {
	s := NewScaler(cfg(), 1)
	// A heartbeat can report documents without their time (and the time
	// of a group without its documents): inference times of zero.
	got := run(s, start, append(repeat(5, Sample{Completed: 10}), Sample{Completed: 10, Busy: time.Second}, Sample{Completed: 5}))
	rate, inference, _, _ := s.Stats()
	if math.IsNaN(rate) || math.IsNaN(inference) || got[len(got)-1] < 1 {
		t.Fatalf("rate %v, inference time %v, decisions %v", rate, inference, got)
	}
}
