package fsm

import (
	"errors"
	"testing"

	"github.com/wardenhq/warden/detect"
)

// A batch that is not a checkpoint commits its alerts and offsets and
// leaves the detector state and its checkpoint where they were; a
// checkpoint moves both. An operator's reset of the input unsets an input
// checkpoint, and leaves a second stage's.
func TestCheckpoint_OnlyCheckpointsMoveTheDetectorState(t *testing.T) {
	s := assigned(2, "a")
	alerts := func(p int32, id string) *detect.Delta {
		return &detect.Delta{Partition: p, Alerts: []detect.Alert{{ID: id, Scenario: "http-probing", SourceIP: "10.0.0.1", Partition: p}}}
	}
	if err := commit(s, Batch{Node: "a", Partition: 0, Epoch: 1, From: 0, Until: 10, Watermark: 5, Detect: detectorDelta(0, 1), Checkpoint: true}); err != nil {
		t.Fatal(err)
	}
	want := Checkpoint{Set: true, Stage: StageInput, Offset: 10, Watermark: 5}
	if got := s.Partitions[0].Detector; !equalCheckpoint(got, want) {
		t.Fatalf("after a checkpoint: %+v, want %+v", got, want)
	}
	buckets := len(s.Detect[0].State().Buckets)
	if err := commit(s, Batch{Node: "a", Partition: 0, Epoch: 1, From: 10, Until: 20, Watermark: 9, Detect: alerts(0, "x")}); err != nil {
		t.Fatal(err)
	}
	p := s.Partitions[0]
	if !equalCheckpoint(p.Detector, want) || len(s.Detect[0].State().Buckets) != buckets || s.Detect[0].Watermark() != 1 {
		t.Fatalf("a batch of alerts moved the detector: checkpoint %+v, %d buckets (was %d), watermark %d", p.Detector, len(s.Detect[0].State().Buckets), buckets, s.Detect[0].Watermark())
	}
	if p.Committed != 20 || s.Book.NextSeq != 3 {
		t.Fatalf("committed %d, alerts %d: the batch's offsets and alert must count", p.Committed, s.Book.NextSeq-1)
	}

	// Second stage: the checkpoint keeps the marks as they were then.
	bc := func(from, until int64, next int64, cp bool) Batch {
		return Batch{Node: "a", Partition: 1, Epoch: 1, Stage: StageByClient, From: from, Until: until, MaxTS: until,
			Marks: []MarkUpdate{{Source: 0, Mark: SourceMark{Next: next, Covered: next, Watermark: 1}}}, Detect: alerts(1, "y"), Checkpoint: cp}
	}
	if err := commit(s, bc(0, 4, 7, true)); err != nil {
		t.Fatal(err)
	}
	if err := commit(s, bc(4, 9, 12, false)); err != nil {
		t.Fatal(err)
	}
	ck := s.Partitions[1].Detector
	if !ck.Set || ck.Stage != StageByClient || ck.Offset != 4 || ck.MaxTS != 4 || len(ck.Marks) != 1 || ck.Marks[0].Next != 7 {
		t.Fatalf("second stage's checkpoint %+v, want at 4 with source 0 next at 7", ck)
	}
	if s.Partitions[1].ByClient.Marks[0].Next != 12 {
		t.Fatalf("marks %+v", s.Partitions[1].ByClient.Marks)
	}

	res := Apply(s, Command{Kind: KindResetOffsets, ResetOffsets: &ResetOffsets{Replay: true, Resets: []ResetBatch{{Partition: 0, Offset: 0}, {Partition: 1, Offset: 0}}}})
	if res.Err != "" {
		t.Fatal(res.Err)
	}
	if s.Partitions[0].Detector.Set || !s.Partitions[1].Detector.Set {
		t.Fatalf("after a reset: input's %+v (want unset), second stage's %+v (want kept)", s.Partitions[0].Detector, s.Partitions[1].Detector)
	}
}

func equalCheckpoint(a, b Checkpoint) bool {
	return a.Set == b.Set && a.Stage == b.Stage && a.Offset == b.Offset && a.Watermark == b.Watermark && a.MaxTS == b.MaxTS && a.Gen == b.Gen && len(a.Marks) == len(b.Marks)
}

// Batches of releases before checkpoints each carried their detector
// delta whole: they decode as checkpoints. A flag this release does not
// know refuses the batch.
func TestCheckpoint_EntriesBeforeCheckpointsAreCheckpoints(t *testing.T) {
	b := Batch{Node: "a", Partition: 0, Epoch: 1, From: 0, Until: 10, Detect: detectorDelta(0, 1)}
	data := EncodeBatch(&b)
	// The same batch as the releases before wrote it: without the flags.
	old := append([]byte{binaryCommit2, 1}, data[:len(data)-1]...)
	cmd, err := Decode(old)
	if err != nil {
		t.Fatal(err)
	}
	if !cmd.Commit[0].Checkpoint {
		t.Fatal("a batch of an older release decoded as no checkpoint")
	}
	s := assigned(1, "a")
	if res := Apply(s, cmd); res.Rejected[0] != "" || !s.Partitions[0].Detector.Set {
		t.Fatalf("rejected %v, checkpoint %+v", res.Rejected, s.Partitions[0].Detector)
	}

	unknown := append([]byte{binaryCommit3, 1}, data[:len(data)-1]...)
	unknown = append(unknown, 4)
	cmd, err = Decode(unknown)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Commit[0].checked(); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("a batch with an unknown flag: %v, want %v", err, ErrBadBatch)
	}
}
