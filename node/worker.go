package node

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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
	}, n.cfg.KafkaOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		lg.Error("kafka client", "err", err)
		return
	}
	defer cl.Close()
	lg.Debug("worker started", "from", p.Committed)

	from := p.Committed
	maxRecords := n.cfg.MaxBatchRecords
	if r := n.cfg.MaxRatePerPartition; r > 0 {
		maxRecords = min(maxRecords, max(1, int(r*n.cfg.BatchInterval.Seconds())))
	}
	var recs []*kgo.Record
	for ctx.Err() == nil {
		start := time.Now()
		recs = recs[:0]
		deadline := start.Add(n.cfg.BatchInterval)
		for len(recs) < maxRecords && time.Now().Before(deadline) {
			pctx, cancel := context.WithDeadline(ctx, deadline)
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
			if ctx.Err() != nil {
				return
			}
		}
		if len(recs) == 0 {
			continue
		}
		b := fsm.Batch{Node: n.cfg.ID, Partition: p.Partition, Epoch: p.Epoch, From: from, Until: recs[len(recs)-1].Offset + 1}
		for _, r := range recs {
			b.Delta.AddRecord(r.Partition, r.Offset, r.Value)
		}
		// Retry the same batch on transient errors: if an earlier try did
		// apply, the retry is rejected as a mismatch and we re-read.
		backoff := 50 * time.Millisecond
		for {
			err = n.commitBatch(ctx, b)
			if err == nil || isRejection(err) || ctx.Err() != nil {
				break
			}
			lg.Warn("commit failed; retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
		}
		if err != nil {
			if isRejection(err) {
				lg.Info("batch rejected; re-reading position", "reason", fsm.Reason(err), "from", b.From)
				// Give the local FSM a moment to catch up before restarting.
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
			return
		}
		n.metrics.batchRecords.Observe(float64(len(recs)))
		from = b.Until
		if r := n.cfg.MaxRatePerPartition; r > 0 {
			wait := time.Duration(float64(len(recs))/r*float64(time.Second)) - time.Since(start)
			if wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
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
