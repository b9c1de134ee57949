package node

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/dashboard"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/transport"
)

// metrics are one node's Prometheus series, on a registry of its own so
// that several nodes can live in one process.
type metrics struct {
	reg             *prometheus.Registry
	commits         prometheus.Counter
	rejected        *prometheus.CounterVec
	commitErrors    prometheus.Counter
	batchRecords    prometheus.Histogram
	commitSeconds   prometheus.Histogram
	lag             *prometheus.GaugeVec
	ownedPartitions prometheus.Gauge
	applied         *prometheus.CounterVec
	deadLetters     prometheus.Counter
	alertsPublished prometheus.Counter
	stalledMembers  prometheus.Counter
	partitionRate   *prometheus.GaugeVec
	recordLatency   prometheus.Histogram
	latencyMax      atomic.Int64 // ns

	// deadLettersDropped counts copies the dead-letter topic did not take.
	deadLettersDropped prometheus.Counter
	leaderChanges      prometheus.Counter
	// detectorReplayed counts the records this node ran through
	// detection again from a checkpoint (checkpoint.go).
	detectorReplayed prometheus.Counter
	// workerStarts counts the workers started, by stage: one per
	// partition gained, and one more each time a worker stops on a
	// failed or rejected commit and starts again from the FSM.
	workerStarts *prometheus.CounterVec

	// What this replica applied, and when (its own clock): the last
	// commit of each partition and the last assignment that moved some.
	appliedMu     sync.Mutex
	lastCommit    map[int32]time.Time
	lastRebalance time.Time
	lastMoves     int
}

// newMetrics registers this node's series; the load gauges read the last
// complete minute from the FSM replica f.
func newMetrics(f *fsm.FSM) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_commits_total", Help: "Batches of this node's workers applied by the FSM.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_commits_rejected_total", Help: "Batches of this node's workers rejected by the FSM, by reason.",
		}, []string{"reason"}),
		workerStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_worker_starts_total", Help: "Partition workers started, by stage (input, by_client): for a partition gained, or again after a failed or rejected commit.",
		}, []string{"stage"}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_commit_errors_total", Help: "Batch proposals that failed before reaching the FSM (no leader, timeout); they are retried.",
		}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "warden_batch_records", Help: "Records per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "warden_commit_seconds", Help: "Time to propose a group commit and get its result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warden_partition_lag", Help: "Records in the topic past the committed offset.",
		}, []string{"partition"}),
		ownedPartitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warden_owned_partitions", Help: "Partitions this node has a worker for.",
		}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_fsm_commands_total", Help: "Commands applied by this node's FSM replica, by kind.",
		}, []string{"kind"}),
		recordLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "warden_record_latency_seconds", Help: "Time from a record's Kafka timestamp to its batch's commit being applied, per record committed by this node.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 120, 60),
		}),
		partitionRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warden_partition_rate",
			Help: "Records per second this node's worker of the partition may take now: the lower of --max-rate-per-partition and the backpressure estimate (0: no limit)."},
			[]string{"partition"}),
		stalledMembers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_stalled_members_total",
			Help: "Times this node, as leader, moved partitions away from a member that owned them with records waiting and committed none for --stall-after."}),
		alertsPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_alerts_published_total", Help: "Alerts this node published to the alerts topic while leading.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_dead_letters_total", Help: "Records that did not parse, sent by this node's workers to the dead-letter topic.",
		}),
		detectorReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_detector_replayed_records_total",
			Help: "Records this node ran through detection again, from a partition's detector checkpoint up to its committed position, after taking the partition over.",
		}),
		deadLettersDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_dead_letters_dropped_total", Help: "Records that did not parse and that the dead-letter topic did not take after bounded retries (missing topic, ACL denial, record refused); their partition went on.",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_raft_leader_changes_total", Help: "Raft leaders this node has seen take over (a new leader id, the first one included).",
		}),
		lastCommit: map[int32]time.Time{},
	}
	// Every reason is exported from the start, at zero, so that a rate or
	// an alert on one has a series before the first rejection.
	for _, err := range fsm.Rejections() {
		m.rejected.WithLabelValues(fsm.Reason(err))
	}
	gauge := func(name, help string, v func(analytics.Rates) float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return v(f.LastMinute()) })
	}
	m.reg.MustRegister(
		gauge("warden_requests_per_second", "Requests per second in the last complete minute of event time (cluster-wide).",
			func(r analytics.Rates) float64 { return r.RequestsPerS }),
		gauge("warden_bytes_per_second", "Response bytes per second in the last complete minute of event time (cluster-wide).",
			func(r analytics.Rates) float64 { return r.BytesPerS }),
		gauge("warden_5xx_per_second", "5xx responses per second in the last complete minute of event time (cluster-wide).",
			func(r analytics.Rates) float64 { return r.ErrorsPerS }),
		gauge("warden_5xx_ratio", "Share of 5xx responses in the last complete minute of event time (cluster-wide).",
			func(r analytics.Rates) float64 { return r.ErrorFraction }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_malformed_lines_total", Help: "Lines that did not parse, cluster-wide."},
			func() float64 { return float64(f.Malformed()) }),
		m.deadLetters, m.alertsPublished, m.stalledMembers, m.partitionRate, m.recordLatency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_record_latency_max_seconds", Help: "Longest time from a record's Kafka timestamp to its commit being applied, since this node started."},
			func() float64 { return float64(m.latencyMax.Load()) / 1e9 }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_raft_entries_applied_total", Help: "Raft log entries applied by this node's FSM replica."},
			func() float64 { e, _ := f.EntriesApplied(); return float64(e) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_raft_entry_bytes_applied_total", Help: "Bytes of the Raft log entries applied by this node's FSM replica."},
			func() float64 { _, b := f.EntriesApplied(); return float64(b) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_alerts_total", Help: "Alerts raised, cluster-wide."},
			func() float64 { return float64(f.AlertCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_decisions_active", Help: "Decisions in force now, cluster-wide."},
			func() float64 { return float64(f.ActiveDecisions()) }),
		lostCollector{f},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_alerts_unpublished", Help: "Alerts waiting for the alerts topic, cluster-wide."},
			func() float64 { u, _ := f.UnpublishedAlerts(); return float64(u) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_alerts_unpublished_dropped_total",
			Help: "Alerts dropped before reaching the alerts topic because more than --max-unpublished-alerts waited, cluster-wide."},
			func() float64 { _, d := f.UnpublishedAlerts(); return float64(d) }),
	)
	m.reg.MustRegister(m.commits, m.rejected, m.commitErrors, m.batchRecords, m.commitSeconds,
		m.lag, m.ownedPartitions, m.applied, m.leaderChanges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(m.deadLettersDropped, m.detectorReplayed, m.workerStarts)
	return m
}

// watchTransport exports the connections mux turned away.
func (m *metrics) watchTransport(mux *transport.Mux) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_transport_handshake_failures_total",
			Help: "Connections to the Raft port closed for failing their handshake (TLS, protocol byte, cluster key)."},
			func() float64 { return float64(mux.Stats().HandshakeFailures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_transport_refused_connections_total",
			Help: "Connections to the Raft port closed on arrival because too many were open or in their handshake."},
			func() float64 { return float64(mux.Stats().Refused) }),
	)
}

// observeLatency records the latency of one committed record (ns).
func (m *metrics) observeLatency(ns int64) {
	m.recordLatency.Observe(float64(ns) / 1e9)
	for {
		old := m.latencyMax.Load()
		if ns <= old || m.latencyMax.CompareAndSwap(old, ns) {
			return
		}
	}
}

func (m *metrics) observeBatch(err error) {
	switch {
	case err == nil:
		m.commits.Inc()
	case isRejection(err):
		m.rejected.WithLabelValues(fsm.Reason(err)).Inc()
	default:
		m.commitErrors.Inc()
	}
}

func (m *metrics) onApply(cmd fsm.Command, res fsm.Result) {
	m.applied.WithLabelValues(string(cmd.Kind)).Inc()
	switch {
	case cmd.Kind == fsm.KindCommit:
		now := time.Now()
		m.appliedMu.Lock()
		for i, b := range cmd.Commit {
			if i < len(res.Rejected) && res.Rejected[i] == "" {
				m.lastCommit[b.Partition] = now
			}
		}
		m.appliedMu.Unlock()
	case cmd.Kind == fsm.KindAssign && res.Err == "" && cmd.Assign != nil && len(cmd.Assign.Moves) > 0:
		m.appliedMu.Lock()
		m.lastRebalance, m.lastMoves = time.Now(), len(cmd.Assign.Moves)
		m.appliedMu.Unlock()
	}
}

// commitAges returns, per partition, the time since this replica applied
// its last commit (partitions without one since the node started are
// absent).
func (m *metrics) commitAges(now time.Time) map[int32]time.Duration {
	m.appliedMu.Lock()
	defer m.appliedMu.Unlock()
	out := make(map[int32]time.Duration, len(m.lastCommit))
	for p, t := range m.lastCommit {
		out[p] = now.Sub(t)
	}
	return out
}

// rebalance returns when this replica last applied an assignment that
// moved partitions, and how many (zero time: none since it started).
func (m *metrics) rebalance() (time.Time, int) {
	m.appliedMu.Lock()
	defer m.appliedMu.Unlock()
	return m.lastRebalance, m.lastMoves
}

// nodeCollector exports what is read from the running node at scrape
// time: gossip members by state, each partition's time since its last
// commit, Raft leadership and the dashboard streams.
type nodeCollector struct {
	n                                 *Node
	members, commitAge, leader, views *prometheus.Desc
}

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.commitAge
	ch <- c.leader
	ch <- c.views
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	for _, st := range []string{dashboard.StateAlive, dashboard.StateSuspect, dashboard.StateDead, dashboard.StateLeft, dashboard.StateJoining} {
		counts[st] = 0
	}
	for _, m := range c.n.memberStates() {
		counts[m.State]++
	}
	for st, k := range counts {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(k), st)
	}
	for p, age := range c.n.metrics.commitAges(time.Now()) {
		ch <- prometheus.MustNewConstMetric(c.commitAge, prometheus.GaugeValue, age.Seconds(), strconv.Itoa(int(p)))
	}
	leader := 0.0
	if c.n.IsLeader() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(c.views, prometheus.GaugeValue, float64(c.n.dash.stream.Open()))
}

// watchNode registers the series read from the running node n.
func (m *metrics) watchNode(n *Node) {
	m.reg.MustRegister(nodeCollector{n: n,
		members: prometheus.NewDesc("warden_gossip_members",
			"Cluster members by state as this node sees them: alive (its gossip sees it), suspect (gossip lost it, the leader has not recorded it failed yet), dead, left, joining (gossip sees it, not yet a member).",
			[]string{"state"}, nil),
		commitAge: prometheus.NewDesc("warden_partition_last_commit_age_seconds",
			"Seconds since this node applied the partition's last commit (only partitions committed since it started).",
			[]string{"partition"}, nil),
		leader: prometheus.NewDesc("warden_raft_is_leader", "1 while this node is the Raft leader, else 0.", nil, nil),
		views:  prometheus.NewDesc("warden_dashboard_streams", "Dashboard event streams open on this node.", nil, nil),
	})
}

func (m *metrics) observeLag(s *fsm.State, ends map[int32]int64) {
	for _, p := range s.Partitions {
		if end, ok := ends[p.Partition]; ok {
			m.lag.WithLabelValues(strconv.Itoa(int(p.Partition))).Set(float64(max(0, end-p.Committed)))
		}
	}
}

// lostCollector exports each partition's records lost to retention, from
// the replicated state (the same figure on every node).
type lostCollector struct{ f *fsm.FSM }

var lostDesc = prometheus.NewDesc("warden_records_lost_to_retention_total",
	"Records deleted by retention before the cluster read them, per partition, cluster-wide.", []string{"partition"}, nil)

func (c lostCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lostDesc }

func (c lostCollector) Collect(ch chan<- prometheus.Metric) {
	s, _ := c.f.View()
	for _, p := range s.Partitions {
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(p.Lost), strconv.Itoa(int(p.Partition)))
	}
}
