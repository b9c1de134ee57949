package analytics

import (
	"fmt"
	"slices"
	"time"

	"github.com/wardenhq/warden/internal/wire"
)

// The binary form of a whole Store is what an FSM snapshot carries:
//
//	store: retention (ns), newest, malformed, expired requests, expired
//	       bytes, aggregate (bytes)
//
// where the aggregate is AppendBinary's form of the retained windows (its
// malformed count 0), each with its distinct-client sketch. So a snapshot
// is read by the reader that checks and merges Raft deltas.
//
// A snapshot is taken under the FSM's lock and written outside it, while
// applies go on: Freeze copies what a merge changes in place (the sums, the
// counts, the sketches) and shares what it never changes (the keys of a
// Counts only grow), so the copy costs 8 bytes per key, not a key.

// Frozen is a Store as it was when Freeze returned, for encoding while the
// Store goes on changing.
type Frozen struct{ s *Store }

// Freeze returns a copy of s's figures that later merges into s do not
// change. It reads s (the caller holds whatever guards s against writers
// for the time of the call), and copies 8 bytes per counted key and the
// sketches; keys are shared.
func (s *Store) Freeze() Frozen {
	c := &Store{cfg: s.cfg, windows: make(map[int64]*Window, len(s.windows)), newest: s.newest, malformed: s.malformed,
		expiredRequests: s.expiredRequests, expiredBytes: s.expiredBytes}
	s.sketchMu.Lock()
	defer s.sketchMu.Unlock()
	for start, w := range s.windows {
		fw := &Window{Start: w.Start, Requests: w.Requests, Bytes: w.Bytes, LatencyCount: w.LatencyCount, LatencyMaxUs: w.LatencyMaxUs}
		if w.latency != nil {
			fw.latency = w.latency.Copy()
		}
		// The copy's catchUp, when it is encoded, fills the copy's
		// sketch from its own (shared, never rewritten) keys.
		if w.ips != nil {
			fw.ips, fw.ipsDone = w.ips.Clone(), w.ipsDone
		}
		for i, src := range w.allCounts() {
			*fw.allCounts()[i] = src.frozen()
		}
		c.windows[start] = fw
	}
	return Frozen{s: c}
}

// allCounts lists every Counts of a window: the wire's, then the hosts'.
func (w *Window) allCounts() [windowCounts + 3]*Counts {
	var out [windowCounts + 3]*Counts
	wc, hc := w.counts(), w.hostCounts()
	n := copy(out[:], wc[:])
	copy(out[n:], hc[:])
	return out
}

// frozen is c's keys (shared: AddString only appends, and the copy's
// length stops before anything appended later) and a copy of its counts.
// It has no index: it is for encoding only.
func (c *Counts) frozen() Counts {
	return Counts{data: c.data[:len(c.data):len(c.data)], ends: c.ends[:len(c.ends):len(c.ends)], n: slices.Clone(c.n)}
}

// AppendBinary appends the frozen Store's binary form to b. Windows come
// in time order and each Counts in its insertion order, which decoding
// keeps: a decoded Store encodes to the same bytes.
func (f Frozen) AppendBinary(b []byte) []byte {
	s := f.s
	for _, w := range s.windows {
		if w.ips != nil {
			w.catchUp()
		}
	}
	b = wire.AppendInt(b, int64(s.cfg.Retention))
	b = wire.AppendInt(b, s.newest)
	b = wire.AppendInt(b, s.malformed)
	b = wire.AppendInt(b, s.expiredRequests)
	b = wire.AppendInt(b, s.expiredBytes)
	a := Aggregate{Windows: s.windows}
	return wire.AppendSized(b, a.AppendBinary)
}

// SizeHint is about the length of AppendBinary's form, a little more
// rather than less: a buffer of that capacity holds it without growing.
func (f Frozen) SizeHint() int {
	n := 64
	for _, w := range f.s.windows {
		n += 64 + denseHLLBytes + 8<<10 // sums, the distinct-client sketch, a latency sketch's bins
		for _, c := range w.allCounts() {
			n += len(c.data) + 12*len(c.ends) // a key's length and count: 12 bytes at most for any real count
		}
	}
	return n
}

// DecodeStore reads what Frozen.AppendBinary wrote. Corrupt bytes are
// refused with an error: the windows are checked whole (CheckAggregate)
// before any is built, and their starts must be strictly increasing, as
// written.
func DecodeStore(data []byte) (*Store, error) {
	r := wire.NewReader(data)
	ret, newest, malformed, expR, expB := r.Int(), r.Int(), r.Int(), r.Int(), r.Int()
	agg := r.Bytes()
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("analytics: decode store: %w", err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("analytics: decode store: %d bytes left over", r.Len())
	}
	if ret < 0 {
		return nil, fmt.Errorf("analytics: decode store: negative retention")
	}
	if _, err := CheckAggregate(agg); err != nil {
		return nil, err
	}
	ar := wire.NewReader(agg)
	if ar.Int() != 0 {
		return nil, fmt.Errorf("analytics: decode store: malformed count inside the windows")
	}
	starts := readStarts(ar)
	for i := 1; i < len(starts); i++ {
		if starts[i] <= starts[i-1] {
			return nil, fmt.Errorf("analytics: decode store: window starts out of order")
		}
	}
	s := NewStore(Config{Retention: time.Duration(ret)})
	s.newest, s.malformed, s.expiredRequests, s.expiredBytes = newest, malformed, expR, expB
	ws := make([]*Window, len(starts))
	for i, start := range starts {
		w := newWindow(start)
		// Checked: cannot fail. A window without ips takes the encoded
		// sketch as it is.
		_ = readWindow(ar, w)
		ws[i] = w
		s.windows[start] = w
	}
	if ar.Len() > 0 {
		for _, w := range ws {
			readHosts(ar, w)
		}
	}
	for _, w := range ws {
		w.track() // a window written without its sketch rebuilds it
		// Read until a merge writes it: the indexes wait for that.
		w.dropIndexes()
	}
	return s, nil
}
