package node

import (
	"testing"
	"time"
)

// A member that gossip sees but that cannot commit (here: the cluster's
// gossip key, another cluster key, so Raft refuses it) does not keep the
// partitions it was given: they move to the others and every record is
// committed.
func TestStall_MemberThatCannotCommitLosesItsPartitions(t *testing.T) {
	c := newCluster(t, 6)
	gossip := clusterKey(9)[:32]
	good := func(cfg *Config) {
		cfg.ClusterKey, cfg.GossipKey, cfg.StallAfter = clusterKey(1), gossip, 2*time.Second
	}
	n1 := c.startEdit("n1", 0, good)
	waitFor(t, 15*time.Second, "n1 leads", func() bool { return n1.Leader() != "" })
	n2 := c.startEdit("n2", 0, good, n1.GossipAddr())
	waitFor(t, 20*time.Second, "n2 owns partitions", func() bool {
		for _, p := range n1.State().Partitions {
			if p.Owner == "n2" {
				return true
			}
		}
		return false
	})
	odd := c.startEdit("odd", 0, func(cfg *Config) {
		cfg.ClusterKey, cfg.GossipKey, cfg.StallAfter = clusterKey(2), gossip, 2*time.Second
	}, n1.GossipAddr())
	_ = odd
	waitFor(t, 20*time.Second, "the odd member gets partitions", func() bool {
		for _, p := range n1.State().Partitions {
			if p.Owner == "odd" {
				return true
			}
		}
		return false
	})
	p := newProducer(t, c.broker.Addr(), c.topic, 3)
	mustProduce(t, p, 600)
	waitFor(t, 40*time.Second, "every record committed, none by the odd member", func() bool {
		for _, part := range n1.State().Partitions {
			if part.Owner == "odd" {
				return false
			}
		}
		return p.caughtUp(n1) && p.caughtUp(n2)
	})
	p.check(t, n1)
}
