package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/wire"
)

// figures is the load figures of n records over the minutes after minute.
func figures(r *rand.Rand, n, minute, minutes int) *analytics.Aggregate {
	a := analytics.NewAggregate()
	for i := 0; i < n; i++ {
		e := accesslog.Entry{Time: int64(1_700_000_000+60*(minute+r.IntN(minutes))+r.IntN(60)) * 1e9,
			Client: fmt.Appendf(nil, "10.0.0.%d", r.IntN(40)), Path: fmt.Appendf(nil, "/p%d", r.IntN(20)),
			Method: []byte("GET"), Status: 200 + 100*r.IntN(3), Bytes: int64(r.IntN(999)), Duration: int64(1 + r.IntN(5000))}
		a.Add(&e)
	}
	return a
}

// detectorDelta is a detector delta of a few buckets and an alert.
func detectorDelta(p int32, round int) *detect.Delta {
	return &detect.Delta{Partition: p, Watermark: int64(round), Buckets: map[string]*detect.Bucket{
		fmt.Sprintf("s|10.0.%d.1", round): {Level: 3, LastT: int64(round), Keys: []uint64{7, 9}, Extra: &detect.Extra{Samples: []string{"GET /x"}}},
		fmt.Sprintf("s|10.0.%d.2", round): {Level: 1},
	}, Alerts: []detect.Alert{{ID: fmt.Sprintf("a%d", round), Scenario: "http-probing", SourceIP: "10.0.0.1", Partition: p, Time: int64(round) * 1e9}}}
}

// rawBatch encodes b with the analytics and detector delta given as bytes,
// whatever they hold.
func rawBatch(b Batch, analyticsBytes, detectBytes []byte) []byte {
	out := wire.AppendString(nil, b.Node)
	out = wire.AppendInt(out, int64(b.Partition))
	out = wire.AppendUint(out, b.Epoch)
	out = wire.AppendInt(out, b.From)
	out = wire.AppendInt(out, b.Until)
	out = wire.AppendInt(out, b.Digest.Records)
	out = wire.AppendInt(out, b.Digest.Bytes)
	out = wire.AppendFixed64(out, b.Digest.Sum)
	out = wire.AppendBytes(out, analyticsBytes)
	out = wire.AppendBytes(out, detectBytes)
	out = wire.AppendUint(out, 0) // no bad records
	// Stage, generation, watermark, late, no marks, the merge's counts.
	for range 11 {
		out = wire.AppendUint(out, 0)
	}
	return wire.AppendUint(out, flagCheckpoint)
}

// snapshotOf is s as a snapshot holds it.
func snapshotOf(t testing.TB, s *State) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// restored is the state of snapshot snap, with the built-in rules
// compiled once for all.
func restored(t testing.TB, snap []byte) *State {
	t.Helper()
	s, err := ReadSnapshot(bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	if s.Config == nil || s.Config.Rules == "" {
		s.rules = builtinRules(t)
	}
	return s
}

var builtin struct {
	once  sync.Once
	rules *detect.Rules
}

func builtinRules(t testing.TB) *detect.Rules {
	builtin.once.Do(func() {
		r, err := detect.Builtin()
		if err != nil {
			t.Fatal(err)
		}
		builtin.rules = r
	})
	return builtin.rules
}

// startedSnapshot is the snapshot of started, as a restored replica
// writes it (a snapshot keeps counts in key order).
func startedSnapshot(t testing.TB) []byte {
	return snapshotOf(t, restored(t, snapshotOf(t, started(t))))
}

// started is a state with two partitions of n1 that have each applied one
// batch of figures and detector state.
func started(t testing.TB) *State {
	s := assigned(2, "n1")
	Apply(s, Command{Kind: KindConfigure, Config: &Config{LogFormat: "combined", Retention: "0s"}})
	r := rand.New(rand.NewPCG(1, 1))
	for p := int32(0); p < 2; p++ {
		if err := commit(s, Batch{Node: "n1", Partition: p, Epoch: 1, From: 0, Until: 100, Digest: Digest{Records: 100, Bytes: 1000, Sum: 5},
			Analytics: figures(r, 100, 0, 1), Detect: detectorDelta(p, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// A batch whose analytics or detector delta are corrupt past a valid
// beginning is refused whole, on its own: its partition's offsets, digest,
// figures and detector state are as if it had never been proposed, and the
// good batch beside it counts.
func TestApply_CorruptBatchChangesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	goodFigures := figures(r, 300, 1, 5).AppendBinary(nil) // five windows
	goodDelta := detectorDelta(0, 2).AppendBinary(nil)
	tests := []struct {
		name            string
		figures, detect []byte
	}{
		{"figures cut in the second window", goodFigures[:len(goodFigures)/3], goodDelta},
		{"figures cut in the last window", goodFigures[:len(goodFigures)-2], goodDelta},
		{"detector delta cut short", goodFigures, goodDelta[:len(goodDelta)-3]},
		{"detector delta with bytes left over", goodFigures, append(bytes.Clone(goodDelta), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := startedSnapshot(t)
			bad := Batch{Node: "n1", Partition: 0, Epoch: 1, From: 100, Until: 400, Digest: Digest{Records: 300, Bytes: 3000}}
			good := Batch{Node: "n1", Partition: 1, Epoch: 1, From: 100, Until: 400, Digest: Digest{Records: 300, Bytes: 3000}}
			goodBytes := rawBatch(good, goodFigures, detectorDelta(1, 2).AppendBinary(nil))

			s := restored(t, base)
			cmd, err := Decode(CommitEntry([][]byte{rawBatch(bad, tt.figures, tt.detect), goodBytes}))
			if err != nil {
				t.Fatalf("the entry's frame is whole, yet: %v", err)
			}
			res := Apply(s, cmd)
			if res.Rejected[0] != "bad_batch" || res.Rejected[1] != "" {
				t.Fatalf("rejected %q, want [bad_batch, \"\"]", res.Rejected)
			}
			// The same state as if only the good batch had been proposed.
			want := restored(t, base)
			only, err := Decode(CommitEntry([][]byte{goodBytes}))
			if err != nil {
				t.Fatal(err)
			}
			Apply(want, only)
			if got, want := snapshotOf(t, s), snapshotOf(t, want); !bytes.Equal(got, want) {
				t.Fatalf("the refused batch changed the state (%d vs %d bytes)", len(got), len(want))
			}
			if p := s.Partitions[0]; p.Committed != 100 || p.Digest != (Digest{Records: 100, Bytes: 1000, Sum: 5}) {
				t.Fatalf("partition 0 moved: %+v", p)
			}
		})
	}
}

// checkWholeOrNothing applies entry to the state of snapshot base and
// fails unless the entry was refused and the state is byte for byte base,
// or every batch it applied was whole: offsets moved and bodies that
// decode. Two replicas applying it agree. It returns the first batch's
// verdict.
func checkWholeOrNothing(t testing.TB, base, entry []byte) string {
	t.Helper()
	cmd, err := Decode(entry)
	if err != nil || (cmd.Kind != KindCommit && cmd.Kind != KindResults) {
		return "entry refused" // by every replica (FSM.Apply), or no batch
	}
	s := restored(t, base)
	before := append([]Partition(nil), s.Partitions...)
	res := Apply(s, cmd)
	if res.Err != "" || len(res.Rejected) != len(cmd.Commit) {
		t.Fatalf("result %+v for %d batches", res, len(cmd.Commit))
	}
	applied := false
	for i, b := range cmd.Commit {
		if res.Rejected[i] != "" {
			continue
		}
		applied = true
		if p := s.Partitions[b.Partition]; p.Committed != b.Until || p.Commits != before[b.Partition].Commits+1 {
			t.Fatalf("batch %d applied, partition %+v", i, p)
		}
		if a := b.analytics.Bytes(); len(a) > 0 {
			if _, err := analytics.DecodeAggregate(a); err != nil {
				t.Fatalf("batch %d applied with figures that do not decode: %v", i, err)
			}
		}
		if d := b.detect.Bytes(); len(d) > 0 {
			if _, err := detect.DecodeDelta(d); err != nil {
				t.Fatalf("batch %d applied with a detector delta that does not decode: %v", i, err)
			}
		}
	}
	after := snapshotOf(t, s)
	if !applied {
		if !bytes.Equal(after, base) {
			t.Fatalf("every batch refused (%q), yet the state changed", res.Rejected)
		}
	} else {
		other := restored(t, base)
		Apply(other, cmd)
		if !bytes.Equal(snapshotOf(t, other), after) {
			t.Fatal("two replicas applying the same entry disagree")
		}
	}
	if len(res.Rejected) == 0 {
		return "no batch"
	}
	return res.Rejected[0]
}

// flipEntry is an entry of one batch of partition 0 that started accepts.
func flipEntry() []byte {
	r := rand.New(rand.NewPCG(4, 5))
	b := Batch{Node: "n1", Partition: 0, Epoch: 1, From: 100, Until: 200, Digest: Digest{Records: 100, Bytes: 1000, Sum: 9},
		Analytics: figures(r, 100, 0, 2), Detect: detectorDelta(0, 3),
		Malformed: []BadRecord{{Partition: 0, Offset: 150, Reason: "bad status", Line: "junk"}}}
	return CommitEntry([][]byte{EncodeBatch(&b)})
}

// TestApply_ByteFlipsApplyWholeOrNotAtAll flips random bytes of a commit
// entry: every replica refuses it, or the batch changes nothing, or it
// applies whole.
func TestApply_ByteFlipsApplyWholeOrNotAtAll(t *testing.T) {
	base := startedSnapshot(t)
	entry := flipEntry()
	checkWholeOrNothing(t, base, entry)
	r := rand.New(rand.NewPCG(6, 7))
	runs := 500
	if testing.Short() {
		runs = 100
	}
	verdicts := map[string]int{}
	defer func() { t.Logf("verdicts: %v", verdicts) }()
	for i := 0; i < runs; i++ {
		e := bytes.Clone(entry)
		for n := 1 + r.IntN(3); n > 0; n-- {
			e[r.IntN(len(e))] ^= byte(1 + r.IntN(255))
		}
		verdicts[checkWholeOrNothing(t, base, e)]++
	}
	// The flips must reach the bodies, not only the frame.
	if verdicts["bad_batch"] == 0 || verdicts[""] == 0 {
		t.Fatalf("verdicts %v: no flip made a bad batch, or none applied", verdicts)
	}
}

func FuzzDecodeCommit(f *testing.F) {
	base := startedSnapshot(f)
	f.Add(flipEntry())
	f.Add(CommitEntry(nil))
	f.Add(ResultsEntry(true, [][]byte{EncodeBatch(&Batch{Node: "n1", Until: 1})}))
	f.Fuzz(func(t *testing.T, entry []byte) {
		checkWholeOrNothing(t, base, entry)
		if cmd, err := Decode(entry); err == nil && (cmd.Kind == KindCommit || cmd.Kind == KindResults) {
			if _, err := Decode(encodeBatches(cmd)); err != nil {
				t.Fatalf("a decoded entry re-encodes to bytes that do not decode: %v", err)
			}
		}
	})
}
