package pipeline

import (
	"errors"

	"github.com/wardenhq/warden/fsm"
)

// Item is a forwarded line held by a Merger.
type Item struct {
	Origin
	// At is its offset in the repartition partition, TS its Kafka
	// timestamp there (Unix ms).
	At    int64
	TS    int64
	Value []byte
	// Layout is the line's parse, when it came with it (KindParsed).
	Layout []byte
}

// IdleHold is how long, in the repartition partition's own timestamps, a
// line waits for sources that said they were idle: one that comes back
// within it (a burst after a quiet spell reaches every partition within a
// batch interval or two) still sends its lines in order. Timestamps are
// part of the records, so every run over them decides the same.
const IdleHold = 500 // ms

// ErrNewerGeneration: a record forwarded under a replay generation this
// node's state has not reached yet; the worker stops and starts again once
// its state has caught up.
var ErrNewerGeneration = errors.New("pipeline: record of a newer replay generation")

// Merger is the second stage's order of one repartition partition: it
// takes the records as they arrive (the sources' lines interleaved however
// the first stage's workers happened to write them, repeats of a retried
// first-stage batch included) and gives the lines back in key order,
// each once. A line is given back only when no source can still send one
// ordered before it: every source that is not idle has been heard of past
// it (a line, or a marker, with a greater key).
type Merger struct {
	gen    uint64
	marks  []fsm.SourceMark
	queues []queue
	heads  headHeap
	dirty  []bool // by source: its mark changed since TakeMarks
	dirtyN int    // how many are
	maxTS  int64  // the latest timestamp read
	// Counts since the Merger started (or since TakeCounts).
	applied, dropped, bad, outOfOrder int64
	last                              Key // the last key given back
}

// queue holds one source's lines in order, in blocks of queueBlock items:
// it grows a block at a time, so a long queue (a drain's lines waiting for
// the slowest source) is never copied to grow or to compact, and a block
// emptied at the head is cleared as it empties, so no line given back
// keeps its fetch from the collector.
type queue struct {
	blocks []*[queueBlock]Item
	pos    int // the head's index in blocks[0]
	end    int // the items in the last block
	n      int // the items held
	spare  *[queueBlock]Item
}

// queueBlock is how many items a queue's block holds (104 bytes each).
const queueBlock = 256

func (q *queue) len() int    { return q.n }
func (q *queue) head() *Item { return &q.blocks[0][q.pos] }
func (q *queue) tail() *Item { return &q.blocks[len(q.blocks)-1][q.end-1] }

func (q *queue) push(it Item) {
	if len(q.blocks) == 0 || q.end == queueBlock {
		b := q.spare
		if b == nil {
			b = new([queueBlock]Item)
		}
		q.spare = nil
		q.blocks = append(q.blocks, b)
		q.end = 0
	}
	q.blocks[len(q.blocks)-1][q.end] = it
	q.end++
	q.n++
}

func (q *queue) pop() (it Item) {
	b := q.blocks[0]
	it = b[q.pos]
	b[q.pos] = Item{}
	q.pos++
	q.n--
	switch {
	case q.n == 0: // empty: the one block left is used again from its start
		q.pos, q.end = 0, 0
	case q.pos == queueBlock: // the head block is done: it is all zero
		q.blocks[0] = nil
		q.blocks = q.blocks[1:]
		q.pos = 0
		q.spare = b
	}
	return it
}

// NewMerger resumes the merge of a partition at the FSM's state: its
// generation and marks.
func NewMerger(bc fsm.ByClient, sources int32) *Merger {
	m := &Merger{gen: bc.Gen, last: Key{Watermark: NoWatermark}, maxTS: bc.MaxTS}
	m.grow(sources)
	copy(m.marks, bc.Marks)
	return m
}

func (m *Merger) grow(n int32) {
	for int32(len(m.marks)) < n {
		m.marks = append(m.marks, fsm.SourceMark{Watermark: NoWatermark})
		m.queues = append(m.queues, queue{})
		m.dirty = append(m.dirty, false)
	}
}

// Add takes the record at offset at of the repartition partition, with its
// timestamp (Unix ms) and the origin its header gave (err the header's
// parse error).
func (m *Merger) Add(at, ts int64, o Origin, value []byte, err error) error {
	return m.AddParsed(at, ts, o, value, nil, err)
}

// AddParsed is Add of a line with its layout (Packed.Layout), which the
// line keeps while held: Next gives it back with it.
func (m *Merger) AddParsed(at, ts int64, o Origin, value, layout []byte, err error) error {
	m.maxTS = max(m.maxTS, ts)
	if err != nil || o.Source >= fsm.MaxPartitions {
		m.bad++
		return nil
	}
	switch {
	case o.Gen < m.gen:
		m.dropped++
		return nil
	case o.Gen > m.gen:
		return ErrNewerGeneration
	}
	m.grow(o.Source + 1)
	mk := &m.marks[o.Source]
	q := &m.queues[o.Source]
	if o.Kind != KindLine {
		changed := false
		if o.Offset > mk.Covered {
			mk.Covered, changed = o.Offset, true
		}
		if o.Watermark > mk.Watermark {
			mk.Watermark, changed = o.Watermark, true
		}
		switch {
		case o.Kind == KindIdle && o.Offset >= mk.Covered && (!mk.Idle || mk.IdleAt != o.Offset):
			mk.Idle, mk.IdleAt, changed = true, o.Offset, true
		case o.Kind == KindProgress && mk.Idle && o.Offset > mk.IdleAt:
			mk.Idle, mk.IdleAt, changed = false, 0, true
		}
		if changed {
			m.touch(o.Source)
		}
		return nil
	}
	if o.Offset < mk.Next || q.len() > 0 && o.Offset <= q.tail().Offset {
		m.dropped++ // a repeat: already applied, or already held
		return nil
	}
	// A line ordered before what was already given back can only come
	// from a source that was idle: it goes next, and is counted.
	if q.len() == 0 {
		q.push(Item{Origin: o, At: at, TS: ts, Value: value, Layout: layout})
		m.heads.push(headOf{key: o.Key(), src: o.Source})
	} else {
		q.push(Item{Origin: o, At: at, TS: ts, Value: value, Layout: layout})
	}
	mk.Covered = max(mk.Covered, o.Offset+1)
	mk.Watermark = max(mk.Watermark, o.Watermark)
	if mk.Idle && o.Offset >= mk.IdleAt {
		mk.Idle, mk.IdleAt = false, 0
	}
	m.touch(o.Source)
	return nil
}

// touch marks source s's mark changed.
func (m *Merger) touch(s int32) {
	if !m.dirty[s] {
		m.dirty[s] = true
		m.dirtyN++
	}
}

// Next gives back the next line in key order, if no source can still send
// one before it.
func (m *Merger) Next() (Item, bool) {
	if m.heads.Len() == 0 {
		return Item{}, false
	}
	h := m.heads.items[0]
	held := m.maxTS >= m.queues[h.src].head().TS+IdleHold
	for s := range m.marks {
		if int32(s) == h.src || m.queues[s].len() > 0 {
			continue // a held line: the heap orders it
		}
		mk := &m.marks[s]
		if mk.Idle {
			if !held {
				return Item{}, false
			}
			continue
		}
		// Source s sends nothing below (its watermark, s, Covered).
		bound := Key{Watermark: mk.Watermark, Source: int32(s), Offset: mk.Covered}
		if mk.Watermark == NoWatermark || !h.key.Less(bound) {
			return Item{}, false
		}
	}
	q := &m.queues[h.src]
	it := q.pop()
	if q.len() > 0 {
		// The source's next line takes its place: one sift, where a
		// pop and a push took two.
		m.heads.replaceTop(headOf{key: q.head().Key(), src: h.src})
	} else {
		m.heads.pop()
	}
	mk := &m.marks[h.src]
	mk.Next = it.Offset + 1
	m.touch(h.src)
	m.applied++
	if it.Key().Less(m.last) {
		m.outOfOrder++
	} else {
		m.last = it.Key()
	}
	return it, true
}

// WaitingFor names a source the next line waits for, and its mark (ok
// false when no line is held or none waits).
func (m *Merger) WaitingFor() (src int32, mark fsm.SourceMark, ok bool) {
	if m.heads.Len() == 0 {
		return 0, fsm.SourceMark{}, false
	}
	h := m.heads.items[0]
	held := m.maxTS >= m.queues[h.src].head().TS+IdleHold
	for s := range m.marks {
		if int32(s) == h.src || m.queues[s].len() > 0 {
			continue
		}
		mk := m.marks[s]
		if mk.Idle && held {
			continue
		}
		bound := Key{Watermark: mk.Watermark, Source: int32(s), Offset: mk.Covered}
		if mk.Idle || mk.Watermark == NoWatermark || !h.key.Less(bound) {
			return int32(s), mk, true
		}
	}
	return 0, fsm.SourceMark{}, false
}

// Held is the number of lines held back.
func (m *Merger) Held() int {
	n := 0
	for i := range m.queues {
		n += m.queues[i].len()
	}
	return n
}

// Low is the lowest repartition offset among the lines held back (ok false
// when none is): where a new owner must read again from.
func (m *Merger) Low() (int64, bool) {
	low, ok := int64(0), false
	for i := range m.queues {
		if q := &m.queues[i]; q.len() > 0 && (!ok || q.head().At < low) {
			low, ok = q.head().At, true
		}
	}
	return low, ok
}

// Changed reports whether marks or counts changed since they were last
// taken.
func (m *Merger) Changed() bool {
	return m.dirtyN > 0 || m.applied != 0 || m.dropped != 0 || m.bad != 0 || m.outOfOrder != 0
}

// MaxTS is the latest timestamp read, which the state keeps with the
// marks.
func (m *Merger) MaxTS() int64 { return m.maxTS }

// TakeMarks returns the marks changed since the last call, in source order.
func (m *Merger) TakeMarks() []fsm.MarkUpdate {
	if m.dirtyN == 0 {
		return nil
	}
	out := make([]fsm.MarkUpdate, 0, m.dirtyN)
	for s, d := range m.dirty {
		if d {
			out = append(out, fsm.MarkUpdate{Source: int32(s), Mark: m.marks[s]})
		}
	}
	clear(m.dirty)
	m.dirtyN = 0
	return out
}

// TakeCounts returns and clears what the merge did since the last call.
func (m *Merger) TakeCounts() fsm.MergeCounts {
	c := fsm.MergeCounts{Applied: m.applied, Dropped: m.dropped, Bad: m.bad, OutOfOrder: m.outOfOrder}
	m.applied, m.dropped, m.bad, m.outOfOrder = 0, 0, 0, 0
	return c
}

type headOf struct {
	key Key
	src int32
}

// headHeap orders the sources' head lines by key, lowest first. Keys
// name their source, so no two are equal and the order of the lines given
// back depends on the keys alone. It is typed, not container/heap's: a
// line costs no boxing of its head and no calls through an interface.
type headHeap struct{ items []headOf }

func (h *headHeap) Len() int { return len(h.items) }

func (h *headHeap) push(x headOf) {
	h.items = append(h.items, x)
	for j := len(h.items) - 1; j > 0; {
		i := (j - 1) / 2
		if !h.items[j].key.Less(h.items[i].key) {
			break
		}
		h.items[i], h.items[j] = h.items[j], h.items[i]
		j = i
	}
}

// pop removes the lowest.
func (h *headHeap) pop() {
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	h.items = h.items[:n]
	h.down()
}

// replaceTop puts x in the lowest's place.
func (h *headHeap) replaceTop(x headOf) {
	h.items[0] = x
	h.down()
}

// down sifts the top down to its place.
func (h *headHeap) down() {
	n := len(h.items)
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && h.items[r].key.Less(h.items[l].key) {
			j = r
		}
		if !h.items[j].key.Less(h.items[i].key) {
			return
		}
		h.items[i], h.items[j] = h.items[j], h.items[i]
		i = j
	}
}
