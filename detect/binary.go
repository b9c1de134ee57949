package detect

import (
	"fmt"

	"github.com/wardenhq/warden/internal/wire"
)

// The binary form of a Delta is what a worker's batch carries through Raft
// (see analytics/binary.go for why not JSON):
//
//	delta:  partition, watermark, n, (key, present, bucket?) × n, m, alert × m
//	bucket: level, last leak, keys, first time, first offset, last time,
//	        blackhole, samples

// AppendBinary appends d's binary form to b.
func (d *Delta) AppendBinary(b []byte) []byte {
	b = wire.AppendInt(b, int64(d.Partition))
	b = wire.AppendInt(b, d.Watermark)
	b = wire.AppendUint(b, uint64(len(d.Buckets)))
	for k, bk := range d.Buckets {
		b = wire.AppendString(b, k)
		if bk == nil {
			b = append(b, 0)
			continue
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
		b = appendStrings(b, bk.samples())
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
	r := wire.NewReader(data)
	d := &Delta{Partition: int32(r.Int()), Watermark: r.Int()}
	if n := r.Count(2); n > 0 {
		d.Buckets = make(map[string]*Bucket, n)
		for i := 0; i < n; i++ {
			k := r.String()
			present := r.Count(0) // 0 or 1
			if present == 0 {
				d.Buckets[k] = nil
				continue
			}
			bk := &Bucket{Level: int(r.Int()), LastLeak: r.Int()}
			var keys []uint64
			if nk := r.Count(8); nk > 0 {
				keys = make([]uint64, nk)
				for j := range keys {
					keys[j] = r.Fixed64()
				}
			}
			bk.FirstT, bk.FirstOff, bk.LastT, bk.Blackhole = r.Int(), r.Int(), r.Int(), r.Int()
			if samples := readStrings(r); len(keys) > 0 || len(samples) > 0 {
				bk.Extra = &Extra{Keys: keys, Samples: samples}
			}
			d.Buckets[k] = bk
		}
	}
	if n := r.Count(6); n > 0 {
		d.Alerts = make([]Alert, n)
		for i := range d.Alerts {
			a := &d.Alerts[i]
			a.ID, a.Scenario, a.CrowdSec, a.SourceIP, a.FirstSeen, a.LastSeen = r.String(), r.String(), r.String(), r.String(), r.String(), r.String()
			a.Seq = r.Uint()
			a.Events = int(r.Int())
			a.Partition = int32(r.Int())
			a.Offsets[0], a.Offsets[1] = r.Int(), r.Int()
			a.Time = r.Int()
			a.Samples = readStrings(r)
		}
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("detect: decode delta: %w", err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("detect: decode delta: %d bytes left over", r.Len())
	}
	return d, nil
}
