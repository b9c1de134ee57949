package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardenhq/warden/fsm"
)

// pendingBatch is an encoded batch waiting for the group committer.
type pendingBatch struct {
	data []byte
	done chan error
}

// Group commit bounds: the batches, and their bytes, packed into one entry.
const (
	maxGroup      = 512
	maxGroupBytes = 2 << 20
)

// commitLoop packs the batches of all this node's workers that are waiting
// into one Commit entry (each still checked on its own by the FSM), so the
// Raft log carries one entry per node per round, not one per partition.
func (n *Node) commitLoop() {
	var carry *pendingBatch
	// Rounds are at least minRound apart: each is a Raft entry, written
	// with an fsync on every voter, so under light traffic the batches of
	// a few milliseconds go together rather than one entry each.
	minRound := n.cfg.BatchInterval / 8
	var last time.Time
	for {
		var group []pendingBatch
		if carry != nil {
			group, carry = append(group, *carry), nil
		} else {
			select {
			case <-n.ctx.Done():
				return
			case pb := <-n.commitCh:
				group = append(group, pb)
			}
		}
		if wait := minRound - time.Since(last); wait > 0 {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		size := len(group[0].data)
	drain:
		for len(group) < maxGroup {
			select {
			case pb := <-n.commitCh:
				if size+len(pb.data) > maxGroupBytes {
					carry = &pb
					break drain
				}
				group = append(group, pb)
				size += len(pb.data)
			default:
				break drain
			}
		}
		batches := make([][]byte, len(group))
		for i, pb := range group {
			batches[i] = pb.data
		}
		if d := n.commitDelay.Load(); d > 0 {
			time.Sleep(time.Duration(d)) // a slow disk under Raft, in tests
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		entry := fsm.CommitEntry(batches)
		res, err := n.proposeRound(ctx, entry)
		// No leader (an election): the same entry goes again once one is
		// known, rather than every batch of the round failing and every
		// worker of this node starting again from the FSM (which, with
		// hundreds of partitions, floods the broker and starves the
		// election). Only when the entry did not reach a log: a leader
		// deposed with it in flight answers ErrCommitUnknown, since the
		// next leader may commit it, and a second-stage batch that moved
		// no offset (it released lines held in its merge) would pass the
		// FSM's offset check twice. Those batches fail, and their workers
		// read what was committed.
		for errors.Is(err, ErrNoLeader) && n.awaitLeader(ctx) {
			n.metrics.commitErrors.Add(float64(len(group)))
			res, err = n.proposeRound(ctx, entry)
		}
		cancel()
		n.metrics.commitSeconds.Observe(time.Since(start).Seconds())
		for i, pb := range group {
			e := err
			if e == nil {
				e = res.BatchErr(i)
			}
			n.metrics.observeBatch(e)
			pb.done <- e
		}
	}
}

// proposeRound proposes a group commit's entry; a test's noLeaderRounds
// make the next rounds fail as during an election, before anything is
// sent.
func (n *Node) proposeRound(ctx context.Context, entry []byte) (fsm.Result, error) {
	if n.noLeaderRounds.Load() > 0 && n.noLeaderRounds.Add(-1) >= 0 {
		return fsm.Result{}, ErrNoLeader
	}
	return n.proposeData(ctx, entry)
}

// awaitLeader waits until this node knows a leader, or ctx ends (false).
func (n *Node) awaitLeader(ctx context.Context) bool {
	for {
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// proposeOperator proposes an operator's write (a decision, an offset
// reset, a configuration) for the HTTP API. During an election propose
// answers ErrNoLeader before the command entered any log, so the same
// command goes again once a leader is known, until ctx ends: a write made
// while the cluster fails over waits the failover out instead of failing
// with 503. Any other error (a forward that broke after it was sent, a
// commit whose fate is unknown) is the caller's to answer, since the
// command may have been applied.
func (n *Node) proposeOperator(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	for {
		res, err := n.propose(ctx, cmd)
		if !errors.Is(err, ErrNoLeader) {
			return res, err
		}
		// A follower may still name a leader that has just refused the
		// command: pause before asking again.
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(20 * time.Millisecond):
		}
		if !n.awaitLeader(ctx) {
			return res, err
		}
	}
}

// operatorWrite tells the commands an operator's HTTP write proposes.
func operatorWrite(k fsm.Kind) bool {
	switch k {
	case fsm.KindDecisionAdd, fsm.KindDecisionDelete, fsm.KindConfigure, fsm.KindResetOffsets:
		return true
	}
	return false
}

// propose puts cmd in the Raft log, on the leader directly or through the
// forwarding RPC from a follower, and returns the FSM's result.
func (n *Node) propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	if operatorWrite(cmd.Kind) && n.noLeaderWrites.Load() > 0 && n.noLeaderWrites.Add(-1) >= 0 {
		return fsm.Result{}, ErrNoLeader
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	return n.proposeData(ctx, data)
}

// proposeData is propose of an encoded command.
func (n *Node) proposeData(ctx context.Context, data []byte) (fsm.Result, error) {
	if n.raft.State() == raft.Leader {
		return n.applyLocal(ctx, data)
	}
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return fsm.Result{}, ErrNoLeader
	}
	resp, err := n.mux.Forward(ctx, string(addr), data)
	if err != nil {
		if strings.Contains(err.Error(), ErrNotLeader.Error()) {
			return fsm.Result{}, ErrNoLeader
		}
		return fsm.Result{}, err
	}
	var res fsm.Result
	if err := json.Unmarshal(resp, &res); err != nil {
		return res, fmt.Errorf("forward: bad answer: %w", err)
	}
	return res, nil
}

func (n *Node) applyLocal(ctx context.Context, data []byte) (fsm.Result, error) {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(data, timeout)
	// A future Raft took in but never answered before it shut down (an
	// entry queued as the node was killed) would block Error for ever,
	// and the node's stop with it: a stopping node stops waiting.
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	var err error
	select {
	case err = <-errc:
	case <-n.ctx.Done():
		return fsm.Result{}, ErrStopped
	}
	if err == nil && n.lostAnswerRounds.Load() > 0 && n.lostAnswerRounds.Add(-1) >= 0 {
		err = raft.ErrLeadershipLost
	}
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader): // refused before it entered the log
			return fsm.Result{}, fmt.Errorf("%w: %v", ErrNoLeader, err)
		case errors.Is(err, raft.ErrLeadershipLost):
			return fsm.Result{}, ErrCommitUnknown
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return fsm.Result{}, ErrStopped
		}
		return fsm.Result{}, err
	}
	res, _ := f.Response().(fsm.Result)
	return res, nil
}

// handleForward applies a proposal forwarded by a follower.
func (n *Node) handleForward(ctx context.Context, payload []byte) ([]byte, error) {
	if n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	res, err := n.applyLocal(ctx, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}
