package detect

import (
	"bytes"
	"fmt"
	"testing"
)

func deltaBytes(d *Delta) CheckedDelta {
	c, err := CheckDelta(d.AppendBinary(nil))
	if err != nil {
		panic(err)
	}
	return c
}

// A frozen state is the state at Freeze, whatever applies, overwrites,
// removals, merges of runs and compactions follow; it decodes to its
// buckets and encodes back to its bytes; and PartitionState.AppendBinary
// writes the same bytes for the same buckets.
func TestFreeze_SharesNoChange(t *testing.T) {
	base := &Delta{Partition: 3, Watermark: 10, Buckets: map[string]*Bucket{
		"s|10.0.0.1": {Level: 1}, "s|10.0.0.2": {Level: 2, Keys: []uint64{1}, Extra: &Extra{Samples: []string{"GET /"}}}, "t|10.0.0.1": {Level: 3}}}
	for i := range 500 {
		base.Buckets[fmt.Sprintf("b|10.2.%d.%d", i/256, i%256)] = &Bucket{Level: i}
	}
	older := &Delta{Partition: 3, Watermark: 11, Buckets: map[string]*Bucket{}}
	for i := range 40 {
		older.Buckets[fmt.Sprintf("b|10.2.0.%d", i)] = &Bucket{Level: 1000 + i}
	}
	middle := &Delta{Partition: 3, Watermark: 11, Buckets: map[string]*Bucket{}}
	for i := range 10 {
		middle.Buckets[fmt.Sprintf("b|10.2.1.%d", i)] = &Bucket{Level: 2000 + i}
	}
	newer := &Delta{Partition: 3, Watermark: 12, Buckets: map[string]*Bucket{"s|10.0.0.1": {Level: 5}}}
	s, ref := &Stored{}, &PartitionState{}
	for _, d := range []*Delta{base, older, middle, newer} {
		s.ApplyChecked(deltaBytes(d))
		ref.ApplyChecked(deltaBytes(d))
	}
	if len(s.runs) != 3 || cap(s.runs) == 3 {
		t.Fatalf("%d runs over the base (room for %d), want 3 and room for more (the test's sizes are wrong)", len(s.runs), cap(s.runs))
	}
	f := s.Freeze(3)
	want := f.AppendBinary(nil)
	if !bytes.Equal(want, ref.AppendBinary(nil, 3)) {
		t.Fatal("a frozen Stored and a PartitionState of the same buckets write other bytes")
	}
	// Overwrite, remove and add (the newest run merges with the next
	// delta's), then enough deltas to compact the base several times over.
	s.ApplyChecked(deltaBytes(&Delta{Partition: 3, Watermark: 20, Buckets: map[string]*Bucket{
		"s|10.0.0.1": {Level: 9}, "s|10.0.0.2": nil, "u|10.0.0.3": {Level: 4}}}))
	if got := f.AppendBinary(nil); !bytes.Equal(got, want) {
		t.Fatal("a merge of runs after Freeze reached the frozen state")
	}
	for i := range 2000 {
		s.ApplyChecked(deltaBytes(&Delta{Partition: 3, Watermark: 30, Buckets: map[string]*Bucket{
			fmt.Sprintf("v|10.1.%d.%d", i/256, i%256): {Level: i}, "t|10.0.0.1": {Level: i}}}))
	}
	if got := f.AppendBinary(nil); !bytes.Equal(got, want) {
		t.Fatal("changes after Freeze reached the frozen state")
	}
	if now := s.State(); now.Buckets["s|10.0.0.1"].Level != 9 || now.Buckets["s|10.0.0.2"] != nil || len(now.Buckets) != 2503 {
		t.Fatalf("the changes did not reach the state: %d buckets", len(now.Buckets))
	}
	part, q, err := DecodePartitionState(want)
	if err != nil || part != 3 || q.Watermark != 12 || len(q.Buckets) != 503 || q.Buckets["s|10.0.0.2"].Samples[0] != "GET /" || q.Buckets["s|10.0.0.1"].Level != 5 {
		t.Fatalf("decoded %d %d buckets %v", part, len(q.Buckets), err)
	}
	if again := q.AppendBinary(nil, 3); !bytes.Equal(again, want) {
		t.Fatal("a decoded state encodes to other bytes")
	}
}

func TestDecodePartitionState_Refuses(t *testing.T) {
	good := (&PartitionState{Buckets: map[string]*Bucket{"a|1": {Level: 1}, "b|2": {Level: 2}}}).AppendBinary(nil, 1)
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
