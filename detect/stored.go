package detect

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/wardenhq/warden/internal/wire"
)

// Stored is a partition's detector state as every replica of the FSM keeps
// it: in its binary form, not as a map of buckets. A replica never reads a
// bucket; it folds in each batch's delta, hands a copy of the whole state
// to a new owner, and writes it into snapshots. So it keeps the buckets'
// entries as they came, in runs sorted by key: a base (every bucket as of
// its making, no removal) and the runs of the deltas applied since, newer
// over older. Two runs of a similar size are merged into one as they come,
// so there are few; when they outgrow half the base, they are merged into
// a new base (compact). Bytes once kept are never changed, so a snapshot
// shares them without copying or copy on write.
//
// An entry is about half the size of a bucket in a map (its key, the
// bucket, its keys' array and the map's slot are four allocations), and an
// apply copies bytes instead of hashing and writing each bucket.
type Stored struct {
	watermark int64
	base      run
	runs      []run // since the base, oldest first
}

// run is bucket entries in strictly increasing key order (removals
// included, but for a base), and where each ends in data, so that a merge
// reads an entry's key without decoding the entry.
type run struct {
	data []byte
	ends []int
}

func (r *run) n() int { return len(r.ends) }

func (r *run) entry(i int) []byte {
	start := 0
	if i > 0 {
		start = r.ends[i-1]
	}
	return r.data[start:r.ends[i]]
}

func (r *run) add(entry []byte) {
	r.data = append(r.data, entry...)
	r.ends = append(r.ends, len(r.data))
}

// entryKey and entryPresent read an entry's key and whether it sets its
// bucket; the entry is whole (it was read by nextEntry).
func entryKey(e []byte) []byte {
	l, n := binary.Uvarint(e)
	return e[n : n+int(l)]
}

func entryPresent(e []byte) bool {
	l, n := binary.Uvarint(e)
	return e[n+int(l)] == 1 // a flag is one byte, 0 or 1 (wire.Reader.Bool)
}

// compactFloor is how many bytes of deltas a Stored takes before it
// compacts, however small its base: a small state compacts often, at a
// small cost each time, and holds little besides.
const compactFloor = 4 << 10

// NewStored returns the stored form of p (an empty state for nil). A nil
// bucket in p's map is no bucket.
func NewStored(p *PartitionState) *Stored {
	s := &Stored{}
	if p == nil {
		return s
	}
	keys := make([]string, 0, len(p.Buckets))
	for k, b := range p.Buckets {
		if b != nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var buf []byte
	for _, k := range keys {
		buf = appendBucket(buf[:0], k, p.Buckets[k])
		s.base.add(buf)
	}
	s.watermark = p.Watermark
	return s
}

// Watermark is the newest event time the state has seen.
func (s *Stored) Watermark() int64 { return s.watermark }

// Len is the number of bucket entries held: at least the number of
// buckets, more while deltas that overwrite or remove buckets wait to be
// compacted. It sizes what a caller builds from the keys.
func (s *Stored) Len() int {
	n := s.base.n()
	for i := range s.runs {
		n += s.runs[i].n()
	}
	return n
}

// Bytes is the size of the entries held.
func (s *Stored) Bytes() int { return len(s.base.data) + s.runBytes() }

// runBytes is the size of the runs' entries.
func (s *Stored) runBytes() int {
	n := 0
	for i := range s.runs {
		n += len(s.runs[i].data)
	}
	return n
}

// ApplyChecked folds a checked delta into s, as PartitionState.ApplyChecked
// does, and returns its alerts. It cannot fail.
func (s *Stored) ApplyChecked(c CheckedDelta) []Alert {
	if len(c.data) == 0 {
		return nil
	}
	r := wire.NewReader(c.data)
	r.Int() // the partition
	s.watermark = max(s.watermark, r.Int())
	n := r.Count(2)
	entries := c.data[len(c.data)-r.Len():]
	ends := make([]int, 0, n)
	var prev []byte
	sorted, off := true, 0
	rest, _ := walkEntries(entries, n, func(key, entry []byte, _ bool) {
		if prev != nil && bytes.Compare(key, prev) <= 0 {
			sorted = false
		}
		prev = key
		off += len(entry)
		ends = append(ends, off)
	})
	entries = entries[:len(entries)-len(rest)]
	if n > 0 {
		// A copy: the delta's bytes may be a Raft entry's, whose load
		// figures nothing else keeps.
		rn := run{data: bytes.Clone(entries), ends: ends}
		if !sorted { // an encoder that did not sort (Delta.AppendBinary does)
			rn = sortedRun(rn)
		}
		s.push(rn)
	}
	alerts, _ := readAlerts(wire.NewReader(rest))
	return alerts
}

// push adds a delta's run: merged with the runs before it of no more than
// twice its size (the runs' sizes fall by half or more from the oldest),
// then into the base if the runs outgrow half of it.
func (s *Stored) push(rn run) {
	s.runs = append(s.runs, rn)
	for k := len(s.runs); k >= 2 && len(s.runs[k-2].data) <= 2*len(s.runs[k-1].data); k = len(s.runs) {
		merged := mergeRuns(s.runs[k-2:], true)
		s.runs = append(s.runs[:k-2], merged)
	}
	if s.runBytes() > max(len(s.base.data)/2, compactFloor) {
		s.compact()
	}
}

// sortedRun is r's entries in key order, the last of each key kept.
func sortedRun(r run) run {
	idx := make([]int, r.n())
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return bytes.Compare(entryKey(r.entry(a)), entryKey(r.entry(b))) })
	out := run{data: make([]byte, 0, len(r.data))}
	for j, i := range idx {
		if j+1 < len(idx) && bytes.Equal(entryKey(r.entry(i)), entryKey(r.entry(idx[j+1]))) {
			continue // a later entry of the key is in force
		}
		out.add(r.entry(i))
	}
	return out
}

// compact merges the runs into a new base.
func (s *Stored) compact() {
	s.base = mergeRuns(append([]run{s.base}, s.runs...), false)
	s.runs = nil
}

// mergeRuns merges runs, each in key order, the newest of each key
// winning; a removal in force is kept if keepRemovals (a run that an older
// one will be merged under), else dropped. The result is of its own
// exact size.
func mergeRuns(runs []run, keepRemovals bool) run {
	size, n := 0, 0
	for i := range runs {
		size, n = size+len(runs[i].data), n+runs[i].n()
	}
	out := run{data: make([]byte, 0, size), ends: make([]int, 0, n)}
	eachMerged(runs, keepRemovals, func(_, entry []byte) { out.add(entry) })
	if cap(out.data)-len(out.data) > len(out.data)/8 {
		out.data = slices.Clip(bytes.Clone(out.data))
		out.ends = slices.Clip(slices.Clone(out.ends))
	}
	return out
}

// eachMerged calls fn with each key and entry in force over runs, in key
// order (see mergeRuns).
func eachMerged(runs []run, keepRemovals bool, fn func(key, entry []byte)) {
	type cursor struct {
		r   *run
		i   int
		key []byte
	}
	cs := make([]cursor, 0, len(runs))
	for i := range runs {
		if runs[i].n() > 0 {
			cs = append(cs, cursor{r: &runs[i], key: entryKey(runs[i].entry(0))})
		}
	}
	for len(cs) > 0 {
		// The least key, and the newest run that holds it.
		win := 0
		for i := 1; i < len(cs); i++ {
			if bytes.Compare(cs[i].key, cs[win].key) <= 0 {
				win = i // a later run wins a tie
			}
		}
		key, entry := cs[win].key, cs[win].r.entry(cs[win].i)
		if keepRemovals || entryPresent(entry) {
			fn(key, entry)
		}
		live := cs[:0]
		for i := range cs {
			c := cs[i]
			if i == win || bytes.Equal(c.key, key) {
				if c.i++; c.i == c.r.n() {
					continue
				}
				c.key = entryKey(c.r.entry(c.i))
			}
			live = append(live, c)
		}
		cs = live
	}
}

// merge calls fn with each bucket's key and entry, in key order.
func (s *Stored) merge(fn func(key, entry []byte)) {
	eachMerged(append([]run{s.base}, s.runs...), false, fn)
}

// nextEntry reads one bucket entry at the head of data: its key, the
// whole entry (both aliasing data) and whether it is present; ok is false
// if data does not hold a whole one.
func nextEntry(data []byte) (key, entry []byte, present bool, ok bool) {
	r := wire.NewReader(data)
	key = r.Bytes()
	present = r.Bool()
	if present {
		r.Int()
		r.Int()
		for j, m := 0, r.Count(8); j < m; j++ {
			r.Fixed64()
		}
		r.Int()
		r.Int()
		r.Int()
		r.Int()
		for j, m := 0, r.Count(1); j < m; j++ {
			r.Bytes()
		}
	}
	if r.Err() != nil {
		return nil, nil, false, false
	}
	return key, data[: len(data)-r.Len() : len(data)-r.Len()], present, true
}

// walkEntries reads n bucket entries at the head of data and calls fn, if
// not nil, with each one's key and whole entry, both aliasing data. It
// returns the bytes after them.
func walkEntries(data []byte, n int, fn func(key, entry []byte, present bool)) ([]byte, error) {
	for range n {
		key, entry, present, ok := nextEntry(data)
		if !ok {
			return nil, wire.ErrShort
		}
		if fn != nil {
			fn(key, entry, present)
		}
		data = data[len(entry):]
	}
	return data, nil
}

// Keys calls fn with each bucket's key ("scenario|ip"), in order. The key
// aliases s's bytes.
func (s *Stored) Keys(fn func(key []byte)) {
	s.merge(func(key, _ []byte) { fn(key) })
}

// State returns the state decoded, a PartitionState of its own.
func (s *Stored) State() *PartitionState {
	p := &PartitionState{Watermark: s.watermark, Buckets: make(map[string]*Bucket, s.base.n())}
	s.merge(func(key, entry []byte) {
		r := wire.NewReader(entry)
		r.Bytes() // the key
		r.Bool()
		b := readBucket(r, true)
		if r.Err() != nil || r.Len() != 0 {
			panic("detect: a stored entry does not decode") // entries are checked as they come
		}
		p.Buckets[string(key)] = &b
	})
	return p
}

// Freeze returns s as it is now, for a snapshot or a copy. It shares s's
// bytes, which s never changes, so s goes on applying meanwhile at no
// cost; the caller holds whatever guards s against writers for the time
// of the call only. (The list of runs is copied: a push rewrites it.)
func (s *Stored) Freeze(partition int32) *FrozenState {
	return &FrozenState{partition: partition, stored: &Stored{watermark: s.watermark, base: s.base, runs: slices.Clone(s.runs)}}
}

// appendStored appends the binary form of a partition's state held as a
// Stored: the same bytes as PartitionState.AppendBinary of the same
// buckets.
func appendStored(b []byte, partition int32, s *Stored) []byte {
	all := s.base
	if len(s.runs) > 0 {
		all = mergeRuns(append([]run{s.base}, s.runs...), false)
	}
	b = wire.AppendInt(b, int64(partition))
	b = wire.AppendInt(b, s.watermark)
	b = wire.AppendUint(b, uint64(all.n()))
	b = append(b, all.data...)
	return wire.AppendUint(b, 0) // no alerts
}

// DecodeStored reads what FrozenState.AppendBinary (or
// PartitionState.AppendBinary) wrote, as
// DecodePartitionState does and refusing what it refuses, into the stored
// form.
func DecodeStored(data []byte) (int32, *Stored, error) {
	r := wire.NewReader(data)
	partition, watermark, n := int32(r.Int()), r.Int(), r.Count(2)
	if err := r.Err(); err != nil {
		return 0, nil, fmt.Errorf("detect: decode delta: %w", err)
	}
	entries := data[len(data)-r.Len():]
	base := run{ends: make([]int, 0, n)}
	var last []byte
	bad, off := "", 0
	rest, err := walkEntries(entries, n, func(key, entry []byte, present bool) {
		switch {
		case bad != "":
		case !present:
			bad = "a removal"
		case len(base.ends) > 0 && bytes.Compare(key, last) <= 0:
			bad = "keys out of order"
		}
		last = key
		off += len(entry)
		base.ends = append(base.ends, off)
	})
	if err != nil {
		return 0, nil, fmt.Errorf("detect: decode delta: %w", err)
	}
	alerts, err := readAlerts(wire.NewReader(rest))
	if err := stateRefusal(err, len(alerts), bad); err != nil {
		return 0, nil, err
	}
	base.data = bytes.Clone(entries[:len(entries)-len(rest)])
	return partition, &Stored{watermark: watermark, base: base}, nil
}

// MarshalJSON writes the state as a PartitionState's JSON (the form of
// the JSON snapshots of earlier releases).
func (s *Stored) MarshalJSON() ([]byte, error) { return json.Marshal(s.State()) }

// UnmarshalJSON reads a PartitionState's JSON.
func (s *Stored) UnmarshalJSON(data []byte) error {
	var p PartitionState
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	*s = *NewStored(&p)
	return nil
}
