package detect

// Buckets are kept per source: a client IP, a network for a range-scoped
// scenario, or an IP and a grouped value ("ip<US>group").

// source is one client's buckets: one slot per scenario it has touched
// since the last Flush (most clients touch one or two of the scenarios).
type source struct {
	// key is the source's key in the detector's maps (the same string):
	// pouring and marking it dirty reuse it instead of converting the
	// event's bytes again.
	key   string
	slots []slot
	// due is when its first bucket may become collectable (slotDue, the
	// least over its buckets), the time of its live entry in the
	// detector's due heap; math.MaxInt64 with no entry (no bucket, or the
	// source dropped).
	due int64
}

// slot is a source's bucket for one scenario; had says a bucket existed at
// some point since the last Flush (so a removal must be replicated).
type slot struct {
	scenario int32
	had      bool
	b        *Bucket
}

// bucket returns the source's bucket for scenario i, or nil.
func (src *source) bucket(i int) *Bucket {
	for k := range src.slots {
		if int(src.slots[k].scenario) == i {
			return src.slots[k].b
		}
	}
	return nil
}

// set gives the source bucket b for scenario i.
func (src *source) set(i int, b *Bucket) {
	for k := range src.slots {
		if int(src.slots[k].scenario) == i {
			src.slots[k].b, src.slots[k].had = b, true
			return
		}
	}
	src.slots = append(src.slots, slot{scenario: int32(i), had: true, b: b})
}

// settled marks the slots as replicated: had follows the bucket, and slots
// without a bucket go. It reports whether any bucket is left.
func (src *source) settled() bool {
	kept := src.slots[:0]
	for _, sl := range src.slots {
		if sl.b != nil {
			sl.had = true
			kept = append(kept, sl)
		}
	}
	clear(src.slots[len(kept):])
	src.slots = kept
	return len(kept) > 0
}
