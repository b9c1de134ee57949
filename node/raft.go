package node

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/wardenhq/warden/transport"
)

// Raft keeps its log in BoltDB and its snapshots in files under the data
// dir, and talks over the node's transport mux. The first cluster is
// bootstrapped from the gossip view, by every one of its first nodes alike.

func (n *Node) startRaft() (hasState bool, err error) {
	cfg := n.cfg
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Info,
		Output: transport.LogWriter(n.quietOnStop(n.log).With("subsystem", "raft")),
	})
	n.bolt, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.DataDir, "raft.db"),
		// The freelist is rebuilt at open instead of written at every
		// commit (each commit is an fsync on the hot path), as Consul does.
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return false, fmt.Errorf("--data-dir %s: open raft log (is another node using it?): %w", cfg.DataDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		return false, fmt.Errorf("--data-dir %s: snapshots: %w", cfg.DataDir, err)
	}
	n.snaps = snaps
	trans := raft.NewNetworkTransportWithConfig(raftTransportConfig(n.mux.RaftLayer(), hlog))
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.RaftHeartbeat
	rc.ElectionTimeout = cfg.RaftHeartbeat
	rc.LeaderLeaseTimeout = cfg.RaftHeartbeat / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = uint64(cfg.SnapshotEntries)
	rc.SnapshotInterval = 20 * time.Second
	rc.TrailingLogs = uint64(cfg.TrailingLogs)
	// Commit entries are large: at most 16 per AppendEntries message, so a
	// follower catching up holds a bounded frame.
	rc.MaxAppendEntries = 16
	// A removed node (reaped, or re-added under a new address) must stay
	// able to be added again, so it keeps its Raft running.
	rc.ShutdownOnRemove = false
	hasState, err = raft.HasExistingState(n.bolt, n.bolt, snaps)
	if err != nil {
		return false, fmt.Errorf("--data-dir %s: read raft state: %w", cfg.DataDir, err)
	}
	// The leader sends followers entries it has just written: a cache of
	// the newest ones saves reading and decoding them back from BoltDB.
	// Four: a group-commit entry is up to 2 MiB, and a follower in step
	// is sent each entry right after it is written; one that lags reads
	// from BoltDB (16 entries held 34 MB of a node's heap while draining).
	logs, err := raft.NewLogCache(4, n.bolt)
	if err != nil {
		return false, fmt.Errorf("start raft: %w", err)
	}
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.bolt, snaps, trans)
	if err != nil {
		return false, fmt.Errorf("start raft: %w", err)
	}
	return hasState, nil
}

// bootstrapWhenReady forms the first cluster once BootstrapExpect nodes
// see each other and none of them is already in a cluster. Every one of the
// first nodes computes the same configuration from the same gossip view.
func (n *Node) bootstrapWhenReady() {
	expect := n.cfg.BootstrapExpect
	if expect == 0 {
		if len(n.cfg.Join) > 0 {
			return // wait for the leader to add us
		}
		expect = 1
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.raft.Leader() != "" || n.inCluster() {
			return
		}
		members := n.gossipMembers()
		for _, m := range members {
			if m.meta.InCluster && m.id != n.cfg.ID {
				n.log.Info("a member is already in a cluster; waiting to be added", "subsystem", "raft", "member", m.id)
				return
			}
		}
		if len(members) < expect {
			continue
		}
		var servers []raft.Server
		for i, m := range members {
			s := raft.Server{ID: raft.ServerID(m.id), Address: raft.ServerAddress(m.meta.Raft), Suffrage: raft.Voter}
			if i >= n.cfg.Voters {
				s.Suffrage = raft.Nonvoter
			}
			servers = append(servers, s)
		}
		err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.log.Error("bootstrap failed", "subsystem", "raft", "err", err)
			continue
		}
		n.log.Info("bootstrapped the cluster", "subsystem", "raft", "servers", len(servers))
		return
	}
}

func (n *Node) inCluster() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	return len(f.Configuration().Servers) > 0
}

// raftTransportConfig is the configuration of the node's Raft transport
// over stream.
//
// Replication is not pipelined (MaxRPCsInFlight 1: each AppendEntries
// waits for its answer). hashicorp/raft's pipeline can wedge: when a
// follower refuses an entry (a log that does not match, a newer term), the
// pipeline's reader of answers returns, while its sender may take one more
// trigger and send again; that send waits forever to hand its answer over,
// and the pipeline is closed only after the sender returns. The leader then
// sends that follower heartbeats but never another entry (so it never
// times out and asks for an election), and its Raft never shuts down: a
// clean stop waited for the harness's SIGKILL. The entries of a group
// commit are large and few (tens a second), so a round trip each costs
// nothing that shows (hashicorp/raft's own default overlaps only two).
func raftTransportConfig(stream raft.StreamLayer, lg hclog.Logger) *raft.NetworkTransportConfig {
	return &raft.NetworkTransportConfig{
		Stream:          stream,
		MaxPool:         3,
		Timeout:         5 * time.Second,
		MaxRPCsInFlight: 1,
		Logger:          lg,
	}
}
