package detect

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wardenhq/warden/internal/wire"
)

// A partition's detector state in an FSM snapshot has the binary form of a
// Delta that sets every bucket (keys in byte order, no removals, no
// alerts), so it is checked and applied by the reader of Raft deltas
// (CheckDelta, ApplyChecked).
//
// The snapshot is taken under the FSM's lock and written outside it, while
// applies go on, without copying a bucket under the lock: Freeze shares the
// map and the buckets with the snapshot, and until its Release the state
// copies the map before its next change and replaces the buckets it
// changes instead of overwriting them (copy on write). The sort and the
// encoding come later, outside the lock.

// FrozenState is a PartitionState as it was when Freeze returned.
type FrozenState struct {
	partition int32
	watermark int64
	buckets   map[string]*Bucket // shared with state until it changes
	state     *PartitionState    // nil once released
	stored    *Stored            // instead of buckets, a Stored's bytes (Stored.Freeze)
}

// Freeze returns partition's state as it is now, for a snapshot, sharing
// its buckets. The caller holds whatever guards p against writers (and
// other freezes) for the time of the call, and calls Release under the
// same guard once the snapshot is written; until then p's changes
// allocate. p must change only through Apply and ApplyChecked.
func (p *PartitionState) Freeze(partition int32) *FrozenState {
	p.frozen++
	p.mapShared = true
	return &FrozenState{partition: partition, watermark: p.Watermark, buckets: p.Buckets, state: p}
}

// Release ends f's sharing of its state's buckets (see Freeze). A second
// call does nothing.
func (f *FrozenState) Release() {
	if f.state != nil {
		f.state.frozen--
		f.state = nil
	}
}

// Partition is the partition the state is of.
func (f *FrozenState) Partition() int32 { return f.partition }

// AppendBinary appends the frozen state's binary form to b, buckets in key
// order: the same state gives the same bytes. It reads the shared buckets,
// so it runs before Release.
func (f *FrozenState) AppendBinary(b []byte) []byte {
	if f.stored != nil {
		return appendStored(b, f.partition, f.stored)
	}
	type entry struct {
		key string
		b   *Bucket
	}
	es := make([]entry, 0, len(f.buckets))
	for k, bk := range f.buckets {
		es = append(es, entry{k, bk})
	}
	slices.SortFunc(es, func(x, y entry) int { return strings.Compare(x.key, y.key) })
	b = wire.AppendInt(b, int64(f.partition))
	b = wire.AppendInt(b, f.watermark)
	b = wire.AppendUint(b, uint64(len(es)))
	for _, e := range es {
		b = appendBucket(b, e.key, e.b)
	}
	return wire.AppendUint(b, 0) // no alerts
}

// DecodePartitionState reads what FrozenState.AppendBinary wrote: the
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
