package e2e

import (
	"syscall"
	"testing"
	"time"
)

// A follower paused (SIGSTOP) for longer than Raft's timeouts, but for less
// than gossip needs to declare it failed (a probe a second here), keeps its
// partitions: the fast path never takes a paused process for a dead one.
// SIGKILLed, it loses them before gossip could have declared it failed.
func TestProcesses_PausedFollowerKeepsItsPartitionsKilledLosesThem(t *testing.T) {
	slow := []string{"--gossip-probe-interval", "1s"}
	c := newProcClusterWith(t, 3, 6, map[string][]string{"n1": slow, "n2": slow, "n3": slow})
	pr := newProducer(t, c.broker, c.topic, 5)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			pr.produce(100)
		}
	}()
	observer, victim := pickVictim(t, c, false)
	owned := func() map[int32]uint64 {
		epochs := map[int32]uint64{}
		parts, err := c.partitions(observer)
		if err != nil {
			return nil
		}
		for _, p := range parts {
			if p.Owner == victim {
				epochs[p.Partition] = p.Epoch
			}
		}
		return epochs
	}
	var before map[int32]uint64
	waitFor(t, 30*time.Second, "the victim owns partitions", func() bool {
		before = owned()
		return len(before) == 2
	})

	// Paused 2 s: Raft's calls to it time out (heartbeat timeout 300 ms),
	// its port still accepts; gossip needs 1 s probes and a 3 s suspicion.
	p := c.agents[victim]
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(2 * time.Second)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	time.Sleep(time.Second)
	after := owned()
	for part, epoch := range before {
		if e, ok := after[part]; !ok || e != epoch {
			t.Errorf("partition %d left %s while it was only paused (epoch %d, now owned under %d: %v)", part, victim, epoch, e, ok)
		}
	}

	// Killed: its Raft port refuses, and its partitions move in well under
	// what gossip would take.
	killed := time.Now()
	c.killAgent(victim)
	waitFor(t, 3*time.Second, "the victim's partitions moved", func() bool {
		now := owned()
		return now != nil && len(now) == 0
	})
	t.Logf("partitions moved %s after the SIGKILL", time.Since(killed).Round(time.Millisecond))
}
