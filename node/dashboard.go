package node

import (
	"crypto/subtle"
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/dashboard"
	"github.com/wardenhq/warden/detect"
)

// The dashboard's side of a node: the page at /, its event stream
// (GET /v1/events, a read), the login that turns the read token into a
// session cookie, and this node's view of the cluster that the page and
// some metrics show.

// dashboardState is what the dashboard keeps on a node.
type dashboardState struct {
	stream *dashboard.Stream
	// sessions is nil when the node has no read token: reads are open.
	sessions *dashboard.Sessions
	// rates and commitLatency are fed each time an event is built.
	rates         dashboard.Rates
	commitLatency dashboard.Latencies
}

// newDashboard sets up the dashboard and the metrics read from the running
// node.
func (n *Node) newDashboard() *dashboardState {
	d := &dashboardState{
		rates:         dashboard.Rates{Window: 10 * time.Second, MinSpan: 900 * time.Millisecond},
		commitLatency: dashboard.Latencies{Window: time.Minute},
	}
	if n.cfg.HTTPToken != "" {
		d.sessions = dashboard.NewSessions(n.cfg.HTTPToken, 0)
	}
	d.stream = &dashboard.Stream{Source: dashboardSource{n}, Login: d.sessions != nil, Done: n.ctx.Done()}
	n.dash = d
	n.metrics.watchNode(n)
	return d
}

// sessionValid reports whether r carries a dashboard session cookie.
func (n *Node) sessionValid(r *http.Request) bool {
	return n.dash != nil && n.dash.sessions != nil && n.dash.sessions.Valid(r, time.Now())
}

// handleDashboard serves the page, or, when the node has a read token and
// the browser no session, the login form.
func (n *Node) handleDashboard(w http.ResponseWriter, r *http.Request) {
	if n.dash.sessions != nil && !n.sessionValid(r) && !n.bearerIs(r, n.cfg.HTTPToken) && !n.bearerIs(r, n.cfg.AdminToken) {
		dashboard.LoginPage(w, r.URL.RequestURI(), "")
		return
	}
	dashboard.Page(w, r)
}

// handleLogin checks the token typed into the login form: the read token
// or the admin token. The cookie it sets grants reads only.
func (n *Node) handleLogin(w http.ResponseWriter, r *http.Request) {
	if n.dash.sessions == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	check := func(tok string) bool {
		ok := false
		for _, want := range []string{n.cfg.HTTPToken, n.cfg.AdminToken} {
			if want != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1 {
				ok = true
			}
		}
		return ok
	}
	dashboard.Login(n.dash.sessions, check, time.Now)(w, r)
}

// handleEvents serves GET /v1/events: the dashboard's event stream.
func (n *Node) handleEvents(w http.ResponseWriter, r *http.Request) { n.dash.stream.ServeHTTP(w, r) }

// watchLeader counts the Raft leaders this node sees take over.
func (n *Node) watchLeader() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	var last raft.ServerID
	if _, id := n.raft.LeaderWithID(); id != "" {
		last = id
		n.metrics.leaderChanges.Inc()
	}
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-ch:
			lo := o.Data.(raft.LeaderObservation)
			if lo.LeaderID != "" && lo.LeaderID != last {
				last = lo.LeaderID
				n.metrics.leaderChanges.Inc()
			}
		}
	}
}

// memberStates is the members as this node sees them: the leader's record
// (fsm) and this node's gossip together (dashboard.MemberState).
func (n *Node) memberStates() []dashboard.Member {
	s := n.State()
	live := map[string]gossipMember{}
	for _, m := range n.gossipMembers() {
		live[m.id] = m
	}
	leader := n.Leader()
	var out []dashboard.Member
	for _, m := range s.MemberList() {
		_, seen := live[m.ID]
		seen = seen || m.ID == n.cfg.ID
		out = append(out, dashboard.Member{ID: m.ID, State: dashboard.MemberState(m.Status, seen), Voter: m.Voter,
			Leader: m.ID == leader, Self: m.ID == n.cfg.ID, HTTPAddr: m.HTTPAddr})
		delete(live, m.ID)
	}
	for _, g := range live {
		out = append(out, dashboard.Member{ID: g.id, State: dashboard.MemberState("", true), Leader: g.id == leader,
			Self: g.id == n.cfg.ID, HTTPAddr: g.meta.HTTP})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// commitHistogram reads this node's warden_commit_seconds.
func (n *Node) commitHistogram() dashboard.Histogram {
	var m dto.Metric
	if err := n.metrics.commitSeconds.Write(&m); err != nil || m.Histogram == nil {
		return dashboard.Histogram{}
	}
	var h dashboard.Histogram
	for _, b := range m.Histogram.GetBucket() {
		h.Bounds = append(h.Bounds, b.GetUpperBound())
		h.Counts = append(h.Counts, b.GetCumulativeCount())
	}
	h.Bounds = append(h.Bounds, math.Inf(1))
	h.Counts = append(h.Counts, m.Histogram.GetSampleCount())
	return h
}

// dashboardSource gives the dashboard this node's replica and view.
type dashboardSource struct{ n *Node }

func (s dashboardSource) Stats(q analytics.Query) *analytics.Stats { return s.n.fsm.Stats(q) }
func (s dashboardSource) LastMinute() analytics.Rates              { return s.n.fsm.LastMinute() }
func (s dashboardSource) Alerts(since time.Time) []detect.Alert    { return s.n.fsm.Alerts(since) }
func (s dashboardSource) Decisions(now time.Time) []detect.Decision {
	return s.n.fsm.Decisions(false, now)
}
func (s dashboardSource) Cluster(now time.Time) dashboard.Cluster { return s.n.dashboardCluster(now) }

// dashboardCluster is the cluster panel: members, partitions with their
// rates, commits, lag.
func (n *Node) dashboardCluster(now time.Time) dashboard.Cluster {
	ci := n.ClusterInfo()
	ok, why := n.Ready()
	c := dashboard.Cluster{Node: n.cfg.ID, Leader: ci.Leader, Term: ci.Term, AppliedIndex: ci.AppliedIndex, Ready: ok, ReadyReason: why,
		Members: n.memberStates(), Partitions: []dashboard.Partition{}}
	parts := n.Partitions()
	d := n.dash
	sample := map[string]float64{}
	var records, commits float64
	for _, p := range parts {
		key := "p" + strconv.Itoa(int(p.Partition))
		sample[key] = float64(p.Committed)
		records += float64(p.Committed)
		commits += float64(p.Commits)
	}
	sample["records"], sample["commits"] = records, commits
	d.rates.Add(now, sample)
	d.commitLatency.Add(now, n.commitHistogram())
	ages := n.metrics.commitAges(now)
	c.LagRecords = 0
	for _, p := range parts {
		row := dashboard.Partition{Partition: p.Partition, Owner: p.Owner, Epoch: p.Epoch, Committed: p.Committed,
			LogEnd: p.LogEnd, Lag: p.Lag}
		if r, ok := d.rates.Rate("p" + strconv.Itoa(int(p.Partition))); ok {
			row.RecordsPerS = &r
		}
		if age, ok := ages[p.Partition]; ok {
			a := age.Seconds()
			row.LastCommitS = &a
		}
		switch {
		case p.Lag < 0:
			c.LagRecords = -1
		case c.LagRecords >= 0:
			c.LagRecords += p.Lag
		}
		c.Partitions = append(c.Partitions, row)
	}
	if r, ok := d.rates.Rate("records"); ok {
		c.RecordsPerS = &r
		if c.LagRecords == 0 {
			z := 0.0
			c.LagSeconds = &z
		} else if c.LagRecords > 0 && r > 0 {
			secs := float64(c.LagRecords) / r
			c.LagSeconds = &secs
		}
	}
	if r, ok := d.rates.Rate("commits"); ok {
		c.CommitsPerS = &r
	}
	c.CommitLatencyMs = d.commitLatency.Quantiles(1000)
	c.LeaderChanges = uint64(counterValue(n.metrics.leaderChanges))
	if at, moves := n.metrics.rebalance(); !at.IsZero() {
		c.LastRebalance = &dashboard.Rebalance{Time: at.UTC().Format(time.RFC3339), AgoS: now.Sub(at).Seconds(), Moves: moves}
	}
	return c
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if c.Write(&m) != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}

var _ dashboard.Source = dashboardSource{}
