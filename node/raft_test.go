package node

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// refusingFollower answers a leader's Raft RPCs over a real transport as a
// follower whose log matches, except that every refuseEvery-th append that
// carries entries is refused as a mismatch (as a follower that lost its
// last entries would answer), refusals times in all.
type refusingFollower struct {
	trans       *raft.NetworkTransport
	refuseEvery int
	refusals    atomic.Int32 // left to give
	refused     atomic.Int32 // given
}

func (f *refusingFollower) serve(done <-chan struct{}) {
	var last uint64 // the index of the last entry held
	appends := 0
	for {
		var rpc raft.RPC
		select {
		case rpc = <-f.trans.Consumer():
		case <-done:
			return
		}
		switch req := rpc.Command.(type) {
		case *raft.RequestPreVoteRequest:
			rpc.Respond(&raft.RequestPreVoteResponse{Term: req.Term, Granted: true}, nil)
		case *raft.RequestVoteRequest:
			rpc.Respond(&raft.RequestVoteResponse{Term: req.Term, Granted: true}, nil)
		case *raft.AppendEntriesRequest:
			resp := &raft.AppendEntriesResponse{Term: req.Term, LastLog: last, NoRetryBackoff: true}
			switch {
			case req.PrevLogEntry > last:
				// A gap: the leader goes back to LastLog.
			case len(req.Entries) == 0:
				resp.Success = true
			default:
				appends++
				if req.PrevLogEntry > 0 && appends%f.refuseEvery == 0 && f.refusals.Add(-1) >= 0 {
					// The entry before these is gone: refused.
					last = req.PrevLogEntry - 1
					resp.LastLog = last
					f.refused.Add(1)
					break
				}
				last = req.Entries[len(req.Entries)-1].Index
				resp.LastLog, resp.Success = last, true
			}
			rpc.Respond(resp, nil)
		default:
			rpc.Respond(nil, io.ErrUnexpectedEOF)
		}
	}
}

type countingFSM struct{ applied atomic.Int64 }

func (f *countingFSM) Apply(*raft.Log) any                 { return f.applied.Add(1) }
func (f *countingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.ErrUnexpectedEOF }
func (f *countingFSM) Restore(io.ReadCloser) error         { return io.ErrUnexpectedEOF }

// A follower that refuses an entry now and then, while the leader keeps
// appending, must keep being replicated: with hashicorp/raft's pipelined
// replication a refusal could wedge the leader's pipeline to it (its
// sender waiting forever to hand over an answer), after which the leader
// sent it heartbeats only, committed nothing more (the follower is half
// of the quorum here) and could not shut down.
func TestRaftTransport_FollowerThatRefusesEntriesIsStillReplicated(t *testing.T) {
	ftrans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer ftrans.Close()
	f := &refusingFollower{trans: ftrans, refuseEvery: 5}
	const refusals = 200
	f.refusals.Store(refusals)
	done := make(chan struct{})
	defer close(done)
	go f.serve(done)

	ltrans, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, raftTransportConfig(nil, hclog.NewNullLogger()))
	if err != nil {
		t.Fatal(err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = "leader"
	rc.Logger = hclog.NewNullLogger()
	rc.HeartbeatTimeout = 100 * time.Millisecond
	rc.ElectionTimeout = 100 * time.Millisecond
	rc.LeaderLeaseTimeout = 50 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond // as the node's
	rc.SnapshotThreshold = 1 << 40
	fsm := &countingFSM{}
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(rc, fsm, store, store, raft.NewInmemSnapshotStore(), ltrans)
	if err != nil {
		t.Fatal(err)
	}
	err = r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: "leader", Address: ltrans.LocalAddr()},
		{ID: "follower", Address: ftrans.LocalAddr()},
	}}).Error()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Entries stream in, a few at a time without waiting for each, as
	// workers' commit rounds do, until the follower has refused its share.
	var last raft.ApplyFuture
	for f.refused.Load() < refusals && time.Now().Before(deadline) {
		for range 3 {
			last = r.Apply([]byte("entry"), time.Second)
		}
		time.Sleep(time.Millisecond)
	}
	if got := f.refused.Load(); got < refusals {
		t.Fatalf("the follower refused %d appends in 10 s, want %d: the leader stopped sending it entries", got, refusals)
	}
	committed := make(chan error, 1)
	go func() { committed <- last.Error() }()
	select {
	case err := <-committed:
		if err != nil {
			t.Fatalf("last entry: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the last entry did not commit in 10 s (%d applied): the leader no longer replicates to the follower", fsm.applied.Load())
	}
	shut := make(chan error, 1)
	go func() { shut <- r.Shutdown().Error() }()
	select {
	case <-shut:
	case <-time.After(10 * time.Second):
		t.Fatal("the leader's Raft did not shut down in 10 s")
	}
}
