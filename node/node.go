// Package node runs one Warden node: Raft with its BoltDB log and file
// snapshots, memberlist gossip, the leader's reconcile loop, one worker per
// owned partition, the group committer that proposes batches through Raft
// (forwarding to the leader when needed) and the HTTP API.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/transport"
)

// Sentinel errors of the node.
var (
	// ErrNotLeader: a forwarded proposal reached a node that is not the leader.
	ErrNotLeader = errors.New("node: not the leader")
	// ErrNoLeader: the cluster has no leader right now, and the proposal
	// did not enter the log; retry.
	ErrNoLeader = errors.New("node: no leader")
	// ErrCommitUnknown: the leader was deposed while the proposal was in
	// its log; a new leader may still commit it. Sending it again could
	// apply it twice: the proposer reads the state instead.
	ErrCommitUnknown = errors.New("node: leadership lost with the proposal in flight; it may or may not be committed")
	// ErrStopped: the node is shutting down.
	ErrStopped = errors.New("node: stopped")
)

// Node is one running cluster member.
type Node struct {
	streams bouncerStreams
	cfg     Config
	log     *slog.Logger
	fsm     *fsm.FSM
	raft    *raft.Raft
	mux     *transport.Mux
	ml      *memberlist.Memberlist
	bolt    *raftboltdb.BoltStore
	snaps   *raft.FileSnapshotStore
	meta    *metaDelegate
	gev     *eventDelegate

	kafka   *kgo.Client
	admin   *kadm.Client
	metrics *metrics
	dash    *dashboardState

	http       *http.Server
	httpAddr   string
	gossipAddr string // read once: memberlist's LocalNode is not safe to read later

	events   chan struct{} // gossip changes, coalesced
	commitCh chan pendingBatch
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	// stopping is set once the node stops on purpose (Shutdown); from then
	// on the errors that closing makes Raft and memberlist print are
	// logged at debug level (see quietOnStop).
	stopping atomic.Bool
	// draining is set by Shutdown: workers cut no new batch and return
	// once their batches in flight have committed; none starts.
	draining atomic.Bool
	rates    partitionRates
	// lastProcessing is, per partition this node works, how long its last
	// batch took from cut to commit (for tests and the estimator's view).
	lastProcessing sync.Map // int32 -> time.Duration
	// commitDelay slows every commit round on purpose; only tests set it.
	commitDelay atomic.Int64
	// noLeaderRounds fails that many commit rounds as if no leader were
	// known; only tests set it.
	noLeaderRounds atomic.Int32
	// noLeaderWrites fails that many proposals of operators' writes
	// (decisions, configuration, offset resets) as if no leader were
	// known; only tests set it.
	noLeaderWrites atomic.Int32
	// lostAnswerRounds answers that many proposals this node leads, once
	// committed, as Raft answers those in flight when the leader is
	// deposed (raft.ErrLeadershipLost); only tests set it.
	lostAnswerRounds atomic.Int32

	// The workers' consumers, one of each per node (fetcher.go), made at
	// their first use: the first stages', the second stages'.
	fetchOnce, repartFetchOnce sync.Once
	fetch, repartFetch         *fetcher
	runningWorkers             atomic.Int32
	// repartReady is the partition count the repartition topic was last
	// seen to have (ensureRepart).
	repartReady atomic.Int64
	// misplaced is the count watchPlacement last made.
	misplaced atomic.Int64
	kafkaStat kafkaStatus
	stall     stallWatch
	deaths    deathWatch
}

// Start brings a node up. It returns once its ports are open; joining,
// bootstrapping and reaching Kafka go on in the background (with retries),
// so an unreachable peer or broker leaves the node up and not ready.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg.fillDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	lg := cfg.Logger.With("node", cfg.ID)
	f := fsm.New(cfg.Topic)
	n := &Node{
		cfg:      cfg,
		log:      lg,
		fsm:      f,
		events:   make(chan struct{}, 1),
		commitCh: make(chan pendingBatch, 1024),
		metrics:  newMetrics(f),
		deaths:   newDeathWatch(),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.fsm.OnApply = n.metrics.onApply
	registerRepartMetrics(n.metrics.reg, f, &n.misplaced)
	ok := false
	defer func() {
		if !ok {
			n.closeAll()
		}
	}()

	if w := cfg.authWarning(); w != "" {
		lg.Warn(w, "raft", cfg.RaftAddr, "gossip", cfg.GossipAddr)
	}
	var err error
	n.mux, err = transport.Listen(transport.Config{Bind: cfg.RaftAddr, TLS: cfg.TLS, ClusterKey: cfg.ClusterKey,
		Logger: n.quietOnStop(lg).With("subsystem", "transport"), OnConnError: n.onConnError})
	if err != nil {
		return nil, err
	}
	n.metrics.watchTransport(n.mux)
	hasState, err := n.startRaft()
	if err != nil {
		return nil, err
	}
	n.mux.HandleForward(n.handleForward)

	ln, err := n.listenHTTP()
	if err != nil {
		return nil, err
	}
	n.httpAddr = ln.Addr().String()

	n.meta = &metaDelegate{meta: nodeMeta{Raft: n.mux.Addr().String(), HTTP: n.httpAddr, InCluster: hasState}}
	gc := transport.DefaultGossipConfig()
	gc.Name, gc.Bind, gc.Key = cfg.ID, cfg.GossipAddr, cfg.GossipKey
	if gc.Key == nil && cfg.ClusterKey != nil {
		gc.Key = transport.GossipKeyFromClusterKey(cfg.ClusterKey)
	}
	gc.ProbeInterval = cfg.GossipProbeInterval
	n.gev = &eventDelegate{ch: n.events, live: map[string]gossipMember{}, left: map[string]bool{}}
	gc.Delegate, gc.Events = n.meta, n.gev
	gc.Logger = n.quietOnStop(lg).With("subsystem", "gossip")
	if n.ml, err = transport.NewMemberlist(gc); err != nil {
		ln.Close()
		return nil, err
	}
	n.gossipAddr = n.ml.LocalNode().Address()
	n.deaths.ready.Store(true)

	kopts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaOpts...)
	if n.kafka, err = kgo.NewClient(kopts...); err != nil {
		ln.Close()
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	n.admin = kadm.NewClient(n.kafka)

	n.newDashboard()
	n.http = n.newHTTPServer()
	n.goRun(func() {
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "subsystem", "http", "err", err)
		}
	})
	if join := n.joinTargets(); len(join) > 0 {
		n.goRun(func() {
			if err := transport.JoinWithRetry(n.ctx, n.ml, join, lg.With("subsystem", "gossip")); err == nil {
				lg.Info("joined gossip", "subsystem", "gossip", "members", n.ml.NumMembers())
			}
		})
	}
	if !hasState {
		n.goRun(n.bootstrapWhenReady)
	}
	n.goRun(n.watchKafka)
	n.goRun(n.reconcileLoop)
	n.goRun(n.manageWorkers)
	n.goRun(n.publishAlerts)
	n.goRun(n.reconnect)
	n.goRun(n.rememberPeers)
	n.goRun(n.commitLoop)
	n.goRun(n.watchInCluster)
	n.goRun(n.watchClusterConfig)
	n.goRun(n.watchLeader)
	n.goRun(n.watchDeaths)
	n.goRun(n.watchPlacement)
	ok = true
	lg.Info("node started", "raft", n.mux.Addr().String(), "gossip", n.gossipAddr, "http", n.httpAddr, "existing_state", hasState)
	return n, nil
}

func (n *Node) goRun(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// HTTPAddr returns the address the HTTP API listens on.
func (n *Node) HTTPAddr() string { return n.httpAddr }

// RaftAddr returns the advertised Raft address.
func (n *Node) RaftAddr() string { return n.mux.Addr().String() }

// GossipAddr returns the advertised gossip address.
func (n *Node) GossipAddr() string { return n.gossipAddr }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the id of the current leader, or "".
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// State returns a copy of the node's FSM state.
func (n *Node) State() *fsm.State {
	s, _ := n.fsm.View()
	return s
}

// Shutdown leaves the cluster gracefully: it hands leadership over if it
// holds it, says goodbye through gossip, stops its workers and closes.
func (n *Node) Shutdown() error {
	n.BeginShutdown()
	n.hangOnStop()
	// Drain: the batches in flight commit (bounded by ShutdownTimeout), so
	// that when the partitions move no commit of ours is rejected.
	n.draining.Store(true)
	drained := time.Now().Add(n.cfg.ShutdownTimeout)
	for n.runningWorkers.Load() > 0 && time.Now().Before(drained) {
		time.Sleep(10 * time.Millisecond)
	}
	if left := n.runningWorkers.Load(); left > 0 {
		n.log.Warn("workers still committing at --shutdown-timeout; stopping them", "workers", left, "shutdown_timeout", n.cfg.ShutdownTimeout)
	}
	if n.raft != nil && n.raft.State() == raft.Leader {
		_ = n.raft.LeadershipTransfer().Error()
	}
	if n.ml != nil {
		// First the mark that makes the goodbye a leave, not a failure:
		// the leader removes a member that left at once, one that failed
		// only after --reap-after.
		n.meta.mu.Lock()
		n.meta.meta.Leaving = true
		n.meta.mu.Unlock()
		_ = n.ml.UpdateNode(time.Second)
		_ = n.ml.Leave(time.Second)
	}
	// The leader removes a member that left at once; waiting for it means
	// no peer keeps sending Raft traffic to a closed port.
	n.awaitRemoval(time.Second)
	n.closeAll()
	return nil
}

// BeginShutdown says that the node is about to stop on purpose, as are,
// perhaps, its peers (the demo stops three nodes at once): from now on the
// errors that closing connections make Raft and memberlist print (closed
// listeners, refused dials to a peer that is stopping) are logged at debug
// level, so a clean stop prints no ERROR line. Shutdown calls it.
func (n *Node) BeginShutdown() { n.stopping.Store(true) }

// awaitRemoval waits, at most d, until the Raft configuration this node
// holds no longer names it (or names it alone).
func (n *Node) awaitRemoval(d time.Duration) {
	if n.raft == nil {
		return
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f := n.raft.GetConfiguration()
		if f.Error() != nil {
			return
		}
		servers := f.Configuration().Servers
		in := false
		for _, s := range servers {
			in = in || s.ID == raft.ServerID(n.cfg.ID)
		}
		if !in || len(servers) <= 1 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quietOnStop wraps lg so that, once the node is stopping, its warnings
// and errors become debug records.
func (n *Node) quietOnStop(lg *slog.Logger) *slog.Logger {
	return slog.New(quietHandler{Handler: lg.Handler(), stopping: &n.stopping})
}

type quietHandler struct {
	slog.Handler
	stopping *atomic.Bool
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && h.stopping.Load() {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{Handler: h.Handler.WithAttrs(as), stopping: h.stopping}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{Handler: h.Handler.WithGroup(name), stopping: h.stopping}
}

// Kill stops the node abruptly, as a crash would: no leave message, no
// leadership transfer, workers dropped mid-batch. Tests use it in-process.
func (n *Node) Kill() { n.closeAll() }

func (n *Node) closeAll() {
	n.stopOnce.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
		if n.ml != nil {
			_ = n.ml.Shutdown()
		}
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = n.http.Shutdown(ctx)
			cancel()
		}
		if n.mux != nil {
			_ = n.mux.Close()
		}
		if n.raft != nil {
			_ = n.raft.Shutdown().Error()
		}
		n.wg.Wait()
		if n.kafka != nil {
			n.kafka.Close()
		}
		if n.bolt != nil {
			_ = n.bolt.Close()
		}
	})
}
