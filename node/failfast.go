package node

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardenhq/warden/transport"
)

// Gossip declares a SIGKILLed node failed after memberlist's suspicion
// timeout, most of a second. The node's own peers learn sooner: the kernel
// closes a dead process's sockets at once, so the leader's replication
// and heartbeats to it fail with a reset, a follower's forwarded proposal
// to a dead leader is refused, and a follower whose leader went quiet can
// ask. Any such error (transport.Config.OnConnError) is only a hint; the
// proof is a probe: a TCP dial to the peer's Raft port that is refused
// (transport.ErrPortClosed). A paused, starved or slow process still has
// its listener and the kernel still accepts for it, so the dial succeeds
// or times out, and neither is taken for death; only gossip can then
// declare it failed, as before.
//
// A Raft address found refusing is dead to reconcile (it counts the member
// failed, so its partitions move at once) for as long as gossip still
// calls the member alive and the port still refuses: it is probed again
// every deadRecheckEvery, so a process restarted at the address is back as
// soon as its port is. A follower that finds its leader's port refusing
// shortens Raft's heartbeat and election timeouts to promptTimeout until
// a new leader is known, so the election starts as soon as the leader has
// been silent that long instead of after the full heartbeat timeout.

const (
	// deathProbeTimeout bounds one probe; a probe that times out proves
	// nothing.
	deathProbeTimeout = 250 * time.Millisecond
	// deathProbeEvery: at most one probe of an address this often, however
	// many connections to it fail.
	deathProbeEvery = 50 * time.Millisecond
	// deadRecheckEvery: how often an address found refusing is probed again.
	deadRecheckEvery = 250 * time.Millisecond
	// deathWatchTick paces the follower's look at its leader, the restore
	// of Raft's timeouts and the rechecks.
	deathWatchTick = 25 * time.Millisecond
)

func newDeathWatch() deathWatch {
	return deathWatch{dead: map[string]time.Time{}, probed: map[string]time.Time{}, probing: map[string]bool{}}
}

type deathWatch struct {
	// ready is set once Raft and gossip exist; hints before are ignored.
	ready atomic.Bool

	mu sync.Mutex
	// dead: Raft addresses whose port refused, with when it last did.
	dead map[string]time.Time
	// probed: when each address was last probed; probing: in flight.
	probed  map[string]time.Time
	probing map[string]bool
	// prompted is when this follower shortened Raft's timeouts because its
	// leader's port refused; zero when they are the configured ones.
	prompted time.Time
}

// promptTimeout is the heartbeat and election timeout of a follower whose
// leader is proven gone: Raft's leader lease, the shortest it accepts.
func (n *Node) promptTimeout() time.Duration { return n.cfg.RaftHeartbeat / 2 }

// onConnError is transport's hint that a connection to a peer failed.
func (n *Node) onConnError(addr string, err error) {
	n.probePeer(addr)
}

// isDead reports whether the Raft port at addr was found refusing and has
// not accepted since.
func (n *Node) isDead(addr string) bool {
	w := &n.deaths
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.dead[addr]
	return ok
}

// probePeer probes the Raft port at addr in the background, unless it was
// probed a moment ago or is being probed, and records what the probe
// proves: a refusal marks it dead, an accepted connection clears a mark.
func (n *Node) probePeer(addr string) {
	w := &n.deaths
	if !w.ready.Load() || addr == "" || addr == n.RaftAddr() || n.ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	if w.probing[addr] || time.Since(w.probed[addr]) < deathProbeEvery {
		w.mu.Unlock()
		return
	}
	w.probing[addr], w.probed[addr] = true, time.Now()
	w.mu.Unlock()
	go func() {
		err := n.mux.Probe(addr, deathProbeTimeout)
		lg := n.log.With("subsystem", "reconcile")
		w.mu.Lock()
		delete(w.probing, addr)
		_, was := w.dead[addr]
		switch {
		case errors.Is(err, transport.ErrPortClosed):
			w.dead[addr] = time.Now()
		case err == nil:
			delete(w.dead, addr)
		}
		_, is := w.dead[addr]
		w.mu.Unlock()
		switch {
		case is && !was:
			lg.Info("a peer's Raft port refuses connections: its process is gone; counting it failed without waiting for gossip", "raft_addr", addr)
			n.wakeReconcile()
			n.promptElection(addr)
		case was && !is:
			lg.Info("a peer's Raft port accepts connections again", "raft_addr", addr)
			n.wakeReconcile()
		}
	}()
}

func (n *Node) wakeReconcile() {
	select {
	case n.events <- struct{}{}:
	default:
	}
}

// promptElection shortens Raft's timeouts on a follower whose leader's
// port refused, once the leader has been silent for promptTimeout: Raft
// then starts an election at once, where it would otherwise wait for the
// configured heartbeat timeout and up to twice that. Pre-vote keeps this
// from disturbing a leader that is in fact alive: the other voters, still
// hearing from it, refuse.
func (n *Node) promptElection(dead string) {
	p := n.promptTimeout()
	leads := func() bool {
		addr, _ := n.raft.LeaderWithID()
		return n.raft.State() == raft.Follower && string(addr) == dead
	}
	if !leads() {
		return
	}
	// Raft compares the silence with the timeout when the new one is set;
	// if the leader spoke less than p ago, it would wait a random p to 2p.
	if wait := p - time.Since(n.raft.LastContact()) + time.Millisecond; wait > 0 {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	if !leads() {
		return
	}
	rc := n.raft.ReloadableConfig()
	if rc.HeartbeatTimeout <= p {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = p, p
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.log.Warn("cannot shorten raft's timeouts for a prompt election", "subsystem", "raft", "err", err)
		return
	}
	w := &n.deaths
	w.mu.Lock()
	w.prompted = time.Now()
	w.mu.Unlock()
	n.log.Info("the leader's Raft port refuses connections; electing a new leader now", "subsystem", "raft", "leader", dead, "timeout", p)
}

// watchDeaths runs on every node: a follower whose leader has been silent
// for a quarter of the heartbeat timeout probes it (a hint when no
// proposal is being forwarded), Raft's timeouts go back to the configured
// ones once a live leader is known, and addresses found refusing are
// probed again; marks of members gossip no longer calls alive are dropped
// (gossip's verdict stands on its own).
func (n *Node) watchDeaths() {
	t := time.NewTicker(deathWatchTick)
	defer t.Stop()
	w := &n.deaths
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		addr, _ := n.raft.LeaderWithID()
		leader := string(addr)
		if n.raft.State() == raft.Follower && leader != "" && time.Since(n.raft.LastContact()) > n.cfg.RaftHeartbeat/4 {
			n.probePeer(leader)
		}
		live := map[string]bool{}
		for _, m := range n.gossipMembers() {
			live[m.meta.Raft] = true
		}
		w.mu.Lock()
		prompted := w.prompted
		var recheck []string
		for a := range w.dead {
			if !live[a] {
				delete(w.dead, a)
			} else if time.Since(w.probed[a]) >= deadRecheckEvery {
				recheck = append(recheck, a)
			}
		}
		w.mu.Unlock()
		for _, a := range recheck {
			n.probePeer(a)
		}
		if prompted.IsZero() {
			continue
		}
		settled := n.raft.State() == raft.Leader || leader != "" && !n.isDead(leader)
		if !settled && time.Since(prompted) < 10*n.cfg.RaftHeartbeat {
			continue
		}
		rc := n.raft.ReloadableConfig()
		rc.HeartbeatTimeout, rc.ElectionTimeout = n.cfg.RaftHeartbeat, n.cfg.RaftHeartbeat
		if err := n.raft.ReloadConfig(rc); err != nil {
			n.log.Warn("cannot restore raft's timeouts", "subsystem", "raft", "err", err)
			continue
		}
		w.mu.Lock()
		w.prompted = time.Time{}
		w.mu.Unlock()
	}
}
