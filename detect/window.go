package detect

import "math/bits"

// A window trigger counts events (or distinct values) over a sliding span of
// event time, such as an hour: the slow scans a leaky bucket forgets (one
// probe every minute or two) and the distributed ones (a few probes from
// each of many addresses of one network).
//
// Memory is bounded whatever the traffic: the window is cut into
// windowSlots slots, each holding a count and a 128-bit sketch of the
// values seen (bit h%128 of each value's hash), never a list. The distinct
// count is the number of bits set in the union of the slots' sketches:
// exact until two values share a bit, then lower, never higher, so a
// threshold fires late rather than falsely (with 20 distinct values the
// count is 18 or more nine times in ten). It saturates at 128: thresholds
// are meant for tens. The window slides slot by slot: an event counts for
// between window-slot and window of event time.
//
// The slots live in the bucket's Keys, three words each (slot index << 32
// | count, then the sketch), oldest first, so the replicated and binary
// forms of a bucket are unchanged.
const (
	windowSlots = 6
	slotWords   = 3
)

// windowPour adds an event at t (with the hash key of its distinct value)
// to b's window and returns the new level (events, or distinct values, in
// the window) and the events counted in it; counted is false for an event
// older than the window, fresh false for a value the window already holds.
func windowPour(b *Bucket, s *Scenario, t int64, key uint64) (level, total int, counted, fresh bool) {
	slot := int64(s.Window) / windowSlots
	idx := max(t, 0) / slot
	ks := b.Keys
	cur := idx
	if n := len(ks); n >= slotWords {
		cur = max(cur, int64(ks[n-slotWords]>>32))
	}
	// Slots that left the window go.
	drop := 0
	for drop < len(ks) && int64(ks[drop]>>32) <= cur-windowSlots {
		drop += slotWords
	}
	if drop > 0 {
		ks = append(ks[:0], ks[drop:]...)
	}
	if idx <= cur-windowSlots {
		b.Keys = ks
		return windowLevel(b, s), windowTotal(ks), false, false
	}
	// The event's slot, kept in order (an event out of order by less than
	// the window goes to its own slot).
	pos := len(ks)
	for pos >= slotWords && int64(ks[pos-slotWords]>>32) > idx {
		pos -= slotWords
	}
	if pos < slotWords || int64(ks[pos-slotWords]>>32) != idx {
		ks = append(ks, 0, 0, 0)
		copy(ks[pos+slotWords:], ks[pos:])
		ks[pos], ks[pos+1], ks[pos+2] = uint64(idx)<<32, 0, 0
		pos += slotWords
	}
	i := pos - slotWords
	fresh = true
	if s.Distinct != "" {
		w, bit := 1+int(key>>6&1), uint64(1)<<(key&63)
		var union uint64
		for j := w; j < len(ks); j += slotWords {
			union |= ks[j]
		}
		if union&bit == 0 {
			ks[i+w] |= bit
		} else {
			fresh = false
		}
	}
	if uint32(ks[i]) < 1<<32-1 {
		ks[i]++
	}
	b.Keys = ks
	return windowLevel(b, s), windowTotal(ks), true, fresh
}

// windowLevel is what the window holds: events, or distinct values.
func windowLevel(b *Bucket, s *Scenario) int {
	ks := b.keys()
	if s.Distinct == "" {
		return windowTotal(ks)
	}
	var lo, hi uint64
	for j := 0; j+2 < len(ks); j += slotWords {
		lo |= ks[j+1]
		hi |= ks[j+2]
	}
	return bits.OnesCount64(lo) + bits.OnesCount64(hi)
}

func windowTotal(ks []uint64) int {
	n := 0
	for j := 0; j < len(ks); j += slotWords {
		n += int(uint32(ks[j]))
	}
	return n
}

// windowEnd is when the newest slot of b's window leaves it: after that
// the bucket holds nothing.
func windowEnd(b *Bucket, s *Scenario) int64 {
	ks := b.keys()
	if len(ks) < slotWords {
		return 0
	}
	slot := int64(s.Window) / windowSlots
	return (int64(ks[len(ks)-slotWords]>>32) + windowSlots) * slot
}
