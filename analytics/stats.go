package analytics

import (
	"math"
	"sort"
	"time"
)

// Query selects windows for Stats.
type Query struct {
	From, To time.Time // [From, To); zero means open
	Top      int       // rows per top list; 0 means DefaultTop, negative all
}

// DefaultTop is the length of top lists when a query does not say.
const DefaultTop = 10

// Latency is response-time figures in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Point is one minute of the series.
type Point struct {
	T           string           `json:"t"`
	Requests    int64            `json:"requests"`
	Bytes       int64            `json:"bytes"`
	StatusClass map[string]int64 `json:"status_class"`
}

// Stats is the document of GET /v1/stats and `warden analyze --json`.
type Stats struct {
	From            string           `json:"from"`
	To              string           `json:"to"`
	Requests        int64            `json:"requests"`
	Malformed       int64            `json:"malformed"`
	Bytes           int64            `json:"bytes"`
	Status          map[string]int64 `json:"status"`
	StatusClass     map[string]int64 `json:"status_class"`
	Methods         map[string]int64 `json:"methods"`
	UniqueIPs       uint64           `json:"unique_ips"`
	LatencyMs       *Latency         `json:"latency_ms"`
	TopPaths        []KeyCount       `json:"top_paths"`
	Top404Paths     []KeyCount       `json:"top_404_paths"`
	TopIPs          []KeyCount       `json:"top_ips"`
	TopUserAgents   []KeyCount       `json:"top_user_agents"`
	TopReferrers    []KeyCount       `json:"top_referrers"`
	Series          []Point          `json:"series"`
	ExpiredRequests int64            `json:"expired_requests"`
	RetainedFrom    string           `json:"retained_from,omitempty"`
}

func rfc3339(sec int64) string { return time.Unix(sec, 0).UTC().Format(time.RFC3339) }

// Stats sums the windows that start in [q.From, q.To). Malformed and expired
// counts are for all time: a line that did not parse has no trusted time.
func (s *Store) Stats(q Query) *Stats { return s.StatsYielding(q, nil) }

// StatsYielding is Stats calling yield, if not nil, after each window it has
// summed. A caller that holds a lock for reading releases it in yield and
// takes it back, so writers (Raft applying batches) wait for one window's
// merge at most instead of the whole query's. The document is then exact
// per window but may see a batch applied in the middle of the query in the
// windows after it; once the input stops, it is exactly Stats.
func (s *Store) StatsYielding(q Query, yield func()) *Stats {
	top := q.Top
	if top == 0 {
		top = DefaultTop
	}
	var sel []*Window
	for start, w := range s.windows {
		if !q.From.IsZero() && start < q.From.Unix() {
			continue
		}
		if !q.To.IsZero() && start >= q.To.Unix() {
			continue
		}
		sel = append(sel, w)
	}
	sort.Slice(sel, func(i, j int) bool { return sel[i].Start < sel[j].Start })

	st := &Stats{Malformed: s.malformed, ExpiredRequests: s.expiredRequests,
		Status: map[string]int64{}, StatusClass: map[string]int64{}, Methods: map[string]int64{},
		TopPaths: []KeyCount{}, Top404Paths: []KeyCount{}, TopIPs: []KeyCount{}, TopUserAgents: []KeyCount{}, TopReferrers: []KeyCount{},
		Series: []Point{}}
	switch {
	case !q.From.IsZero():
		st.From = q.From.UTC().Format(time.RFC3339)
	case len(sel) > 0:
		st.From = rfc3339(sel[0].Start)
	}
	switch {
	case !q.To.IsZero():
		st.To = q.To.UTC().Format(time.RFC3339)
	case len(sel) > 0:
		st.To = rfc3339(sel[len(sel)-1].Start + WindowSeconds)
	}
	if len(s.windows) > 0 && s.expiredRequests > 0 {
		st.RetainedFrom = rfc3339(s.horizon())
	}
	var paths, notFound, clients, agents, refs Counts
	lat := newSketch()
	var latCount, latMax int64
	for _, w := range sel {
		st.Requests += w.Requests
		st.Bytes += w.Bytes
		p := Point{T: rfc3339(w.Start), Requests: w.Requests, Bytes: w.Bytes, StatusClass: map[string]int64{}}
		w.Status.Each(func(k string, n int64) {
			st.Status[k] += n
			c := k[:1] + "xx"
			st.StatusClass[c] += n
			p.StatusClass[c] += n
		})
		st.Series = append(st.Series, p)
		w.Methods.Each(func(k string, n int64) { st.Methods[k] += n })
		paths.Merge(&w.Paths)
		notFound.Merge(&w.NotFound)
		clients.Merge(&w.Clients)
		agents.Merge(&w.UserAgents)
		refs.Merge(&w.Referrers)
		if w.latency != nil {
			_ = lat.MergeWith(w.latency)
		}
		latCount += w.LatencyCount
		latMax = max(latMax, w.LatencyMaxUs)
		if yield != nil {
			yield()
		}
	}
	st.UniqueIPs = distinct(sel)
	if latCount > 0 {
		qs, err := lat.GetValuesAtQuantiles([]float64{0.5, 0.9, 0.99})
		if err == nil {
			st.LatencyMs = &Latency{P50: ms(qs[0]), P90: ms(qs[1]), P99: ms(qs[2]), Max: ms(float64(latMax))}
		}
	}
	st.TopPaths = Top(&paths, top)
	st.Top404Paths = Top(&notFound, top)
	st.TopIPs = Top(&clients, top)
	st.TopUserAgents = Top(&agents, top)
	st.TopReferrers = Top(&refs, top)
	return st
}

// ms turns microseconds into milliseconds rounded to the microsecond.
func ms(us float64) float64 { return math.Round(us) / 1000 }
