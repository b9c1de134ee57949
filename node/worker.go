package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/pipeline"
)

// worker consumes one partition from the FSM's committed offset, at the
// epoch it was started with, until it is fenced or stopped.
type worker struct {
	partition int32
	epoch     uint64
	cancel    context.CancelFunc
	done      chan struct{}
	// limit, read once done is closed, is the records cap the partition's
	// next worker starts with (0: the configured one).
	limit int
}

// manageWorkers keeps exactly one worker per partition this node owns, at
// the partition's current epoch, and, while the input is not keyed by
// client, one second stage (repart.go) beside it. A partition whose owner
// and epoch do not change keeps its workers untouched: rebalances pause
// only what moves.
func (n *Node) manageWorkers() {
	first := newWorkerSet(n, "input", n.runWorker)
	second := newWorkerSet(n, "by_client", n.runByClient)
	defer first.stopAll()
	defer second.stopAll()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.fsm.Changed():
		case <-t.C:
		}
		owned, cfg := n.fsm.Owned(n.cfg.ID)
		want := make(map[int32]fsm.Partition, len(owned))
		for _, p := range owned {
			want[p.Partition] = p
		}
		first.reconcile(want, true)
		second.reconcile(want, twoStage(cfg))
		n.metrics.ownedPartitions.Set(float64(len(first.running)))
	}
}

// workerSet is one kind of worker (a stage) for the partitions this node
// owns: run reads a partition from the FSM's position until fenced or
// stopped, and returns the records cap its successor starts with.
type workerSet struct {
	n       *Node
	stage   string // for the metrics: "input" or "by_client"
	run     func(ctx context.Context, p fsm.Partition, limit int) int
	running map[int32]*worker
	limits  map[int32]int // a returned worker's cap, for its successor
}

func newWorkerSet(n *Node, stage string, run func(context.Context, fsm.Partition, int) int) *workerSet {
	return &workerSet{n: n, stage: stage, run: run, running: map[int32]*worker{}, limits: map[int32]int{}}
}

func (ws *workerSet) stop(w *worker) {
	w.cancel()
	<-w.done
}

func (ws *workerSet) stopAll() {
	for _, w := range ws.running {
		ws.stop(w)
	}
}

// reconcile keeps one worker per partition of want at its epoch (none
// when not enabled), restarting those that returned.
func (ws *workerSet) reconcile(want map[int32]fsm.Partition, enabled bool) {
	for id, w := range ws.running {
		p, ok := want[id]
		select {
		case <-w.done:
			delete(ws.running, id) // fenced or failed: restart below if still ours
			ws.limits[id] = w.limit
			continue
		default:
		}
		if !ok || p.Epoch != w.epoch || !enabled {
			ws.stop(w)
			delete(ws.running, id)
			delete(ws.limits, id)
		}
	}
	if !enabled || ws.n.draining.Load() {
		return
	}
	for id, p := range want {
		if _, ok := ws.running[id]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(ws.n.ctx)
		w := &worker{partition: id, epoch: p.Epoch, cancel: cancel, done: make(chan struct{})}
		ws.running[id] = w
		limit := ws.limits[id]
		ws.n.runningWorkers.Add(1)
		ws.n.metrics.workerStarts.WithLabelValues(ws.stage).Inc()
		go func() {
			defer ws.n.runningWorkers.Add(-1)
			defer close(w.done)
			w.limit = ws.run(ctx, p, limit)
		}()
	}
}

// reuseRecords empties recs for the next batch and lets the previous
// batch's records go: a record kept, even past the slice's length, keeps
// its whole fetch (the decompressed batch its value points into) from the
// collector while the worker waits for more.
func reuseRecords(recs []*kgo.Record) []*kgo.Record {
	clear(recs[:cap(recs)])
	return recs[:0]
}

// runWorker reads partition p from its committed offset, cuts batches and
// commits them through Raft. It returns when fenced (the manager decides
// whether to start again) or stopped, or to cut a batch too large for one
// commit smaller: it returns the records cap its successor starts with
// (limit is its own; 0 for the configured one).
func (n *Node) runWorker(ctx context.Context, p fsm.Partition, limit int) (next int) {
	lg := n.log.With("subsystem", "worker", "partition", p.Partition, "epoch", p.Epoch)
	// The records come from the node's one consumer of the input topic,
	// from the committed offset (fetcher.go).
	sub, err := n.inputFetcher().subscribe(p.Partition, p.Committed)
	if err != nil {
		lg.Error("kafka client", "err", err)
		return
	}
	defer sub.close()
	lg.Debug("worker started", "from", p.Committed)

	// Every worker parses with the cluster's configuration, from the FSM.
	var cfg *fsm.Config
	for cfg = n.fsm.Config(); cfg == nil; cfg = n.fsm.Config() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	format, err := accesslog.Lookup(cfg.LogFormat)
	if err != nil {
		lg.Error("log format in the cluster configuration does not compile", "log_format", cfg.LogFormat, "err", err)
		return
	}
	folder := n.newFolder(format)
	// The detector resumes from the FSM's state for exactly the committed
	// offset it starts from.
	start, dstate, ok := n.fsm.WorkerStart(p.Partition)
	if !ok || start.Epoch != p.Epoch || start.Committed != p.Committed {
		return // the FSM moved on; the manager starts a fresh worker
	}
	// Records deleted by retention before they were read are committed as
	// lost, explicitly, never skipped.
	if n.commitLost(ctx, p, lg) {
		return limit
	}
	rules := n.fsm.Rules()
	detector := detect.NewDetector(rules, p.Partition, dstate)
	// The partition's watermark orders its events for detection; unless
	// the input is keyed by client, the lines go on to the repartition
	// topic and detection runs there (repart.go).
	src := pipeline.Source{Partition: p.Partition, Clock: pipeline.NewClock(start.Watermark, int64(cfg.Lateness())), Detector: detector}
	// The run names itself in its commits (fsm.Batch.Run): once another
	// run's batch commits after it started, none of its own is taken but
	// a first, and it starts again from the state.
	run, proposed := newRunID(), false
	var fwd *forwarder
	if twoStage(cfg) {
		count := int32(n.fsm.PartitionCount())
		if err := n.ensureRepart(ctx, count); err != nil {
			lg.Warn("cannot prepare the repartition topic; retrying", "err", err)
			sleepCtx(ctx, time.Second)
			return limit
		}
		fwd = newForwarder(n.repartTopic(), p.Partition, count, n.fsm.Gen(), n.repartSealer())
		src.Forward = fwd.line
	}
	// Forwarded lines and dead letters go out through this worker's own
	// producer, made when it first has something to send (ownProducer).
	cl := &ownProducer{n: n}
	defer cl.close()
	// Detecting here (input keyed by client), exactly once: the detector
	// checkpoints every so often, and resumes from its last checkpoint by
	// running the records since through detection again (checkpoint.go).
	var checkpoints *pipeline.Checkpoints
	if fwd == nil && n.cfg.Semantics == fsm.ExactlyOnce {
		ck := start.Detector
		resume := ck.Set && ck.Stage == fsm.StageInput && ck.Offset <= start.Committed
		replayed := 0
		if resume && ck.Offset < start.Committed {
			t0 := time.Now()
			src.Clock = pipeline.NewClock(ck.Watermark, int64(cfg.Lateness()))
			replayed, err = n.replayInput(ctx, p.Partition, ck.Offset, start.Committed, folder, &src)
			if !n.endReplay(ctx, lg, detector, ck.Offset, replayed, t0, err) {
				return limit
			}
			src.Clock = pipeline.NewClock(start.Watermark, int64(cfg.Lateness()))
		}
		// After a replay the first batch is a checkpoint (runByClient).
		checkpoints = pipeline.NewCheckpoints(n.cfg.CheckpointInterval, n.cfg.CheckpointRecords, time.Now(), !resume || replayed > 0)
		checkpoints.Add(replayed)
	}

	from := p.Committed
	maxRecords := n.cfg.MaxBatchRecords
	if r := n.cfg.MaxRatePerPartition; r > 0 {
		maxRecords = min(maxRecords, max(1, int(r*n.cfg.BatchInterval.Seconds())))
	}
	// limit is maxRecords, or fewer while batches encode large (batchLimit).
	if limit <= 0 || limit > maxRecords {
		limit = maxRecords
	}
	var dlq deadLetterState

	// Batches are pipelined: while up to maxInFlight of them wait for their
	// commit, the worker reads and processes the next ones. They commit in
	// the order read; the first that fails stops the worker, and the
	// manager starts a fresh one from the FSM's committed offset (the
	// batches after a failed one fail too: none starts where the FSM is).
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	inflight := make(chan flight, maxInFlight)
	var pending atomic.Int32 // batches submitted and not yet come back
	pace := n.newPacer(p.Partition)
	defer pace.close()
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		n.awaitCommits(wctx, stop, inflight, &pending, pace, lg)
	}()
	defer func() {
		close(inflight)
		<-committed
	}()

	var recs []*kgo.Record
	var spare *analytics.Aggregate              // the last batch's, encoded: reused
	var caughtUpSince time.Time                 // with nothing to read since (idleFor)
	forwarded := 0                              // batches forwarded (crashAfterForward)
	first, lastOffsetCommit := true, time.Now() // for at-least- and at-most-once
	// Draining (a clean stop): cut no new batch; the deferred wait lets
	// those in flight commit before the worker returns.
	for wctx.Err() == nil && !n.draining.Load() {
		start := time.Now()
		recs = reuseRecords(recs)
		// The rate allowed now: the cap, or less while the estimator says
		// the pipeline cannot keep up.
		rate := pace.rate()
		batchCap := limit
		if rate > 0 {
			// What arrives at that rate in one cycle: the batch interval,
			// or the time a batch takes to commit when that is longer.
			cycle := max(n.cfg.BatchInterval, pace.cycle())
			batchCap = min(limit, max(1, int(rate*cycle.Seconds())))
		}
		deadline := start.Add(n.cfg.BatchInterval)
		for len(recs) < batchCap && time.Now().Before(deadline) {
			pctx, cancel := context.WithDeadline(wctx, deadline)
			// The subscription's records are this partition's, in order,
			// from this worker's start on.
			var errs []error
			recs, errs = sub.poll(pctx, recs, batchCap-len(recs))
			cancel()
			outOfRange := false
			for _, err := range errs {
				if errors.Is(err, kerr.OffsetOutOfRange) {
					outOfRange = true
					continue
				}
				lg.Warn("fetch error", "err", err)
			}
			if outOfRange {
				lg.Info("offset out of range; re-reading where the partition starts", "from", from)
				select {
				case <-wctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
				return limit
			}
			if wctx.Err() != nil {
				return
			}
			// With nothing of ours waiting for a commit, a batch goes after
			// an eighth of the interval: low latency when traffic is light,
			// without a flood of tiny batches (each costs a Raft entry and
			// its apply on every node) at moderate rates. Under
			// load, batches grow while earlier ones commit, up to the
			// interval or the cap.
			if len(recs) > 0 && pending.Load() == 0 && time.Since(start) >= n.cfg.BatchInterval/8 {
				break
			}
		}
		if len(recs) == 0 {
			if fwd != nil && !fwd.idle && n.idleFor(&caughtUpSince, p.Partition, from) {
				// Nothing more to read for a while: the second stages
				// stop waiting for this partition until it forwards
				// again.
				fwd.marks(pipeline.KindIdle, from, src.Clock.Watermark)
				if err := fwd.flush(wctx, cl); err != nil {
					lg.Warn("forwarding failed; restarting from the committed offset", "err", err)
					return limit
				}
			}
			if n.cfg.Semantics == fsm.AtLeastOnce && !first && time.Since(lastOffsetCommit) >= n.cfg.OffsetCommitInterval {
				// Idle: the offsets catch up with what was processed.
				if !n.commitOffset(wctx, p, from, lg) {
					return limit
				}
				lastOffsetCommit = time.Now()
			}
			continue
		}
		caughtUpSince = time.Time{}
		if recs[0].Offset > from {
			// A gap: transaction markers, or records deleted by retention
			// while this worker lagged (the client then jumps to the log
			// start). Only the log start can tell.
			if start, err := n.logStart(wctx, p.Partition); err != nil || start > from {
				return limit // the successor commits the loss first
			}
		}
		if n.cfg.Semantics == fsm.AtMostOnce {
			// At most once: the offsets go first; a crash from here on
			// loses the batch.
			if !n.commitOffset(wctx, p, recs[len(recs)-1].Offset+1, lg) {
				return limit
			}
		}
		if c := n.fsm.Config(); c != nil && (c.LogFormat != cfg.LogFormat || c.Rules != cfg.Rules ||
			c.InputKeyedByClient != cfg.InputKeyedByClient || c.Lateness() != cfg.Lateness()) {
			if c.Rules != cfg.Rules || c.InputKeyedByClient != cfg.InputKeyedByClient || c.Lateness() != cfg.Lateness() {
				return // new rules: restart from the FSM's state with them
			}
			if f, err := accesslog.Lookup(c.LogFormat); err == nil {
				cfg, folder = c, n.newFolder(f)
				lg.Info("log format changed", "log_format", c.LogFormat)
			}
		}
		cut := time.Now()
		// The pipeline's work (pipeline.Fold, Source): the same as
		// warden analyze's.
		// The previous batch is encoded: its figures' memory folds this one.
		b := pipeline.NextBatch(n.cfg.ID, p.Partition, p.Epoch, from, spare)
		spare = nil
		b.Until = recs[len(recs)-1].Offset + 1
		var dead []*kgo.Record
		stamps := make([]int64, len(recs))
		for i, r := range recs {
			stamps[i] = r.Timestamp.UnixNano()
			e, err := pipeline.Fold(folder, &b, r.Partition, r.Offset, r.Value)
			if err != nil && n.cfg.DLQTopic != "" {
				dead = append(dead, deadLetter(n.cfg.DLQTopic, r, err))
			}
			if e != nil {
				src.Observe(&b, e, r.Offset, r.Value)
			}
		}
		if checkpoints != nil {
			checkpoints.Add(len(recs))
		}
		src.Finish(&b, checkpoints)
		if fwd != nil {
			fwd.marks(pipeline.KindProgress, b.Until, src.Clock.Watermark)
			if err := fwd.flush(wctx, cl); err != nil {
				lg.Warn("forwarding failed; restarting from the committed offset", "err", err)
				return limit
			}
			forwarded++
			n.crashAfterForward(forwarded)
		}
		if n.cfg.Semantics == fsm.AtLeastOnce || n.cfg.Semantics == fsm.AtMostOnce {
			if len(dead) > 0 && !n.sendDeadLetters(wctx, cl, dead, &dlq, lg) {
				return limit
			}
			if !n.commitResults(wctx, &b, first, lg) {
				return limit
			}
			first = false
			from = b.Until
			if n.cfg.Semantics == fsm.AtLeastOnce && time.Since(lastOffsetCommit) >= n.cfg.OffsetCommitInterval {
				if !n.commitOffset(wctx, p, from, lg) {
					return limit
				}
				lastOffsetCommit = time.Now()
			}
			continue
		}
		b.Run, b.RunStart = run, !proposed
		data := fsm.EncodeBatch(&b)
		spare = b.Analytics
		if maxBytes := n.cfg.maxBatchBytes; len(data) > maxBytes && len(recs) > 1 {
			// The detector has taken these records in and cannot give
			// them back: a successor restarts from the FSM's state
			// with smaller batches (those in flight commit first),
			// aiming at a quarter of the bound, as fewer records
			// share fewer keys and take more bytes each.
			next = max(1, min(len(recs)/2, len(recs)*(maxBytes/4)/len(data)))
			lg.Info("batch too large for one commit; restarting with smaller batches",
				"from", b.From, "records", len(recs), "bytes", len(data), "max_bytes", maxBytes, "next_records", next)
			return next
		}
		limit = batchLimit(limit, len(recs), len(data), maxRecords, n.cfg.maxBatchBytes)
		if len(dead) > 0 && !n.sendDeadLetters(wctx, cl, dead, &dlq, lg) {
			return
		}
		f := flight{pendingBatch: pendingBatch{data: data, done: make(chan error, 1)}, from: b.From, stamps: stamps, cut: cut, submitted: time.Now()}
		pending.Add(1)
		select {
		case inflight <- f:
		case <-wctx.Done():
			return
		}
		select {
		case n.commitCh <- f.pendingBatch:
		case <-wctx.Done():
			return
		}
		proposed = true
		from = b.Until
		if r := rate; r > 0 {
			wait := time.Duration(float64(len(recs))/r*float64(time.Second)) - time.Since(start)
			if wait > 0 {
				select {
				case <-wctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}
	return limit // a commit failed: the successor keeps the cap learned
}

// newRunID names a worker run, of either stage, in its batches
// (fsm.Batch.Run): random, never 0.
func newRunID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// maxInFlight bounds the batches of one worker waiting for their commit.
const maxInFlight = 4

// maxBatchBytes bounds one encoded batch. The group committer packs batches
// up to maxGroupBytes, but always takes the first whole, and records alone
// do not bound a batch: 40,000 lines from as many sources, each with long
// distinct paths and user agents that raise alerts, encode to 54 MiB, near
// the forwarding frame limit (64 MiB, past it a follower's commit fails
// every time) and far past what a Raft entry should hold (each is kept in
// the log cache and sent to every voter). Typical traffic encodes to about
// 35 bytes per record, 1.3 MiB for 40,000.
const maxBatchBytes = 2 * maxGroupBytes

// batchLimit is the records cap after a batch of n records that encoded to
// size bytes, under cap limit. Past a quarter of maxBytes it aims at half of
// it, in proportion to the batch's bytes per record, so that a batch must
// encode twice as large per record as the last one to pass the bound;
// below, it doubles back towards maxRecords. Batch boundaries do not change
// any result.
func batchLimit(limit, n, size, maxRecords, maxBytes int) int {
	if size > maxBytes/4 {
		return max(1, min(maxRecords, n*(maxBytes/2)/size))
	}
	return min(maxRecords, limit*2)
}

// newFolder is the worker's parser: the cluster's log format, and this
// node's clock and MaxClockSkew for lines dated ahead. The verdict travels
// in the batch (malformed count and sample), so replicas never judge again.
func (n *Node) newFolder(format *accesslog.Format) *analytics.Folder {
	f := analytics.NewFolder(format)
	f.MaxSkew = n.cfg.MaxClockSkew
	return f
}

// flight is a batch submitted for commit: its fate, where it starts, and
// its records' Kafka timestamps (Unix ns) for the latency histogram.
type flight struct {
	pendingBatch
	from   int64
	stamps []int64
	// cut is when the batch's records were all read (its processing began),
	// submitted when it was handed to the committer.
	cut, submitted time.Time
}

// awaitCommits takes a worker's batches in order as their commits apply.
// At the first failure it stops the worker, lets the batches still in
// flight come back, and pauses a little so that the local FSM catches up
// (or, for errors other than a rejection, so that a lost leader can be
// found again) before the manager restarts the worker.
func (n *Node) awaitCommits(ctx context.Context, stop context.CancelFunc, inflight <-chan flight, pending *atomic.Int32, pace *pacer, lg *slog.Logger) {
	var failed error // a commit's own failure, not the worker being stopped
	stopped := false
	var prevDone time.Time
	for f := range inflight {
		if stopped {
			continue
		}
		var err error
		select {
		case err = <-f.done:
			pending.Add(-1)
		case <-ctx.Done():
			stopped = true
			continue
		}
		if err != nil {
			failed, stopped = err, true
			switch {
			case errors.Is(err, fsm.ErrBadBatch):
				lg.Error("batch refused: its bytes do not decode (a bug in this node's encoding); re-reading position", "err", err, "from", f.from)
			case isRejection(err):
				lg.Info("batch rejected; re-reading position", "reason", fsm.Reason(err), "from", f.from)
			default:
				lg.Warn("commit failed; restarting from the committed offset", "err", err, "from", f.from)
			}
			stop()
			continue
		}
		n.metrics.batchRecords.Observe(float64(len(f.stamps)))
		done := time.Now()
		// The estimator is fed what the pipeline achieved: the time this
		// batch held it (from its cut, or from the previous commit when it
		// was cut earlier, as batches overlap), and the part of its life
		// spent behind the batches before it (the scheduling delay).
		wait := max(0, prevDone.Sub(f.submitted))
		began := f.cut
		if prevDone.After(began) {
			began = prevDone
		}
		held := done.Sub(began)
		// Waiting behind the other batches a full pipeline holds is the
		// pipeline working, not a backlog: only the wait beyond counts.
		backlog := max(0, wait-time.Duration(maxInFlight-1)*held)
		prevDone = done
		pace.observe(done, len(f.stamps), held, backlog, done.Sub(f.cut))
		now := done.UnixNano()
		for _, ts := range f.stamps {
			n.metrics.observeLatency(now - ts)
		}
	}
	if failed != nil && n.ctx.Err() == nil {
		pause := 100 * time.Millisecond
		if !isRejection(failed) {
			pause = 500 * time.Millisecond
		}
		select {
		case <-n.ctx.Done():
		case <-time.After(pause):
		}
	}
}

// Dead-letter bounds. A copy's value is cut to deadLetterMaxValue and its
// key to deadLetterMaxKey, so that it fits a topic's max.message.bytes at
// its default (1 MiB) and the producer's batch limit whatever the input
// topic took; the value keeps every line the parser reads whole (up to
// accesslog.MaxLineBytes). Producing one batch's copies takes at most
// deadLetterAttempts attempts of deadLetterTimeout each; then they are
// dropped and counted, and the worker drops its copies at once for
// deadLetterPause, lest each batch wait as long again.
const (
	deadLetterMaxValue = accesslog.MaxLineBytes
	deadLetterMaxKey   = 1 << 10
	deadLetterAttempts = 3
	deadLetterTimeout  = 5 * time.Second
	deadLetterPause    = 30 * time.Second
)

// deadLetter is the copy of a bad record for the dead-letter topic: the
// same key and value, cut to the bounds above (a header then gives the
// original length), and headers saying where it came from and why.
func deadLetter(topic string, r *kgo.Record, err error) *kgo.Record {
	key, value := r.Key, r.Value
	headers := []kgo.RecordHeader{
		{Key: "warden-source-topic", Value: []byte(r.Topic)},
		{Key: "warden-source-partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: "warden-source-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		{Key: "warden-reason", Value: []byte(accesslog.Reason(err))},
	}
	if len(value) > deadLetterMaxValue {
		headers = append(headers, kgo.RecordHeader{Key: "warden-truncated", Value: []byte(strconv.Itoa(len(value)))})
		value = value[:deadLetterMaxValue]
	}
	if len(key) > deadLetterMaxKey {
		headers = append(headers, kgo.RecordHeader{Key: "warden-key-truncated", Value: []byte(strconv.Itoa(len(key)))})
		key = key[:deadLetterMaxKey]
	}
	return &kgo.Record{Topic: topic, Key: key, Value: value, Headers: headers}
}

// deadLetterState is what a worker remembers of its dead-letter produces.
type deadLetterState struct {
	pausedUntil time.Time // drop at once until then
	warned      bool      // the first drop was logged at warn level
}

// sendDeadLetters produces the batch's bad records before the batch is
// committed, so that a crash between the two repeats them rather than
// loses them (the headers name the source offset, so readers can tell).
// It never holds the partition up for long: what the topic has not taken
// after the bounded attempts (a missing topic, an ACL denial, a record the
// topic refuses) is dropped, counted in warden_dead_letters_dropped_total
// and logged (at warn level once per worker), and the partition goes on.
// It returns false only when the worker is stopping.
func (n *Node) sendDeadLetters(ctx context.Context, prod *ownProducer, recs []*kgo.Record, st *deadLetterState, lg *slog.Logger) bool {
	if time.Now().Before(st.pausedUntil) {
		n.metrics.deadLettersDropped.Add(float64(len(recs)))
		return true
	}
	backoff := 100 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		failed := recs[:0:0]
		if cl, cerr := prod.client(); cerr != nil {
			failed, err = recs, cerr
		} else {
			actx, cancel := context.WithTimeout(ctx, deadLetterTimeout)
			results := cl.ProduceSync(actx, recs...)
			cancel()
			for _, res := range results {
				if res.Err != nil {
					failed, err = append(failed, res.Record), res.Err
				}
			}
		}
		n.metrics.deadLetters.Add(float64(len(recs) - len(failed)))
		if len(failed) == 0 {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		recs = failed
		if attempt == deadLetterAttempts {
			break
		}
		lg.Debug("dead-letter produce failed; retrying", "topic", n.cfg.DLQTopic, "records", len(recs), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff *= 2
	}
	n.metrics.deadLettersDropped.Add(float64(len(recs)))
	st.pausedUntil = time.Now().Add(deadLetterPause)
	level := slog.LevelDebug
	if !st.warned {
		level, st.warned = slog.LevelWarn, true
	}
	lg.Log(ctx, level, "dead letters dropped: the topic does not take them; the partition goes on, further drops are counted in warden_dead_letters_dropped_total",
		"topic", n.cfg.DLQTopic, "dropped", len(recs), "err", err, "attempts", deadLetterAttempts, "paused_for", deadLetterPause)
	return true
}

func isRejection(err error) bool {
	for _, e := range fsm.Rejections() {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// logStart is partition's log start offset in Kafka. It asks for that
// partition alone: a worker starts with it, and a rebalance of a topic of
// 1,000 partitions starts hundreds of workers at once, each of which would
// otherwise list the whole topic.
func (n *Node) logStart(ctx context.Context, partition int32) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = partition, -2 // the earliest offset
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic, rt.Partitions = n.cfg.Topic, []kmsg.ListOffsetsRequestTopicPartition{rp}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID, req.Topics = -1, []kmsg.ListOffsetsRequestTopic{rt}
	resp, err := req.RequestWith(ctx, n.kafka)
	if err != nil {
		return 0, fmt.Errorf("kafka: %w", err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if t.Topic != n.cfg.Topic || p.Partition != partition {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return 0, fmt.Errorf("kafka: %w", err)
			}
			return p.Offset, nil
		}
	}
	return 0, fmt.Errorf("kafka: no log start offset for partition %d of %s", partition, n.cfg.Topic)
}

// commitLost commits [committed, log start) of p as lost when retention
// has deleted records this cluster never read; it reports whether it did
// (or could not tell), in which case the worker stops and its successor
// starts from the FSM's new position.
func (n *Node) commitLost(ctx context.Context, p fsm.Partition, lg *slog.Logger) bool {
	start, err := n.logStart(ctx, p.Partition)
	if err != nil {
		lg.Warn("cannot read the partition's log start; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		return true
	}
	if start <= p.Committed {
		return false
	}
	res, err := n.propose(ctx, fsm.Command{Kind: fsm.KindLost, Lost: &fsm.LostRange{Node: n.cfg.ID, Partition: p.Partition,
		Epoch: p.Epoch, From: p.Committed, Until: start, At: time.Now().UnixNano()}})
	switch {
	case err != nil:
		lg.Warn("recording records lost to retention failed; retrying", "err", err)
	case res.Err != "":
		lg.Info("records lost to retention: not recorded", "reason", res.Err)
	default:
		lg.Error("records deleted by retention before they were read: recorded as lost",
			"from", p.Committed, "until", start, "lost", start-p.Committed)
	}
	return true
}

// commitResults commits a batch's results alone (at-least- and at-most-
// once): first says it is this worker's first batch, from the committed
// offset.
func (n *Node) commitResults(ctx context.Context, b *fsm.Batch, first bool, lg *slog.Logger) bool {
	res, err := n.propose(ctx, fsm.Command{Kind: fsm.KindResults, Restart: first, Commit: []fsm.Batch{*b}})
	if err == nil {
		err = res.BatchErr(0)
	}
	n.metrics.observeBatch(err)
	if err != nil {
		if ctx.Err() == nil {
			lg.Info("results not committed; re-reading position", "err", err, "from", b.From)
		}
		return false
	}
	return true
}

// commitOffset moves the committed offset alone (at-least- and at-most-
// once).
func (n *Node) commitOffset(ctx context.Context, p fsm.Partition, offset int64, lg *slog.Logger) bool {
	res, err := n.propose(ctx, fsm.Command{Kind: fsm.KindOffsetCommit, OffsetCommit: &fsm.OffsetCommit{Node: n.cfg.ID,
		Partition: p.Partition, Epoch: p.Epoch, Offset: offset, Semantics: n.cfg.Semantics}})
	if err == nil && res.Err != "" {
		err = errors.New(res.Err)
	}
	if err != nil {
		if ctx.Err() == nil {
			lg.Info("offset not committed; re-reading position", "err", err, "offset", offset)
		}
		return false
	}
	return true
}
