package analytics

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
)

// filterStore holds a few requests of two virtual hosts over three minutes.
func filterStore(t *testing.T) *Store {
	t.Helper()
	a := NewAggregate()
	add := func(sec int, host, ip, path string, status int, bytes, durUs int64) {
		e := accesslog.Entry{Time: base.Add(time.Duration(sec) * time.Second).UnixNano(), Client: []byte(ip), Method: []byte("GET"),
			Path: []byte(path), Status: status, Bytes: bytes, Duration: durUs, VHost: []byte(host)}
		a.Add(&e)
	}
	add(0, "a.example", "10.0.0.1", "/admin/login", 404, 10, 1000)
	add(5, "b.example", "10.0.0.2", "/", 200, 100, 2000)
	add(65, "a.example", "10.0.0.1", "/ADMIN", 500, 20, 3000)
	add(70, "a.example", "192.0.2.7", "/shop", 200, 30, 4000)
	add(130, "", "10.0.0.3", "/admin", 404, 40, -1)
	s := NewStore(DefaultConfig())
	if err := s.Merge(a); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStatsFilterByVirtualHost(t *testing.T) {
	s := filterStore(t)
	st := s.Stats(Query{VHost: "a.example"})
	if len(st.TopVHosts) != 2 || st.TopVHosts[0] != (KeyCount{"a.example", 3}) || st.TopVHosts[1] != (KeyCount{"b.example", 1}) {
		t.Errorf("top vhosts %v", st.TopVHosts)
	}
	f := st.Filter
	if f == nil {
		t.Fatal("no filter section")
	}
	if f.Requests != 3 || f.Bytes != 60 || f.StatusClass["4xx"] != 1 || f.StatusClass["5xx"] != 1 || f.StatusClass["2xx"] != 1 {
		t.Errorf("vhost figures: %+v", f)
	}
	if len(f.Series) != 3 || f.Series[0].Requests != 1 || f.Series[1].Requests != 2 || f.Series[2].Requests != 0 || f.Series[1].T != st.Series[1].T {
		t.Errorf("vhost series %+v", f.Series)
	}
	if st.Requests != 5 {
		t.Errorf("the figures outside the filter section changed: %d requests", st.Requests)
	}
	if s.Stats(Query{}).Filter != nil {
		t.Error("a filter section without a filter")
	}
}

func TestStatsSearch(t *testing.T) {
	s := filterStore(t)
	for _, tc := range []struct {
		q, field string
		matched  int64
		paths    []KeyCount
		ips      []KeyCount
	}{
		{"admin", "path", 3, []KeyCount{{"/ADMIN", 1}, {"/admin", 1}, {"/admin/login", 1}}, []KeyCount{}},
		{"10.0.0", "client", 4, []KeyCount{}, []KeyCount{{"10.0.0.1", 2}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}},
		{"192.0.2.7", "client", 1, []KeyCount{}, []KeyCount{{"192.0.2.7", 1}}},
		{"/nothing", "path", 0, []KeyCount{}, []KeyCount{}},
	} {
		f := s.Stats(Query{Search: tc.q}).Filter
		if f.SearchField != tc.field || f.Matched != tc.matched || f.Requests != 5 {
			t.Errorf("q=%s: field %s matched %d requests %d", tc.q, f.SearchField, f.Matched, f.Requests)
		}
		if got, _ := json.Marshal(f.TopPaths); string(got) != mustJSON(tc.paths) {
			t.Errorf("q=%s: paths %s", tc.q, got)
		}
		if got, _ := json.Marshal(f.TopIPs); string(got) != mustJSON(tc.ips) {
			t.Errorf("q=%s: ips %s", tc.q, got)
		}
	}
	if f := s.Stats(Query{Search: "admin"}).Filter; len(f.Top404Paths) != 2 {
		t.Errorf("404 paths matching admin: %v", f.Top404Paths)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSearchField(t *testing.T) {
	for q, want := range map[string]string{"": "", "10.1.": "client", "2001:db8::": "client", "::1": "client", "/wp-login.php": "path",
		"cafe": "path", "admin": "path", "1.2.3.4": "client", "v1.2": "path"} {
		if got := SearchField(q); got != want {
			t.Errorf("SearchField(%q) = %q, want %q", q, got, want)
		}
	}
}

func TestStatsStepAndPointLatency(t *testing.T) {
	s := filterStore(t)
	st := s.Stats(Query{Step: 120})
	if len(st.Series) != 2 || st.Series[0].T != "2026-11-27T10:00:00Z" || st.Series[0].Requests != 4 || st.Series[1].Requests != 1 {
		t.Fatalf("two-minute series: %+v", st.Series)
	}
	l := st.Series[0].LatencyMs
	if l == nil || l.Max != 4 || l.P50 < 1.9 || l.P50 > 2.1 {
		t.Errorf("latency of the first point: %+v", l)
	}
	if st.Series[1].LatencyMs != nil {
		t.Errorf("a point without durations has latency %+v", st.Series[1].LatencyMs)
	}
	if one := s.Stats(Query{}); len(one.Series) != 3 || one.Series[1].LatencyMs == nil || one.Series[1].LatencyMs.Max != 4 {
		t.Errorf("per-minute series: %+v", one.Series)
	}
}

// An earlier release reads a delta up to its windows and ignores what
// follows: the hosts section must come after bytes it reads unchanged.
func TestBinaryHostsSectionIsATrailer(t *testing.T) {
	es := entries(4, 2000, 5)
	with, without := NewAggregate(), NewAggregate()
	for i := range es {
		with.Add(&es[i])
		e := es[i]
		e.VHost = nil
		without.Add(&e)
	}
	b, old := with.AppendBinary(nil), without.AppendBinary(nil)
	if len(b) <= len(old) || string(b[:len(old)]) != string(old) {
		t.Fatal("the encoding with hosts does not extend the one without")
	}
	d, err := DecodeAggregate(old)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(DefaultConfig())
	if err := s.Merge(d); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(Query{}); st.Requests != 2000 || len(st.TopVHosts) != 0 {
		t.Errorf("a delta without hosts: %d requests, hosts %v", st.Requests, st.TopVHosts)
	}
}

func TestStepFor(t *testing.T) {
	for _, tc := range []struct {
		span   int64
		points int
		want   int64
	}{
		{3600, 360, 60}, {86400, 360, 300}, {6 * 3600, 360, 60}, {7 * 86400, 360, 1800}, {300 * 86400, 360, 86400}, {365 * 86400, 360, 2 * 86400},
		{3 * 365 * 86400, 360, 4 * 86400}, {100, 0, 60},
	} {
		if got := StepFor(tc.span, tc.points); got != tc.want {
			t.Errorf("StepFor(%d, %d) = %d, want %d", tc.span, tc.points, got, tc.want)
		}
	}
	s := filterStore(t)
	if st := s.Stats(Query{MaxPoints: 2}); st.Step != 120 || len(st.Series) != 2 {
		t.Errorf("three minutes in at most 2 points: step %d, %d points", st.Step, len(st.Series))
	}
}
