package node

import (
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/wardenhq/warden/fsm"
)

// A member can be alive to gossip and yet never commit: Raft cannot reach
// it (a wrong cluster key behind the right gossip key, a firewall on the
// Raft port), or its workers are stuck. The leader watches every owned
// partition that has records waiting: if its committed offset has not
// moved under the same owner and epoch for StallAfter, the owner is set
// aside for stallQuarantine: it gets no partitions, so its partitions move
// to the others and resume from their committed offsets. Exactly-once is
// untouched: the move bumps the epochs, fencing the stalled owner.

// stallQuarantine is how many StallAfter periods a stalled member is set aside.
const stallQuarantine = 4

type stallWatch struct {
	mu    sync.Mutex
	marks map[int32]progressMark
	aside map[string]time.Time // member -> until
}

type progressMark struct {
	owner     string
	epoch     uint64
	committed int64
	since     time.Time
}

// setAside returns the members the leader keeps partitions away from now,
// updating what it knows of each partition's progress.
func (n *Node) setAside(state *fsm.State, now time.Time, lg *slog.Logger) map[string]bool {
	w := &n.stall
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.marks == nil {
		w.marks, w.aside = map[int32]progressMark{}, map[string]time.Time{}
	}
	out := map[string]bool{}
	for id, until := range w.aside {
		if now.Before(until) {
			out[id] = true
		} else {
			delete(w.aside, id)
		}
	}
	if n.cfg.StallAfter <= 0 {
		return out
	}
	ends, reachable := n.kafkaStat.endOffsets()
	if !reachable {
		// Kafka is the problem, not the members.
		w.marks = map[int32]progressMark{}
		return out
	}
	stuck := map[string][]int32{}
	for _, p := range state.Partitions {
		m, seen := w.marks[p.Partition]
		if !seen || m.owner != p.Owner || m.epoch != p.Epoch || m.committed != p.Committed {
			w.marks[p.Partition] = progressMark{owner: p.Owner, epoch: p.Epoch, committed: p.Committed, since: now}
			continue
		}
		end, ok := ends[p.Partition]
		if p.Owner == "" || !ok || end <= p.Committed {
			w.marks[p.Partition] = progressMark{owner: p.Owner, epoch: p.Epoch, committed: p.Committed, since: now}
			continue
		}
		if now.Sub(m.since) >= n.cfg.StallAfter {
			stuck[p.Owner] = append(stuck[p.Owner], p.Partition)
		}
	}
	for id, parts := range stuck {
		if out[id] {
			continue
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		lg.Warn("member owns partitions with records waiting but has committed none of them; moving them away",
			"member", id, "partitions", parts, "stalled_for", n.cfg.StallAfter, "set_aside_for", stallQuarantine*n.cfg.StallAfter)
		w.aside[id] = now.Add(stallQuarantine * n.cfg.StallAfter)
		out[id] = true
		n.metrics.stalledMembers.Inc()
	}
	return out
}
