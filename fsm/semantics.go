package fsm

import "fmt"

// The delivery semantics other than exactly-once, which exist to show the
// trade-off: results and offsets commit in separate entries.
//
//   - at-least-once: results commit with each batch (KindResults), offsets
//     on an interval (KindOffsetCommit, never past Processed); a worker that
//     restarts resumes from Committed and applies again everything since
//     the last offset commit.
//   - at-most-once: a batch's offsets commit as soon as it is fetched
//     (KindOffsetCommit, past Processed), its results when it is processed;
//     a worker that restarts resumes from Committed, and the batches
//     fetched but not processed are lost.
const (
	KindResults      Kind = "results"
	KindOffsetCommit Kind = "offset_commit"
)

// Semantics names the delivery modes.
const (
	ExactlyOnce = "exactly-once"
	AtLeastOnce = "at-least-once"
	AtMostOnce  = "at-most-once"
)

// OffsetCommit moves a partition's committed offset alone.
type OffsetCommit struct {
	Node      string `json:"node"`
	Partition int32  `json:"partition"`
	Epoch     uint64 `json:"epoch"`
	Offset    int64  `json:"offset"`
	Semantics string `json:"semantics"`
}

func checkOwner(s *State, node string, partition int32, epoch uint64) (*Partition, error) {
	if partition < 0 || int(partition) >= len(s.Partitions) {
		return nil, ErrUnknownPartition
	}
	p := &s.Partitions[partition]
	switch {
	case p.Owner != node:
		return nil, ErrNotOwner
	case p.Epoch != epoch:
		return nil, ErrFenced
	}
	return p, nil
}

func applyOffsetCommit(s *State, c OffsetCommit) Result {
	p, err := checkOwner(s, c.Node, c.Partition, c.Epoch)
	if err != nil {
		return Result{Err: err.Error()}
	}
	if c.Offset < p.Committed {
		return Result{Err: fmt.Sprintf("%v: offset %d below the committed %d", ErrOffsetMismatch, c.Offset, p.Committed)}
	}
	if c.Semantics == AtLeastOnce && c.Offset > p.Processed {
		return Result{Err: fmt.Sprintf("%v: offset %d past the processed %d", ErrOffsetMismatch, c.Offset, p.Processed)}
	}
	if c.Offset == p.Committed {
		return Result{}
	}
	p.record(c.Node, p.Committed, c.Offset)
	p.Committed = c.Offset
	return Result{}
}

// applyResults applies a batch's results without moving the committed
// offset: from Processed, or, for a worker's first batch (Restart), from
// anywhere between Committed and Processed.
func applyResults(s *State, b Batch, restart bool) error {
	if err := b.checked(); err != nil {
		return err
	}
	p, err := checkOwner(s, b.Node, b.Partition, b.Epoch)
	if err != nil {
		return err
	}
	ok := b.From == p.Processed
	if restart {
		// A new worker starts at the committed offset, which is behind
		// the processed one under at-least-once and ahead of it under
		// at-most-once (the worker may have committed it just before).
		ok = b.From >= min(p.Committed, p.Processed) && b.From <= max(p.Committed, p.Processed)
	}
	if !ok || b.Until < b.From {
		return ErrOffsetMismatch
	}
	// The results go in as a batch does; the offsets are put back.
	committed, history, commits := p.Committed, append([]EpochRun(nil), p.History...), p.Commits
	p.Committed = b.From
	if err := applyBatch(s, b); err != nil {
		p.Committed = committed
		return err
	}
	p = &s.Partitions[b.Partition]
	p.Committed, p.History, p.Commits = committed, history, commits+1
	p.Processed = b.Until
	// The detector's state stands at Processed: every results batch
	// carries its buckets.
	p.Detector = Checkpoint{}
	return nil
}
