package dashboard

import (
	"sort"
	"strings"
	"time"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// Source is what a node gives the dashboard: its replica's figures and its
// view of the cluster. node implements it.
type Source interface {
	// Stats is what GET /v1/stats answers for q.
	Stats(q analytics.Query) *analytics.Stats
	// LastMinute is the last complete minute of event time.
	LastMinute() analytics.Rates
	// Alerts are the alerts kept whose event is at or after since.
	Alerts(since time.Time) []detect.Alert
	// Decisions are the decisions in force at now.
	Decisions(now time.Time) []detect.Decision
	// Cluster is the node's view of members, partitions and commits.
	Cluster(now time.Time) Cluster
}

// Event is one document of the event stream: everything the page shows.
type Event struct {
	// Node answered; Time is its clock when it built the event.
	Node string `json:"node"`
	Time string `json:"time"`
	// Login is true when the node asks for a token (--http-token).
	Login    bool       `json:"login"`
	Filter   FilterView `json:"filter"`
	Header   Header     `json:"header"`
	Series   Series     `json:"series"`
	Top      Tops       `json:"top"`
	Security Security   `json:"security"`
	Cluster  Cluster    `json:"cluster"`
}

// FilterView is the filter as applied: a relative range resolved into
// event times.
type FilterView struct {
	Range string `json:"range"` // "5m", "1h", "24h", "custom" or "all"
	// From and To bound the figures ("" when open and there is no data).
	From   string `json:"from"`
	To     string `json:"to"`
	VHost  string `json:"vhost"`
	Search string `json:"q"`
	// SearchField is what q is matched against: "path" or "client".
	SearchField string `json:"q_field"`
}

// Header is the summary line. Requests, Bytes and the 5xx ratio are those
// of the virtual host when the filter names one; the rest is every host's.
type Header struct {
	Requests        int64              `json:"requests"`
	Bytes           int64              `json:"bytes"`
	ErrorRatio      float64            `json:"error_ratio"`
	UniqueIPs       uint64             `json:"unique_ips"`
	LatencyMs       *analytics.Latency `json:"latency_ms"`
	Malformed       int64              `json:"malformed"`
	ExpiredRequests int64              `json:"expired_requests"`
	// Matched counts the requests whose path or client contains q.
	Matched    int64      `json:"matched"`
	LastMinute LastMinute `json:"last_minute"`
}

// LastMinute is the last complete minute of event time (the newest one is
// still filling), as the warden_*_per_second gauges report it.
type LastMinute struct {
	T            string             `json:"t"`
	RequestsPerS float64            `json:"requests_per_s"`
	BytesPerS    float64            `json:"bytes_per_s"`
	ErrorRatio   float64            `json:"error_ratio"`
	UniqueIPs    uint64             `json:"unique_ips"`
	LatencyMs    *analytics.Latency `json:"latency_ms"`
}

// Series is the figures over time in columns, one value per point from
// Start every Step seconds, minutes without requests included as zeros.
type Series struct {
	Start    int64              `json:"start"`
	Step     int64              `json:"step"`
	Requests []int64            `json:"requests"`
	Bytes    []int64            `json:"bytes"`
	Class    map[string][]int64 `json:"class"` // per status class ("2xx")
	// P50, P90 and P99 are in milliseconds, null where no request of the
	// point logged a duration; all nil when the format logs none.
	P50 []*float64 `json:"p50"`
	P90 []*float64 `json:"p90"`
	P99 []*float64 `json:"p99"`
	// Matched is the requests matching q, when there is one.
	Matched []int64 `json:"matched,omitempty"`
	// Alerts is the alerts raised per scenario, by the event time of the
	// request that raised them.
	Alerts map[string][]int64 `json:"alerts"`
}

// Row is one line of a top list; Share is of the requests in the range (of
// 404 responses for 404 paths).
type Row struct {
	Key   string  `json:"key"`
	Count int64   `json:"count"`
	Share float64 `json:"share"`
}

// Tops are the top lists. With a search, Paths, NotFound and IPs hold the
// keys matching it.
type Tops struct {
	Paths      []Row `json:"paths"`
	NotFound   []Row `json:"not_found"`
	IPs        []Row `json:"ips"`
	UserAgents []Row `json:"user_agents"`
	Referrers  []Row `json:"referrers"`
	Methods    []Row `json:"methods"`
	Status     []Row `json:"status"`
	VHosts     []Row `json:"vhosts"`
}

// Security is the detection panel.
type Security struct {
	// Alerts counts the alerts raised in the range.
	Alerts int        `json:"alerts"`
	Latest []AlertRow `json:"latest"` // newest first
	// Decisions are the decisions in force ending last, at most
	// maxDecisionRows of DecisionsInForce.
	Decisions        []DecisionRow `json:"decisions"`
	DecisionsInForce int           `json:"decisions_in_force"`
	TopSources       []Row         `json:"top_sources"`
	TopScenarios     []Row         `json:"top_scenarios"`
}

// AlertRow is an alert as the page lists it.
type AlertRow struct {
	ID       string `json:"id"`
	Scenario string `json:"scenario"`
	Source   string `json:"source"`
	Events   int    `json:"events"`
	Time     string `json:"time"`
	Sample   string `json:"sample"`
}

// DecisionRow is a decision in force.
type DecisionRow struct {
	ID         int64   `json:"id"`
	Type       string  `json:"type"`
	Value      string  `json:"value"`
	Scenario   string  `json:"scenario"`
	Origin     string  `json:"origin"`
	Reason     string  `json:"reason,omitempty"`
	Until      string  `json:"until"`
	RemainingS float64 `json:"remaining_s"`
}

// Cluster is a node's view of the cluster.
type Cluster struct {
	Node         string      `json:"node"`
	Leader       string      `json:"leader"`
	Term         uint64      `json:"term"`
	AppliedIndex uint64      `json:"applied_index"`
	Ready        bool        `json:"ready"`
	ReadyReason  string      `json:"ready_reason"`
	Members      []Member    `json:"members"`
	Partitions   []Partition `json:"partitions"`
	// LagRecords is the records in the topic past the committed offsets
	// (-1 while Kafka is unreachable); LagSeconds the time the cluster
	// needs to read them at its current rate (null when it reads nothing).
	LagRecords  int64    `json:"lag_records"`
	LagSeconds  *float64 `json:"lag_seconds"`
	RecordsPerS *float64 `json:"records_per_s"`
	CommitsPerS *float64 `json:"commits_per_s"`
	// CommitLatencyMs is this node's group commits over the last minute.
	CommitLatencyMs *Quantiles `json:"commit_latency_ms"`
	LeaderChanges   uint64     `json:"leader_changes"`
	LastRebalance   *Rebalance `json:"last_rebalance"`
}

// Member is a node of the cluster. State is one of the Member states.
type Member struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
	Self     bool   `json:"self"`
	HTTPAddr string `json:"http_addr"`
}

// Member states.
const (
	StateAlive   = "alive"   // this node's gossip sees it
	StateSuspect = "suspect" // gossip lost it; the leader has not yet recorded it failed
	StateDead    = "dead"    // recorded failed and not seen by gossip
	StateLeft    = "left"    // left on purpose
	StateJoining = "joining" // seen by gossip, not yet a recorded member
)

// MemberState combines the leader's record of a member ("alive", "failed",
// "left", or "" for none) with whether this node's gossip sees it. A member
// gossip sees is alive whatever the record says (the leader records it
// within a second); one it does not see is suspect until the leader
// records it failed.
func MemberState(recorded string, live bool) string {
	switch {
	case live && recorded == "":
		return StateJoining
	case live:
		return StateAlive
	case recorded == "left":
		return StateLeft
	case recorded == "failed":
		return StateDead
	default:
		return StateSuspect
	}
}

// Partition is one row of the partition table.
type Partition struct {
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	Committed int64  `json:"committed_offset"`
	LogEnd    int64  `json:"log_end_offset"` // -1 while Kafka is unreachable
	Lag       int64  `json:"lag"`            // -1 likewise
	// RecordsPerS is the rate its committed offset moved lately.
	RecordsPerS *float64 `json:"records_per_s"`
	// LastCommitS is the time since this node applied its last commit
	// (null before the first since this node started).
	LastCommitS *float64 `json:"last_commit_s"`
}

// Quantiles are latency quantiles in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Rebalance is the last assignment change this node applied.
type Rebalance struct {
	Time  string  `json:"time"`
	AgoS  float64 `json:"ago_s"`
	Moves int     `json:"moves"`
}

// The sizes of what an event carries: rows per top list, most series
// points, alerts listed.
const (
	topRows    = 10
	maxPoints  = 360
	latestRows = 20
	// maxDecisionRows bounds the decisions listed: a campaign can ban
	// thousands of sources, the page shows those ending last.
	maxDecisionRows = 100
)

// Build assembles the event for f from src at now.
func Build(src Source, f Filter, now time.Time) *Event {
	lm := src.LastMinute()
	var newest time.Time
	if !lm.Minute.IsZero() {
		newest = lm.Minute.Add(time.Minute)
	}
	from, to := f.bounds(newest)
	q := analytics.Query{From: from, To: to, Top: topRows, MaxPoints: maxPoints, VHost: f.VHost, Search: f.Search}
	st := src.Stats(q)
	ev := &Event{Time: now.UTC().Format(time.RFC3339), Cluster: src.Cluster(now)}
	ev.Node = ev.Cluster.Node
	ev.Filter = FilterView{Range: rangeName(f), From: st.From, To: st.To, VHost: f.VHost, Search: f.Search,
		SearchField: analytics.SearchField(f.Search)}

	h := &ev.Header
	h.Requests, h.Bytes, h.UniqueIPs, h.LatencyMs = st.Requests, st.Bytes, st.UniqueIPs, st.LatencyMs
	h.Malformed, h.ExpiredRequests = st.Malformed, st.ExpiredRequests
	h.ErrorRatio = ratio(st.StatusClass["5xx"], st.Requests)
	if fl := st.Filter; fl != nil {
		h.Requests, h.Bytes, h.Matched = fl.Requests, fl.Bytes, fl.Matched
		h.ErrorRatio = ratio(fl.StatusClass["5xx"], fl.Requests)
	}
	if !lm.Minute.IsZero() {
		one := src.Stats(analytics.Query{From: lm.Minute, To: lm.Minute.Add(time.Minute), Top: 1, VHost: f.VHost})
		req, bytes, errs := one.Requests, one.Bytes, one.StatusClass["5xx"]
		if fl := one.Filter; fl != nil {
			req, bytes, errs = fl.Requests, fl.Bytes, fl.StatusClass["5xx"]
		}
		h.LastMinute = LastMinute{T: lm.Minute.UTC().Format(time.RFC3339), RequestsPerS: float64(req) / 60,
			BytesPerS: float64(bytes) / 60, ErrorRatio: ratio(errs, req), UniqueIPs: one.UniqueIPs, LatencyMs: one.LatencyMs}
	}

	alerts := alertsIn(src.Alerts(from), from, to)
	ev.Series = buildSeries(st, alerts)
	ev.Top = buildTops(st)
	ev.Security = buildSecurity(alerts, src.Decisions(now), f, now)
	return ev
}

func rangeName(f Filter) string {
	switch {
	case f.Range != "":
		return f.Range
	case !f.From.IsZero() || !f.To.IsZero():
		return "custom"
	default:
		return "all"
	}
}

func ratio(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// alertsIn keeps the alerts raised by a request in [from, to).
func alertsIn(as []detect.Alert, from, to time.Time) []detect.Alert {
	out := as[:0:0]
	for _, a := range as {
		if (!from.IsZero() && a.Time < from.UnixNano()) || (!to.IsZero() && a.Time >= to.UnixNano()) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// buildSeries lays the figures out on a grid of st.Step from the start of
// the range to its end, filling minutes without requests with zeros.
func buildSeries(st *analytics.Stats, alerts []detect.Alert) Series {
	s := Series{Step: st.Step, Class: map[string][]int64{}, Alerts: map[string][]int64{}}
	from, err1 := time.Parse(time.RFC3339, st.From)
	to, err2 := time.Parse(time.RFC3339, st.To)
	if err1 != nil || err2 != nil || s.Step <= 0 || !to.After(from) {
		s.Requests, s.Bytes = []int64{}, []int64{}
		return s
	}
	s.Start = from.Unix() - mod(from.Unix(), s.Step)
	n := int((to.Unix() - s.Start + s.Step - 1) / s.Step)
	s.Requests, s.Bytes = make([]int64, n), make([]int64, n)
	index := func(unix int64) int {
		i := int((unix - s.Start) / s.Step)
		if unix < s.Start || i >= n {
			return -1
		}
		return i
	}
	column := func(m map[string][]int64, k string) []int64 {
		c := m[k]
		if c == nil {
			c = make([]int64, n)
			m[k] = c
		}
		return c
	}
	latency := false
	for _, p := range st.Series {
		latency = latency || p.LatencyMs != nil
	}
	if latency {
		s.P50, s.P90, s.P99 = make([]*float64, n), make([]*float64, n), make([]*float64, n)
	}
	for _, p := range st.Series {
		t, err := time.Parse(time.RFC3339, p.T)
		i := index(t.Unix())
		if err != nil || i < 0 {
			continue
		}
		s.Requests[i], s.Bytes[i] = p.Requests, p.Bytes
		for k, v := range p.StatusClass {
			column(s.Class, k)[i] = v
		}
		if l := p.LatencyMs; l != nil {
			s.P50[i], s.P90[i], s.P99[i] = &l.P50, &l.P90, &l.P99
		}
	}
	if fl := st.Filter; fl != nil {
		if fl.VHost != "" {
			// The host's own figures replace the site's.
			s.Requests, s.Bytes, s.Class = make([]int64, n), make([]int64, n), map[string][]int64{}
		}
		if fl.Search != "" {
			s.Matched = make([]int64, n)
		}
		for _, p := range fl.Series {
			t, err := time.Parse(time.RFC3339, p.T)
			i := index(t.Unix())
			if err != nil || i < 0 {
				continue
			}
			if fl.VHost != "" {
				s.Requests[i], s.Bytes[i] = p.Requests, p.Bytes
				for k, v := range p.StatusClass {
					column(s.Class, k)[i] = v
				}
			}
			if s.Matched != nil {
				s.Matched[i] = p.Matched
			}
		}
	}
	for _, a := range alerts {
		if i := index(floorDiv(a.Time, 1e9)); i >= 0 {
			column(s.Alerts, a.Scenario)[i]++
		}
	}
	return s
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func buildTops(st *analytics.Stats) Tops {
	total := st.Requests
	t := Tops{
		Paths:      rows(st.TopPaths, total),
		NotFound:   rows(st.Top404Paths, st.Status["404"]),
		IPs:        rows(st.TopIPs, total),
		UserAgents: rows(st.TopUserAgents, total),
		Referrers:  rows(st.TopReferrers, total),
		Methods:    rows(sorted(st.Methods), total),
		Status:     rows(sorted(st.Status), total),
		VHosts:     rows(st.TopVHosts, total),
	}
	if fl := st.Filter; fl != nil && fl.Search != "" {
		t.Paths, t.NotFound, t.IPs = rows(fl.TopPaths, total), rows(fl.Top404Paths, st.Status["404"]), rows(fl.TopIPs, total)
	}
	return t
}

// sorted turns a map of counts into rows, largest first, ties by key.
func sorted(m map[string]int64) []analytics.KeyCount {
	out := make([]analytics.KeyCount, 0, len(m))
	for k, v := range m {
		out = append(out, analytics.KeyCount{Key: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func rows(kc []analytics.KeyCount, of int64) []Row {
	out := make([]Row, len(kc))
	for i, r := range kc {
		out[i] = Row{Key: r.Key, Count: r.Count, Share: ratio(r.Count, of)}
	}
	return out
}

// buildSecurity lists the latest alerts, the decisions in force and the
// top offenders. A client search narrows alerts and decisions to the
// sources containing it.
func buildSecurity(alerts []detect.Alert, decisions []detect.Decision, f Filter, now time.Time) Security {
	var sec Security
	client := analytics.SearchField(f.Search) == "client"
	var sources, scenarios analytics.Counts
	for i := len(alerts) - 1; i >= 0; i-- {
		a := alerts[i]
		if client && !containsFold(a.SourceIP, f.Search) {
			continue
		}
		sec.Alerts++
		sources.AddString(a.SourceIP, 1)
		scenarios.AddString(a.Scenario, 1)
		if len(sec.Latest) < latestRows {
			r := AlertRow{ID: a.ID, Scenario: a.Scenario, Source: a.SourceIP, Events: a.Events,
				Time: time.Unix(0, a.Time).UTC().Format(time.RFC3339)}
			if len(a.Samples) > 0 {
				r.Sample = a.Samples[len(a.Samples)-1]
			}
			sec.Latest = append(sec.Latest, r)
		}
	}
	if sec.Latest == nil {
		sec.Latest = []AlertRow{}
	}
	sec.TopSources = rows(analytics.Top(&sources, topRows), int64(sec.Alerts))
	sec.TopScenarios = rows(analytics.Top(&scenarios, topRows), int64(sec.Alerts))
	sort.Slice(decisions, func(i, j int) bool { return decisions[i].Until > decisions[j].Until })
	sec.Decisions = []DecisionRow{}
	for _, d := range decisions {
		if client && !containsFold(d.Value, f.Search) {
			continue
		}
		if sec.DecisionsInForce++; len(sec.Decisions) >= maxDecisionRows {
			continue
		}
		sec.Decisions = append(sec.Decisions, DecisionRow{ID: d.ID, Type: d.Type, Value: d.Value, Scenario: d.Scenario,
			Origin: d.Origin, Reason: d.Reason, Until: time.Unix(0, d.Until).UTC().Format(time.RFC3339),
			RemainingS: max(0, time.Duration(d.Until-now.UnixNano()).Round(time.Second).Seconds())})
	}
	return sec
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
