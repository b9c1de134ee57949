package detect

import (
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
// well before the watermark: they behave as absent ones would.
func (d *Detector) collect() {
	limit := d.watermark - int64(gcGrace)
	for ip, src := range d.sources {
		live := false
		for k := range src.slots {
			b := src.slots[k].b
			if b == nil {
				continue
			}
			s := d.rules.Scenarios[src.slots[k].scenario]
			drained := b.Level == 0 || b.LastLeak+int64(b.Level)*int64(s.Leak) < limit
			if s.Trigger == TriggerWindow {
				drained = windowEnd(b, s) < limit
			}
			if drained && b.Blackhole < limit && b.LastT < limit {
				src.slots[k].b = nil
				if _, ok := d.dirty[ip]; !ok {
					d.dirty[ip] = src
					d.pending += len(ip) + pendingPerSource
				}
				continue
			}
			live = true
		}
		if !live {
			if _, dirty := d.dirty[ip]; !dirty {
				delete(d.sources, ip)
			}
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
			d.dirty[x.key] = src
		}
	}
}
