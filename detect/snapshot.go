package detect

import (
	"fmt"
	"slices"

	"github.com/wardenhq/warden/internal/wire"
)

// A partition's detector state in an FSM snapshot has the binary form of a
// Delta that sets every bucket (keys in byte order, no removals, no
// alerts), so it is checked and applied by the reader of Raft deltas
// (CheckDelta, ApplyChecked).
//
// The FSM keeps each partition's state as a Stored, whose bytes never
// change once kept: a snapshot taken under the FSM's lock shares them
// (Stored.Freeze) and is merged and written outside it, while applies go
// on. A PartitionState (an owner's copy, a test's reference) writes the
// same bytes for the same buckets (PartitionState.AppendBinary).

// FrozenState is a Stored as it was when Freeze returned.
type FrozenState struct {
	partition int32
	stored    *Stored
}

// Partition is the partition the state is of.
func (f *FrozenState) Partition() int32 { return f.partition }

// State is the frozen state decoded, a PartitionState of its own; nil for
// a nil f.
func (f *FrozenState) State() *PartitionState {
	if f == nil {
		return nil
	}
	return f.stored.State()
}

// AppendBinary appends the frozen state's binary form to b, buckets in key
// order: the same buckets give the same bytes.
func (f *FrozenState) AppendBinary(b []byte) []byte {
	return appendStored(b, f.partition, f.stored)
}

// AppendBinary appends the binary form of p as partition's state to b: the
// bytes a Stored of the same buckets writes. A nil bucket is no bucket.
func (p *PartitionState) AppendBinary(b []byte, partition int32) []byte {
	keys := make([]string, 0, len(p.Buckets))
	for k, bk := range p.Buckets {
		if bk != nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = wire.AppendInt(b, int64(partition))
	b = wire.AppendInt(b, p.Watermark)
	b = wire.AppendUint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendBucket(b, k, p.Buckets[k])
	}
	return wire.AppendUint(b, 0) // no alerts
}

// DecodePartitionState reads what PartitionState.AppendBinary wrote: the
// partition and its state. Corrupt bytes are refused with an error, checked
// through to the end; so is a state that carries alerts or removals, or
// keys out of order.
func DecodePartitionState(data []byte) (int32, *PartitionState, error) {
	n, last, bad := 0, "", ""
	p := &PartitionState{Buckets: map[string]*Bucket{}}
	// What it builds is dropped on any error, so one pass checks and builds.
	partition, watermark, alerts, err := walkDelta(data, func(key []byte, b *Bucket) {
		switch {
		case bad != "":
		case b == nil:
			bad = "a removal"
		case n > 0 && string(key) <= last:
			bad = "keys out of order"
		default:
			last = string(key)
			nb := *b
			p.Buckets[last] = &nb
		}
		n++
	})
	if err := stateRefusal(err, len(alerts), bad); err != nil {
		return 0, nil, err
	}
	p.Watermark = watermark
	return partition, p, nil
}

// stateRefusal is why a partition state's decoding refuses it: the error
// reading it, alerts in it, or what else was bad (empty for nothing).
func stateRefusal(err error, alerts int, bad string) error {
	switch {
	case err != nil:
		return err
	case alerts > 0:
		return fmt.Errorf("detect: decode partition state: %d alerts in a state", alerts)
	case bad != "":
		return fmt.Errorf("detect: decode partition state: %s", bad)
	}
	return nil
}
