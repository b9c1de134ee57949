package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/internal/kafkaopt"
	"github.com/wardenhq/warden/partitioner"
)

// reconcileLoop runs on every node and acts only on the leader: on each
// gossip event, on a Raft leadership change and once a second, it brings the
// Raft configuration, the recorded members and the assignment in line with
// what gossip and Kafka say.
func (n *Node) reconcileLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	leaderCh := n.raft.LeaderCh()
	failedSince := map[string]time.Time{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.events:
		case <-leaderCh:
		case <-t.C:
		}
		if n.raft.State() != raft.Leader {
			clear(failedSince)
			continue
		}
		// A new leader first applies everything its predecessor committed.
		if err := n.raft.Barrier(5 * time.Second).Error(); err != nil {
			continue
		}
		n.reconcile(failedSince)
	}
}

func (n *Node) reconcile(failedSince map[string]time.Time) {
	lg := n.log.With("subsystem", "reconcile")
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return
	}
	servers := cf.Configuration().Servers
	inConfig := map[string]raft.Server{}
	voters := 0
	for _, s := range servers {
		inConfig[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	// Alive: what gossip says, less the members whose Raft port refuses
	// (failfast.go), which gossip will call failed soon.
	alive := map[string]gossipMember{}
	for _, m := range n.gossipMembers() {
		if m.id == n.cfg.ID || !n.isDead(m.meta.Raft) {
			alive[m.id] = m
		}
	}
	now := time.Now()

	// (a) The Raft configuration: add newcomers, follow address changes,
	// reap the dead after ReapAfter, keep up to Voters voters.
	for _, m := range alive {
		s, known := inConfig[m.id]
		if known && string(s.Address) == m.meta.Raft {
			continue
		}
		if known && m.id == n.cfg.ID {
			// This leader came back at a new address: it cannot remove
			// itself, so it hands leadership over and the next leader
			// does the remove-then-add.
			lg.Info("own address changed; transferring leadership", "old", s.Address, "new", m.meta.Raft)
			_ = n.raft.LeadershipTransfer().Error()
			return
		}
		if known {
			// Same id, new address: remove, then add again below.
			lg.Info("member changed address", "member", m.id, "old", s.Address, "new", m.meta.Raft)
			if err := n.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
				lg.Warn("remove for address change failed", "member", m.id, "err", err)
				continue
			}
			if s.Suffrage == raft.Voter {
				voters--
			}
		}
		var err error
		if voters < n.cfg.Voters {
			err = n.raft.AddVoter(raft.ServerID(m.id), raft.ServerAddress(m.meta.Raft), 0, 5*time.Second).Error()
			if err == nil {
				voters++
			}
		} else {
			err = n.raft.AddNonvoter(raft.ServerID(m.id), raft.ServerAddress(m.meta.Raft), 0, 5*time.Second).Error()
		}
		if err != nil {
			lg.Warn("adding member to raft failed", "member", m.id, "err", err)
			continue
		}
		lg.Info("added member to raft", "member", m.id, "addr", m.meta.Raft)
	}
	left := n.gev.leftNodes()
	for id, s := range inConfig {
		if _, ok := alive[id]; ok || id == n.cfg.ID {
			delete(failedSince, id)
			continue
		}
		since, seen := failedSince[id]
		if !seen {
			failedSince[id] = now
			since = now
		}
		if !left[id] && now.Sub(since) < n.cfg.ReapAfter {
			continue
		}
		// Removing a dead voter shrinks the quorum; refuse only if it would
		// leave fewer live voters than a majority of those that remain.
		if s.Suffrage == raft.Voter {
			liveVoters := 0
			for vid, vs := range inConfig {
				if _, ok := alive[vid]; ok && vs.Suffrage == raft.Voter {
					liveVoters++
				}
			}
			if liveVoters < (voters-1)/2+1 {
				continue
			}
		}
		if err := n.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
			lg.Warn("reaping failed member", "member", id, "err", err)
			continue
		}
		lg.Info("removed member from raft", "member", id, "left", left[id])
		delete(failedSince, id)
		if s.Suffrage == raft.Voter {
			voters--
		}
	}
	if voters < n.cfg.Voters {
		cf = n.raft.GetConfiguration()
		if cf.Error() == nil {
			for _, s := range cf.Configuration().Servers {
				if voters >= n.cfg.Voters {
					break
				}
				if _, ok := alive[string(s.ID)]; ok && s.Suffrage == raft.Nonvoter {
					if err := n.raft.AddVoter(s.ID, s.Address, 0, 5*time.Second).Error(); err == nil {
						voters++
						lg.Info("promoted member to voter", "member", s.ID)
					}
				}
			}
		}
	}

	// (b) The recorded members.
	cf = n.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	state, _ := n.fsm.View()
	var members []fsm.Member
	eligible := []string{}
	for _, s := range cf.Configuration().Servers {
		id := string(s.ID)
		m := state.Members[id]
		m.ID, m.Voter, m.RaftAddr = id, s.Suffrage == raft.Voter, string(s.Address)
		if g, ok := alive[id]; ok {
			m.GossipAddr, m.HTTPAddr = g.gossip, g.meta.HTTP
			m.Status = fsm.StatusAlive
			eligible = append(eligible, id)
		} else if left[id] {
			m.Status = fsm.StatusLeft
		} else {
			m.Status = fsm.StatusFailed
		}
		members = append(members, m)
	}
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	// Members that hold partitions without committing them get none,
	// unless that would leave no member at all.
	if aside := n.setAside(state, now, lg); len(aside) > 0 {
		var kept []string
		for _, id := range eligible {
			if !aside[id] {
				kept = append(kept, id)
			}
		}
		if len(kept) > 0 {
			eligible = kept
		}
	}
	if !reflect.DeepEqual(members, state.MemberList()) {
		if _, err := n.propose(n.ctx, fsm.Command{Kind: fsm.KindSetMembers, Members: members}); err != nil {
			lg.Warn("recording members failed", "err", err)
		}
	}

	// The processing configuration: the first leader's flags bootstrap it;
	// after that only an explicit, newer version changes it (clusterconfig.go).
	if state.Config == nil {
		n.proposeFlagConfig(lg, "bootstrap")
	}

	// (c) The topic's partition count, (d) the assignment: only the moves.
	count := n.kafkaStat.partitions()
	if count < int32(len(state.Partitions)) {
		count = int32(len(state.Partitions))
	}
	if count == 0 {
		return
	}
	next := partitioner.Assign(state.Owners(), eligible, count)
	moves := partitioner.Moves(state.Owners(), next)
	if len(moves) == 0 && count == int32(len(state.Partitions)) {
		return
	}
	a := &fsm.Assign{Partitions: count}
	if count > int32(len(state.Partitions)) {
		start, err := n.startOffsets(int32(len(state.Partitions)), count)
		if err != nil {
			lg.Warn("cannot read where the new partitions start; retrying", "err", err)
			return
		}
		a.Start = start
	}
	for _, mv := range moves {
		a.Moves = append(a.Moves, fsm.Move{Partition: mv.Partition, Owner: mv.To})
	}
	if _, err := n.propose(n.ctx, fsm.Command{Kind: fsm.KindAssign, Assign: a}); err != nil {
		lg.Warn("proposing assignment failed", "err", err)
		return
	}
	lg.Info("rebalanced", "partitions", count, "moves", len(moves), "members", len(eligible))
}

// kafkaStatus is the node's latest view of the input topic.
type kafkaStatus struct {
	mu        sync.RWMutex
	count     int32
	ends      map[int32]int64
	reachable bool
	lastErr   string
	updated   time.Time
}

func (k *kafkaStatus) partitions() int32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.count
}

func (k *kafkaStatus) endOffsets() (map[int32]int64, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ends, k.reachable
}

// watchKafka polls the topic's metadata and end offsets once a second, with
// backoff and one log line per change of what is wrong while it cannot.
// Besides reachability it checks the topic against the FSM (checkTopic):
// a topic that is missing, has fewer partitions than the cluster has
// offsets for, or ends below a committed offset is reported, never
// followed, so the committed offsets are never silently reset.
func (n *Node) watchKafka() {
	lg := n.log.With("subsystem", "kafka")
	delay := time.Second
	dlqReady, alertsReady := n.cfg.DLQTopic == "", n.cfg.AlertsTopic == ""
	for {
		ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
		ends, err := n.admin.ListEndOffsets(ctx, n.cfg.Topic)
		if err == nil {
			err = ends.Error()
		}
		faulty := false
		if err == nil || errors.Is(err, kerr.UnknownTopicOrPartition) {
			if terr := checkTopic(n.cfg.Topic, ends, n.State()); terr != nil {
				err, faulty = terr, true
			}
		}
		if err == nil && !dlqReady {
			dlqReady = n.ensureTopic(ctx, lg, n.cfg.DLQTopic)
		}
		if err == nil && !alertsReady {
			alertsReady = n.ensureTopic(ctx, lg, n.cfg.AlertsTopic)
		}
		cancel()
		n.kafkaStat.mu.Lock()
		was := n.kafkaStat.reachable
		if err != nil {
			err = kafkaopt.Explain(err)
			n.kafkaStat.reachable = false
			if msg := err.Error(); was || msg != n.kafkaStat.lastErr {
				switch {
				case faulty:
					lg.Error("the input topic cannot be read safely; not ready until it can", "topic", n.cfg.Topic, "err", err)
				case ctx.Err() != nil && n.ctx.Err() != nil:
				default:
					lg.Warn("cannot read the topic from Kafka; retrying with backoff", "topic", n.cfg.Topic, "brokers", n.cfg.Brokers, "err", err)
				}
				n.kafkaStat.lastErr = msg
			}
			n.kafkaStat.updated = time.Now()
			delay = min(delay*2, 10*time.Second)
		} else {
			m := map[int32]int64{}
			var count int32
			ends.Each(func(o kadm.ListedOffset) {
				m[o.Partition] = o.Offset
				if o.Partition+1 > count {
					count = o.Partition + 1
				}
			})
			n.kafkaStat.ends, n.kafkaStat.count = m, count
			n.kafkaStat.reachable, n.kafkaStat.lastErr, n.kafkaStat.updated = true, "", time.Now()
			if !was {
				lg.Info("reading topic", "topic", n.cfg.Topic, "partitions", count)
			}
			delay = time.Second
		}
		n.kafkaStat.mu.Unlock()
		if err == nil {
			n.metrics.observeLag(n.State(), n.kafkaStat.ends)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// Topic faults: what Kafka says about the input topic contradicts the
// offsets the cluster has committed. Following Kafka would reset them.
var (
	ErrTopicMissing     = errors.New("node: input topic missing")
	ErrTopicShrunk      = errors.New("node: input topic has fewer partitions than the cluster knows")
	ErrTopicBelowCommit = errors.New("node: input topic ends below a committed offset")
)

// topicError is a topic fault: its message says what to do, errors.Is
// finds its kind.
type topicError struct {
	kind error
	msg  string
}

func (e *topicError) Error() string { return e.msg }
func (e *topicError) Unwrap() error { return e.kind }

func topicFault(kind error, format string, a ...any) error {
	return &topicError{kind: kind, msg: fmt.Sprintf(format, a...)}
}

// checkTopic compares the topic's end offsets with the cluster's state.
func checkTopic(topic string, ends kadm.ListedOffsets, s *fsm.State) error {
	var count int32
	endOf := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Partition >= 0 {
			endOf[o.Partition] = o.Offset
			count = max(count, o.Partition+1)
		}
	})
	known := int32(len(s.Partitions))
	switch {
	case count == 0 && known > 0:
		return topicFault(ErrTopicMissing, "topic %q does not exist in Kafka, but the cluster has committed offsets for its %d partitions: it was deleted; recreate it with at least %d partitions, or check the topic name (the committed offsets are kept, not reset)",
			topic, known, known)
	case count == 0:
		return topicFault(ErrTopicMissing, "topic %q does not exist in Kafka: create it, or check the topic name", topic)
	case count < known:
		return topicFault(ErrTopicShrunk, "topic %q has %d partitions in Kafka, but the cluster has committed offsets for %d; Kafka never removes partitions, so the topic was recreated: give it at least %d partitions (the committed offsets are kept, not reset)",
			topic, count, known, known)
	}
	for _, p := range s.Partitions {
		if end, ok := endOf[p.Partition]; ok && end < p.Committed {
			return topicFault(ErrTopicBelowCommit, "partition %d of topic %q ends at offset %d, below the committed offset %d: the topic was recreated or truncated (the committed offsets are kept, not reset)",
				p.Partition, topic, end, p.Committed)
		}
	}
	return nil
}

// ensureTopic creates a one-partition topic (dead letters, alerts) if it
// does not exist yet. It reports whether the topic is there.
func (n *Node) ensureTopic(ctx context.Context, lg *slog.Logger, topic string) bool {
	resp, err := n.admin.CreateTopic(ctx, 1, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		lg.Warn("cannot create topic; will retry", "topic", topic, "err", err)
		return false
	}
	return true
}

// startOffsets is where partitions [from, to) begin, new to the cluster:
// their log start, or their end with --start-offset latest.
func (n *Node) startOffsets(from, to int32) (map[int32]int64, error) {
	mode := n.cfg.StartOffset
	if c := n.fsm.Config(); c != nil && c.StartOffset != "" {
		mode = c.StartOffset
	}
	list := n.admin.ListStartOffsets
	if mode == "latest" {
		list = n.admin.ListEndOffsets
	}
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	offs, err := n.listed(ctx, list)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p := from; p < to; p++ {
		if o, ok := offs[p]; ok && o > 0 {
			out[p] = o
		}
	}
	return out, nil
}
