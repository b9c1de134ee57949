package node

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wardenhq/warden/analytics"
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
		deadLettersDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_dead_letters_dropped_total", Help: "Records that did not parse and that the dead-letter topic did not take after bounded retries (missing topic, ACL denial, record refused); their partition went on.",
		}),
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
		m.lag, m.ownedPartitions, m.applied,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(m.deadLettersDropped)
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

func (m *metrics) onApply(cmd fsm.Command, _ fsm.Result) {
	m.applied.WithLabelValues(string(cmd.Kind)).Inc()
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
