package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/fsm"
)

// AlertSeqHeader carries an alert's sequence number in the alerts topic.
const AlertSeqHeader = "warden-alert-seq"

// publishAlerts is the outbox: while this node leads, it publishes the
// alerts past the last published sequence to the alerts topic in Kafka
// transactions, then records the new mark through Raft. Every leader uses
// the same transactional id, so a new one fences a deposed one; and before
// publishing, it reads the topic's committed tail, so alerts a deposed
// leader published but did not mark are not published twice.
func (n *Node) publishAlerts() {
	if n.cfg.AlertsTopic == "" {
		return
	}
	lg := n.log.With("subsystem", "outbox", "topic", n.cfg.AlertsTopic)
	for n.ctx.Err() == nil {
		if n.raft.State() != raft.Leader {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		term := n.raft.CurrentTerm()
		err := n.leadOutbox(term, lg)
		if err != nil && n.ctx.Err() == nil {
			lg.Warn("alert publishing interrupted; retrying", "err", err)
			select {
			case <-n.ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

var errNotLeading = errors.New("no longer the leader")

// leadOutbox publishes for as long as this node leads in term.
func (n *Node) leadOutbox(term uint64, lg *slog.Logger) error {
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(n.cfg.Brokers...),
		kgo.TransactionalID("warden-alerts-" + n.cfg.Topic),
		kgo.DefaultProduceTopic(n.cfg.AlertsTopic),
		kgo.TransactionTimeout(30 * time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	}, n.cfg.KafkaOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	leading := func() bool { return n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term }

	// Fence any earlier leader's producer: beginning and aborting an empty
	// transaction initialises our producer id under the shared
	// transactional id.
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	tail, err := n.alertsTail(ctx)
	if err != nil {
		return fmt.Errorf("read the topic tail: %w", err)
	}
	if _, published := n.fsm.Outbox(0, 0); tail > published {
		if _, err := n.propose(ctx, fsm.Command{Kind: fsm.KindMarkPublished, Seq: tail}); err != nil {
			return fmt.Errorf("mark published: %w", err)
		}
		lg.Info("alerts already in the topic", "through_seq", tail)
	}
	_, dropped := n.fsm.UnpublishedAlerts()
	for leading() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		if waiting, d := n.fsm.UnpublishedAlerts(); d > dropped {
			lg.Warn("alerts dropped before reaching the alerts topic: more than --max-unpublished-alerts waited",
				"dropped", d-dropped, "dropped_total", d, "waiting", waiting)
			dropped = d
		}
		pending, _ := n.fsm.Outbox(tail, 500)
		var recs []*kgo.Record
		var last uint64
		for _, a := range pending {
			v, err := json.Marshal(a)
			if err != nil {
				return err
			}
			recs = append(recs, &kgo.Record{Key: []byte(a.SourceIP), Value: v,
				Headers: []kgo.RecordHeader{{Key: AlertSeqHeader, Value: []byte(strconv.FormatUint(a.Seq, 10))}}})
			last = a.Seq
		}
		if len(recs) == 0 {
			continue
		}
		if !leading() {
			return errNotLeading
		}
		if err := cl.BeginTransaction(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			_ = cl.EndTransaction(context.Background(), kgo.TryAbort)
			return fmt.Errorf("produce: %w", err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		tail = last
		n.metrics.alertsPublished.Add(float64(len(recs)))
		if _, err := n.propose(ctx, fsm.Command{Kind: fsm.KindMarkPublished, Seq: last}); err != nil {
			return fmt.Errorf("mark published: %w", err)
		}
	}
	return errNotLeading
}

// alertsTail returns the highest alert sequence committed in the alerts
// topic (0 for none). It reads, per partition, up to the last stable offset
// (a read-committed consumer keeping control records, so that a tail of
// transaction markers or aborted records is seen to end), from a window
// back from the end that doubles until it holds a committed alert; fetch
// errors are retried until tailTimeout. A tail it cannot read is an error:
// publishing waits rather than guess and publish an alert twice.
func (n *Node) alertsTail(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, tailTimeout)
	defer cancel()
	var lso kadm.ListedOffsets
	for {
		var err error
		lso, err = n.admin.ListCommittedOffsets(ctx, n.cfg.AlertsTopic)
		if err == nil {
			err = lso.Error()
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return 0, nil
		}
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("last stable offsets: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	var best uint64
	var err error
	lso.Each(func(o kadm.ListedOffset) {
		if err != nil || o.Offset <= 0 {
			return
		}
		var seq uint64
		seq, err = n.partitionTail(ctx, o.Partition, o.Offset)
		best = max(best, seq)
	})
	return best, err
}

// tailTimeout bounds a new leader's read of the alerts topic's tail.
const tailTimeout = 2 * time.Minute

// partitionTail is the highest alert sequence committed in one partition of
// the alerts topic below its last stable offset end.
func (n *Node) partitionTail(ctx context.Context, partition int32, end int64) (uint64, error) {
	for window := int64(1024); ; window *= 2 {
		start := max(0, end-window)
		seq, found, err := n.readTail(ctx, partition, start, end)
		if err != nil || found || start == 0 {
			return seq, err
		}
	}
}

// readTail reads [start, end) of one partition and returns the highest
// alert sequence in it, and whether it held any committed alert.
func (n *Node) readTail(ctx context.Context, partition int32, start, end int64) (uint64, bool, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(n.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{n.cfg.AlertsTopic: {partition: kgo.NewOffset().At(start)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()}, n.cfg.KafkaOpts...)...)
	if err != nil {
		return 0, false, err
	}
	defer cl.Close()
	var best uint64
	found := false
	next := start // every offset below next has been seen
	var lastErr error
	for next < end {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return 0, false, fmt.Errorf("alerts topic partition %d: read %d of [%d, %d): %w", partition, next, start, end, lastErr)
		}
		fs.EachError(func(_ string, _ int32, err error) { lastErr = err })
		fs.EachRecord(func(r *kgo.Record) {
			next = max(next, r.Offset+1)
			if r.Attrs.IsControl() || r.Offset >= end {
				return
			}
			for _, h := range r.Headers {
				if h.Key == AlertSeqHeader {
					if s, err := strconv.ParseUint(string(h.Value), 10, 64); err == nil {
						best, found = max(best, s), true
					}
				}
			}
		})
	}
	return best, found, nil
}
