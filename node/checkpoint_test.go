package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/internal/clustertest"
	"github.com/wardenhq/warden/workload"
)

// A partition's owner is SIGKILLed long after its detector's last
// checkpoint: its successor restores the checkpoint and runs every record
// since through detection again before it goes on. The alerts, each by its
// id, are then exactly those of one detector per partition reading the
// partition in offset order, none missing (the replay brought the buckets
// up to date) and none twice (what the replay raised was committed
// already). Both pipelines: detection on the input (keyed by client) and
// on the repartition topic, which the producer's keys make hold each
// client's lines in their input order.
func TestCheckpoint_NewOwnerReplaysSinceTheCheckpoint(t *testing.T) {
	for _, keyed := range []bool{true, false} {
		name := map[bool]string{true: "input keyed by client", false: "repartition stage"}[keyed]
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, 4)
			c.configure = func(cfg *Config) {
				cfg.InputKeyedByClient = keyed
				// No checkpoint after each worker's first batch: a new owner
				// replays everything since.
				cfg.CheckpointInterval, cfg.CheckpointRecords = time.Hour, 0
				// Small batches: the first, a checkpoint, covers little.
				cfg.MaxBatchRecords = 200
			}
			n1 := c.start("n1", 3)
			c.start("n2", 3, n1.GossipAddr())
			c.start("n3", 3, n1.GossipAddr())
			waitFor(t, 20*time.Second, "a full assignment", func() bool {
				owners := map[string]int{}
				for _, p := range n1.State().Partitions {
					owners[p.Owner]++
				}
				return n1.Leader() != "" && len(n1.State().Partitions) == 4 && owners[""] == 0 && len(owners) == 3
			})
			gen := workload.New(11, 200, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
			gen.AttackShare = 0.3
			pr, err := clustertest.NewProducer(c.broker.Addr(), c.topic, gen)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pr.Close)
			p := &producer{pr}
			mustProduce(t, p, 12000)
			waitFor(t, 60*time.Second, "the first lines committed and detected", func() bool {
				return p.caughtUp(n1) && detectedAll(n1, keyed)
			})
			// The attackers share a network, so one partition holds them:
			// its owner is the victim.
			byPartition := map[int32]int{}
			for _, a := range n1.fsm.Alerts(time.Time{}) {
				byPartition[a.Partition]++
			}
			attacked := int32(0)
			for part, k := range byPartition {
				if k > byPartition[attacked] {
					attacked = part
				}
			}
			target := n1.State().Partitions[attacked]
			victim := target.Owner
			// A worker restarted by an election on a busy machine takes a
			// new checkpoint; the test needs only thousands of lines since.
			if ck := target.Detector; !ck.Set || linesSince(target, keyed) < 2000 {
				t.Fatalf("partition %d: checkpoint at %d, committed %d, %d lines since: the test needs the checkpoint far behind",
					attacked, ck.Offset, committedOf(target, keyed), linesSince(target, keyed))
			}
			ckBefore := target.Detector.Offset
			c.kill(victim)
			if victim == "n1" {
				n1 = c.nodes["n2"] // read from a survivor
			}
			mustProduce(t, p, 12000)
			waitFor(t, 90*time.Second, "every line committed and detected", func() bool {
				for _, part := range n1.State().Partitions {
					if part.Owner == victim || part.Owner == "" {
						return false
					}
				}
				return p.caughtUp(n1) && detectedAll(n1, keyed)
			})
			_, ends, _ := p.Acked()
			want := referenceAlerts(t, c, n1, ends)
			var got []string
			for _, a := range n1.fsm.Alerts(time.Time{}) {
				got = append(got, a.ID)
			}
			slices.Sort(got)
			if len(want) < 50 {
				t.Fatalf("the reference raises %d alerts: too few for this test", len(want))
			}
			if !slices.Equal(got, want) {
				missing, extra := diffIDs(want, got)
				t.Fatalf("alerts differ from one detector per partition: %d, want %d; missing %d %v, extra %d %v",
					len(got), len(want), len(missing), head(missing), len(extra), head(extra))
			}
			// The successor's first batch after its replay was a checkpoint:
			// a successor of its own would not replay the same records.
			if ck := n1.State().Partitions[attacked].Detector; ck.Offset <= ckBefore {
				t.Errorf("partition %d: checkpoint still at %d after the replay (was %d)", attacked, ck.Offset, ckBefore)
			}
			if n := testCounter(t, c, "warden_detector_replayed_records_total"); n == 0 {
				t.Error("no node replayed a record from a checkpoint")
			}
			t.Logf("%s: %d alerts, as one detector per partition", name, len(got))
		})
	}
}

// detectedAll reports whether the detecting stage has taken every committed
// line (second stage: every line's marks, nothing held).
func detectedAll(n *Node, keyed bool) bool {
	if keyed {
		return true
	}
	var applied, committed int64
	for _, part := range n.State().Partitions {
		applied += part.ByClient.Applied
		committed += part.Committed
	}
	return applied == committed
}

// linesSince is how many lines part's detection took in since its
// checkpoint: input records, or the lines the second stage's marks moved
// past (its offsets count records of up to a pack of lines).
func linesSince(part fsm.Partition, keyed bool) int64 {
	ck := part.Detector
	if keyed {
		return part.Committed - ck.Offset
	}
	var n int64
	for s, m := range part.ByClient.Marks {
		n += m.Next
		if s < len(ck.Marks) {
			n -= ck.Marks[s].Next
		}
	}
	return n
}

// committedOf is the detecting stage's committed offset of a partition.
func committedOf(part fsm.Partition, keyed bool) int64 {
	if keyed {
		return part.Committed
	}
	return part.ByClient.Committed
}

// referenceAlerts is the sorted ids of the alerts one detector per
// partition raises over the records below ends, in offset order, with n's
// rules and log format.
func referenceAlerts(t *testing.T, c *cluster, n *Node, ends map[int32]int64) []string {
	t.Helper()
	cfg := n.fsm.Config()
	var ids []string
	for part, end := range ends {
		format, err := accesslog.Lookup(cfg.LogFormat)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker.Addr()),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.topic: {part: kgo.NewOffset().AtStart()}}))
		if err != nil {
			t.Fatal(err)
		}
		det := detect.NewDetector(n.fsm.Rules(), part, nil)
		var entry accesslog.Entry
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for next := int64(0); next < end && ctx.Err() == nil; {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				if r.Offset < next || r.Offset >= end {
					return
				}
				next = r.Offset + 1
				if format.Parse(r.Value, &entry) == nil {
					det.Observe(&entry, r.Offset, r.Value)
				}
			})
		}
		cancel()
		cl.Close()
		for _, a := range det.TakeAlerts() {
			ids = append(ids, a.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// diffIDs is what of sorted want got lacks, and what it has more.
func diffIDs(want, got []string) (missing, extra []string) {
	count := map[string]int{}
	for _, id := range want {
		count[id]++
	}
	for _, id := range got {
		count[id]--
	}
	for id, k := range count {
		for ; k > 0; k-- {
			missing = append(missing, id)
		}
		for ; k < 0; k++ {
			extra = append(extra, id)
		}
	}
	return missing, extra
}

func head(ids []string) []string { return ids[:min(len(ids), 5)] }

// testCounter sums a counter of this package's metrics over c's live nodes.
func testCounter(t *testing.T, c *cluster, name string) float64 {
	t.Helper()
	var sum float64
	for _, n := range c.nodes {
		mfs, err := n.metrics.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
