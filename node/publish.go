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
	for leading() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
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
// topic (0 for none).
func (n *Node) alertsTail(ctx context.Context) (uint64, error) {
	ends, err := n.admin.ListEndOffsets(ctx, n.cfg.AlertsTopic)
	if err != nil {
		return 0, err
	}
	if err := ends.Error(); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return 0, nil
		}
		return 0, err
	}
	starts := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			starts[o.Partition] = kgo.NewOffset().At(max(0, o.Offset-1000))
		}
	})
	if len(starts) == 0 {
		return 0, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(n.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{n.cfg.AlertsTopic: starts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted())}, n.cfg.KafkaOpts...)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var best uint64
	deadline := time.Now().Add(10 * time.Second)
	// Read until a fetch brings nothing new: a read-committed tail can end
	// in transaction markers, which are never returned.
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		got := 0
		fs.EachRecord(func(r *kgo.Record) {
			got++
			for _, h := range r.Headers {
				if h.Key == AlertSeqHeader {
					if s, err := strconv.ParseUint(string(h.Value), 10, 64); err == nil && s > best {
						best = s
					}
				}
			}
		})
		if got == 0 {
			return best, nil
		}
	}
	return best, nil
}
