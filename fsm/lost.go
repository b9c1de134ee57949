package fsm

import "fmt"

// KindLost records a range of a partition that retention deleted before
// it was read: the worker that finds its committed offset below the log
// start commits the gap explicitly instead of skipping it silently.
const KindLost Kind = "lost"

// LostRange is the body of a KindLost command: [From, Until) of Partition
// is gone, as found by Node under Epoch at At (Unix ns, its clock).
type LostRange struct {
	Node      string `json:"node"`
	Partition int32  `json:"partition"`
	Epoch     uint64 `json:"epoch"`
	From      int64  `json:"from"`
	Until     int64  `json:"until"`
	At        int64  `json:"at"`
}

// OperatorAlert is something an operator must know about the cluster
// itself (not an attack): records lost to retention, alerts dropped before
// reaching the alerts topic. The last MaxOperatorAlerts are kept.
type OperatorAlert struct {
	At        int64  `json:"time_unix_nano"`
	Kind      string `json:"kind"`
	Partition int32  `json:"partition"`
	Count     int64  `json:"count"`
	Message   string `json:"message"`
}

// MaxOperatorAlerts bounds State.OperatorAlerts.
const MaxOperatorAlerts = 100

func (s *State) raiseOperatorAlert(a OperatorAlert) {
	s.OperatorAlerts = append(s.OperatorAlerts, a)
	if over := len(s.OperatorAlerts) - MaxOperatorAlerts; over > 0 {
		s.OperatorAlerts = append(s.OperatorAlerts[:0:0], s.OperatorAlerts[over:]...)
	}
}

func applyLost(s *State, l LostRange) Result {
	if l.Partition < 0 || int(l.Partition) >= len(s.Partitions) {
		return Result{Err: ErrUnknownPartition.Error()}
	}
	p := &s.Partitions[l.Partition]
	switch {
	case p.Owner != l.Node:
		return Result{Err: ErrNotOwner.Error()}
	case p.Epoch != l.Epoch:
		return Result{Err: ErrFenced.Error()}
	case p.Committed != l.From:
		return Result{Err: ErrOffsetMismatch.Error()}
	case l.Until <= l.From:
		return Result{Err: ErrBadRange.Error()}
	}
	p.record(l.Node, l.From, l.Until)
	p.Committed, p.Processed = l.Until, max(p.Processed, l.Until)
	unsetInputCheckpoint(p)
	p.Lost += l.Until - l.From
	p.LostRanges = appendBounded(p.LostRanges, OffsetRange{From: l.From, Until: l.Until})
	s.raiseOperatorAlert(OperatorAlert{At: l.At, Kind: "records-lost-to-retention", Partition: l.Partition, Count: l.Until - l.From,
		Message: fmt.Sprintf("partition %d: records [%d, %d) were deleted by retention before they were read: %d records lost", l.Partition, l.From, l.Until, l.Until-l.From)})
	return Result{}
}
