package dashboard

import (
	"math"
	"sort"
	"sync"
	"time"
)

// Rates turns counters sampled now and then into rates over the last
// Window: a node feeds it what it counts (committed offsets, commits) each
// time it builds an event, and reads back how fast they moved. It is safe
// for concurrent use.
type Rates struct {
	// Window is how far back rates look; older samples are dropped.
	Window time.Duration
	// MinSpan is the shortest time between samples that gives a rate.
	MinSpan time.Duration

	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at     time.Time
	values map[string]float64
}

// Add records the counters' values at at.
func (r *Rates) Add(at time.Time, values map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.samples); n > 0 && !at.After(r.samples[n-1].at) {
		return
	}
	r.samples = append(r.samples, sample{at: at, values: values})
	cut := 0
	for cut < len(r.samples) && r.samples[cut].at.Before(at.Add(-r.Window)) {
		cut++
	}
	r.samples = r.samples[cut:]
}

// Rate is key's change per second between the oldest and the newest sample
// holding it; false when they are less than MinSpan apart or the counter
// went back (a restart).
func (r *Rates) Rate(key string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < 2 {
		return 0, false
	}
	last := r.samples[len(r.samples)-1]
	v1, ok := last.values[key]
	if !ok {
		return 0, false
	}
	for _, s := range r.samples[:len(r.samples)-1] {
		v0, ok := s.values[key]
		if !ok {
			continue
		}
		dt := last.at.Sub(s.at)
		if dt < r.MinSpan || v1 < v0 {
			return 0, false
		}
		return (v1 - v0) / dt.Seconds(), true
	}
	return 0, false
}

// Histogram is a cumulative histogram: Counts[i] observations at or below
// Bounds[i] (ascending; the last may be +Inf).
type Histogram struct {
	Bounds []float64
	Counts []uint64
}

// Sub returns h minus an earlier reading of the same histogram, or false if
// the two do not line up (other buckets, or a counter that went back).
func (h Histogram) Sub(old Histogram) (Histogram, bool) {
	if len(h.Bounds) != len(old.Bounds) || len(h.Counts) != len(old.Counts) {
		return Histogram{}, false
	}
	out := Histogram{Bounds: h.Bounds, Counts: make([]uint64, len(h.Counts))}
	for i := range h.Counts {
		if h.Bounds[i] != old.Bounds[i] || h.Counts[i] < old.Counts[i] {
			return Histogram{}, false
		}
		out.Counts[i] = h.Counts[i] - old.Counts[i]
	}
	return out, true
}

// Quantile estimates the q-quantile (0 < q < 1) by linear interpolation
// within the bucket that holds it, as Prometheus' histogram_quantile does;
// NaN without observations. A quantile in the +Inf bucket is the highest
// finite bound.
func (h Histogram) Quantile(q float64) float64 {
	n := len(h.Counts)
	if n == 0 || h.Counts[n-1] == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Counts[n-1])
	i := sort.Search(n, func(i int) bool { return float64(h.Counts[i]) >= rank })
	if i >= n {
		i = n - 1
	}
	if math.IsInf(h.Bounds[i], 1) {
		if i == 0 {
			return math.NaN()
		}
		return h.Bounds[i-1]
	}
	lo, below := 0.0, uint64(0)
	if i > 0 {
		lo, below = h.Bounds[i-1], h.Counts[i-1]
	}
	in := h.Counts[i] - below
	if in == 0 {
		return h.Bounds[i]
	}
	return lo + (h.Bounds[i]-lo)*(rank-float64(below))/float64(in)
}

// Latencies keeps readings of a histogram over the last Window and
// answers quantiles of the observations made within it.
type Latencies struct {
	Window time.Duration

	mu       sync.Mutex
	readings []reading
}

type reading struct {
	at time.Time
	h  Histogram
}

// Add records a reading taken at at.
func (l *Latencies) Add(at time.Time, h Histogram) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.readings = append(l.readings, reading{at, h})
	cut := 0
	for cut < len(l.readings) && l.readings[cut].at.Before(at.Add(-l.Window)) {
		cut++
	}
	l.readings = l.readings[cut:]
}

// Quantiles returns p50 and p99, scaled by unit (1000 for seconds to
// milliseconds), of the observations since the oldest reading kept; nil
// when there were none.
func (l *Latencies) Quantiles(unit float64) *Quantiles {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.readings) < 2 {
		return nil
	}
	d, ok := l.readings[len(l.readings)-1].h.Sub(l.readings[0].h)
	if !ok {
		l.readings = l.readings[len(l.readings)-1:]
		return nil
	}
	p50, p99 := d.Quantile(0.5), d.Quantile(0.99)
	if math.IsNaN(p50) || math.IsNaN(p99) {
		return nil
	}
	return &Quantiles{P50: round3(p50 * unit), P99: round3(p99 * unit)}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
