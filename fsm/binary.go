package fsm

import (
	"fmt"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/wire"
)

// Commits, the bulk of the Raft log, are written in a compact binary form;
// the other, rare commands stay JSON. A binary entry starts with
// binaryCommit, a byte no JSON text starts with:
//
//	binaryCommit, n, batch × n
//	batch: node, partition, epoch, from, until, digest (records, bytes,
//	       sum), analytics (bytes; empty for none), detector delta (bytes;
//	       empty for none), m, bad record × m (partition, offset, reason, line)
//
// The analytics and detector delta of a decoded batch stay bytes until Apply
// merges them into the state directly (checked at decoding, so a corrupt
// entry is refused whole).
const binaryCommit byte = 0xB1

func appendBatch(b []byte, bt *Batch) []byte {
	b = wire.AppendString(b, bt.Node)
	b = wire.AppendInt(b, int64(bt.Partition))
	b = wire.AppendUint(b, bt.Epoch)
	b = wire.AppendInt(b, bt.From)
	b = wire.AppendInt(b, bt.Until)
	b = wire.AppendInt(b, bt.Delta.Records)
	b = wire.AppendInt(b, bt.Delta.Bytes)
	b = wire.AppendFixed64(b, bt.Delta.Sum)
	switch {
	case bt.Analytics != nil:
		b = appendSized(b, bt.Analytics.AppendBinary)
	default:
		b = wire.AppendBytes(b, bt.analytics)
	}
	if bt.Detect != nil {
		b = appendSized(b, bt.Detect.AppendBinary)
	} else {
		b = wire.AppendBytes(b, bt.detect)
	}
	b = wire.AppendUint(b, uint64(len(bt.Malformed)))
	for _, m := range bt.Malformed {
		b = wire.AppendInt(b, int64(m.Partition))
		b = wire.AppendInt(b, m.Offset)
		b = wire.AppendString(b, m.Reason)
		b = wire.AppendString(b, m.Line)
	}
	return b
}

// appendSized appends what enc writes, preceded by its length. It reserves
// the largest length prefix, then moves the body back if fewer bytes do.
func appendSized(b []byte, enc func([]byte) []byte) []byte {
	const reserve = 5 // a uvarint of up to 2^35
	at := len(b)
	b = append(b, make([]byte, reserve)...)
	b = enc(b)
	n := len(b) - at - reserve
	hdr := wire.AppendUint(nil, uint64(n))
	copy(b[at:], hdr)
	copy(b[at+len(hdr):], b[at+reserve:])
	return b[:at+len(hdr)+n]
}

func encodeCommit(c Command) []byte {
	batches := make([][]byte, len(c.Commit))
	for i := range c.Commit {
		batches[i] = EncodeBatch(&c.Commit[i])
	}
	return CommitEntry(batches)
}

func decodeCommit(data []byte) (Command, error) {
	r := wire.NewReader(data[1:])
	cmd := Command{Kind: KindCommit}
	n := r.Count(8)
	cmd.Commit = make([]Batch, n)
	for i := range cmd.Commit {
		bt := &cmd.Commit[i]
		bt.Node = r.String()
		bt.Partition = int32(r.Int())
		bt.Epoch = r.Uint()
		bt.From, bt.Until = r.Int(), r.Int()
		bt.Delta = Digest{Records: r.Int(), Bytes: r.Int(), Sum: r.Fixed64()}
		if a := r.Bytes(); len(a) > 0 {
			bt.analytics = a
		}
		if d := r.Bytes(); len(d) > 0 {
			if err := detect.ValidateDelta(d); err != nil {
				return cmd, fmt.Errorf("fsm: decode command: batch %d: %w", i, err)
			}
			bt.detect = d
		}
		if m := r.Count(4); m > 0 {
			bt.Malformed = make([]BadRecord, m)
			for j := range bt.Malformed {
				bt.Malformed[j] = BadRecord{Partition: int32(r.Int()), Offset: r.Int(), Reason: r.String(), Line: r.String()}
			}
		}
	}
	if err := r.Err(); err != nil {
		return cmd, fmt.Errorf("fsm: decode command: %w", err)
	}
	if r.Len() != 0 {
		return cmd, fmt.Errorf("fsm: decode command: %d bytes left over", r.Len())
	}
	return cmd, nil
}

// mergeAnalytics adds a batch's figures, in memory or still encoded, into s.
func (b *Batch) mergeAnalytics(s *analytics.Store) error {
	if b.Analytics != nil {
		return s.Merge(b.Analytics)
	}
	if len(b.analytics) > 0 {
		return s.MergeBinary(b.analytics)
	}
	return nil
}

// EncodeBatch is one batch in the binary form of a commit entry. Workers
// encode their own batches, in parallel; CommitEntry joins them.
func EncodeBatch(b *Batch) []byte { return appendBatch(make([]byte, 0, 4096), b) }

// CommitEntry is the log entry of a commit of the batches encoded by
// EncodeBatch, in order.
func CommitEntry(batches [][]byte) []byte {
	n := 1 + 5
	for _, b := range batches {
		n += len(b)
	}
	out := make([]byte, 0, n)
	out = append(out, binaryCommit)
	out = wire.AppendUint(out, uint64(len(batches)))
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}
