package node

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/fsm"
)

// TestCommit_AtLeastOnceResultsGoAsBytes: under at-least-once, a worker's
// results reach the log in the binary form commits use, and apply from
// those bytes: every record counted once, the figures merged.
func TestCommit_AtLeastOnceResultsGoAsBytes(t *testing.T) {
	c := newCluster(t, 1)
	c.configure = func(cfg *Config) {
		cfg.Semantics, cfg.OffsetCommitInterval = fsm.AtLeastOnce, 100*time.Millisecond
	}
	p := newProducer(t, c.broker.Addr(), c.topic, 11)
	n := startOne(t, c)
	mustProduce(t, p, 3000)
	waitFor(t, 60*time.Second, "all records processed", func() bool {
		_, ends, _ := p.Acked()
		s := n.State()
		for part, end := range ends {
			if int(part) >= len(s.Partitions) || s.Partitions[part].Processed < end {
				return false
			}
		}
		return true
	})
	digests, _, _ := p.Acked()
	for _, part := range n.State().Partitions {
		if part.Digest != digests[part.Partition] {
			t.Errorf("partition %d: digest %+v, producer %+v", part.Partition, part.Digest, digests[part.Partition])
		}
	}
	if st := n.Stats(analytics.Query{}); st.Requests == 0 {
		t.Error("no figures merged from the results")
	}
	results := 0
	for _, l := range commandEntries(t, n) {
		cmd, err := fsm.Decode(l.Data)
		if err != nil {
			t.Fatalf("entry %d: %v", l.Index, err)
		}
		if cmd.Kind == fsm.KindResults {
			results++
			if l.Data[0] == '{' {
				t.Fatalf("entry %d: results in JSON", l.Index)
			}
		}
	}
	if results == 0 {
		t.Fatal("no results entry in the log")
	}
}

// A commit round that finds no leader (an election) is sent again once one
// is known: no worker stops for it and starts again from the FSM, and every
// record still counts once.
func TestCommit_NoLeaderRoundsGoAgainWithoutRestartingWorkers(t *testing.T) {
	c := newCluster(t, 4)
	n := c.startEdit("n1", 0, func(cfg *Config) { cfg.BatchInterval = 100 * time.Millisecond })
	p := newProducer(t, c.broker.Addr(), c.topic, 5)
	mustProduce(t, p, 2000)
	waitFor(t, 20*time.Second, "caught up", func() bool { return p.caughtUp(n) })
	starts := func() float64 {
		return counterValue(n.metrics.workerStarts.WithLabelValues("input")) + counterValue(n.metrics.workerStarts.WithLabelValues("by_client"))
	}
	before, errs := starts(), counterValue(n.metrics.commitErrors)
	if before < 4 {
		t.Fatalf("%v workers started for 4 partitions", before)
	}
	for range 5 {
		n.noLeaderRounds.Store(3)
		mustProduce(t, p, 1000)
		waitFor(t, 20*time.Second, "caught up again", func() bool { return p.caughtUp(n) && n.noLeaderRounds.Load() <= 0 })
	}
	p.check(t, n)
	if got := counterValue(n.metrics.commitErrors) - errs; got < 15 {
		t.Fatalf("%v batch proposals failed for want of a leader: the 15 rounds did not happen", got)
	}
	if after := starts(); after != before {
		t.Fatalf("%v workers started again over 15 rounds without a leader: they should have waited for one", after-before)
	}
}

// A commit round whose leader answers it as deposed (raft.ErrLeadershipLost)
// may have been committed, by it or by the next leader: it is not proposed
// again, since a second-stage batch that moved no offset would apply
// twice, with its alerts. Its batches fail and their workers read what was
// committed; every record still counts once.
func TestCommit_RoundsAnsweredAsDeposedAreNotProposedAgain(t *testing.T) {
	c := newCluster(t, 4)
	n := c.startEdit("n1", 0, func(cfg *Config) { cfg.BatchInterval = 100 * time.Millisecond })
	p := newProducer(t, c.broker.Addr(), c.topic, 5)
	mustProduce(t, p, 2000)
	waitFor(t, 20*time.Second, "caught up", func() bool { return p.caughtUp(n) })
	for range 3 {
		n.lostAnswerRounds.Store(2)
		mustProduce(t, p, 1000)
		waitFor(t, 20*time.Second, "caught up again", func() bool { return p.caughtUp(n) && n.lostAnswerRounds.Load() <= 0 })
	}
	p.check(t, n)
	seen := map[string]uint64{}
	for _, l := range commandEntries(t, n) {
		if j, ok := seen[string(l.Data)]; ok {
			t.Fatalf("entries %d and %d are the same proposal: a round answered as deposed went again", j, l.Index)
		}
		seen[string(l.Data)] = l.Index
	}
}

// commandEntries is the command entries of n's Raft log, in order.
func commandEntries(t *testing.T, n *Node) []raft.Log {
	t.Helper()
	first, _ := n.bolt.FirstIndex()
	last, _ := n.bolt.LastIndex()
	var out []raft.Log
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := n.bolt.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == raft.LogCommand {
			out = append(out, l)
		}
	}
	return out
}
