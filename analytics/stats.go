package analytics

import (
	"math"
	"sort"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

// Query selects windows for Stats.
type Query struct {
	From, To time.Time // [From, To); zero means open
	Top      int       // rows per top list; 0 means DefaultTop, negative all
	// Step is the width of a series point in seconds: a multiple of
	// WindowSeconds, points starting at multiples of it. 0 means one window,
	// or, with MaxPoints, the narrowest of Steps that keeps the series of
	// the selected span within MaxPoints.
	Step      int64
	MaxPoints int
	// VHost and Search, when set, add the Filter section: the figures of
	// one virtual host, and the paths or clients containing Search.
	VHost  string
	Search string
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

// Point is one minute (or Query.Step) of the series.
type Point struct {
	T           string           `json:"t"`
	Requests    int64            `json:"requests"`
	Bytes       int64            `json:"bytes"`
	StatusClass map[string]int64 `json:"status_class"`
	// LatencyMs is the response times of the point's requests; absent when
	// none logged a duration.
	LatencyMs *Latency `json:"latency_ms,omitempty"`
}

// Filtered is what a filter selects exactly. Per virtual host a window keeps
// requests, bytes and status classes, so those follow VHost; the other
// figures of the document stay those of every host. Search is matched
// against paths, or against client addresses when it looks like one (see
// SearchField), across all hosts.
type Filtered struct {
	VHost  string `json:"vhost,omitempty"`
	Search string `json:"q,omitempty"`
	// SearchField is "path" or "client": what Search was matched against.
	SearchField string `json:"q_field,omitempty"`
	// Requests, Bytes and StatusClass are VHost's (every host's without one).
	Requests    int64            `json:"requests"`
	Bytes       int64            `json:"bytes"`
	StatusClass map[string]int64 `json:"status_class"`
	// Matched counts the requests whose path or client contains Search.
	Matched int64 `json:"matched"`
	// The top lists of the keys containing Search: paths and 404 paths for
	// a path search, client addresses for a client search.
	TopPaths    []KeyCount      `json:"top_paths"`
	Top404Paths []KeyCount      `json:"top_404_paths"`
	TopIPs      []KeyCount      `json:"top_ips"`
	Series      []FilteredPoint `json:"series"`
}

// FilteredPoint is one point of the filtered series, at the times of
// Stats.Series.
type FilteredPoint struct {
	T           string           `json:"t"`
	Requests    int64            `json:"requests"`
	Bytes       int64            `json:"bytes"`
	StatusClass map[string]int64 `json:"status_class"`
	Matched     int64            `json:"matched"`
}

// SearchField says what a search string is matched against: "client" when
// it could be the start of an IPv4 address (digits and dots) or holds a
// colon and only hex digits besides (IPv6), else "path".
func SearchField(q string) string {
	if q == "" {
		return ""
	}
	v4, v6 := true, strings.Contains(q, ":")
	for _, c := range q {
		digit := c >= '0' && c <= '9'
		hex := digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
		v4 = v4 && (digit || c == '.')
		v6 = v6 && (hex || c == ':' || c == '.')
	}
	if v4 || v6 {
		return "client"
	}
	return "path"
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
	// Step is the width of a series point in seconds.
	Step int64 `json:"step"`
	// TopVHosts is the requests per virtual host, when the format logs one.
	TopVHosts []KeyCount `json:"top_vhosts"`
	// Filter is present when the query has VHost or Search.
	Filter *Filtered `json:"filter,omitempty"`
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
	step := q.Step
	if step <= 0 && q.MaxPoints > 0 && len(sel) > 0 {
		from, to := sel[0].Start, sel[len(sel)-1].Start+WindowSeconds
		if !q.From.IsZero() {
			from = q.From.Unix()
		}
		if !q.To.IsZero() {
			to = q.To.Unix()
		}
		step = StepFor(to-from, q.MaxPoints)
	}
	if step < WindowSeconds {
		step = WindowSeconds
	}
	step -= step % WindowSeconds
	st.Step = step
	var paths, notFound, clients, agents, refs, vhosts Counts
	lat := newSketch()
	var latCount, latMax int64
	f := newFilter(q, top)
	// The point being summed: windows are in time order, so a point is
	// complete when a window of the next one comes.
	var p *Point
	var pLat *ddsketch.DDSketch
	var pLatCount, pLatMax int64
	flush := func() {
		if p == nil {
			return
		}
		if pLatCount > 0 {
			p.LatencyMs = quantiles(pLat, pLatMax)
		}
		st.Series = append(st.Series, *p)
		p, pLat, pLatCount, pLatMax = nil, nil, 0, 0
	}
	for _, w := range sel {
		st.Requests += w.Requests
		st.Bytes += w.Bytes
		start := w.Start - mod(w.Start, step)
		if p != nil && p.T != rfc3339(start) {
			flush()
		}
		if p == nil {
			p = &Point{T: rfc3339(start), StatusClass: map[string]int64{}}
		}
		p.Requests += w.Requests
		p.Bytes += w.Bytes
		w.Status.Each(func(k string, n int64) {
			st.Status[k] += n
			c := k[:1] + "xx"
			st.StatusClass[c] += n
			p.StatusClass[c] += n
		})
		w.Methods.Each(func(k string, n int64) { st.Methods[k] += n })
		paths.Merge(&w.Paths)
		notFound.Merge(&w.NotFound)
		clients.Merge(&w.Clients)
		agents.Merge(&w.UserAgents)
		refs.Merge(&w.Referrers)
		vhosts.Merge(&w.VHosts)
		if w.latency != nil {
			_ = lat.MergeWith(w.latency)
			if pLat == nil {
				pLat = newSketch()
			}
			_ = pLat.MergeWith(w.latency)
		}
		latCount += w.LatencyCount
		latMax = max(latMax, w.LatencyMaxUs)
		pLatCount += w.LatencyCount
		pLatMax = max(pLatMax, w.LatencyMaxUs)
		f.add(w, p.T)
		if yield != nil {
			yield()
		}
	}
	flush()
	st.UniqueIPs = s.distinct(sel, yield)
	if latCount > 0 {
		st.LatencyMs = quantiles(lat, latMax)
	}
	st.TopPaths = Top(&paths, top)
	st.Top404Paths = Top(&notFound, top)
	st.TopIPs = Top(&clients, top)
	st.TopUserAgents = Top(&agents, top)
	st.TopReferrers = Top(&refs, top)
	st.TopVHosts = Top(&vhosts, top)
	st.Filter = f.result()
	return st
}

// Steps are the widths StepFor picks from, in seconds.
var Steps = []int64{60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400}

// StepFor returns the narrowest of Steps (or a multiple of a day past them)
// that cuts span seconds into at most points series points.
func StepFor(span int64, points int) int64 {
	if points <= 0 {
		return WindowSeconds
	}
	for _, s := range Steps {
		if (span+s-1)/s <= int64(points) {
			return s
		}
	}
	days := (span + 86400*int64(points) - 1) / (86400 * int64(points))
	return days * 86400
}

// quantiles reads p50, p90 and p99 from a sketch of microseconds; nil if
// the sketch cannot answer.
func quantiles(s *ddsketch.DDSketch, maxUs int64) *Latency {
	qs, err := s.GetValuesAtQuantiles([]float64{0.5, 0.9, 0.99})
	if err != nil {
		return nil
	}
	return &Latency{P50: ms(qs[0]), P90: ms(qs[1]), P99: ms(qs[2]), Max: ms(float64(maxUs))}
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// filter sums the Filtered section of a query while Stats reads windows.
type filter struct {
	q                    Query
	top                  int
	out                  *Filtered
	paths, nf, clients   Counts
	needle, vhostClasses string
}

func newFilter(q Query, top int) *filter {
	if q.VHost == "" && q.Search == "" {
		return nil
	}
	return &filter{q: q, top: top, needle: q.Search, vhostClasses: "xx " + q.VHost,
		out: &Filtered{VHost: q.VHost, Search: q.Search, SearchField: SearchField(q.Search), StatusClass: map[string]int64{},
			TopPaths: []KeyCount{}, Top404Paths: []KeyCount{}, TopIPs: []KeyCount{}, Series: []FilteredPoint{}}}
}

// add sums window w, part of the series point starting at t.
func (f *filter) add(w *Window, t string) {
	if f == nil {
		return
	}
	n := len(f.out.Series)
	if n == 0 || f.out.Series[n-1].T != t {
		f.out.Series = append(f.out.Series, FilteredPoint{T: t, StatusClass: map[string]int64{}})
		n++
	}
	p := &f.out.Series[n-1]
	if f.q.VHost == "" {
		p.Requests += w.Requests
		p.Bytes += w.Bytes
		w.Status.Each(func(k string, c int64) { p.StatusClass[k[:1]+"xx"] += c })
	} else {
		p.Requests += w.VHosts.Get(f.q.VHost)
		p.Bytes += w.VHostBytes.Get(f.q.VHost)
		w.VHostClass.Each(func(k string, c int64) {
			if len(k) == len(f.vhostClasses)+1 && k[1:] == f.vhostClasses {
				p.StatusClass[k[:3]] += c
			}
		})
	}
	switch f.out.SearchField {
	case "client":
		p.Matched += f.keep(&w.Clients, &f.clients)
	case "path":
		p.Matched += f.keep(&w.Paths, &f.paths)
		f.keep(&w.NotFound, &f.nf)
	}
}

// keep adds the keys of from that contain the search string (without
// regard to case) into into, and returns their sum.
func (f *filter) keep(from, into *Counts) int64 {
	var sum int64
	from.Each(func(k string, c int64) {
		if containsFold(k, f.needle) {
			into.AddString(k, c)
			sum += c
		}
	})
	return sum
}

// containsFold reports whether sub is within s, without regard to case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func (f *filter) result() *Filtered {
	if f == nil {
		return nil
	}
	for _, p := range f.out.Series {
		f.out.Requests += p.Requests
		f.out.Bytes += p.Bytes
		f.out.Matched += p.Matched
		for k, c := range p.StatusClass {
			f.out.StatusClass[k] += c
		}
	}
	f.out.TopPaths = Top(&f.paths, f.top)
	f.out.Top404Paths = Top(&f.nf, f.top)
	f.out.TopIPs = Top(&f.clients, f.top)
	return f.out
}

// ms turns microseconds into milliseconds rounded to the microsecond.
func ms(us float64) float64 { return math.Round(us) / 1000 }
