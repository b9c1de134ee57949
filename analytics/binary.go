package analytics

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"

	"github.com/wardenhq/warden/internal/wire"
)

// The binary form of an Aggregate is what a worker's batch carries through
// Raft: smaller and far cheaper to read than JSON, and merged into a Store
// straight from the bytes, so a key the Store already has costs a map lookup
// and no allocation.
//
//	aggregate: malformed, n, start × n, window × n (in start order),
//	           [hosts × n (in start order)]
//	window:    requests, bytes, latency count, latency max, latency sketch,
//	           distinct-client sketch, then the counts: status, methods,
//	           paths, not found, clients, user agents, referrers
//	hosts:     the counts: virtual hosts, their bytes, their status classes
//	counts:    n, (key, count) × n
//
// The hosts section came later and sits at the end, present only when some
// window has a host: a decoder of an earlier release stops before it (it
// ignores trailing bytes) and one of this release reads a delta without it.

// AppendBinary appends a's binary form to b.
func (a *Aggregate) AppendBinary(b []byte) []byte {
	starts := make([]int64, 0, len(a.Windows))
	for s := range a.Windows {
		starts = append(starts, s)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	b = wire.AppendInt(b, a.Malformed)
	b = wire.AppendUint(b, uint64(len(starts)))
	for _, s := range starts {
		b = wire.AppendInt(b, s)
	}
	hosts := false
	for _, s := range starts {
		w := a.Windows[s]
		b = w.appendBinary(b)
		hosts = hosts || w.VHosts.Len() > 0
	}
	if hosts {
		for _, s := range starts {
			for _, c := range a.Windows[s].hostCounts() {
				b = c.appendBinary(b)
			}
		}
	}
	return b
}

// hostCounts lists the window's per-host Counts in wire order.
func (w *Window) hostCounts() [3]*Counts {
	return [3]*Counts{&w.VHosts, &w.VHostBytes, &w.VHostClass}
}

// readHosts reads one window's encoded hosts section and adds it into w;
// with w nil it only checks it.
func readHosts(r *wire.Reader, w *Window) {
	for i := range 3 {
		var c *Counts
		if w != nil {
			c = w.hostCounts()[i]
		}
		n := r.Count(2)
		for j := 0; j < n; j++ {
			k := r.Bytes()
			if v := r.Int(); c != nil {
				c.Add(k, v)
			}
		}
	}
}

func (w *Window) appendBinary(b []byte) []byte {
	b = wire.AppendInt(b, w.Requests)
	b = wire.AppendInt(b, w.Bytes)
	b = wire.AppendInt(b, w.LatencyCount)
	b = wire.AppendInt(b, w.LatencyMaxUs)
	if w.latency != nil {
		var enc []byte
		w.latency.Encode(&enc, false)
		b = wire.AppendBytes(b, enc)
	} else {
		b = wire.AppendBytes(b, nil)
	}
	if w.ips != nil {
		enc, _ := w.ips.MarshalBinary() // never fails for a dense sketch
		b = wire.AppendBytes(b, enc)
	} else {
		b = wire.AppendBytes(b, nil)
	}
	for _, c := range w.counts() {
		b = c.appendBinary(b)
	}
	return b
}

// windowCounts is how many Counts a window has on the wire.
const windowCounts = 7

// counts lists the window's Counts in wire order.
func (w *Window) counts() [windowCounts]*Counts {
	return [windowCounts]*Counts{&w.Status, &w.Methods, &w.Paths, &w.NotFound, &w.Clients, &w.UserAgents, &w.Referrers}
}

func (c *Counts) appendBinary(b []byte) []byte {
	b = wire.AppendUint(b, uint64(len(c.ends)))
	for i := range c.ends {
		b = wire.AppendBytes(b, c.key(i))
		b = wire.AppendInt(b, c.n[i])
	}
	return b
}

// readWindow reads one encoded window and adds it into w; with w nil it
// only checks it. The check finds every way the bytes can be wrong, so
// adding bytes it accepted cannot stop midway. When w keeps a
// distinct-client sketch, the encoded window's sketch is merged into it,
// or, if it has none, its clients are inserted.
func readWindow(r *wire.Reader, w *Window) error {
	requests, byteCount, latencyCount, latencyMax := r.Int(), r.Int(), r.Int(), r.Int()
	var lat *ddsketch.DDSketch
	if enc := r.Bytes(); len(enc) > 0 {
		var err error
		if lat, err = decodeLatency(enc); err != nil {
			return err
		}
	}
	hll := r.Bytes()
	if len(hll) > 0 {
		if err := checkHLL(hll); err != nil {
			return err
		}
	}
	if w == nil {
		for range windowCounts {
			for j, n := 0, r.Count(2); j < n; j++ {
				r.Bytes()
				r.Int()
			}
		}
		return r.Err()
	}
	w.Requests += requests
	w.Bytes += byteCount
	w.LatencyCount += latencyCount
	w.LatencyMaxUs = max(w.LatencyMaxUs, latencyMax)
	if lat != nil {
		if w.latency == nil {
			w.latency = newSketch()
		}
		// Cannot fail: every sketch has the mapping decodeLatency uses.
		_ = w.latency.MergeWith(lat)
	}
	// A sketch written with its window (a snapshot's) holds the clients
	// written with it; into an empty window it is taken as it is, and
	// catchUp goes on after them. A window's clients go into its sketch
	// at the next catchUp, not here.
	adopted := false
	if len(hll) > 0 {
		h := newHLL()
		if w.ips == nil {
			// The library keeps the registers it reads: not the
			// entry's bytes, which the window would then write.
			hll = bytes.Clone(hll)
		}
		// Neither can fail on a sketch checkHLL accepted.
		_ = h.UnmarshalBinary(hll)
		if w.ips == nil {
			w.ips, w.ipsDone = h, 0
			adopted = w.Clients.Len() == 0
		} else {
			_ = w.ips.Merge(h)
		}
	}
	for _, c := range w.counts() {
		n := r.Count(2)
		for j := 0; j < n; j++ {
			k := r.Bytes()
			c.addNew(k, r.Int())
		}
	}
	if adopted {
		w.ipsDone = w.Clients.Len()
	}
	return r.Err()
}

// decodeLatency decodes an encoded latency sketch, refusing one that could
// not hold durations. It decodes into bounded stores first: corrupt bytes
// could name bins far apart, which the unbounded store would allocate.
// Real sketches (microseconds at 1%) span about a thousand bins.
func decodeLatency(enc []byte) (*ddsketch.DDSketch, error) {
	var o *ddsketch.DDSketch
	err := guard(func() (err error) {
		o, err = ddsketch.DecodeDDSketch(enc, func() store.Store { return store.NewCollapsingLowestDenseStore(maxLatencyBins) }, latencyMapping)
		return err
	})
	if err == nil {
		err = checkLatency(o)
	}
	if err != nil {
		return nil, fmt.Errorf("analytics: latency sketch: %w", err)
	}
	return o, nil
}

// latencyMapping is the index mapping of every latency sketch.
var latencyMapping = newSketch().IndexMapping

// checkHLL accepts only the dense sketches Warden writes: a corrupt header
// could ask the library for a sparse set of billions of entries. The
// library reads a dense sketch of the second format by taking its
// registers as they are, so nothing past the header can be wrong.
func checkHLL(enc []byte) error {
	if len(enc) != denseHLLBytes || enc[0] != 2 || enc[1] != 14 || enc[3] != 0 {
		return fmt.Errorf("analytics: distinct clients: not a dense sketch of precision 14")
	}
	return nil
}

// DecodeAggregate reads what AppendBinary wrote.
func DecodeAggregate(data []byte) (*Aggregate, error) {
	r := wire.NewReader(data)
	a := NewAggregate()
	a.Malformed = r.Int()
	starts := readStarts(r)
	ws := make([]*Window, len(starts))
	for i, s := range starts {
		w := a.Windows[s]
		if w == nil {
			w = newWindow(s)
			a.Windows[s] = w
		}
		if err := readWindow(r, w); err != nil {
			return nil, err
		}
		ws[i] = w
	}
	if r.Len() > 0 {
		for _, w := range ws {
			readHosts(r, w)
		}
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("analytics: decode aggregate: %w", err)
	}
	return a, nil
}

func readStarts(r *wire.Reader) []int64 {
	starts := make([]int64, r.Count(1))
	for i := range starts {
		starts[i] = r.Int()
	}
	return starts
}

// CheckedAggregate is an Aggregate in binary form that CheckAggregate
// accepted: Store.MergeChecked adds it whole. The zero value is no
// aggregate.
type CheckedAggregate struct{ data []byte }

// Bytes is the encoded aggregate (nil for none). It aliases what was checked.
func (c CheckedAggregate) Bytes() []byte { return c.data }

// CheckAggregate reads an Aggregate in binary form through to its end,
// without keeping anything of it, and accepts it only if a merge cannot
// fail on any part of it.
func CheckAggregate(data []byte) (CheckedAggregate, error) {
	r := wire.NewReader(data)
	r.Int()
	n := len(readStarts(r))
	for range n {
		if err := readWindow(r, nil); err != nil {
			return CheckedAggregate{}, err
		}
	}
	if r.Len() > 0 {
		for range n {
			readHosts(r, nil)
		}
	}
	if err := r.Err(); err != nil {
		return CheckedAggregate{}, fmt.Errorf("analytics: decode aggregate: %w", err)
	}
	return CheckedAggregate{data: data}, nil
}

// MergeBinary folds an Aggregate in its binary form into the Store, with
// the same result as Merge of the decoded Aggregate. Corrupt bytes change
// nothing: they are checked whole (CheckAggregate) first.
func (s *Store) MergeBinary(data []byte) error {
	c, err := CheckAggregate(data)
	if err != nil {
		return err
	}
	s.MergeChecked(c)
	return nil
}

// MergeChecked folds a checked Aggregate into the Store. It cannot fail.
func (s *Store) MergeChecked(c CheckedAggregate) {
	if len(c.data) == 0 {
		return
	}
	s.merges++
	r := wire.NewReader(c.data)
	s.malformed += r.Int()
	starts := readStarts(r)
	for _, start := range starts {
		s.newest = max(s.newest, start)
	}
	h := s.horizon()
	ws := make([]*Window, len(starts))
	for i, start := range starts {
		if start < h {
			var old Window
			_ = readWindow(r, &old) // checked
			s.expiredRequests += old.Requests
			s.expiredBytes += old.Bytes
			ws[i] = &old
			continue
		}
		w := s.windows[start]
		if w == nil {
			w = newWindow(start)
			w.ips = newHLL()
			s.windows[start] = w
		}
		_ = readWindow(r, w) // checked
		w.touched = s.merges
		ws[i] = w
	}
	if r.Len() > 0 {
		for _, w := range ws {
			readHosts(r, w)
		}
	}
	s.expire(h)
}

// denseHLLBytes is the size of an encoded dense HyperLogLog of precision
// 14 (format 2): 8 bytes of header and 2^14 registers of a byte.
const denseHLLBytes = 8 + 1<<14

// maxLatencyBins bounds a decoded latency sketch.
const maxLatencyBins = 4096

// checkLatency accepts a decoded latency sketch only if it could hold
// durations: none negative, bins between a microsecond and about 300 years.
func checkLatency(o *ddsketch.DDSketch) error {
	if !o.GetNegativeValueStore().IsEmpty() {
		return fmt.Errorf("negative durations")
	}
	pos := o.GetPositiveValueStore()
	if pos.IsEmpty() {
		return nil
	}
	lo, err1 := pos.MinIndex()
	hi, err2 := pos.MaxIndex()
	if err1 != nil || err2 != nil || lo < o.IndexMapping.Index(0.5) || hi > o.IndexMapping.Index(1e16) {
		return fmt.Errorf("bins out of range")
	}
	return nil
}

// guard runs a sketch library's decoder, turning a panic on corrupt bytes
// (which Warden never writes, but a damaged log could hold) into an error.
func guard(decode func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupt sketch: %v", r)
		}
	}()
	return decode()
}
