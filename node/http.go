package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/dashboard"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
)

// ClusterInfo is the document of GET /v1/cluster.
type ClusterInfo struct {
	ID           string       `json:"id"`
	Leader       string       `json:"leader"`
	Term         uint64       `json:"term"`
	AppliedIndex uint64       `json:"applied_index"`
	Members      []fsm.Member `json:"members"`
}

// PartitionInfo is one row of GET /v1/partitions.
type PartitionInfo struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	Committed int64  `json:"committed_offset"`
	// LogEnd is -1 while the node cannot reach Kafka; Lag is then -1 too.
	LogEnd  int64  `json:"log_end_offset"`
	Lag     int64  `json:"lag"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
	Digest  string `json:"digest"`
	Commits uint64 `json:"commits"`
	// History is the recent runs of commits per (epoch, node).
	History []fsm.EpochRun `json:"history,omitempty"`
	// Resets is the operators' recent resets (who, when, from, to);
	// Skipped the ranges skipped forward.
	Resets  []fsm.ResetRecord `json:"resets,omitempty"`
	Skipped []fsm.OffsetRange `json:"skipped,omitempty"`
	// Rate is the records per second this node's worker may take (the
	// owner answers; 0: no limit, or another node owns it).
	Rate float64 `json:"rate"`
	// StartOffset is where the cluster began reading the partition.
	StartOffset int64 `json:"start_offset"`
	// Lost counts records deleted by retention before they were read.
	Lost       int64             `json:"lost"`
	LostRanges []fsm.OffsetRange `json:"lost_ranges,omitempty"`
	// Watermark is the partition's latest event time (RFC 3339; "" before
	// any); Late the events more than --max-lateness older than it.
	Watermark string `json:"watermark,omitempty"`
	Late      int64  `json:"late"`
	// ByClient is the second stage of this partition number, while the
	// input is not keyed by client.
	ByClient *ByClientInfo `json:"by_client,omitempty"`
	// Checkpoint is where the partition's detector state in Raft stands
	// (absent: at the detecting stage's committed offset).
	Checkpoint *CheckpointInfo `json:"detector_checkpoint,omitempty"`
}

// CheckpointInfo is a partition's detector checkpoint in GET
// /v1/partitions: the topic partition the detecting stage reads and the
// offset its state stands at. A new owner runs the records from there to
// the stage's committed offset through detection again.
type CheckpointInfo struct {
	Topic  string `json:"topic"`
	Offset int64  `json:"offset"`
}

// ByClientInfo is the second stage of one partition in GET /v1/partitions.
type ByClientInfo struct {
	Topic      string `json:"topic"`
	Committed  int64  `json:"committed_offset"`
	Commits    uint64 `json:"commits"`
	Applied    int64  `json:"applied"`
	Dropped    int64  `json:"dropped"`
	Bad        int64  `json:"bad"`
	OutOfOrder int64  `json:"out_of_order"`
	Lost       int64  `json:"lost"`
}

// FormatDigest renders a digest sum as the 16 hex digits the API shows.
func FormatDigest(sum uint64) string { return fmt.Sprintf("%016x", sum) }

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", n.guard(open, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "id": n.cfg.ID})
	}))
	mux.HandleFunc("GET /readyz", n.guard(open, n.handleReady))
	mux.HandleFunc("GET /v1/cluster", n.guard(read, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, n.ClusterInfo())
	}))
	mux.HandleFunc("GET /v1/partitions", n.guard(read, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, n.Partitions())
	}))
	mux.HandleFunc("GET /v1/stats", n.guard(read, n.handleStats))
	mux.HandleFunc("GET /v1/malformed", n.guard(read, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, n.MalformedInfo())
	}))
	mux.HandleFunc("GET /v1/alerts", n.guard(read, n.handleAlerts))
	// Open: bouncers (X-Api-Key) get CrowdSec's live mode, others the read-guarded list.
	mux.HandleFunc("GET /v1/decisions", n.guard(open, n.handleDecisions))
	mux.HandleFunc("POST /v1/decisions", n.guard(admin, n.handleAddDecision))
	mux.HandleFunc("DELETE /v1/decisions/{id}", n.guard(admin, n.handleDeleteDecision))
	// Bouncers authenticate with their own API key (X-Api-Key).
	mux.HandleFunc("GET /v1/decisions/stream", n.guard(open, n.handleStream))
	mux.HandleFunc("GET /v1/heartbeat", n.guard(open, n.handleHeartbeat))
	mux.HandleFunc("POST /v1/usage-metrics", n.guard(open, n.handleUsageMetrics))
	mux.HandleFunc("GET /v1/blocklist", n.guard(read, n.handleBlocklist))
	mux.HandleFunc("POST /v1/snapshot", n.guard(admin, n.handleSnapshot))
	mux.HandleFunc("GET /v1/config", n.guard(read, n.handleConfig))
	mux.HandleFunc("GET /v1/operator-alerts", n.guard(read, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, n.OperatorAlerts())
	}))
	mux.HandleFunc("POST /v1/offsets/reset", n.guard(admin, n.handleOffsetsReset))
	mux.HandleFunc("POST /v1/config", n.guard(admin, n.handleApplyConfig))
	// Profiles (go tool pprof URL), only with --pprof, and for the admin.
	if n.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", n.guard(admin, n.handlePprof))
	}
	metrics := promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", n.guard(read, metrics.ServeHTTP))
	// The dashboard (dashboard.go): the page (or the login form), its
	// script and style, the login and its event stream.
	mux.HandleFunc("GET /{$}", n.guard(open, n.handleDashboard))
	mux.Handle("GET /assets/", dashboard.Assets())
	mux.HandleFunc("POST /login", n.guard(open, n.handleLogin))
	mux.HandleFunc("POST /logout", n.guard(open, dashboard.Logout))
	mux.HandleFunc("GET /v1/events", n.guard(read, n.handleEvents))
	return mux
}

// handleStats serves GET /v1/stats?from=RFC3339&to=RFC3339&top=N.
func (n *Node) handleStats(w http.ResponseWriter, r *http.Request) {
	q, err := ParseStatsQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, n.fsm.Stats(q))
}

// ParseStatsQuery reads from, to (RFC 3339), top (rows per list, 0 for
// all), step (seconds per series point), vhost and q (the filter section)
// from URL parameters.
func ParseStatsQuery(v url.Values) (analytics.Query, error) {
	var q analytics.Query
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, fmt.Errorf("%s=%q: want an RFC 3339 time such as 2026-11-27T10:00:00Z", p.name, s)
		}
		*p.t = t
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return q, fmt.Errorf("to is not after from")
	}
	q.VHost, q.Search = v.Get("vhost"), v.Get("q")
	if len(q.VHost) > 256 || len(q.Search) > 256 {
		return q, fmt.Errorf("vhost and q are at most 256 bytes")
	}
	if s := v.Get("step"); s != "" {
		step, err := strconv.ParseInt(s, 10, 64)
		if err != nil || step < 0 || step%analytics.WindowSeconds != 0 {
			return q, fmt.Errorf("step=%q: want seconds, a multiple of %d", s, analytics.WindowSeconds)
		}
		q.Step = step
	}
	if s := v.Get("top"); s != "" {
		top, err := strconv.Atoi(s)
		if err != nil || top < 0 {
			return q, fmt.Errorf("top=%q: want 0 (all) or a positive number", s)
		}
		q.Top = top
		if top == 0 {
			q.Top = -1
		}
	}
	return q, nil
}

// Alerts returns this node's replica of the alerts since since.
func (n *Node) Alerts(since time.Time) []detect.Alert { return n.fsm.Alerts(since) }

// Decisions returns this node's replica of the decisions in force at now.
func (n *Node) Decisions(now time.Time) []detect.Decision { return n.fsm.Decisions(false, now) }

// Stats returns the load figures of this node's replica for q.
func (n *Node) Stats(q analytics.Query) *analytics.Stats { return n.fsm.Stats(q) }

// MalformedInfo is the document of GET /v1/malformed.
type MalformedInfo struct {
	// Malformed counts every line that did not parse, cluster-wide.
	Malformed int64 `json:"malformed"`
	// Sample is the most recent of them, oldest first.
	Sample []fsm.BadRecord `json:"sample"`
}

// MalformedInfo is what GET /v1/malformed returns.
func (n *Node) MalformedInfo() MalformedInfo {
	s, _ := n.fsm.View()
	sample := s.Malformed
	if sample == nil {
		sample = []fsm.BadRecord{}
	}
	return MalformedInfo{Malformed: n.fsm.Malformed(), Sample: sample}
}

// ClusterInfo is what GET /v1/cluster returns.
func (n *Node) ClusterInfo() ClusterInfo {
	s, applied := n.fsm.View()
	term, _ := strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
	return ClusterInfo{ID: n.cfg.ID, Leader: n.Leader(), Term: term, AppliedIndex: applied, Members: s.MemberList()}
}

// Partitions is what GET /v1/partitions returns.
func (n *Node) Partitions() []PartitionInfo {
	s := n.State()
	ends, reachable := n.kafkaStat.endOffsets()
	out := make([]PartitionInfo, 0, len(s.Partitions))
	for _, p := range s.Partitions {
		pi := PartitionInfo{
			Topic: s.Topic, Partition: p.Partition, Owner: p.Owner, Epoch: p.Epoch,
			Committed: p.Committed, LogEnd: -1, Lag: -1,
			Records: p.Digest.Records, Bytes: p.Digest.Bytes, Digest: FormatDigest(p.Digest.Sum), Commits: p.Commits,
			History: p.History, Resets: p.Resets, Skipped: p.Skipped, StartOffset: p.StartOffset, Lost: p.Lost, LostRanges: p.LostRanges,
			Rate: n.rateOf(p.Partition), Late: p.Late,
		}
		if p.Watermark > 0 {
			pi.Watermark = time.Unix(0, p.Watermark).UTC().Format(time.RFC3339Nano)
		}
		if twoStage(s.Config) || p.ByClient.Commits > 0 {
			bc := p.ByClient
			pi.ByClient = &ByClientInfo{Topic: n.repartTopic(), Committed: bc.Committed, Commits: bc.Commits, Applied: bc.Applied,
				Dropped: bc.Dropped, Bad: bc.Bad, OutOfOrder: bc.OutOfOrder, Lost: bc.Lost}
		}
		if ck := p.Detector; ck.Set {
			topic := s.Topic
			if ck.Stage == fsm.StageByClient {
				topic = n.repartTopic()
			}
			pi.Checkpoint = &CheckpointInfo{Topic: topic, Offset: ck.Offset}
		}
		if end, ok := ends[p.Partition]; ok && reachable {
			// The end offsets are polled; one older than the committed
			// offset is stale, and the log ends at least there.
			end = max(end, p.Committed)
			pi.LogEnd, pi.Lag = end, end-p.Committed
		}
		out = append(out, pi)
	}
	return out
}

// Ready reports whether the node serves current data: it knows a leader,
// has applied everything committed, and reaches Kafka. The string says why not.
func (n *Node) Ready() (bool, string) {
	if n.Leader() == "" {
		return false, "no raft leader"
	}
	st := n.raft.Stats()
	commit, _ := strconv.ParseUint(st["commit_index"], 10, 64)
	if n.raft.State() != raft.Leader && n.raft.AppliedIndex() < commit {
		return false, fmt.Sprintf("catching up: applied %d of %d", n.raft.AppliedIndex(), commit)
	}
	if _, reachable := n.kafkaStat.endOffsets(); !reachable {
		n.kafkaStat.mu.RLock()
		why := n.kafkaStat.lastErr
		n.kafkaStat.mu.RUnlock()
		if why == "" {
			why = "not yet reached"
		}
		return false, "kafka: " + why
	}
	return true, "ready"
}

func (n *Node) handleReady(w http.ResponseWriter, _ *http.Request) {
	ok, why := n.Ready()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ready": ok, "reason": why})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = WriteDoc(w, v)
}

// WriteDoc writes v as the API writes its documents: indented JSON, one
// trailing newline. warden analyze --json prints through it too, so its
// documents are the API's byte for byte.
func WriteDoc(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// SnapshotInfo is the answer of POST /v1/snapshot.
type SnapshotInfo struct {
	Index     uint64  `json:"index"`
	Term      uint64  `json:"term"`
	SizeBytes int64   `json:"size_bytes"`
	Seconds   float64 `json:"seconds"`
}

// handleSnapshot makes this node write a Raft snapshot of its FSM now (and
// compact its log), as before a backup or an upgrade; it answers with the
// snapshot's size. Admin only.
func (n *Node) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	if !n.authorized(w, r) {
		return
	}
	start := time.Now()
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	took := time.Since(start)
	snaps, err := n.snaps.List()
	if err != nil || len(snaps) == 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": fmt.Sprintf("no snapshot on disk: %v", err)})
		return
	}
	m := snaps[0] // newest first
	writeJSON(w, http.StatusOK, SnapshotInfo{Index: m.Index, Term: m.Term, SizeBytes: m.Size, Seconds: took.Seconds()})
}

// OperatorAlerts returns the latest alerts about the cluster itself
// (records lost to retention, alerts dropped unpublished), oldest first.
func (n *Node) OperatorAlerts() []fsm.OperatorAlert {
	out := n.State().OperatorAlerts
	if out == nil {
		out = []fsm.OperatorAlert{}
	}
	return out
}
