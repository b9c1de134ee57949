package detect

import (
	"fmt"
	"slices"

	"github.com/wardenhq/warden/internal/wire"
)

// The binary form of a Delta is what a worker's batch carries through Raft
// (see analytics/binary.go for why not JSON):
//
//	delta:  partition, watermark, n, (key, present, bucket?) × n, m, alert × m
//	        (keys in byte order since Stored; a reader takes any order)
//	bucket: level, last leak, keys, first time, first offset, last time,
//	        blackhole, samples

// AppendBinary appends d's binary form to b.
func (d *Delta) AppendBinary(b []byte) []byte {
	b = wire.AppendInt(b, int64(d.Partition))
	b = wire.AppendInt(b, d.Watermark)
	b = wire.AppendUint(b, uint64(len(d.Buckets)))
	// In key order: a replica keeps the entries as they come and merges
	// them into its state (Stored), which a sorted delta lets it do in one
	// pass; and the same delta is the same bytes.
	keys := make([]string, 0, len(d.Buckets))
	for k := range d.Buckets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendBucket(b, k, d.Buckets[k])
	}
	b = wire.AppendUint(b, uint64(len(d.Alerts)))
	for i := range d.Alerts {
		a := &d.Alerts[i]
		for _, s := range []string{a.ID, a.Scenario, a.CrowdSec, a.SourceIP, a.FirstSeen, a.LastSeen} {
			b = wire.AppendString(b, s)
		}
		b = wire.AppendUint(b, a.Seq)
		b = wire.AppendInt(b, int64(a.Events))
		b = wire.AppendInt(b, int64(a.Partition))
		b = wire.AppendInt(b, a.Offsets[0])
		b = wire.AppendInt(b, a.Offsets[1])
		b = wire.AppendInt(b, a.Time)
		b = appendStrings(b, a.Samples)
	}
	return b
}

// appendBucket appends one bucket entry of a delta: its key, whether it is
// present (nil is a removal), and the bucket.
func appendBucket(b []byte, k string, bk *Bucket) []byte {
	b = wire.AppendString(b, k)
	if bk == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = wire.AppendInt(b, int64(bk.Level))
	b = wire.AppendInt(b, bk.LastLeak)
	b = wire.AppendUint(b, uint64(len(bk.keys())))
	for _, h := range bk.keys() {
		b = wire.AppendFixed64(b, h)
	}
	b = wire.AppendInt(b, bk.FirstT)
	b = wire.AppendInt(b, bk.FirstOff)
	b = wire.AppendInt(b, bk.LastT)
	b = wire.AppendInt(b, bk.Blackhole)
	return appendStrings(b, bk.samples())
}

func appendStrings(b []byte, ss []string) []byte {
	b = wire.AppendUint(b, uint64(len(ss)))
	for _, s := range ss {
		b = wire.AppendString(b, s)
	}
	return b
}

func readStrings(r *wire.Reader) []string {
	n := r.Count(1)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = r.String()
	}
	return ss
}

// DecodeDelta reads what AppendBinary wrote.
func DecodeDelta(data []byte) (*Delta, error) {
	d := &Delta{}
	var err error
	d.Partition, d.Watermark, d.Alerts, err = walkDelta(data, func(key []byte, b *Bucket) {
		if d.Buckets == nil {
			d.Buckets = map[string]*Bucket{}
		}
		if b == nil {
			d.Buckets[string(key)] = nil
			return
		}
		nb := *b
		d.Buckets[string(key)] = &nb
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// CheckedDelta is an encoded Delta that CheckDelta accepted:
// PartitionState.ApplyChecked folds it in whole. The zero value is no delta.
type CheckedDelta struct{ data []byte }

// Bytes is the encoded delta (nil for none). It aliases what was checked.
func (c CheckedDelta) Bytes() []byte { return c.data }

// CheckDelta reads an encoded delta through to its end without keeping
// anything of it, and accepts it only if it is whole.
func CheckDelta(data []byte) (CheckedDelta, error) {
	if _, _, _, err := walkDelta(data, nil); err != nil {
		return CheckedDelta{}, err
	}
	return CheckedDelta{data: data}, nil
}

// ApplyBinary folds an encoded delta into p, as Apply(DecodeDelta(data))
// would, and returns its alerts. A corrupt delta changes nothing: it is
// checked whole (CheckDelta) first.
func (p *PartitionState) ApplyBinary(data []byte) ([]Alert, error) {
	c, err := CheckDelta(data)
	if err != nil {
		return nil, err
	}
	return p.ApplyChecked(c), nil
}

// ApplyChecked folds a checked delta into p and returns its alerts. A
// bucket p already has is overwritten in place, so the common case (a
// client seen again) allocates nothing. It cannot fail.
func (p *PartitionState) ApplyChecked(c CheckedDelta) []Alert {
	if len(c.data) == 0 {
		return nil
	}
	p.writable()
	_, watermark, alerts, _ := walkDelta(c.data, func(key []byte, b *Bucket) {
		if b == nil {
			delete(p.Buckets, string(key))
			return
		}
		if old, ok := p.Buckets[string(key)]; ok {
			*old = *b
			return
		}
		nb := *b
		p.Buckets[string(key)] = &nb
	})
	p.Watermark = max(p.Watermark, watermark)
	return alerts
}

// walkDelta reads an encoded delta. For each bucket it calls visit (if not
// nil) with the key (aliasing data) and the bucket (nil for a removal; a
// scratch value to copy, whose Keys and Extra, if any, are the callee's to
// keep).
func walkDelta(data []byte, visit func(key []byte, b *Bucket)) (partition int32, watermark int64, alerts []Alert, err error) {
	r := wire.NewReader(data)
	partition, watermark = int32(r.Int()), r.Int()
	var scratch Bucket
	n := r.Count(2)
	for i := 0; i < n && r.Err() == nil; i++ {
		k := r.Bytes()
		if !r.Bool() {
			if visit != nil {
				visit(k, nil)
			}
			continue
		}
		scratch = readBucket(r, visit != nil)
		if visit != nil && r.Err() == nil {
			visit(k, &scratch)
		}
	}
	alerts, err = readAlerts(r)
	if err != nil {
		return 0, 0, nil, err
	}
	return partition, watermark, alerts, nil
}

// readBucket reads a bucket's fields, after its key and presence flag.
// With keep false it only reads them, and allocates nothing.
func readBucket(r *wire.Reader, keep bool) Bucket {
	b := Bucket{Level: int(r.Int()), LastLeak: r.Int()}
	if nk := r.Count(8); nk > 0 {
		if keep {
			b.Keys = make([]uint64, nk)
		}
		for j := 0; j < nk; j++ {
			h := r.Fixed64()
			if keep {
				b.Keys[j] = h
			}
		}
	}
	b.FirstT, b.FirstOff, b.LastT, b.Blackhole = r.Int(), r.Int(), r.Int(), r.Int()
	if !keep {
		for j, m := 0, r.Count(1); j < m; j++ {
			r.Bytes()
		}
	} else if samples := readStrings(r); len(samples) > 0 {
		b.Extra = &Extra{Samples: samples}
	}
	return b
}

// readAlerts reads the alerts that end a delta, and checks that nothing
// is left after them.
func readAlerts(r *wire.Reader) (alerts []Alert, err error) {
	if m := r.Count(6); m > 0 {
		alerts = make([]Alert, m)
		for i := range alerts {
			a := &alerts[i]
			a.ID, a.Scenario, a.CrowdSec, a.SourceIP, a.FirstSeen, a.LastSeen = r.String(), r.String(), r.String(), r.String(), r.String(), r.String()
			a.Seq = r.Uint()
			a.Events = int(r.Int())
			a.Partition = int32(r.Int())
			a.Offsets[0], a.Offsets[1] = r.Int(), r.Int()
			a.Time = r.Int()
			a.Samples = readStrings(r)
			a.Scope = alertScope(a.SourceIP)
		}
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("detect: decode delta: %w", err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("detect: decode delta: %d bytes left over", r.Len())
	}
	return alerts, nil
}
