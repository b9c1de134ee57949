package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/wardenhq/warden/internal/wire"
)

// stateBytes is p's binary form, p left as it was.
func stateBytes(p *PartitionState, partition int32) []byte { return p.AppendBinary(nil, partition) }

// unsortedDelta is d's binary form with its buckets in reverse key order,
// and the first one written once more before them with another level, so
// that the one in force is the last of its key: a delta of an encoder that
// does not sort.
func unsortedDelta(t *testing.T, d *Delta) CheckedDelta {
	keys := slices.Sorted(maps.Keys(d.Buckets))
	slices.Reverse(keys)
	b := wire.AppendInt(nil, int64(d.Partition))
	b = wire.AppendInt(b, d.Watermark)
	b = wire.AppendUint(b, uint64(len(keys)+1))
	if len(keys) > 0 {
		b = appendBucket(b, keys[0], &Bucket{Level: 77})
	}
	for _, k := range keys {
		b = appendBucket(b, k, d.Buckets[k])
	}
	if len(keys) == 0 {
		b = appendBucket(b, "z|1", nil)
	}
	tail := (&Delta{Alerts: d.Alerts}).AppendBinary(nil)
	b = append(b, tail[3:]...) // its alerts: past partition 0, watermark 0 and no bucket
	c, err := CheckDelta(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStored_AsPartitionState applies the same random deltas to a
// PartitionState and a Stored (sorted as Delta.AppendBinary writes them,
// and a fifth of them not): after each, both have the same binary form,
// keys, watermark and alerts, through compactions (small and large bases),
// a decode of the stored snapshot, and a snapshot taken midway that later
// deltas do not reach.
func TestStored_AsPartitionState(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	p, s := &PartitionState{}, NewStored(nil)
	var frozen *FrozenState
	var frozenWant []byte
	compactions := 0
	for round := range 400 {
		d := &Delta{Partition: 2, Watermark: int64(r.IntN(1000)), Buckets: map[string]*Bucket{}}
		width := 50
		if round > 200 {
			width = 3000 // a larger base: compaction at a quarter of it
		}
		for range 1 + r.IntN(40) {
			k := fmt.Sprintf("%s|10.0.%d.%d", []string{"a", "b", "c"}[r.IntN(3)], r.IntN(width)/250, r.IntN(width)%250)
			switch r.IntN(6) {
			case 0:
				d.Buckets[k] = nil
			case 1:
				d.Buckets[k] = &Bucket{Level: r.IntN(9), LastT: r.Int64(), Keys: []uint64{r.Uint64(), r.Uint64()}, Extra: &Extra{Samples: []string{"GET /x", "GET /y"}}}
			default:
				d.Buckets[k] = &Bucket{Level: r.IntN(9), LastLeak: r.Int64N(1 << 50), FirstT: -r.Int64N(5), FirstOff: r.Int64N(1e6), Blackhole: r.Int64N(3)}
			}
		}
		if r.IntN(10) == 0 {
			d.Alerts = []Alert{{ID: fmt.Sprint("alert", round), Scenario: "a", SourceIP: "10.0.0.1", Samples: []string{"GET /"}}}
		}
		c := deltaBytes(d)
		if round%5 == 4 {
			c = unsortedDelta(t, d)
		}
		wantAlerts := p.ApplyChecked(c)
		runs := len(s.runs)
		gotAlerts := s.ApplyChecked(c)
		if len(s.runs) == 0 && runs > 0 {
			compactions++
		}
		if fmt.Sprint(gotAlerts) != fmt.Sprint(wantAlerts) {
			t.Fatalf("round %d: alerts %v, want %v", round, gotAlerts, wantAlerts)
		}
		want := stateBytes(p, 2)
		if got := s.Freeze(2).AppendBinary(nil); !bytes.Equal(got, want) {
			t.Fatalf("round %d: the stored state's bytes differ from the state's (%d against %d)", round, len(got), len(want))
		}
		if s.Watermark() != p.Watermark {
			t.Fatalf("round %d: watermark %d, want %d", round, s.Watermark(), p.Watermark)
		}
		var keys []string
		s.Keys(func(k []byte) { keys = append(keys, string(k)) })
		wantKeys := make([]string, 0, len(p.Buckets))
		for k := range p.Buckets {
			wantKeys = append(wantKeys, k)
		}
		slices.Sort(wantKeys)
		if !slices.Equal(keys, wantKeys) || s.Len() < len(wantKeys) {
			t.Fatalf("round %d: keys %d (len %d), want %d", round, len(keys), s.Len(), len(wantKeys))
		}
		if got := stateBytes(s.State(), 2); !bytes.Equal(got, want) {
			t.Fatalf("round %d: the decoded copy differs", round)
		}
		switch round {
		case 150, 350:
			frozen, frozenWant = s.Freeze(2), want
		case 199, 399:
			if got := frozen.AppendBinary(nil); !bytes.Equal(got, frozenWant) {
				t.Fatalf("round %d: later deltas reached the snapshot", round)
			}
			part, back, err := DecodeStored(want)
			if err != nil || part != 2 {
				t.Fatalf("round %d: decode: %d %v", round, part, err)
			}
			if got := back.Freeze(2).AppendBinary(nil); !bytes.Equal(got, want) {
				t.Fatalf("round %d: the decoded stored state differs", round)
			}
			s = back // go on from the decoded one
		}
	}
	if compactions < 10 {
		t.Fatalf("%d compactions: the test did not reach them", compactions)
	}
	if s.Bytes() > 2*len(stateBytes(p, 2)) {
		t.Fatalf("%d bytes held for a state of %d", s.Bytes(), len(stateBytes(p, 2)))
	}
}

func TestDecodeStored_RefusesAsDecodePartitionState(t *testing.T) {
	good := stateBytes(&PartitionState{Buckets: map[string]*Bucket{"a|1": {Level: 1}, "b|2": {Level: 2, Keys: []uint64{3}}}}, 1)
	for n := range good {
		if _, _, err := DecodeStored(good[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	if _, _, err := DecodeStored(append(bytes.Clone(good), 0)); err == nil {
		t.Fatal("a byte left over: accepted")
	}
	// Keys out of order: the same entries, swapped.
	var entries [][]byte
	_, _ = walkEntries(good[3:], 2, func(_, e []byte, _ bool) { entries = append(entries, e) })
	swapped := append(append(append([]byte{good[0], good[1], good[2]}, entries[1]...), entries[0]...), 0)
	for name, data := range map[string][]byte{
		"alerts":     (&Delta{Buckets: map[string]*Bucket{"a|1": {}}, Alerts: []Alert{{ID: "x"}}}).AppendBinary(nil),
		"removal":    (&Delta{Buckets: map[string]*Bucket{"a|1": nil}}).AppendBinary(nil),
		"disordered": swapped,
	} {
		if _, _, err := DecodePartitionState(data); err == nil {
			t.Fatalf("%s: the reference accepts it", name)
		}
		if _, _, err := DecodeStored(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestCheckDelta_FlagIsZeroOrOne: a bucket's presence flag is one byte,
// 0 or 1. Read as a count, a flag of 2 or more passed where enough bytes
// followed it in a delta; a replica kept the entry as it came, and the
// same bytes at the end of its state no longer decoded, so its State and
// its snapshots failed.
func TestCheckDelta_FlagIsZeroOrOne(t *testing.T) {
	good := (&Delta{Buckets: map[string]*Bucket{"a|1": {Level: 1}, "b|2": {Level: 2, Extra: &Extra{Samples: []string{strings.Repeat("x", 64)}}}}}).AppendBinary(nil)
	at := bytes.Index(good, []byte("a|1")) + 3
	if good[at] != 1 {
		t.Fatalf("flag byte %d, the test's offset is wrong", good[at])
	}
	if _, err := CheckDelta(good); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []byte{2, 48} {
		bad := bytes.Clone(good)
		bad[at] = flag
		if _, err := CheckDelta(bad); err == nil {
			t.Errorf("flag %d: accepted", flag)
		}
		if _, err := DecodeDelta(bad); err == nil {
			t.Errorf("flag %d: decoded", flag)
		}
	}
}

// TestStored_JSONAsPartitionState: the JSON of a stored state is that of
// its PartitionState, and reads back to the same state (the JSON
// snapshots of earlier releases); a null bucket is no bucket.
func TestStored_JSONAsPartitionState(t *testing.T) {
	p := &PartitionState{Watermark: 5, Buckets: map[string]*Bucket{"a|1": {Level: 1}, "b|2": {Level: 2, Keys: []uint64{3}, Extra: &Extra{Samples: []string{"GET /"}}}}}
	want, _ := json.Marshal(p)
	got, err := json.Marshal(NewStored(p))
	if err != nil || string(got) != string(want) {
		t.Fatalf("JSON %s %v, want %s", got, err, want)
	}
	var s Stored
	if err := json.Unmarshal([]byte(`{"buckets":{"a|1":{"l":1},"b|2":{"l":2,"k":[3],"s":["GET /"]},"c|3":null},"watermark":5}`), &s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Freeze(1).AppendBinary(nil), stateBytes(p, 1)) {
		t.Fatal("the JSON read back is another state")
	}
}

// FuzzDecodeStored: whatever the bytes, the stored form's decoder accepts
// exactly what the map form's does, into the same state; and bytes that
// CheckDelta accepts, applied as a delta to the same state in both forms,
// leave the same state (compared decoded: a delta may encode a number in
// a longer form than the encoder's, which the stored form keeps as it
// came). Nothing panics.
func FuzzDecodeStored(f *testing.F) {
	seed := &PartitionState{Watermark: 9, Buckets: map[string]*Bucket{
		"a|1": {Level: 1}, "b|2": {Level: 2, Keys: []uint64{3, 4}, Extra: &Extra{Samples: []string{"GET /"}}}, "d|4": {Level: 4}}}
	f.Add(stateBytes(seed, 1))
	f.Add((&Delta{Watermark: 20, Buckets: map[string]*Bucket{"a|1": nil, "c|3": {Level: 5}}}).AppendBinary(nil))
	// A removal whose flag is zero in two bytes (0x80 0x00), and a bucket
	// flagged 48 with more than 48 bytes after it (both refused).
	f.Add([]byte{0, 0, 1, 3, 'a', '|', '1', 0x80, 0x00, 0})
	f.Add([]byte("20\x03\x03c00 00\x000000\x00\x03000 00\x000000\x01\x0500000\x03000\x01\xfc\xfc\xfc\xfc\xfc00\x000000\x00\x00"))
	canonical := func(s *Stored) []byte { return stateBytes(s.State(), 1) }
	f.Fuzz(func(t *testing.T, data []byte) {
		part, p, perr := DecodePartitionState(data)
		spart, s, serr := DecodeStored(data)
		if (perr == nil) != (serr == nil) {
			t.Fatalf("the map form says %v, the stored form %v", perr, serr)
		}
		if perr == nil && (spart != part || !bytes.Equal(canonical(s), stateBytes(p, 1))) {
			t.Fatal("the stored form decodes another state")
		}
		c, err := CheckDelta(data)
		if err != nil {
			return
		}
		mp, st := seed.Clone(), NewStored(seed)
		mp.ApplyChecked(c)
		st.ApplyChecked(c)
		st.compact()
		if !bytes.Equal(canonical(st), stateBytes(mp, 1)) {
			t.Fatal("a delta applied to the stored form leaves another state")
		}
	})
}

// BenchmarkStoredState: a new owner's copy of a replica's state (State) of
// 80,000 buckets, with runs of deltas over the base.
func BenchmarkStoredState(b *testing.B) {
	p := &PartitionState{Watermark: 1, Buckets: map[string]*Bucket{}}
	for i := range 80000 {
		p.Buckets[fmt.Sprintf("http-probing|10.%d.%d.%d", i>>16, (i>>8)&255, i&255)] = &Bucket{Level: i % 7, Keys: []uint64{uint64(i), uint64(i) * 3}, FirstT: int64(i), LastT: int64(i) + 60}
	}
	s := NewStored(p)
	for i := range 300 {
		d := &Delta{Watermark: int64(i), Buckets: map[string]*Bucket{}}
		for j := range 20 {
			d.Buckets[fmt.Sprintf("http-probing|10.0.%d.%d", i&255, j)] = &Bucket{Level: j}
		}
		s.ApplyChecked(deltaBytes(d))
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(s.State().Buckets) < 80000 {
			b.Fatal("buckets lost")
		}
	}
}
