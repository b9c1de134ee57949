package fsm

import (
	"errors"
	"math"
	"testing"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/wire"
)

// A second-stage batch is fenced like an input batch, but against the
// repartition partition's own offset; its marks and counts apply with it,
// and nothing of the input partition moves.
func TestApply_ByClientBatches(t *testing.T) {
	s := assigned(2, "a")
	mark := SourceMark{Next: 7, Covered: 9, Watermark: 1e18}
	ok := Batch{Node: "a", Partition: 1, Epoch: 1, Stage: StageByClient, From: 0, Until: 40,
		Marks: []MarkUpdate{{Source: 3, Mark: mark}}, Merge: MergeCounts{Applied: 30, Dropped: 5}, MaxTS: 1234}
	if err := commit(s, ok); err != nil {
		t.Fatal(err)
	}
	p := s.Partitions[1]
	if p.Committed != 0 || p.Commits != 0 || p.Digest != (Digest{}) {
		t.Fatalf("input partition moved: %+v", p)
	}
	bc := p.ByClient
	if bc.Committed != 40 || bc.Commits != 1 || bc.Applied != 30 || bc.Dropped != 5 || bc.MaxTS != 1234 || len(bc.Marks) != 4 {
		t.Fatalf("by-client record %+v", bc)
	}
	if bc.Marks[3] != mark || bc.Marks[0].Watermark != math.MinInt64 {
		t.Fatalf("marks %+v", bc.Marks)
	}
	for _, tt := range []struct {
		name string
		b    Batch
		want error
	}{
		{"a repeat of the same range", ok, ErrOffsetMismatch},
		{"another owner", Batch{Node: "b", Partition: 1, Epoch: 1, Stage: StageByClient, From: 40, Until: 50}, ErrNotOwner},
		{"an old epoch", Batch{Node: "a", Partition: 1, Epoch: 0, Stage: StageByClient, From: 40, Until: 50}, ErrFenced},
		{"another generation", Batch{Node: "a", Partition: 1, Epoch: 1, Stage: StageByClient, Gen: 1, From: 40, Until: 50}, ErrFenced},
		{"backwards", Batch{Node: "a", Partition: 1, Epoch: 1, Stage: StageByClient, From: 40, Until: 39}, ErrBadRange},
		{"a source past the table", Batch{Node: "a", Partition: 1, Epoch: 1, Stage: StageByClient, From: 40, Until: 50,
			Marks: []MarkUpdate{{Source: MaxPartitions}}}, ErrBadBatch},
	} {
		if err := commit(s, tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if s.Partitions[1].ByClient.Committed != 40 {
		t.Fatalf("a rejected batch moved the offset: %+v", s.Partitions[1].ByClient)
	}
	// A replay starts a new generation: the marks go, and only batches of
	// the new generation apply.
	res := Apply(s, Command{Kind: KindResetOffsets, ResetOffsets: &ResetOffsets{Replay: true,
		Resets: []ResetBatch{{Partition: 0, Offset: 0}, {Partition: 1, Offset: 0}}}})
	if res.Err != "" {
		t.Fatal(res.Err)
	}
	if s.Gen != 1 || s.Partitions[1].ByClient.Marks != nil || s.Partitions[1].ByClient.Gen != 1 {
		t.Fatalf("after a replay: gen %d, %+v", s.Gen, s.Partitions[1].ByClient)
	}
	next := Batch{Node: "a", Partition: 1, Epoch: 2, Stage: StageByClient, From: 40, Until: 45}
	if err := commit(s, next); !errors.Is(err, ErrFenced) {
		t.Fatalf("old generation after a replay: %v", err)
	}
	next.Gen = 1
	if err := commit(s, next); err != nil {
		t.Fatal(err)
	}
}

// A second-stage batch that read no record of its own (its lines were
// held in its merge) moves no offset, so From cannot fence it: it names
// how many commits of the stage it follows. Its repeat (a round sent again
// after its leader was deposed), and a batch cut on a state that had not
// yet applied it (its worker restarted from a replica behind), are
// refused with their alerts; a batch of an older release, which names
// none, is fenced by From alone as before.
func TestApply_ByClientBatchesFollowTheirCommits(t *testing.T) {
	s := assigned(2, "a")
	alert := func(id string) *detect.Delta {
		return &detect.Delta{Partition: 1, Alerts: []detect.Alert{{ID: id, Scenario: "http-probing", SourceIP: "203.0.113.9", Partition: 1}}}
	}
	batch := func(from, until int64, follows uint64, next int64, d *detect.Delta) Batch {
		return Batch{Node: "a", Partition: 1, Epoch: 1, Stage: StageByClient, From: from, Until: until, Follows: follows, Sequenced: true,
			Marks: []MarkUpdate{{Source: 3, Mark: SourceMark{Next: next, Covered: 20, Watermark: 1e18}}}, Merge: MergeCounts{Applied: 2}, Detect: d}
	}
	if err := commit(s, batch(0, 40, 0, 7, nil)); err != nil {
		t.Fatal(err)
	}
	held := batch(40, 40, 1, 9, alert("x1"))
	if err := commit(s, held); err != nil {
		t.Fatalf("lines released from the merge: %v", err)
	}
	for name, b := range map[string]Batch{
		"the same batch again":                       held,
		"a batch cut before the held lines' applied": batch(40, 60, 1, 9, alert("x1")),
		"a batch that names a commit to come":        batch(40, 60, 3, 12, nil),
	} {
		if err := commit(s, b); !errors.Is(err, ErrOffsetMismatch) {
			t.Errorf("%s: %v, want %v", name, err, ErrOffsetMismatch)
		}
	}
	if n := len(s.Book.Alerts); n != 1 {
		t.Fatalf("%d alerts in the book, want 1", n)
	}
	if bc := s.Partitions[1].ByClient; bc.Commits != 2 || bc.Committed != 40 || bc.Applied != 4 || bc.Marks[3].Next != 9 {
		t.Fatalf("by-client record %+v", bc)
	}
	if err := commit(s, batch(40, 60, 2, 12, nil)); err != nil {
		t.Fatalf("the next batch: %v", err)
	}
	old := batch(60, 60, 0, 13, nil)
	old.Sequenced, old.Follows = false, 0
	if err := commit(s, old); err != nil {
		t.Fatalf("a batch that names no count: %v", err)
	}
	// Follows goes through the binary form.
	c, err := Decode(CommitEntry([][]byte{EncodeBatch(&held)}))
	if err != nil || !c.Commit[0].Sequenced || c.Commit[0].Follows != 1 {
		t.Fatalf("decoded %+v %v", c.Commit, err)
	}
}

// TestApply_ByClientBatchesOfAStaleRunAreRefused: a worker run whose
// commit was answered as lost stops, and its successor on the same node
// reads a state that has not yet applied the stopped run's batches in
// flight. Those then commit, the successor's first batches are refused,
// and its later ones name the counts the stopped run's reached: they
// were cut on a merge that released lines into the refused batches, so
// taking them would move the marks past lines no commit carried (lost).
// Each run names itself (Batch.Run), and only a run's first batch
// (RunStart) may follow another run's commits.
func TestApply_ByClientBatchesOfAStaleRunAreRefused(t *testing.T) {
	s := assigned(2, "a")
	batch := func(run uint64, start bool, follows uint64, next int64) Batch {
		return Batch{Node: "a", Partition: 1, Epoch: 1, Stage: StageByClient, From: 10, Until: 10, Follows: follows, Sequenced: true,
			Run: run, RunStart: start, Marks: []MarkUpdate{{Source: 3, Mark: SourceMark{Next: next, Covered: 90, Watermark: 1e18}}},
			Merge: MergeCounts{Applied: 1}}
	}
	first := batch(7, true, 0, 5)
	first.From = 0
	if err := commit(s, first); err != nil {
		t.Fatal(err)
	}
	// Run 7's batches in flight commit; run 8 started on the state after
	// its first, and its own first, cut after one commit, is refused.
	for i, b := range []Batch{batch(7, false, 1, 6), batch(7, false, 2, 7)} {
		if err := commit(s, b); err != nil {
			t.Fatalf("run 7's batch %d: %v", i+2, err)
		}
	}
	if err := commit(s, batch(8, true, 1, 20)); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("run 8's first batch, cut after 1 commit of 3: %v", err)
	}
	// Run 8's next batch names 3 commits: it must not be taken.
	if err := commit(s, batch(8, false, 3, 21)); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("run 8's second batch, after its first was refused: %v, want %v", err, ErrOffsetMismatch)
	}
	if bc := s.Partitions[1].ByClient; bc.Commits != 3 || bc.Marks[3].Next != 7 || bc.Applied != 3 || bc.Run != 7 {
		t.Fatalf("by-client record %+v", bc)
	}
	// A run that starts on the state it read takes over; the run it
	// follows can then commit nothing more.
	if err := commit(s, batch(9, true, 3, 8)); err != nil {
		t.Fatalf("run 9's first batch: %v", err)
	}
	if err := commit(s, batch(7, false, 4, 9)); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("run 7 after run 9 took over: %v", err)
	}
	if err := commit(s, batch(9, false, 4, 9)); err != nil {
		t.Fatalf("run 9's second batch: %v", err)
	}
	// Run and RunStart go through the binary form.
	b := batch(9, true, 4, 10)
	c, err := Decode(CommitEntry([][]byte{EncodeBatch(&b)}))
	if err != nil || c.Commit[0].Run != 9 || !c.Commit[0].RunStart || c.Commit[0].Follows != 4 {
		t.Fatalf("decoded %+v %v", c.Commit, err)
	}
	// A batch of a release before runs names none, and is fenced by its
	// count alone, as before.
	old := batch(0, false, 5, 10)
	if err := commit(s, old); err != nil {
		t.Fatalf("a batch that names no run: %v", err)
	}
}

// Entries written before the repartition stage (0xB1, batches without the
// stage fields) still decode, as input batches.
func TestDecode_CommitBeforeTheRepartitionStage(t *testing.T) {
	s := assigned(1, "a")
	b := wire.AppendString(nil, "a")
	b = wire.AppendInt(b, 0)  // partition
	b = wire.AppendUint(b, 1) // epoch
	b = wire.AppendInt(b, 0)
	b = wire.AppendInt(b, 10)
	b = wire.AppendInt(b, 10)
	b = wire.AppendInt(b, 100)
	b = wire.AppendFixed64(b, 42)
	b = wire.AppendBytes(b, nil)
	b = wire.AppendBytes(b, nil)
	b = wire.AppendUint(b, 0)
	entry := append([]byte{binaryCommit}, wire.AppendUint(nil, 1)...)
	entry = append(entry, b...)
	cmd, err := Decode(entry)
	if err != nil {
		t.Fatal(err)
	}
	if res := Apply(s, cmd); res.Rejected[0] != "" {
		t.Fatalf("rejected %v", res.Rejected)
	}
	if p := s.Partitions[0]; p.Committed != 10 || p.Digest.Sum != 42 {
		t.Fatalf("partition %+v", p)
	}
	// The same bytes under the new leading byte lack the stage fields.
	entry[0] = binaryCommit2
	if _, err := Decode(entry); err == nil {
		t.Fatal("a batch without its stage fields decoded under the new entry byte")
	}
}

// TestClientsInSeveralPartitions_CountsEachClientOnce: a client with
// buckets in two partitions counts once, whatever its scenarios and
// groups; one in a single partition not at all.
func TestClientsInSeveralPartitions_CountsEachClientOnce(t *testing.T) {
	f := New("t")
	b := &detect.Bucket{Level: 1}
	f.state.Detect[0] = detect.NewStored(&detect.PartitionState{Buckets: map[string]*detect.Bucket{
		"http-probing|192.0.2.1": b, "http-flood|192.0.2.1": b, "http-probing|192.0.2.2": b, "http-flood|192.0.2.9\x1fsite-a": b}})
	f.state.Detect[1] = detect.NewStored(&detect.PartitionState{Buckets: map[string]*detect.Bucket{
		"http-flood|192.0.2.1": b, "http-probing|192.0.2.3": b, "http-probing|192.0.2.9\x1fsite-b": b}})
	f.state.Detect[2] = detect.NewStored(&detect.PartitionState{Buckets: map[string]*detect.Bucket{"http-probing|192.0.2.3": b}})
	count, example := f.ClientsInSeveralPartitions()
	if count != 3 || example != "192.0.2.1" {
		t.Fatalf("%d clients in several partitions, e.g. %q; want 3 (192.0.2.1, .3 and .9), e.g. 192.0.2.1", count, example)
	}
}

// TestApply_InputBatchesOfAStaleRunAreRefused: the input stage's batches
// are fenced by their offsets, so a stale run's batch passes only when it
// starts where the state stands; but what it carries may rest on its own
// refused batches (a checkpoint holds the buckets changed since the run's
// own last checkpoint, which did not commit), so only a run's first batch
// may follow another run's commits, as in the second stage.
func TestApply_InputBatchesOfAStaleRunAreRefused(t *testing.T) {
	s := assigned(2, "a")
	batch := func(run uint64, start bool, from, until int64) Batch {
		return Batch{Node: "a", Partition: 1, Epoch: 1, From: from, Until: until, Run: run, RunStart: start}
	}
	for i, b := range []Batch{batch(7, true, 0, 10), batch(7, false, 10, 20)} {
		if err := commit(s, b); err != nil {
			t.Fatalf("run 7's batch %d: %v", i+1, err)
		}
	}
	// Run 8 started on the state after run 7's first batch: its first is
	// refused, and its second, cut at 20 as run 7's ended, must be too.
	if err := commit(s, batch(8, true, 10, 20)); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("run 8's first batch: %v", err)
	}
	if err := commit(s, batch(8, false, 20, 30)); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("run 8's second batch, after its first was refused: %v, want %v", err, ErrOffsetMismatch)
	}
	if p := s.Partitions[1]; p.Committed != 20 || p.Commits != 2 || p.Run != 7 {
		t.Fatalf("partition %+v", p)
	}
	if err := commit(s, batch(9, true, 20, 30)); err != nil {
		t.Fatalf("run 9's first batch: %v", err)
	}
	if err := commit(s, batch(7, false, 30, 40)); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("run 7 after run 9 took over: %v", err)
	}
	if err := commit(s, batch(0, false, 30, 40)); err != nil {
		t.Fatalf("a batch that names no run: %v", err)
	}
}
