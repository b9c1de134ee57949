package backpressure

import (
	"math"
	"testing"
	"time"
)

// The first batch gives no rate; then the rate follows what the pipeline
// achieves, falls when batches slow down and a backlog builds, and comes
// back up when they are fast again; it never drops below MinRate.
func TestEstimator_FollowsThePipeline(t *testing.T) {
	e := New(DefaultConfig(200 * time.Millisecond))
	now := time.Unix(1000, 0)
	step := func(records int, proc, sched time.Duration) (float64, bool) {
		now = now.Add(200 * time.Millisecond)
		return e.Observe(now, records, proc, sched)
	}
	if _, ok := step(10000, 100*time.Millisecond, 0); ok {
		t.Fatal("a rate from the first batch")
	}
	// Steady: 10,000 records in 100 ms is 100,000 records/s.
	r, ok := step(10000, 100*time.Millisecond, 0)
	if !ok || math.Abs(r-100000) > 1 {
		t.Fatalf("steady rate %g, %v", r, ok)
	}
	// Slow commits: 10,000 records take 1 s, and batches queue up.
	var slow float64
	for i := 0; i < 10; i++ {
		slow, _ = step(10000, time.Second, 800*time.Millisecond)
	}
	if slow >= 10000 || slow < 100 {
		t.Fatalf("under slow commits the rate is %g; want it at or under what the pipeline achieves (10,000/s), not below the floor", slow)
	}
	// Recovery.
	var fast float64
	for i := 0; i < 10; i++ {
		fast, _ = step(int(max(slow, 100)*0.2), 20*time.Millisecond, 0)
	}
	if fast <= slow {
		t.Fatalf("after recovery the rate is %g, not above %g", fast, slow)
	}
	// A collapse never goes under MinRate.
	for i := 0; i < 20; i++ {
		r, _ = step(1, 10*time.Second, 10*time.Second)
	}
	if r != 100 {
		t.Fatalf("floor: %g, want 100", r)
	}
}

func TestEstimator_IgnoresEmptyAndOutOfOrderBatches(t *testing.T) {
	e := New(DefaultConfig(time.Second))
	at := time.Unix(10, 0)
	for _, c := range []struct {
		at   time.Time
		n    int
		proc time.Duration
	}{{at, 0, time.Second}, {at, 10, 0}} {
		if _, ok := e.Observe(c.at, c.n, c.proc, 0); ok {
			t.Errorf("a rate from %+v", c)
		}
	}
	e.Observe(at, 100, time.Second, 0)
	e.Observe(at.Add(time.Second), 100, time.Second, 0)
	if _, ok := e.Observe(at.Add(time.Second), 100, time.Second, 0); ok {
		t.Error("a rate from a batch not after the last one")
	}
}

func TestConfig_Validate(t *testing.T) {
	if err := DefaultConfig(time.Second).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{BatchInterval: 0, MinRate: 1}, {BatchInterval: time.Second, MinRate: 0}, {BatchInterval: time.Second, MinRate: 1, Integral: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
