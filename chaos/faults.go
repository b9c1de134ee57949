package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/wardenhq/warden/internal/clustertest"
)

// recoveryLimit is how long after a fault the checker waits for the
// affected partitions to commit again before calling it unrecovered.
const recoveryLimit = 45 * time.Second

// inject carries out one step: it applies the fault, holds it, heals it,
// and returns; the recovery measurement goes on in the background until
// done is closed, so that the schedule keeps its pace.
func (c *cluster) inject(ctx context.Context, st Step, w *watcher, r *rand.Rand) (ev *FaultEvent, done chan struct{}) {
	ev = &FaultEvent{Kind: st.Kind, Variant: st.Variant, HoldS: st.Hold.Seconds()}
	done = make(chan struct{})
	pick := rand.New(rand.NewPCG(st.Pick, st.Pick>>1))
	leader := c.Leader()
	var live, followers []*clustertest.Agent
	for _, a := range c.Agents() {
		if _, up := a.Running(); up {
			live = append(live, a)
			if a.ID != leader {
				followers = append(followers, a)
			}
		}
	}
	one := func(from []*clustertest.Agent) []*clustertest.Agent {
		if len(from) == 0 {
			return nil
		}
		return []*clustertest.Agent{from[pick.IntN(len(from))]}
	}
	var targets []*clustertest.Agent
	switch st.Variant {
	case "leader":
		if a := c.Agent(leader); a != nil {
			targets = []*clustertest.Agent{a}
		}
	case "follower", "leave-rejoin":
		targets = one(followers)
	case "join-leave":
		// A node that was never part of the cluster joins under load,
		// takes its share, and leaves again.
		a, err := c.newcomer()
		if err != nil {
			ev.Note = "skipped: " + err.Error()
			close(done)
			return ev, done
		}
		targets = []*clustertest.Agent{a}
	case "majority":
		shuffled := append([]*clustertest.Agent(nil), live...)
		pick.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		targets = shuffled[:min(len(shuffled), c.cfg.Nodes/2+1)]
	case "isolate-leader":
		if a := c.Agent(leader); a != nil {
			targets = []*clustertest.Agent{a}
		}
	case "halves":
		shuffled := c.Agents()
		pick.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		targets = shuffled[:len(shuffled)/2]
	case "one-way":
		targets = one(live)
	}
	for _, a := range targets {
		ev.Targets = append(ev.Targets, a.ID)
	}
	if st.Kind != BrokerRestart && len(targets) == 0 {
		ev.Note = "skipped: no node in that role (no leader?)"
		close(done)
		return ev, done
	}

	// What the victims own, and how far it was committed, just before.
	view := w.merged()
	snap := map[int32]pstate{}
	victim := map[string]bool{}
	for _, a := range targets {
		victim[a.ID] = true
	}
	for p, s := range view {
		if victim[s.owner] || st.Kind == BrokerRestart {
			snap[p] = s
			ev.Affected = append(ev.Affected, p)
		}
	}
	sort.Slice(ev.Affected, func(i, j int) bool { return ev.Affected[i] < ev.Affected[j] })

	t0 := time.Now()
	var heal func()
	switch st.Kind {
	case Kill, Wipe:
		for _, a := range targets {
			a.Kill()
			w.forget(a.ID)
		}
		if st.Kind == Wipe {
			for _, a := range targets {
				_ = os.RemoveAll(a.DataDir)
			}
		}
		heal = func() {
			for _, a := range targets {
				_ = c.startAgent(a)
			}
		}
	case Pause:
		for _, a := range targets {
			a.Pause()
		}
		heal = func() {
			for _, a := range targets {
				a.Resume()
			}
		}
	case Churn:
		if st.Variant == "join-leave" {
			a := targets[0]
			if err := c.startAgent(a); err != nil {
				ev.Note = "join failed: " + err.Error()
				close(done)
				return ev, done
			}
			heal = func() {
				// Leave: the newcomer's partitions go back to the others.
				taken := 0
				for _, s := range w.merged() {
					if s.owner == a.ID {
						taken++
					}
				}
				ev.Note = fmt.Sprintf("the newcomer took %d partitions, then left", taken)
				c.leave(a, fmt.Sprintf("join-leave at %.1fs", st.At.Seconds()))
				w.forget(a.ID)
				c.Remove(a)
			}
			break
		}
		for _, a := range targets {
			c.leave(a, fmt.Sprintf("leave-rejoin at %.1fs", st.At.Seconds()))
			w.forget(a.ID)
		}
		heal = func() {
			for _, a := range targets {
				_ = c.startAgent(a) // rejoin with the same id
			}
		}
	case BrokerRestart:
		c.BrokerProc().Stop(syscall.SIGTERM, 10*time.Second)
		heal = func() {
			c.restartBroker(ctx)
		}
	case Partition:
		var pairs [][2]string
		others := map[string]bool{}
		for _, a := range c.Agents() {
			if !victim[a.ID] {
				others[a.IP] = true
			}
		}
		for _, a := range targets {
			for ip := range others {
				pairs = append(pairs, [2]string{a.IP, ip})
				if st.Variant != "one-way" {
					pairs = append(pairs, [2]string{ip, a.IP})
				}
			}
		}
		c.cut.pairs = pairs
		if err := c.cut.apply(); err != nil {
			ev.Note = "cut failed: " + err.Error()
			close(done)
			return ev, done
		}
		heal = func() {
			c.cut.pairs = nil
			c.cut.heal()
		}
	}

	// Recovered: every affected partition committed again: under a new
	// epoch while the victims are down, or past where they left it once
	// they are back. After a broker restart the owners stay: it is the
	// first commit past the offset reached when the broker came back.
	var healedAt time.Time
	brokerBase := map[int32]pstate{}
	recovered := func() bool {
		if len(ev.Affected) == 0 {
			return false
		}
		since := t0
		if st.Kind == BrokerRestart {
			if healedAt.IsZero() {
				return false
			}
			since = healedAt
		}
		cur := w.mergedSince(since)
		for _, p := range ev.Affected {
			s, base := cur[p], snap[p]
			if st.Kind == BrokerRestart {
				base = brokerBase[p]
				if s.committed <= base.committed {
					return false
				}
				continue
			}
			// Before the victims come back: a commit under a new epoch
			// (a batch already in flight when they died does not count).
			// After: any commit past the offset, whoever holds it.
			if s.committed <= base.committed || (s.epoch <= base.epoch && healedAt.IsZero()) {
				return false
			}
		}
		return true
	}
	// Hold the fault, watching for the cluster to route around it.
	holdEnd := t0.Add(st.Hold)
	for time.Now().Before(holdEnd) && ctx.Err() == nil {
		if !ev.Recovered && recovered() {
			ev.Recovered, ev.RecoveryS = true, time.Since(t0).Seconds()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Kind == BrokerRestart {
		heal()
		brokerBase = w.merged()
	} else {
		// A node's last batches may still apply after it died: the new
		// offsets are the base for commits after the heal.
		for p, s := range w.merged() {
			if _, ok := snap[p]; ok && s.committed > snap[p].committed && s.epoch == snap[p].epoch {
				snap[p] = s
			}
		}
		heal()
	}
	healedAt = time.Now()
	go func() {
		defer close(done)
		for !ev.Recovered && len(ev.Affected) > 0 && time.Since(t0) < recoveryLimit && ctx.Err() == nil {
			if recovered() {
				ev.Recovered, ev.RecoveryS = true, time.Since(t0).Seconds()
				if st.Kind == BrokerRestart {
					ev.RecoveryS = time.Since(healedAt).Seconds()
					ev.Note = "recovery counted from the broker's restart"
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(ev.Affected) == 0 {
			ev.Recovered = true
			if ev.Note == "" {
				ev.Note = "the targets owned no partition"
			}
		} else if !ev.Recovered {
			ev.Note = fmt.Sprintf("affected partitions did not commit again within %s", recoveryLimit)
		}
	}()
	return ev, done
}
