package pipeline_test

import (
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/internal/benchresults"
	"github.com/wardenhq/warden/pipeline"
	"github.com/wardenhq/warden/workload"
)

// scaleOutNodes are the cluster sizes the projection is printed for.
var scaleOutNodes = []int{1, 3, 5, 10, 20, 50}

// scaleOutOwner is the node that owns partition 0 in the benchmark's state.
const scaleOutOwner = "owner"

// scaleOutTargets is the repartition topic's partition count the first
// stage picks among (item 3's topic has 12).
const scaleOutTargets = 12

// scaleOutCost is what one mode of BenchmarkScaleOut measured, per line.
type scaleOutCost struct {
	lines           int64
	owner, replica  time.Duration // the whole run
	stage1, stage2  time.Duration // the owner's two stages (forwarding mode)
	bytes           int64         // encoded batches
	ok              bool
	batch, warmup   int
	clients, alerts int
}

func (c scaleOutCost) perLine(d time.Duration) float64 {
	return float64(d.Nanoseconds()) / float64(c.lines)
}
func (c scaleOutCost) ratio() float64 { return c.perLine(c.replica) / c.perLine(c.owner) }

// BenchmarkScaleOut measures the two costs behind horizontal scaling, on
// the workload's lines (5,000 clients, 5% attacks) in batches of
// $WARDEN_BENCH_SCALEOUT_BATCH records (5,000): what the owner of a
// partition pays per line (Fold, Source.Observe, Finish, EncodeBatch; when
// the input is not keyed by client, also the second stage: the origin
// header, the merge, the second parse, the detector and the encode of its
// delta), and what every replica pays per line (Decode and Apply of the same
// batches onto a State that owns the partition). The Kafka fetch and
// produce are not in it (bench/README.md, item 9). It records both, and the
// throughput they project for N nodes, in bench/results.json as
// "scale_out".
func BenchmarkScaleOut(b *testing.B) {
	var keyed, forwarded scaleOutCost
	b.Run("keyed", func(b *testing.B) { keyed = runScaleOut(b, true) })
	b.Run("forwarded", func(b *testing.B) { forwarded = runScaleOut(b, false) })
	if !keyed.ok || !forwarded.ok {
		return // a filter ran one mode only: nothing to record
	}
	if err := benchresults.Save("scale_out", map[string]any{
		"batch_records":  keyed.batch,
		"warmup_batches": keyed.warmup,
		"clients":        keyed.clients,
		"keyed":          scaleOutFigures(keyed, false),
		"forwarded":      scaleOutFigures(forwarded, true),
		"target_ratio":   0.10, "target_nodes": 20, "target_relative": 0.75,
		"model": "each of N nodes owns 1/N of the lines and applies all of them: " +
			"throughput relative to linear = 1 / (1 + N * replica/owner)",
		"not_measured": "the Kafka fetch (and, forwarding, the produce and fetch of the repartition topic), Raft and the group commit",
	}); err != nil {
		b.Fatal(err)
	}
}

// scaleOutFigures is one mode's entry of results.json.
func scaleOutFigures(c scaleOutCost, stages bool) map[string]any {
	r := c.ratio()
	proj := map[string]any{}
	for _, n := range scaleOutNodes {
		rel := scaleOutRelative(n, r)
		proj[strconv.Itoa(n)] = map[string]any{
			"relative": round3(rel),
			// One core per node: each spends owner/N + apply per line
			// of the cluster, so the cluster takes N / (owner + N*apply).
			"lines_per_s_per_core": round3(float64(n) * 1e9 / (c.perLine(c.owner) + float64(n)*c.perLine(c.replica))),
		}
	}
	f := map[string]any{
		"lines":               c.lines,
		"owner_ns_per_line":   round3(c.perLine(c.owner)),
		"replica_ns_per_line": round3(c.perLine(c.replica)),
		"replica_over_owner":  round3(r),
		"bytes_per_line":      round3(float64(c.bytes) / float64(c.lines)),
		"alerts":              c.alerts,
		"projection":          proj,
		// N·r = 1/3 gives 0.75: the ratio the 20-node target needs.
		"ratio_for_target": round3(1.0 / 3 / 20),
		"met_ratio":        r <= 0.10,
		"met_20_nodes":     scaleOutRelative(20, r) >= 0.75,
	}
	if stages {
		f["stage1_ns_per_line"] = round3(c.perLine(c.stage1))
		f["stage2_ns_per_line"] = round3(c.perLine(c.stage2))
	}
	return f
}

// scaleOutRelative is the projected throughput of n nodes relative to
// linear scaling: each node spends owner/n per line of the cluster on the
// lines it owns, and apply on every line.
func scaleOutRelative(n int, ratio float64) float64 { return 1 / (1 + float64(n)*ratio) }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// forwardedLine is what the first stage hands the producer: a pack's body
// and its origin header (as node/repart.go's forwarder builds them).
type forwardedLine struct {
	value, header []byte
	ts            int64 // ms; Kafka's timestamp would be the produce time
}

// runScaleOut runs batches through the owner's work and the replica's
// apply, timing each on its own; generating the lines is in neither.
func runScaleOut(b *testing.B, keyed bool) scaleOutCost {
	c := scaleOutCost{batch: 5000, warmup: 4, clients: 5000}
	if v, err := strconv.Atoi(os.Getenv("WARDEN_BENCH_SCALEOUT_BATCH")); err == nil && v > 0 {
		c.batch = v
	}
	cfg := fsm.Config{LogFormat: pipeline.LogFormat, Retention: pipeline.Retention.String(), InputKeyedByClient: keyed}
	state := fsm.NewState("bench")
	if res := fsm.Apply(state, fsm.Command{Kind: fsm.KindConfigure, Config: &cfg}); res.Err != "" {
		b.Fatal(res.Err)
	}
	assign := fsm.Assign{Partitions: 1, Moves: []fsm.Move{{Partition: 0, Owner: scaleOutOwner}}}
	if res := fsm.Apply(state, fsm.Command{Kind: fsm.KindAssign, Assign: &assign}); res.Err != "" {
		b.Fatal(res.Err)
	}
	epoch := state.Partitions[0].Epoch
	format, err := accesslog.Lookup(cfg.LogFormat)
	if err != nil {
		b.Fatal(err)
	}
	// The owner: the worker's folder and source (node/worker.go), and the
	// second stage's detector, parser and merge (node/repart.go).
	folder := analytics.NewFolder(format)
	folder.MaxSkew = 0 // the workload's lines are dated in 2026
	detector := detect.NewDetector(state.Rules(), 0, nil)
	src := pipeline.Source{Partition: 0, Clock: pipeline.NewClock(pipeline.NoWatermark, 0)}
	var fwd []forwardedLine
	var arena []byte // a line's partition key
	forwarded := 0   // lines forwarded in the batch
	closePacks := func() {}
	if keyed {
		src.Detector = detector
	} else {
		// Lines in packs, as the forwarder's (node/repart.go). The one
		// second stage here takes every line, so they go in one stream of
		// packs, each as large as a target's: the target is still picked
		// from the client's network, as the forwarder does.
		var pk pipeline.Pack
		var ts int64
		closePacks = func() {
			if pk.Len() > 0 {
				o, body := pk.Close(0, 0)
				fwd = append(fwd, forwardedLine{header: pipeline.AppendOrigin(nil, o), value: body, ts: ts})
			}
		}
		src.Forward = func(e *accesslog.Entry, offset, wm int64, value []byte) {
			arena = detect.AppendPartitionKey(arena[:0], e.Client)
			_ = pipeline.Target(arena, scaleOutTargets)
			if pk.Len() == 0 {
				ts = e.Time / 1e6
			}
			forwarded++
			if pk.AddParsed(offset, wm, value, e) {
				closePacks()
			}
		}
	}
	stage2Format, err := accesslog.Lookup(cfg.LogFormat)
	if err != nil {
		b.Fatal(err)
	}
	merger := pipeline.NewMerger(fsm.ByClient{}, 1)
	// Checkpoints as an agent takes them (pipeline/checkpoint.go), by
	// records and bytes: these batches go far faster than a partition's
	// live traffic, so the interval (a bound for light traffic) is left
	// out. WARDEN_BENCH_SCALEOUT_CHECKPOINT=0 makes every batch a
	// checkpoint, as before checkpoints.
	checkpoints := pipeline.NewCheckpoints(time.Duration(math.MaxInt64), pipeline.CheckpointRecords, time.Now(), true)
	if os.Getenv("WARDEN_BENCH_SCALEOUT_CHECKPOINT") == "0" {
		checkpoints.Interval = 0
	}
	var entry accesslog.Entry
	var from, at, bcFrom int64 // input offset, repartition offset, second stage's committed

	g := workload.New(1, c.clients, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	lines := make([][]byte, c.batch)
	var spare *analytics.Aggregate
	batch := func(timed bool) {
		for i := range lines {
			l, _ := g.Line()
			lines[i] = []byte(l)
		}
		fwd, forwarded = fwd[:0], 0
		t0 := time.Now()
		bt := pipeline.NextBatch(scaleOutOwner, 0, epoch, from, spare) // as the worker: the encoded batch's figures fold the next
		bt.Until = from + int64(len(lines))
		for i, v := range lines {
			if e, _ := pipeline.Fold(folder, &bt, 0, from+int64(i), v); e != nil {
				src.Observe(&bt, e, from+int64(i), v)
			}
		}
		if keyed {
			checkpoints.Add(len(lines))
		}
		src.Finish(&bt, checkpoints)
		data := [][]byte{fsm.EncodeBatch(&bt)}
		spare = bt.Analytics
		from = bt.Until
		t1 := time.Now()
		if !keyed {
			// The second stage reads the forwarded lines back, then the
			// progress marker the first stage sends at the end of a batch.
			var scratch []pipeline.Packed
			add := func(ts int64, value, header []byte) {
				o, perr := pipeline.ParseOrigin(header)
				if perr == nil {
					scratch, perr = pipeline.Lines(o, value, scratch[:0])
				}
				if perr != nil {
					b.Fatal(perr)
				}
				for _, l := range scratch {
					if err := merger.AddParsed(at, ts, l.Origin, l.Value, l.Layout, nil); err != nil {
						b.Fatal(err)
					}
				}
				at++
				for it, ok := merger.Next(); ok; it, ok = merger.Next() {
					// The line's layout, as the second stage reads it
					// (node/repart.go, readForwarded).
					if entry.ReadLayout(it.Layout, it.Value, it.Watermark) == nil || stage2Format.Parse(it.Value, &entry) == nil {
						detector.Observe(&entry, it.Offset, it.Value)
					}
				}
			}
			closePacks()
			for _, f := range fwd {
				add(f.ts, f.value, f.header)
			}
			add(fwd[len(fwd)-1].ts, nil, pipeline.AppendOrigin(nil,
				pipeline.Origin{Kind: pipeline.KindProgress, Offset: bt.Until, Watermark: src.Clock.Watermark}))
			until := at
			if low, ok := merger.Low(); ok {
				until = low
			}
			b2 := fsm.Batch{Node: scaleOutOwner, Partition: 0, Epoch: epoch, Stage: fsm.StageByClient,
				From: bcFrom, Until: until, Marks: merger.TakeMarks(), Merge: merger.TakeCounts(), MaxTS: merger.MaxTS()}
			checkpoints.Add(forwarded)
			checkpoints.Close(&b2, detector, time.Now())
			data = append(data, fsm.EncodeBatch(&b2))
			bcFrom = until
		}
		t2 := time.Now()
		// The leader's group committer joins batches into an entry: in
		// neither figure.
		entries := make([][]byte, len(data))
		for i, d := range data {
			entries[i] = fsm.CommitEntry([][]byte{d})
		}
		t3 := time.Now()
		for _, e := range entries {
			cmd, err := fsm.Decode(e)
			if err != nil {
				b.Fatal(err)
			}
			if res := fsm.Apply(state, cmd); len(res.Rejected) != 1 || res.Rejected[0] != "" {
				b.Fatalf("batch rejected: %v %s", res.Rejected, res.Err)
			}
		}
		t4 := time.Now()
		if timed {
			c.lines += int64(len(lines))
			c.stage1 += t1.Sub(t0)
			c.stage2 += t2.Sub(t1)
			c.owner += t2.Sub(t0)
			c.replica += t4.Sub(t3)
			for _, d := range data {
				c.bytes += int64(len(d))
			}
		}
	}
	// A replica in steady state already holds the clients' buckets and
	// the recent windows.
	for range c.warmup {
		batch(false)
	}
	for b.Loop() {
		batch(true)
	}
	c.alerts = int(state.Book.NextSeq)
	c.ok = c.lines > 0
	b.ReportMetric(c.perLine(c.owner), "owner-ns/line")
	b.ReportMetric(c.perLine(c.replica), "replica-ns/line")
	b.ReportMetric(c.ratio(), "replica/owner")
	b.ReportMetric(scaleOutRelative(20, c.ratio()), "rel-at-20")
	if !keyed {
		b.ReportMetric(c.perLine(c.stage1), "stage1-ns/line")
		b.ReportMetric(c.perLine(c.stage2), "stage2-ns/line")
	}
	return c
}
