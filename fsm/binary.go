package fsm

import (
	"fmt"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/wire"
)

// Commands that carry batches (commit, results), the bulk of the Raft log,
// are written in a compact binary form; the other, rare commands stay JSON.
// A binary entry starts with a byte no JSON text starts with:
//
//	binaryCommit2, n, batch × n
//	binaryResults, restart (0 or 1), n, batch × n
//	batch: node, partition, epoch, from, until, digest (records, bytes,
//	       sum), analytics (bytes; empty for none), detector delta (bytes;
//	       empty for none), m, bad record × m (partition, offset, reason, line),
//	       stage, generation, watermark, late, k, mark × k (source, next,
//	       covered, watermark, idle (0 or 1), idle at), merge counts (applied,
//	       dropped, bad, out of order, lost), latest timestamp, flags
//	       (bit 0: checkpoint; bit 1: the analytics bytes are zstd-compressed;
//	       bit 2: the detector delta is, compress.go)
//
// binaryCommit is the commit entry of releases before the repartition
// stage: its batches end after the bad records (and are input batches).
// binaryCommit2 and binaryResults are those of releases before detector
// checkpoints: their batches end before the flags, and each carried its
// detector delta whole (a checkpoint).
//
// Releases before binaryResults wrote results, and releases before
// binaryCommit wrote commits, as JSON: Decode turns those into the binary
// form, so a batch reaches Apply one way only, as bytes.
//
// Decoding checks every part of a batch's bytes (CheckAggregate,
// CheckDelta) before Apply sees it: a batch whose analytics or detector
// delta is corrupt is refused whole (ErrBadBatch) and the others of the
// entry still count; one that passed merges straight from the bytes and
// cannot fail midway. A truncated or corrupt frame refuses the entry.
const (
	binaryCommit   byte = 0xB1
	binaryResults  byte = 0xB2
	binaryCommit2  byte = 0xB3
	binaryCommit3  byte = 0xB4
	binaryResults3 byte = 0xB5
)

// flagCheckpoint is the batch flag of Batch.Checkpoint; flagSequenced
// says Batch.Follows comes after the flags, flagRun that Batch.Run comes
// after it; flagRunStart is Batch.RunStart.
const (
	flagCheckpoint = 1
	flagSequenced  = 8
	flagRun        = 16
	flagRunStart   = 32
)

func appendBatch(b []byte, bt *Batch, compress bool) []byte {
	b = wire.AppendString(b, bt.Node)
	b = wire.AppendInt(b, int64(bt.Partition))
	b = wire.AppendUint(b, bt.Epoch)
	b = wire.AppendInt(b, bt.From)
	b = wire.AppendInt(b, bt.Until)
	b = wire.AppendInt(b, bt.Digest.Records)
	b = wire.AppendInt(b, bt.Digest.Bytes)
	b = wire.AppendFixed64(b, bt.Digest.Sum)
	figures := bt.analytics.Bytes()
	if bt.Analytics != nil {
		figures = bt.Analytics.AppendBinary(make([]byte, 0, 4096))
	}
	compressed := false
	if compress {
		figures, compressed = compressPart(figures)
	}
	b = wire.AppendBytes(b, figures)
	deltaZstd := false
	if bt.Detect != nil && !compress {
		b = wire.AppendSized(b, bt.Detect.AppendBinary)
	} else {
		delta := bt.detect.Bytes()
		if bt.Detect != nil {
			delta = bt.Detect.AppendBinary(nil)
		}
		if compress {
			delta, deltaZstd = compressPart(delta)
		}
		b = wire.AppendBytes(b, delta)
	}
	b = wire.AppendUint(b, uint64(len(bt.Malformed)))
	for _, m := range bt.Malformed {
		b = wire.AppendInt(b, int64(m.Partition))
		b = wire.AppendInt(b, m.Offset)
		b = wire.AppendString(b, m.Reason)
		b = wire.AppendString(b, m.Line)
	}
	b = wire.AppendUint(b, uint64(bt.Stage))
	b = wire.AppendUint(b, bt.Gen)
	b = wire.AppendInt(b, bt.Watermark)
	b = wire.AppendInt(b, bt.Late)
	b = wire.AppendUint(b, uint64(len(bt.Marks)))
	for _, u := range bt.Marks {
		idle := uint64(0)
		if u.Mark.Idle {
			idle = 1
		}
		b = wire.AppendInt(b, int64(u.Source))
		b = wire.AppendInt(b, u.Mark.Next)
		b = wire.AppendInt(b, u.Mark.Covered)
		b = wire.AppendInt(b, u.Mark.Watermark)
		b = wire.AppendUint(b, idle)
		b = wire.AppendInt(b, u.Mark.IdleAt)
	}
	m := bt.Merge
	for _, v := range []int64{m.Applied, m.Dropped, m.Bad, m.OutOfOrder, m.Lost, bt.MaxTS} {
		b = wire.AppendInt(b, v)
	}
	flags := uint64(0)
	if bt.Checkpoint {
		flags |= flagCheckpoint
	}
	if compressed {
		flags |= flagAnalyticsZstd
	}
	if deltaZstd {
		flags |= flagDetectZstd
	}
	if bt.Sequenced {
		flags |= flagSequenced
	}
	if bt.Run != 0 {
		flags |= flagRun
	}
	if bt.RunStart {
		flags |= flagRunStart
	}
	b = wire.AppendUint(b, flags)
	if bt.Sequenced {
		b = wire.AppendUint(b, bt.Follows)
	}
	if bt.Run != 0 {
		b = wire.AppendUint(b, bt.Run)
	}
	return b
}

// encodeBatches is the binary entry of a commit or results command.
func encodeBatches(c Command) []byte {
	batches := make([][]byte, len(c.Commit))
	for i := range c.Commit {
		batches[i] = EncodeBatch(&c.Commit[i])
	}
	if c.Kind == KindResults {
		return ResultsEntry(c.Restart, batches)
	}
	return CommitEntry(batches)
}

// decodeBatches reads a binary entry.
func decodeBatches(data []byte) (Command, error) {
	r := wire.NewReader(data[1:])
	cmd := Command{Kind: KindCommit}
	if data[0] == binaryResults || data[0] == binaryResults3 {
		cmd.Kind = KindResults
		switch r.Uint() {
		case 0:
		case 1:
			cmd.Restart = true
		default:
			return cmd, fmt.Errorf("fsm: decode command: restart flag is neither 0 nor 1")
		}
	}
	n := r.Count(8)
	cmd.Commit = make([]Batch, n)
	ext := data[0] != binaryCommit
	flags := data[0] == binaryCommit3 || data[0] == binaryResults3
	for i := range cmd.Commit {
		decodeBatch(r, &cmd.Commit[i], ext, flags)
	}
	if err := r.Err(); err != nil {
		return cmd, fmt.Errorf("fsm: decode command: %w", err)
	}
	if r.Len() != 0 {
		return cmd, fmt.Errorf("fsm: decode command: %d bytes left over", r.Len())
	}
	return cmd, nil
}

// decodeBatch reads one batch and checks its analytics and detector delta
// through to their ends, so that Apply either refuses it or applies all of
// it. A frame error is left in r.
func decodeBatch(r *wire.Reader, bt *Batch, ext, flags bool) {
	bt.Node = r.String()
	bt.Partition = int32(r.Int())
	bt.Epoch = r.Uint()
	bt.From, bt.Until = r.Int(), r.Int()
	bt.Digest = Digest{Records: r.Int(), Bytes: r.Int(), Sum: r.Fixed64()}
	a, d := r.Bytes(), r.Bytes()
	if m := r.Count(4); m > 0 {
		bt.Malformed = make([]BadRecord, m)
		for j := range bt.Malformed {
			bt.Malformed[j] = BadRecord{Partition: int32(r.Int()), Offset: r.Int(), Reason: r.String(), Line: r.String()}
		}
	}
	badExt := false
	if ext {
		stage := r.Uint()
		bt.Gen = r.Uint()
		bt.Watermark, bt.Late = r.Int(), r.Int()
		if k := r.Count(6); k > 0 {
			bt.Marks = make([]MarkUpdate, k)
			for j := range bt.Marks {
				u := &bt.Marks[j]
				src := r.Int()
				u.Mark.Next, u.Mark.Covered, u.Mark.Watermark = r.Int(), r.Int(), r.Int()
				idle := r.Uint()
				u.Mark.IdleAt = r.Int()
				u.Mark.Idle = idle == 1
				if src < 0 || src >= MaxPartitions || idle > 1 {
					badExt = true
				}
				u.Source = int32(src)
			}
		}
		bt.Merge = MergeCounts{Applied: r.Int(), Dropped: r.Int(), Bad: r.Int(), OutOfOrder: r.Int(), Lost: r.Int()}
		bt.MaxTS = r.Int()
		if m := bt.Merge; stage > uint64(StageByClient) || bt.Late < 0 || m.Applied < 0 || m.Dropped < 0 || m.Bad < 0 || m.OutOfOrder < 0 || m.Lost < 0 {
			badExt = true
		}
		bt.Stage = uint8(min(stage, 255))
	}
	// Before the flags, every batch was a checkpoint.
	bt.Checkpoint = true
	zstdFigures, zstdDelta := false, false
	if flags {
		f := r.Uint()
		bt.Checkpoint, zstdFigures, zstdDelta = f&flagCheckpoint != 0, f&flagAnalyticsZstd != 0, f&flagDetectZstd != 0
		if f&^(flagCheckpoint|flagAnalyticsZstd|flagDetectZstd|flagSequenced|flagRun|flagRunStart) != 0 {
			badExt = true
		}
		if f&flagSequenced != 0 {
			bt.Sequenced, bt.Follows = true, r.Uint()
		}
		if f&flagRun != 0 {
			if bt.Run = r.Uint(); bt.Run == 0 {
				badExt = true
			}
		}
		bt.RunStart = f&flagRunStart != 0
	}
	if r.Err() != nil {
		return
	}
	if badExt {
		bt.decoded, bt.bad = true, fmt.Errorf("%w: stage or marks out of range", ErrBadBatch)
		return
	}
	bt.decoded = true
	if zstdFigures {
		var err error
		if a, err = decompressPart(a); err != nil {
			bt.bad = fmt.Errorf("%w: %w", ErrBadBatch, err)
			return
		}
	}
	if len(a) > 0 {
		c, err := analytics.CheckAggregate(a)
		if err != nil {
			bt.bad = fmt.Errorf("%w: %w", ErrBadBatch, err)
			return
		}
		bt.analytics = c
	}
	if zstdDelta {
		var err error
		if d, err = decompressPart(d); err != nil {
			bt.bad = fmt.Errorf("%w: %w", ErrBadBatch, err)
			return
		}
	}
	if len(d) > 0 {
		c, err := detect.CheckDelta(d)
		if err != nil {
			bt.bad = fmt.Errorf("%w: %w", ErrBadBatch, err)
			return
		}
		bt.detect = c
	}
}

// decodeLegacy turns a commit or results command of an older release's
// JSON into what its binary form decodes to.
func decodeLegacy(c Command) (Command, error) {
	return decodeBatches(encodeBatches(c))
}

// EncodeBatch is one batch in the binary form of a commit entry. Workers
// encode their own batches, in parallel; CommitEntry joins them. A decoded
// batch encodes to the bytes it was decoded from.
func EncodeBatch(b *Batch) []byte { return appendBatch(make([]byte, 0, 4096), b, true) }

// EncodeLocalBatch is EncodeBatch for a batch that never goes through
// Raft (warden analyze's): its figures are not compressed, which would
// only cost time.
func EncodeLocalBatch(b *Batch) []byte { return appendBatch(make([]byte, 0, 4096), b, false) }

// CommitEntry is the log entry of a commit of the batches encoded by
// EncodeBatch, in order.
func CommitEntry(batches [][]byte) []byte {
	return batchEntry([]byte{binaryCommit3}, batches)
}

// ResultsEntry is the log entry of the results of the batches encoded by
// EncodeBatch (at-least- and at-most-once: see semantics.go); restart says
// the first is a worker's first.
func ResultsEntry(restart bool, batches [][]byte) []byte {
	flag := uint64(0)
	if restart {
		flag = 1
	}
	return batchEntry(wire.AppendUint([]byte{binaryResults3}, flag), batches)
}

func batchEntry(head []byte, batches [][]byte) []byte {
	n := len(head) + 5
	for _, b := range batches {
		n += len(b)
	}
	out := make([]byte, 0, n)
	out = append(out, head...)
	out = wire.AppendUint(out, uint64(len(batches)))
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}
