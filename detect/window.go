package detect

import "math/bits"

// A window trigger counts events (or distinct values) over a sliding span of
// event time, such as an hour: the slow scans a leaky bucket forgets (one
// probe every minute or two) and the distributed ones (a few probes from
// each of many addresses of one network).
//
// Memory is bounded whatever the traffic: the window is cut into
// windowSlots slots, each holding a count and a 64-bit sketch of the values
// seen (bit h%64 of each value's hash), never a list. The distinct count is
// the linear-counting estimate of the sketches' union, exact enough (about
// ±10% around 20) for thresholds, and a deterministic function of the
// events. The window slides slot by slot: an event counts for between
// window-slot and window of event time.
//
// The slots live in the bucket's Keys, two words each (slot index << 32 |
// count, sketch), oldest first, so the replicated and binary forms of a
// bucket are unchanged.
const windowSlots = 6

// lcEstimate[b] is the linear-counting estimate of distinct values behind
// b bits set of 64: round(-64 ln(1 - b/64)), computed once and written down
// so that every node and architecture gets the same integers.
var lcEstimate = [65]int{0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 15, 16, 17, 18, 20, 21, 23, 24, 25, 27, 28, 30, 32, 33, 35,
	37, 39, 40, 42, 44, 46, 48, 51, 53, 55, 58, 60, 63, 65, 68, 71, 74, 78, 81, 85, 89, 93, 97, 102, 107, 113, 119, 126, 133, 142,
	151, 163, 177, 196, 222, 266, 311}

// windowPour adds an event at t (with the hash key of its distinct value)
// to b's window and returns the new level (events, or distinct values, in
// the window) and the events counted in it; counted is false for an event
// older than the window, fresh false for a value the window already holds.
func windowPour(b *Bucket, s *Scenario, t int64, key uint64) (level, total int, counted, fresh bool) {
	slot := int64(s.Window) / windowSlots
	idx := max(t, 0) / slot
	x := b.extra()
	ks := x.Keys
	cur := idx
	if n := len(ks); n > 0 {
		cur = max(cur, int64(ks[n-2]>>32))
	}
	// Slots that left the window go.
	drop := 0
	for drop < len(ks) && int64(ks[drop]>>32) <= cur-windowSlots {
		drop += 2
	}
	if drop > 0 {
		ks = append(ks[:0], ks[drop:]...)
	}
	if idx <= cur-windowSlots {
		x.Keys = ks
		return windowLevel(b, s), windowTotal(ks), false, false
	}
	// The event's slot, kept in order (an event out of order by less than
	// the window goes to its own slot).
	pos := len(ks)
	for pos >= 2 && int64(ks[pos-2]>>32) > idx {
		pos -= 2
	}
	if pos < 2 || int64(ks[pos-2]>>32) != idx {
		ks = append(ks, 0, 0)
		copy(ks[pos+2:], ks[pos:])
		ks[pos], ks[pos+1] = uint64(idx)<<32, 0
		pos += 2
	}
	i := pos - 2
	fresh = true
	if s.Distinct != "" {
		bit := uint64(1) << (key & 63)
		var union uint64
		for j := 1; j < len(ks); j += 2 {
			union |= ks[j]
		}
		if union&bit == 0 {
			ks[i+1] |= bit
		} else {
			fresh = false
		}
	}
	if uint32(ks[i]) < 1<<32-1 {
		ks[i]++
	}
	x.Keys = ks
	return windowLevel(b, s), windowTotal(ks), true, fresh
}

// windowLevel is what the window holds: events, or the estimate of
// distinct values.
func windowLevel(b *Bucket, s *Scenario) int {
	ks := b.keys()
	if s.Distinct == "" {
		return windowTotal(ks)
	}
	var union uint64
	for j := 1; j < len(ks); j += 2 {
		union |= ks[j]
	}
	return lcEstimate[bits.OnesCount64(union)]
}

func windowTotal(ks []uint64) int {
	n := 0
	for j := 0; j < len(ks); j += 2 {
		n += int(uint32(ks[j]))
	}
	return n
}

// windowEnd is when the newest slot of b's window leaves it: after that
// the bucket holds nothing.
func windowEnd(b *Bucket, s *Scenario) int64 {
	ks := b.keys()
	if len(ks) < 2 {
		return 0
	}
	slot := int64(s.Window) / windowSlots
	return (int64(ks[len(ks)-2]>>32) + windowSlots) * slot
}
