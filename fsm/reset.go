package fsm

import (
	"errors"
	"fmt"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// KindResetOffsets is an operator's replay or skip (warden offsets reset).
const KindResetOffsets Kind = "reset_offsets"

// ErrDoubleCount refuses a reset that moves some partitions back but not
// the whole topic: their records would be counted twice in figures that
// are merged across partitions.
var ErrDoubleCount = errors.New("fsm: moving some partitions back counts their records twice in the load figures, which are merged across partitions; reset the whole topic (a replay), or allow double counting")

// ResetOffsets moves committed offsets, fencing each moved partition's
// worker with a new epoch, in one entry:
//
//   - a replay (Replay: every partition listed, at least one moved back)
//     clears the state derived from the records (load figures, detector
//     state, alerts, the malformed sample, the digests) in the same entry,
//     so that the results are rebuilt from the new offsets and again equal
//     `warden analyze` over exactly the records from there on; decisions
//     already made stay until they expire, unless ClearDecisions;
//   - a partition moved forward skips records: the range is recorded;
//   - moving a subset of partitions back is refused unless AllowDoubleCount.
type ResetOffsets struct {
	Resets           []ResetBatch `json:"resets"`
	Replay           bool         `json:"replay,omitempty"`
	AllowDoubleCount bool         `json:"allow_double_count,omitempty"`
	ClearDecisions   bool         `json:"clear_decisions,omitempty"`
	By               string       `json:"by"`
	At               int64        `json:"at"` // Unix ns, the proposer's clock
}

// ResetRecord is one partition's reset in the history.
type ResetRecord struct {
	At     int64  `json:"at"`
	By     string `json:"by"`
	From   int64  `json:"from"`
	To     int64  `json:"to"`
	Replay bool   `json:"replay,omitempty"`
}

// MaxResetHistory bounds each partition's reset history and skipped ranges.
const MaxResetHistory = 16

// OffsetRange is [From, Until) of a partition.
type OffsetRange struct {
	From  int64 `json:"from"`
	Until int64 `json:"until"`
}

func applyResetOffsets(s *State, r ResetOffsets) Result {
	if len(r.Resets) == 0 {
		return Result{Err: "reset_offsets without partitions"}
	}
	seen := map[int32]bool{}
	back := false
	for _, rb := range r.Resets {
		if rb.Partition < 0 || int(rb.Partition) >= len(s.Partitions) {
			return Result{Err: fmt.Sprintf("%v: %d", ErrUnknownPartition, rb.Partition)}
		}
		if rb.Offset < 0 {
			return Result{Err: fmt.Sprintf("partition %d: offset %d is negative", rb.Partition, rb.Offset)}
		}
		if seen[rb.Partition] {
			return Result{Err: fmt.Sprintf("partition %d given twice", rb.Partition)}
		}
		seen[rb.Partition] = true
		back = back || rb.Offset < s.Partitions[rb.Partition].Committed
	}
	whole := len(seen) == len(s.Partitions)
	if r.Replay && !whole {
		return Result{Err: "a replay resets every partition of the topic"}
	}
	if back && !r.Replay && !r.AllowDoubleCount {
		return Result{Err: ErrDoubleCount.Error()}
	}
	if r.Replay {
		retention := s.Analytics.Retention()
		s.Analytics = analytics.NewStore(analytics.Config{Retention: retention})
		s.Detect = map[int32]*detect.Stored{}
		s.Malformed = nil
		s.Book.ForgetAlerts()
		// A new generation: the second stage drops what the first
		// forwarded before the replay, and starts its marks afresh.
		s.Gen++
	}
	if r.ClearDecisions {
		for id := range s.Book.Decisions {
			s.Book.Delete(id)
		}
	}
	for _, rb := range r.Resets {
		p := &s.Partitions[rb.Partition]
		rec := ResetRecord{At: r.At, By: r.By, From: p.Committed, To: rb.Offset, Replay: r.Replay}
		p.Resets = appendBounded(p.Resets, rec)
		if rb.Offset > p.Committed {
			p.Skipped = appendBounded(p.Skipped, OffsetRange{From: p.Committed, Until: rb.Offset})
		}
		if r.Replay {
			p.Digest = Digest{}
			p.Watermark, p.Late = 0, 0
			p.ByClient.Gen, p.ByClient.Marks = s.Gen, nil
		}
		p.Committed, p.Processed = rb.Offset, rb.Offset
		p.Epoch++
		unsetInputCheckpoint(p)
	}
	return Result{}
}

func appendBounded[T any](list []T, v T) []T {
	list = append(list, v)
	if over := len(list) - MaxResetHistory; over > 0 {
		list = append(list[:0:0], list[over:]...)
	}
	return list
}
