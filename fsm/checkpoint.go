package fsm

// Detector checkpoints. A batch carries its alerts, and, only when it is a
// checkpoint, the buckets its owner's detector changed since the previous
// checkpoint. Between checkpoints the FSM's detector state of a partition
// stands where its Checkpoint says, behind the committed offset; a new
// owner restores it and runs the records since through detection again,
// without committing what they raise a second time (the alerts of those
// records are already in the book). Every replica then applies a
// partition's buckets once per checkpoint instead of once per batch.

// Checkpoint is where a partition's detector state in the FSM stands.
// Unset, it stands at the committed offset of the stage that detects (every
// batch a checkpoint: releases before checkpoints, at-least- and
// at-most-once, and after an operator's reset). The slices are never
// changed in place: a new checkpoint replaces them.
type Checkpoint struct {
	Set bool `json:"set"`
	// Stage is the stage whose detector the state is: the input's (input
	// keyed by client) or the repartition topic's.
	Stage uint8 `json:"stage,omitempty"`
	// Offset is the next offset of that stage's topic partition after the
	// state: the input's, or the repartition partition's committed one.
	Offset int64 `json:"offset"`
	// Watermark is the input partition's watermark at Offset (StageInput).
	Watermark int64 `json:"watermark,omitempty"`
	// Marks, MaxTS and Gen are the merge's at Offset (StageByClient): a
	// new owner merges again from there.
	Marks []SourceMark `json:"marks,omitempty"`
	MaxTS int64        `json:"max_ts,omitempty"`
	Gen   uint64       `json:"gen,omitempty"`
}

// checkpointInput records that p's detector state stands after input batch
// b.
func checkpointInput(p *Partition, b *Batch) {
	p.Detector = Checkpoint{Set: true, Stage: StageInput, Offset: b.Until, Watermark: p.Watermark}
}

// checkpointByClient records that p's detector state stands after its
// repartition partition's last batch.
func checkpointByClient(p *Partition) {
	bc := &p.ByClient
	p.Detector = Checkpoint{Set: true, Stage: StageByClient, Offset: bc.Committed,
		Marks: append([]SourceMark(nil), bc.Marks...), MaxTS: bc.MaxTS, Gen: bc.Gen}
}

// unsetInputCheckpoint is an operator's reset, or a loss to retention, of
// an input partition: the detector state is taken as it stands from the
// new offset on (the records after its checkpoint and before the reset are
// not detected again).
func unsetInputCheckpoint(p *Partition) {
	if p.Detector.Stage == StageInput {
		p.Detector = Checkpoint{}
	}
}
