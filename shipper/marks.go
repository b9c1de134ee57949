package shipper

// A watermark advances over a sequence of items as each is acknowledged,
// but only over contiguous ones: it is the end of the longest prefix of
// items all acknowledged. Items are pushed in order and acknowledged in any
// order. Files use byte offsets (an item is a line; the mark is where the
// line ends); the ship as a whole uses sequence numbers.
type watermark struct {
	mark  int64
	queue []*mitem
	head  int
}

type mitem struct {
	end   int64
	acked bool
}

// push appends an item that ends at end; acked items (lines known to be in
// Kafka already, blank lines) move the mark at once when at the front.
func (w *watermark) push(end int64, acked bool) *mitem {
	it := &mitem{end: end, acked: acked}
	w.queue = append(w.queue, it)
	w.advance()
	return it
}

// ack marks it acknowledged and advances the mark.
func (w *watermark) ack(it *mitem) {
	it.acked = true
	w.advance()
}

func (w *watermark) advance() {
	for w.head < len(w.queue) && w.queue[w.head].acked {
		w.mark = w.queue[w.head].end
		w.queue[w.head] = nil
		w.head++
	}
	if w.head > 1024 && w.head*2 > len(w.queue) {
		w.queue = append(w.queue[:0], w.queue[w.head:]...)
		w.head = 0
	}
}

// pending is the number of items not yet passed by the mark.
func (w *watermark) pending() int { return len(w.queue) - w.head }

// floorTracker keeps, per partition, the offset of the acknowledged record
// with the highest sequence number at or below a global watermark: every
// record of this ship above that watermark lies at a greater offset (a
// producer keeps one partition's records in the order sent).
type floorTracker struct {
	acked map[int32][]seqOffset // acknowledged, not yet at or below the mark
	floor map[int32]int64
}

type seqOffset struct {
	seq uint64
	off int64
}

func newFloorTracker(base map[int32]int64) *floorTracker {
	f := &floorTracker{acked: map[int32][]seqOffset{}, floor: map[int32]int64{}}
	for p, o := range base {
		f.floor[p] = o
	}
	return f
}

// add records an acknowledgement (per partition, in sequence order).
func (f *floorTracker) add(p int32, seq uint64, off int64) {
	f.acked[p] = append(f.acked[p], seqOffset{seq, off})
}

// advance moves the floors up to mark.
func (f *floorTracker) advance(mark uint64) {
	for p, q := range f.acked {
		i := 0
		for i < len(q) && q[i].seq <= mark {
			f.floor[p] = max(f.floor[p], q[i].off)
			i++
		}
		if i > 0 {
			f.acked[p] = append(q[:0], q[i:]...)
		}
	}
}

// snapshot copies the floors.
func (f *floorTracker) snapshot() map[int32]int64 {
	out := make(map[int32]int64, len(f.floor))
	for p, o := range f.floor {
		out[p] = o
	}
	return out
}
