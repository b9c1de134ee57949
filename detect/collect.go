package detect

import (
	"math"
	"sort"
	"time"
)

// Collection keeps a partition's memory bounded: buckets that would behave
// as absent ones are dropped, and past MaxSources the idlest sources go.
// It runs at offsets, not at batch ends, so the same records leave the same
// state whatever the batching.

const (
	// gcGrace: a drained bucket is dropped only once the partition's newest
	// event is this far past it, so records out of order by less than this
	// are judged as if nothing had been dropped.
	gcGrace = 10 * time.Minute
	// gcEvery: drained buckets are collected when a partition's offset
	// passes a multiple of this, a point that does not depend on batching.
	gcEvery = 4096
)

// MaxSources bounds the sources (client IPs, or IP and grouped value) a
// partition's detector keeps; past it, at a collection point, the sources
// idle the longest are dropped first (ties by key), so memory stays bounded
// under a flood of distinct addresses and the choice stays deterministic.
const MaxSources = 500_000

// collect drops buckets that are drained and out of their blackhole since
// well before the watermark: they behave as absent ones would. It visits
// only the sources the due heap holds before the limit, and drops exactly
// what a visit of every source would: a bucket is collectable once the
// limit passes its slotDue, and each source's entry is at or before the
// least slotDue of its buckets (poured lowers it when a pour brings one
// earlier), so none is missed.
func (d *Detector) collect() {
	limit := d.watermark - int64(gcGrace)
	for len(d.dues) > 0 && d.dues[0].t < limit {
		e := d.dues.pop()
		if e.t == e.src.due { // else a later pour or a sweep moved it
			d.sweep(e.src, limit)
		}
	}
	if over := len(d.sources) - d.maxSources; over > 0 {
		type idle struct {
			key  string
			last int64
		}
		all := make([]idle, 0, len(d.sources))
		for key, src := range d.sources {
			var last int64
			for _, sl := range src.slots {
				if sl.b != nil {
					last = max(last, sl.b.LastT)
				}
			}
			all = append(all, idle{key, last})
		}
		sort.Slice(all, func(i, j int) bool {
			if all[i].last != all[j].last {
				return all[i].last < all[j].last
			}
			return all[i].key < all[j].key
		})
		for _, x := range all[:over] {
			src := d.sources[x.key]
			for k := range src.slots {
				src.slots[k].b = nil
			}
			src.due = math.MaxInt64
			d.dirty[x.key] = src
		}
	}
}

// sweep drops src's buckets collectable at limit, and schedules it again
// at its next due time; a source left with no bucket and no change to
// replicate is forgotten.
func (d *Detector) sweep(src *source, limit int64) {
	next := int64(math.MaxInt64)
	for k := range src.slots {
		b := src.slots[k].b
		if b == nil {
			continue
		}
		if t := slotDue(b, d.rules.Scenarios[src.slots[k].scenario]); t >= limit {
			next = min(next, t)
			continue
		}
		src.slots[k].b = nil
		if _, ok := d.dirty[src.key]; !ok {
			d.dirty[src.key] = src
			d.pending += len(src.key) + pendingPerSource
		}
	}
	src.due = next
	if next != math.MaxInt64 {
		d.dues.push(dueEntry{next, src})
		return
	}
	if _, dirty := d.dirty[src.key]; !dirty {
		delete(d.sources, src.key)
	}
}

// slotDue is the time from which b is collectable: once the limit
// (watermark less gcGrace) is past it, b is drained, out of its blackhole
// and has seen no event since.
func slotDue(b *Bucket, s *Scenario) int64 {
	t := max(b.Blackhole, b.LastT)
	switch {
	case s.Trigger == TriggerWindow:
		t = max(t, windowEnd(b, s))
	case b.Level > 0:
		t = max(t, b.LastLeak+int64(b.Level)*int64(s.Leak))
	}
	return t
}

// poured keeps src's entry in the due heap at or before the slotDue of
// its bucket for scenario i, which a pour just changed: most pours only
// put it later, some (an overflow, a window that slid) earlier.
func (d *Detector) poured(src *source, i int) {
	if d.Offline {
		return
	}
	if b := src.bucket(i); b != nil {
		if t := slotDue(b, d.rules.Scenarios[i]); t < src.due {
			src.due = t
			d.dues.push(dueEntry{t, src})
		}
	}
}

// schedule gives a restored source its entry in the due heap: at the
// least slotDue of its buckets, or at once when it has none (the first
// collection forgets it).
func (d *Detector) schedule(src *source) {
	src.due = math.MinInt64
	for _, sl := range src.slots {
		if sl.b != nil {
			t := slotDue(sl.b, d.rules.Scenarios[sl.scenario])
			if src.due == math.MinInt64 || t < src.due {
				src.due = t
			}
		}
	}
	d.dues.push(dueEntry{src.due, src})
}

// dueEntry is a source and a time at or before its first bucket may be
// collectable.
type dueEntry struct {
	t   int64
	src *source
}

// dueHeap is a min-heap of entries by time.
type dueHeap []dueEntry

func (h *dueHeap) push(e dueEntry) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if q[p].t <= q[i].t {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
}

func (h *dueHeap) pop() dueEntry {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = dueEntry{}
	q = q[:last]
	for i := 0; ; {
		c := 2*i + 1
		if c >= len(q) {
			break
		}
		if c+1 < len(q) && q[c+1].t < q[c].t {
			c++
		}
		if q[i].t <= q[c].t {
			break
		}
		q[i], q[c] = q[c], q[i]
		i = c
	}
	*h = q
	return top
}
