package detect

import (
	"bytes"
	"testing"
)

func deltaBytes(d *Delta) CheckedDelta {
	c, err := CheckDelta(d.AppendBinary(nil))
	if err != nil {
		panic(err)
	}
	return c
}

// A frozen state is the state at Freeze, whatever changes follow before its
// Release; after it, changes overwrite buckets in place again.
func TestFreeze_CopyOnWrite(t *testing.T) {
	p := &PartitionState{}
	p.ApplyChecked(deltaBytes(&Delta{Partition: 3, Watermark: 10, Buckets: map[string]*Bucket{
		"s|10.0.0.1": {Level: 1}, "s|10.0.0.2": {Level: 2, Keys: []uint64{1}, Extra: &Extra{Samples: []string{"GET /"}}}, "t|10.0.0.1": {Level: 3}}}))
	f := p.Freeze(3)
	want := f.AppendBinary(nil)
	kept := p.Buckets["s|10.0.0.1"]
	p.ApplyChecked(deltaBytes(&Delta{Partition: 3, Watermark: 20, Buckets: map[string]*Bucket{
		"s|10.0.0.1": {Level: 9}, "s|10.0.0.2": nil, "u|10.0.0.3": {Level: 4}}}))
	if got := f.AppendBinary(nil); !bytes.Equal(got, want) {
		t.Fatal("changes after Freeze reached the frozen state")
	}
	if kept.Level != 1 || p.Buckets["s|10.0.0.1"].Level != 9 {
		t.Fatal("a shared bucket was overwritten")
	}
	part, q, err := DecodePartitionState(want)
	if err != nil || part != 3 || q.Watermark != 10 || len(q.Buckets) != 3 || q.Buckets["s|10.0.0.2"].Samples[0] != "GET /" {
		t.Fatalf("decoded %d %+v %v", part, q, err)
	}
	if again := q.Freeze(3).AppendBinary(nil); !bytes.Equal(again, want) {
		t.Fatal("a decoded state encodes to other bytes")
	}
	f.Release()
	f.Release()
	b := p.Buckets["s|10.0.0.1"]
	p.ApplyChecked(deltaBytes(&Delta{Partition: 3, Buckets: map[string]*Bucket{"s|10.0.0.1": {Level: 5}}}))
	if p.Buckets["s|10.0.0.1"] != b || b.Level != 5 {
		t.Fatal("after Release a bucket is not overwritten in place")
	}
}

func TestDecodePartitionState_Refuses(t *testing.T) {
	good := (&PartitionState{Buckets: map[string]*Bucket{"a|1": {Level: 1}, "b|2": {Level: 2}}}).Freeze(1).AppendBinary(nil)
	for n := range good {
		if _, _, err := DecodePartitionState(good[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	for name, d := range map[string]*Delta{
		"alerts":  {Buckets: map[string]*Bucket{"a|1": {}}, Alerts: []Alert{{ID: "x"}}},
		"removal": {Buckets: map[string]*Bucket{"a|1": nil}},
	} {
		if _, _, err := DecodePartitionState(d.AppendBinary(nil)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
