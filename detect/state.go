package detect

// A partition's detector state as it is replicated: the whole of it in a
// snapshot (PartitionState), and what one batch changed in a Raft commit
// (Delta).

// PartitionState is the detector state of one partition: its buckets by
// "scenario|ip", and the newest event time it has seen.
type PartitionState struct {
	Buckets   map[string]*Bucket `json:"buckets"`
	Watermark int64              `json:"watermark"`
}

// writable makes p's map ready for a change.
func (p *PartitionState) writable() {
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
