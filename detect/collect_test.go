package detect

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"
)

// collectable is the rule a collection applies to one bucket at limit,
// written out as a visit of every source once tested it: drained (a
// window's last slot ended, or a leaky bucket empty or leaked out), out of
// its blackhole, and no event since, all before the limit.
func collectable(b *Bucket, s *Scenario, limit int64) bool {
	drained := b.Level == 0 || b.LastLeak+int64(b.Level)*int64(s.Leak) < limit
	if s.Trigger == TriggerWindow {
		drained = windowEnd(b, s) < limit
	}
	return drained && b.Blackhole < limit && b.LastT < limit
}

// TestCollect_DropsExactlyWhatAVisitOfEverySourceWould: the due heap lets
// a collection visit only the sources it may change. Over a random stream
// (leaky, distinct, window, range-scoped and grouped scenarios; events out
// of order, bursts that overflow, jumps of many minutes; restores from the
// state midway; a low source bound), every collection drops exactly the
// buckets collectable at its limit and leaves none that is.
func TestCollect_DropsExactlyWhatAVisitOfEverySourceWould(t *testing.T) {
	rules, err := Parse([]byte(`
scenarios:
  - {name: bf, filter: {status: [401]}, trigger: leaky, capacity: 3, leak: 10s, blackhole: 15m}
  - {name: slow, filter: {status: [401]}, trigger: leaky, capacity: 20, leak: 5m, blackhole: 1m}
  - {name: scan, filter: {status: [404]}, trigger: distinct, distinct: path, capacity: 4, leak: 20s, blackhole: 30s}
  - {name: win, filter: {status: [404]}, trigger: window, window: 15m, distinct: path, capacity: 3, blackhole: 20m}
  - {name: net, filter: {status: [403]}, trigger: leaky, scope: range, capacity: 5, leak: 30s, blackhole: 5m}
  - {name: ua, filter: {status: [401, 403]}, trigger: leaky, groupby: ip_user_agent, capacity: 2, leak: 1m, blackhole: 3m}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			d := NewDetector(rules, 0, nil)
			d.maxSources = 600
			at := time.Duration(0)
			checks, dropped := 0, 0
			for off := int64(0); off < 40_000; off++ {
				switch x := r.IntN(1000); {
				case x < 2:
					at += time.Duration(5+r.IntN(30)) * time.Minute // a quiet spell
				case x < 50:
					at -= time.Duration(r.IntN(120)) * time.Second // out of order
				default:
					at += time.Duration(r.IntN(300)) * time.Millisecond
				}
				ip := fmt.Sprintf("10.%d.%d.%d", r.IntN(3), r.IntN(4), r.IntN(20))
				status := []int{200, 401, 403, 404}[r.IntN(4)]
				e, line := entry(ip, "GET", fmt.Sprintf("/p%d", r.IntN(12)), status, at, fmt.Sprintf("ua%d", r.IntN(3)))
				d.Observe(&e, off, line)
				if r.IntN(500) == 0 {
					d.Flush()
				}
				if r.IntN(3000) == 0 {
					// A new owner restores the state and goes on.
					d = NewDetector(rules, 0, d.State())
					d.maxSources = 600
				}
				if r.IntN(97) != 0 {
					continue
				}
				limit := d.watermark - int64(gcGrace)
				want := map[string]bool{}
				for key, src := range d.sources {
					for _, sl := range src.slots {
						if sl.b != nil && collectable(sl.b, rules.Scenarios[sl.scenario], limit) {
							want[fmt.Sprint(key, "/", sl.scenario)] = true
						}
					}
				}
				before, bounded := d.buckets(), len(d.sources) > d.maxSources
				d.collect()
				after := d.buckets()
				if bounded {
					continue // the bound may drop idle sources too: checked elsewhere
				}
				for k := range before {
					if !after[k] && !want[k] {
						t.Fatalf("offset %d: bucket %s dropped, not collectable at %d", off, k, limit)
					}
				}
				for k := range want {
					if after[k] {
						t.Fatalf("offset %d: bucket %s kept, collectable at %d", off, k, limit)
					}
				}
				checks++
				dropped += len(want)
			}
			if checks < 100 || dropped < 100 {
				t.Fatalf("%d checks dropped %d buckets: the stream does not exercise collection", checks, dropped)
			}
		})
	}
}

// buckets names the detector's live buckets, "key/scenario".
func (d *Detector) buckets() map[string]bool {
	m := map[string]bool{}
	for key, src := range d.sources {
		for _, sl := range src.slots {
			if sl.b != nil {
				m[fmt.Sprint(key, "/", sl.scenario)] = true
			}
		}
	}
	return m
}

// A source is 48 bytes, its due time in what its size class had spare
// (40 before it); one more word would put every source, a client's worth
// of detector memory at 1,000,000 clients, in the 64-byte class.
func TestSource_StaysInItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(source{}); n > 48 {
		t.Fatalf("a source is %d bytes, over the 48 of its size class", n)
	}
}
