package node

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
)

// worker consumes one partition from the FSM's committed offset, at the
// epoch it was started with, until it is fenced or stopped.
type worker struct {
	partition int32
	epoch     uint64
	cancel    context.CancelFunc
	done      chan struct{}
}

// manageWorkers keeps exactly one worker per partition this node owns, at
// the partition's current epoch. A partition whose owner and epoch do not
// change keeps its worker untouched: rebalances pause only what moves.
func (n *Node) manageWorkers() {
	workers := map[int32]*worker{}
	stop := func(w *worker) {
		w.cancel()
		<-w.done
	}
	defer func() {
		for _, w := range workers {
			stop(w)
		}
	}()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.fsm.Changed():
		case <-t.C:
		}
		state := n.State()
		want := map[int32]fsm.Partition{}
		for _, p := range state.Partitions {
			if p.Owner == n.cfg.ID {
				want[p.Partition] = p
			}
		}
		for id, w := range workers {
			p, ok := want[id]
			select {
			case <-w.done:
				delete(workers, id) // fenced or failed: restart below if still ours
				continue
			default:
			}
			if !ok || p.Epoch != w.epoch {
				stop(w)
				delete(workers, id)
			}
		}
		for id, p := range want {
			if _, ok := workers[id]; ok {
				continue
			}
			ctx, cancel := context.WithCancel(n.ctx)
			w := &worker{partition: id, epoch: p.Epoch, cancel: cancel, done: make(chan struct{})}
			workers[id] = w
			go func() {
				defer close(w.done)
				n.runWorker(ctx, p)
			}()
		}
		n.metrics.ownedPartitions.Set(float64(len(workers)))
	}
}

// runWorker reads partition p from its committed offset, cuts batches and
// commits them through Raft. It returns when fenced (the manager decides
// whether to start again) or stopped.
func (n *Node) runWorker(ctx context.Context, p fsm.Partition) {
	lg := n.log.With("subsystem", "worker", "partition", p.Partition, "epoch", p.Epoch)
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(n.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			n.cfg.Topic: {p.Partition: kgo.NewOffset().At(p.Committed)},
		}),
		kgo.FetchMaxWait(n.cfg.BatchInterval),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Come back quickly after a broker restart: short, capped backoff
		// and fresh metadata.
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			return min(100*time.Millisecond<<min(tries, 4), time.Second)
		}),
		kgo.MetadataMinAge(250 * time.Millisecond),
	}, n.cfg.KafkaOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		lg.Error("kafka client", "err", err)
		return
	}
	defer cl.Close()
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
	folder := analytics.NewFolder(format)
	// The detector resumes from the FSM's state for exactly the committed
	// offset it starts from.
	start, dstate, ok := n.fsm.WorkerStart(p.Partition)
	if !ok || start.Epoch != p.Epoch || start.Committed != p.Committed {
		return // the FSM moved on; the manager starts a fresh worker
	}
	rules := n.fsm.Rules()
	detector := detect.NewDetector(rules, p.Partition, dstate)

	from := p.Committed
	maxRecords := n.cfg.MaxBatchRecords
	if r := n.cfg.MaxRatePerPartition; r > 0 {
		maxRecords = min(maxRecords, max(1, int(r*n.cfg.BatchInterval.Seconds())))
	}

	// Batches are pipelined: while up to maxInFlight of them wait for their
	// commit, the worker reads and processes the next ones. They commit in
	// the order read; the first that fails stops the worker, and the
	// manager starts a fresh one from the FSM's committed offset (the
	// batches after a failed one fail too: none starts where the FSM is).
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	inflight := make(chan flight, maxInFlight)
	var pending atomic.Int32 // batches submitted and not yet come back
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		n.awaitCommits(wctx, stop, inflight, &pending, lg)
	}()
	defer func() {
		close(inflight)
		<-committed
	}()

	var recs []*kgo.Record
	for wctx.Err() == nil {
		start := time.Now()
		recs = recs[:0]
		deadline := start.Add(n.cfg.BatchInterval)
		for len(recs) < maxRecords && time.Now().Before(deadline) {
			pctx, cancel := context.WithDeadline(wctx, deadline)
			fs := cl.PollRecords(pctx, maxRecords-len(recs))
			cancel()
			fs.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
					lg.Warn("fetch error", "err", err)
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				if r.Partition == p.Partition && r.Offset >= from {
					recs = append(recs, r)
				}
			})
			if wctx.Err() != nil {
				return
			}
			// With nothing of ours waiting for a commit, a batch goes after
			// a quarter of the interval: low latency when traffic is light,
			// without a flood of tiny batches (each costs a detector flush,
			// a delta and its apply on every node) at moderate rates. Under
			// load, batches grow while earlier ones commit, up to the
			// interval or the cap.
			if len(recs) > 0 && pending.Load() == 0 && time.Since(start) >= n.cfg.BatchInterval/4 {
				break
			}
		}
		if len(recs) == 0 {
			continue
		}
		if c := n.fsm.Config(); c != nil && (c.LogFormat != cfg.LogFormat || c.Rules != cfg.Rules) {
			if c.Rules != cfg.Rules {
				return // new rules: restart from the FSM's state with them
			}
			if f, err := accesslog.Lookup(c.LogFormat); err == nil {
				cfg, folder = c, analytics.NewFolder(f)
				lg.Info("log format changed", "log_format", c.LogFormat)
			}
		}
		b := fsm.Batch{Node: n.cfg.ID, Partition: p.Partition, Epoch: p.Epoch, From: from, Until: recs[len(recs)-1].Offset + 1,
			Analytics: analytics.NewAggregate()}
		var dead []*kgo.Record
		stamps := make([]int64, len(recs))
		for i, r := range recs {
			stamps[i] = r.Timestamp.UnixNano()
			b.Delta.AddRecord(r.Partition, r.Offset, r.Value)
			parsed, err := folder.Fold(b.Analytics, r.Value)
			if err != nil {
				b.Malformed = append(b.Malformed, badRecord(r, err))
				if n.cfg.DLQTopic != "" {
					dead = append(dead, deadLetter(n.cfg.DLQTopic, r, err))
				}
			}
			if parsed {
				detector.Observe(folder.Entry(), r.Offset, r.Value)
			}
		}
		b.Detect = detector.Flush()
		if over := len(b.Malformed) - fsm.MaxMalformedSample; over > 0 {
			b.Malformed = b.Malformed[over:]
		}
		if len(dead) > 0 && !n.sendDeadLetters(wctx, cl, dead, lg) {
			return
		}
		f := flight{pendingBatch: pendingBatch{data: fsm.EncodeBatch(&b), done: make(chan error, 1)}, from: b.From, stamps: stamps}
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
		from = b.Until
		if r := n.cfg.MaxRatePerPartition; r > 0 {
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
}

// maxInFlight bounds the batches of one worker waiting for their commit.
const maxInFlight = 4

// flight is a batch submitted for commit: its fate, where it starts, and
// its records' Kafka timestamps (Unix ns) for the latency histogram.
type flight struct {
	pendingBatch
	from   int64
	stamps []int64
}

// awaitCommits takes a worker's batches in order as their commits apply.
// At the first failure it stops the worker, lets the batches still in
// flight come back, and pauses a little so that the local FSM catches up
// (or, for errors other than a rejection, so that a lost leader can be
// found again) before the manager restarts the worker.
func (n *Node) awaitCommits(ctx context.Context, stop context.CancelFunc, inflight <-chan flight, pending *atomic.Int32, lg *slog.Logger) {
	var failed error // a commit's own failure, not the worker being stopped
	stopped := false
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
			case isRejection(err):
				lg.Info("batch rejected; re-reading position", "reason", fsm.Reason(err), "from", f.from)
			default:
				lg.Warn("commit failed; restarting from the committed offset", "err", err, "from", f.from)
			}
			stop()
			continue
		}
		n.metrics.batchRecords.Observe(float64(len(f.stamps)))
		now := time.Now().UnixNano()
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

// badRecord is the FSM's sample entry for a record that did not parse.
func badRecord(r *kgo.Record, err error) fsm.BadRecord {
	line := r.Value
	if len(line) > fsm.MaxBadLineBytes {
		line = line[:fsm.MaxBadLineBytes]
	}
	return fsm.BadRecord{Partition: r.Partition, Offset: r.Offset, Reason: accesslog.Reason(err),
		Line: strings.ToValidUTF8(string(line), "\uFFFD")}
}

// deadLetter is the copy of a bad record for the dead-letter topic: the
// same key and value, and headers saying where it came from and why.
func deadLetter(topic string, r *kgo.Record, err error) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: []kgo.RecordHeader{
		{Key: "warden-source-topic", Value: []byte(r.Topic)},
		{Key: "warden-source-partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: "warden-source-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		{Key: "warden-reason", Value: []byte(accesslog.Reason(err))},
	}}
}

// sendDeadLetters produces the batch's bad records before the batch is
// committed, retrying until Kafka takes them or the worker stops: a bad line
// is never lost, though a crash between the two can send it twice (the
// headers name its source offset, so readers can tell).
func (n *Node) sendDeadLetters(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, lg *slog.Logger) bool {
	backoff := 100 * time.Millisecond
	for {
		err := cl.ProduceSync(ctx, recs...).FirstErr()
		if err == nil {
			n.metrics.deadLetters.Add(float64(len(recs)))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		lg.Warn("dead-letter produce failed; retrying", "topic", n.cfg.DLQTopic, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func isRejection(err error) bool {
	for _, e := range []error{fsm.ErrFenced, fsm.ErrNotOwner, fsm.ErrOffsetMismatch, fsm.ErrUnknownPartition, fsm.ErrBadRange} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
