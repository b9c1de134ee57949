package node

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/wardenhq/warden/transport"
)

// A killed node's Raft port refuses at once: the leader counts it failed
// and moves its partitions while gossip (slowed here to a probe a second,
// so it needs several seconds) still calls it alive. For a killed leader,
// the followers also elect a new leader without waiting for Raft's full
// heartbeat timeout.
func TestFailFast_RefusedRaftPortCountsFailedBeforeGossip(t *testing.T) {
	for _, target := range []string{"follower", "leader"} {
		t.Run(target, func(t *testing.T) {
			c := newCluster(t, 6)
			c.configure = func(cfg *Config) { cfg.GossipProbeInterval = time.Second }
			nodes := map[string]*Node{}
			nodes["n1"] = c.start("n1", 3)
			nodes["n2"] = c.start("n2", 3, nodes["n1"].GossipAddr())
			nodes["n3"] = c.start("n3", 3, nodes["n1"].GossipAddr())
			waitFor(t, 30*time.Second, "two partitions each", func() bool {
				owned := map[string]int{}
				for _, p := range nodes["n1"].State().Partitions {
					owned[p.Owner]++
				}
				return owned["n1"] == 2 && owned["n2"] == 2 && owned["n3"] == 2 && nodes["n1"].Leader() != ""
			})
			leader := nodes["n1"].Leader()
			victim := leader
			if target == "follower" {
				victim = map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[leader]
			}
			var observer *Node
			for id, n := range nodes {
				if id != victim && (observer == nil || id != leader && target == "leader") {
					observer = n
				}
			}
			epochs := map[int32]uint64{}
			for _, p := range observer.State().Partitions {
				if p.Owner == victim {
					epochs[p.Partition] = p.Epoch
				}
			}
			// Gossip cannot call a silent member failed before a probe
			// interval and the suspicion timeout (3 intervals) have passed.
			gossipBound := 4 * time.Second
			killed := time.Now()
			c.kill(victim)
			var gossiped bool
			waitFor(t, gossipBound, "the victim's partitions moved", func() bool {
				gossiped = false
				for _, m := range observer.gossipMembers() {
					gossiped = gossiped || m.id == victim
				}
				for _, p := range observer.State().Partitions {
					if e, ok := epochs[p.Partition]; ok && (p.Owner == victim || p.Epoch <= e) {
						return false
					}
				}
				return true
			})
			t.Logf("%s's partitions moved %s after the kill", victim, time.Since(killed).Round(time.Millisecond))
			if !gossiped {
				t.Errorf("gossip had already declared %s failed: the move did not come from the refused port", victim)
			}
		})
	}
}

// A process that is paused (SIGSTOP), starved or slow keeps its listener,
// and the kernel accepts for it: a probe of its port connects, or at worst
// times out, and neither counts as death, however many hints arrive. Only
// a port that refuses does. Two gossip members stand in for the peers: one
// whose Raft port listens and never answers, one whose port is closed.
func TestFailFast_PausedPortIsNotDead(t *testing.T) {
	c := newCluster(t, 1)
	n := c.start("n1", 1)
	waitFor(t, 15*time.Second, "n1 leads", func() bool { return n.IsLeader() })

	paused, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: a stopped process's backlog
	if err != nil {
		t.Fatal(err)
	}
	defer paused.Close()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pausedAddr, goneAddr := paused.Addr().String(), gone.Addr().String()
	gone.Close()
	if err := n.mux.Probe(goneAddr, time.Second); !errors.Is(err, transport.ErrPortClosed) {
		t.Skipf("the closed port does not refuse (%v): something else took it", err)
	}
	if err := n.mux.Probe(pausedAddr, time.Second); err != nil {
		t.Fatalf("probe of a paused port: %v, want nil", err)
	}
	for name, raftAddr := range map[string]string{"paused": pausedAddr, "gone": goneAddr} {
		gc := transport.DefaultGossipConfig()
		gc.Name, gc.Bind, gc.Logger = name, "127.0.0.1:0", testLogger()
		gc.Delegate = &metaDelegate{meta: nodeMeta{Raft: raftAddr}}
		ml, err := transport.NewMemberlist(gc)
		if err != nil {
			t.Fatal(err)
		}
		defer ml.Shutdown()
		if _, err := ml.Join([]string{n.GossipAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "both stand-ins in n1's gossip", func() bool { return len(n.gossipMembers()) == 3 })

	// Hints for both, as failing connections would give, for a while.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n.onConnError(pausedAddr, io.ErrUnexpectedEOF)
		n.onConnError(goneAddr, io.ErrUnexpectedEOF)
		time.Sleep(deathProbeEvery)
	}
	if n.isDead(pausedAddr) {
		t.Errorf("a port that accepts but never answers was declared dead")
	}
	if !n.isDead(goneAddr) {
		t.Errorf("a port that refuses was not declared dead")
	}
}
