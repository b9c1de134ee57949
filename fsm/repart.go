package fsm

import (
	"bytes"
	"fmt"
	"math"
	"time"

	"github.com/wardenhq/warden/detect"
)

// Repartition: with input not keyed by client, the owner of partition p
// also runs the second stage on partition p of the repartition topic
// (`<topic>.by-client`), where the first stage forwards each parsed line
// keyed by its client. The second stage's position and what it has taken
// from each source partition live in Partition.ByClient, and move only
// with its batches (Batch.Stage == StageByClient). See pipeline/DESIGN.md.

// Stages of a batch.
const (
	// StageInput is a batch of the input topic: load figures, malformed
	// records, and (input keyed by client) detection.
	StageInput uint8 = 0
	// StageByClient is a batch of the repartition topic: detection.
	StageByClient uint8 = 1
)

// SourceMark is what the second stage of one partition has taken from one
// source partition of the input.
type SourceMark struct {
	// Next: every line of the source below it was applied (or was not
	// for this partition).
	Next int64 `json:"next"`
	// Covered: the first stage has forwarded every line of the source
	// below it; Watermark is the source's watermark there.
	Covered   int64 `json:"covered"`
	Watermark int64 `json:"watermark"`
	// Idle: the source said, at IdleAt, that it had nothing more; it holds
	// no other source back until it sends past IdleAt.
	Idle   bool  `json:"idle,omitempty"`
	IdleAt int64 `json:"idle_at,omitempty"`
}

// ByClient is the second stage's record of one partition.
type ByClient struct {
	// Committed is the next offset of the repartition partition to read:
	// every record below it was applied or is still held back (and then
	// read again by a new owner; Marks say what it already took).
	Committed int64  `json:"committed_offset"`
	Commits   uint64 `json:"commits"`
	// Run is the worker run of the last batch applied (Batch.Run).
	Run uint64 `json:"run,omitempty"`
	// Gen is the replay generation the marks are for.
	Gen uint64 `json:"gen"`
	// Marks, by source partition; MaxTS the latest timestamp read (Unix
	// ms), which tells how long a line has waited for idle sources.
	Marks []SourceMark `json:"marks,omitempty"`
	MaxTS int64        `json:"max_ts,omitempty"`
	// Applied counts the lines that reached detection; Dropped the
	// records dropped as repeats of a first-stage retry or of an older
	// generation; Bad those without a valid origin.
	Applied int64 `json:"applied"`
	Dropped int64 `json:"dropped"`
	Bad     int64 `json:"bad,omitempty"`
	// OutOfOrder counts lines that came after lines ordered after them
	// were applied: a source that was idle and came back with older
	// events.
	OutOfOrder int64 `json:"out_of_order,omitempty"`
	// Lost counts the records deleted by retention before they were read.
	Lost int64 `json:"lost,omitempty"`
}

// MarkUpdate sets the mark of one source.
type MarkUpdate struct {
	Source int32
	Mark   SourceMark
}

// Lateness is the configuration's max lateness (0 when unset or invalid;
// configure refuses invalid ones).
func (c Config) Lateness() time.Duration {
	if c.MaxLateness == "" {
		return 0
	}
	d, err := time.ParseDuration(c.MaxLateness)
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// MergeCounts is what a second-stage batch's merge did (ByClient's counts).
type MergeCounts struct {
	Applied, Dropped, Bad, OutOfOrder int64
	// Lost is the records of the repartition partition deleted by
	// retention before the second stage read them (a batch of its own,
	// whose Watermark is the proposer's clock, Unix ns).
	Lost int64
}

// applyByClient applies a second-stage batch of partition p, fenced by
// apply like the input's batches (against the repartition partition's own
// committed offset).
func applyByClient(s *State, p *Partition, b Batch) error {
	bc := &p.ByClient
	switch {
	case b.Merge.Lost > b.Until-b.From:
		return ErrBadRange
	case b.Gen != s.Gen:
		return ErrFenced // forwarded under another replay generation
	case b.Sequenced && b.Follows != bc.Commits:
		// Cut after other commits than those applied: a repeat of a batch
		// that moved no offset, or a batch cut on a state that had not yet
		// applied one (Batch.Follows).
		return ErrOffsetMismatch
	}
	for _, u := range b.Marks {
		if u.Source < 0 || u.Source >= MaxPartitions {
			return ErrBadBatch
		}
	}
	if bc.Gen != s.Gen {
		bc.Gen, bc.Marks = s.Gen, nil
	}
	for _, u := range b.Marks {
		for int32(len(bc.Marks)) <= u.Source {
			bc.Marks = append(bc.Marks, SourceMark{Watermark: math.MinInt64})
		}
		bc.Marks[u.Source] = u.Mark
	}
	bc.Committed = b.Until
	bc.MaxTS = max(bc.MaxTS, b.MaxTS)
	bc.Commits++
	bc.Run = b.Run
	if byClientFault(p, b) == "skip-lines" {
		// The fault test's loss: the marks move past the batch's lines,
		// which reach no detection and no count.
		return nil
	}
	bc.Applied += b.Merge.Applied
	bc.Dropped += b.Merge.Dropped
	bc.Bad += b.Merge.Bad
	bc.OutOfOrder += b.Merge.OutOfOrder
	if l := b.Merge.Lost; l > 0 {
		bc.Lost += l
		s.raiseOperatorAlert(OperatorAlert{At: b.Watermark, Kind: "repartition-records-lost-to-retention", Partition: b.Partition, Count: l,
			Message: fmt.Sprintf("%d records of the repartition topic's partition %d were deleted by retention before detection read them: their lines were not detected on; raise the topic's retention", l, b.Partition)})
	}
	applyDetect(s, b)
	if b.Checkpoint {
		checkpointByClient(p)
	}
	return nil
}

// ByClientStart returns, read together, partition p's record, a copy of its
// detector state and the replay generation: a second stage resumes from
// exactly that (the state decoded after the lock, as by WorkerStart).
func (f *FSM) ByClientStart(p int32) (Partition, *detect.PartitionState, uint64, bool) {
	f.mu.RLock()
	part, frozen, ok := f.workerStart(p)
	gen := f.state.Gen
	f.mu.RUnlock()
	return part, frozen.State(), gen, ok
}

// Gen is the replay generation.
func (f *FSM) Gen() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Gen
}

// ClientsInSeveralPartitions counts the clients whose detector state is in
// more than one partition, and names one of them.
//
// It reads one partition at a time under the read lock, which it lets go
// between partitions: applies wait for one partition's buckets at most, not
// the whole state's (a node reads them every 10 s). The count is of the
// states as they were when each was read.
func (f *FSM) ClientsInSeveralPartitions() (count int, example string) {
	f.mu.RLock()
	parts := make([]int32, 0, len(f.state.Detect))
	keys := 0
	for p, st := range f.state.Detect {
		parts = append(parts, p)
		keys += st.Len()
	}
	f.mu.RUnlock()
	// Sized for every key at once: grown from nothing, the map's
	// rehashing was most of the cost.
	where := make(map[string]int32, keys)
	several := map[string]bool{}
	for _, p := range parts {
		f.mu.RLock()
		if st := f.state.Detect[p]; st != nil {
			st.Keys(func(key []byte) {
				_, src, _ := bytes.Cut(key, []byte("|"))
				src, _, _ = bytes.Cut(src, []byte("\x1f"))
				if q, ok := where[string(src)]; !ok {
					where[string(src)] = p
				} else if q != p {
					several[string(src)] = true
				}
			})
		}
		f.mu.RUnlock()
	}
	for c := range several {
		if example == "" || c < example {
			example = c
		}
	}
	return len(several), example
}
