package detect

import "maps"

// A partition's detector state as it is replicated: the whole of it in a
// snapshot (PartitionState), and what one batch changed in a Raft commit
// (Delta).

// PartitionState is the detector state of one partition: its buckets by
// "scenario|ip", and the newest event time it has seen.
type PartitionState struct {
	Buckets   map[string]*Bucket `json:"buckets"`
	Watermark int64              `json:"watermark"`
	// frozen counts the snapshots (FrozenState) that share the buckets,
	// from Freeze to their Release: while one does, a change replaces a
	// bucket rather than overwriting it. mapShared says the newest of
	// them shares the map itself: the next change copies it first.
	frozen    int
	mapShared bool
}

// writable makes p's map p's own before a change.
func (p *PartitionState) writable() {
	if p.mapShared {
		p.Buckets = maps.Clone(p.Buckets)
		p.mapShared = false
	}
	if p.Buckets == nil {
		p.Buckets = map[string]*Bucket{}
	}
}

// Clone returns a deep copy.
func (p *PartitionState) Clone() *PartitionState {
	c := &PartitionState{Buckets: make(map[string]*Bucket, len(p.Buckets)), Watermark: p.Watermark}
	for k, b := range p.Buckets {
		c.Buckets[k] = b.copy()
	}
	return c
}

// Delta is what one batch changed in a partition's detector state: the
// buckets it touched (nil for a bucket removed), the new watermark, and the
// alerts it raised.
type Delta struct {
	Partition int32              `json:"partition"`
	Buckets   map[string]*Bucket `json:"buckets,omitempty"`
	Watermark int64              `json:"watermark"`
	Alerts    []Alert            `json:"alerts,omitempty"`
}

// Apply folds d into p.
func (p *PartitionState) Apply(d *Delta) {
	p.writable()
	for k, b := range d.Buckets {
		if b == nil {
			delete(p.Buckets, k)
		} else {
			p.Buckets[k] = b
		}
	}
	p.Watermark = max(p.Watermark, d.Watermark)
}
