package pipeline

import (
	"slices"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/workload"
)

// checkpointRun is a source's run over lines in batches of batch records,
// its deltas applied to a replicated state as the FSM does.
type checkpointRun struct {
	alerts []detect.Alert
	// states is the replicated state after each checkpoint, by the offset
	// it stands at (a copy), and the source's watermark there.
	states     map[int64]*detect.PartitionState
	watermarks map[int64]int64
}

func runCheckpointed(t *testing.T, rules *detect.Rules, lines [][]byte, from int64, start *detect.PartitionState, wm int64, cp *Checkpoints, batch int) checkpointRun {
	t.Helper()
	format, err := accesslog.Lookup(LogFormat)
	if err != nil {
		t.Fatal(err)
	}
	run := checkpointRun{states: map[int64]*detect.PartitionState{}, watermarks: map[int64]int64{}}
	replica := &detect.PartitionState{}
	if start != nil {
		replica = start.Clone()
	}
	src := Source{Clock: NewClock(wm, 0), Detector: detect.NewDetector(rules, 0, start)}
	var e accesslog.Entry
	for off := from; off < int64(len(lines)); {
		b := fsm.Batch{From: off}
		n := 0
		for ; n < batch && off < int64(len(lines)); n, off = n+1, off+1 {
			if format.Parse(lines[off], &e) == nil {
				src.Observe(&b, &e, off, lines[off])
			}
		}
		if cp != nil {
			cp.Add(n)
		}
		src.Finish(&b, cp)
		replica.Apply(b.Detect)
		run.alerts = append(run.alerts, b.Detect.Alerts...)
		if b.Checkpoint {
			run.states[off], run.watermarks[off] = replica.Clone(), src.Clock.Watermark
		}
	}
	return run
}

func ids(as []detect.Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

// Checkpoints change neither what a source raises nor, at a checkpoint,
// the replicated state; and an owner that restores a checkpoint, replays
// the records after it up to where the last batch committed and goes on
// raises exactly the alerts the run raised from there.
func TestCheckpoints_ReplayFromACheckpointGoesOnAsTheRunDid(t *testing.T) {
	rules, err := detect.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	g := workload.New(5, 300, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	g.AttackShare = 0.3
	lines := make([][]byte, 30000)
	for i := range lines {
		l, _ := g.Line()
		lines[i] = []byte(l)
	}
	const batch = 500
	every := runCheckpointed(t, rules, lines, 0, nil, NoWatermark, nil, batch)
	cp := NewCheckpoints(time.Hour, 4000, time.Now(), true)
	sparse := runCheckpointed(t, rules, lines, 0, nil, NoWatermark, cp, batch)
	if len(every.alerts) < 100 || !slices.Equal(ids(every.alerts), ids(sparse.alerts)) {
		t.Fatalf("alerts with a checkpoint every batch: %d; every 4,000 records: %d, or other ones", len(every.alerts), len(sparse.alerts))
	}
	if len(sparse.states) < 5 || len(sparse.states) > 10 {
		t.Fatalf("%d checkpoints over %d records, one every 4,000 expected", len(sparse.states), len(lines))
	}
	for off, st := range sparse.states {
		if !sameState(st, every.states[off]) {
			t.Fatalf("replicated state at the checkpoint at %d differs from a checkpoint every batch", off)
		}
	}

	// The owner dies having committed up to crash, the last checkpoint at
	// ck: its successor replays [ck, crash) and goes on.
	crash, ck := int64(15500), int64(-1)
	for off := range sparse.states {
		if off < crash-1000 && off > ck {
			ck = off
		}
	}
	format, _ := accesslog.Lookup(LogFormat)
	src := Source{Clock: NewClock(sparse.watermarks[ck], 0), Detector: detect.NewDetector(rules, 0, sparse.states[ck])}
	var e accesslog.Entry
	for off := ck; off < crash; off++ {
		if format.Parse(lines[off], &e) == nil {
			src.Replay(&e, off, lines[off])
		}
	}
	src.Detector.Alerts() // committed before the crash
	var after []detect.Alert
	b := fsm.Batch{From: crash}
	for off := crash; off < int64(len(lines)); off++ {
		if format.Parse(lines[off], &e) == nil {
			src.Observe(&b, &e, off, lines[off])
		}
	}
	src.Finish(&b, nil)
	after = b.Detect.Alerts
	var want []detect.Alert
	for _, a := range every.alerts {
		if a.Offsets[1] > crash {
			want = append(want, a)
		}
	}
	if len(want) < 20 || !slices.Equal(ids(after), ids(want)) {
		t.Fatalf("after a replay from %d to %d: %d alerts, the run raised %d from there", ck, crash, len(after), len(want))
	}
	// Without the replay the successor raises other alerts: the test can
	// fail.
	src = Source{Clock: NewClock(sparse.watermarks[ck], 0), Detector: detect.NewDetector(rules, 0, sparse.states[ck])}
	b = fsm.Batch{From: crash}
	for off := crash; off < int64(len(lines)); off++ {
		if format.Parse(lines[off], &e) == nil {
			src.Observe(&b, &e, off, lines[off])
		}
	}
	src.Finish(&b, nil)
	if slices.Equal(ids(b.Detect.Alerts), ids(want)) {
		t.Fatal("a successor that skips the replay raises the same alerts: the workload cannot tell")
	}
}

// sameState compares two replicated detector states bucket by bucket.
func sameState(a, b *detect.PartitionState) bool {
	if a == nil || b == nil || len(a.Buckets) != len(b.Buckets) {
		return false
	}
	for k, x := range a.Buckets {
		y, ok := b.Buckets[k]
		if !ok || x.Level != y.Level || x.LastLeak != y.LastLeak || x.FirstT != y.FirstT || x.FirstOff != y.FirstOff ||
			x.LastT != y.LastT || x.Blackhole != y.Blackhole || !slices.Equal(x.Keys, y.Keys) {
			return false
		}
	}
	return a.Watermark == b.Watermark
}
