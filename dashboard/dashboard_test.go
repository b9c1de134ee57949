package dashboard

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/analytics"
)

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  Filter
		err   string
	}{
		{"", Filter{}, ""},
		{"range=1h&vhost=a.example&q=/admin", Filter{Range: "1h", VHost: "a.example", Search: "/admin"}, ""},
		{"range=all", Filter{}, ""},
		{"from=2026-11-27T10:00:00Z&to=2026-11-27T11:00:00Z", Filter{From: t0, To: t0.Add(time.Hour)}, ""},
		{"range=2h", Filter{}, "range"},
		{"range=1h&from=2026-11-27T10:00:00Z", Filter{}, "either range or from"},
		{"from=yesterday", Filter{}, "RFC 3339"},
		{"from=2026-11-27T11:00:00Z&to=2026-11-27T10:00:00Z", Filter{}, "not after"},
		{"q=" + strings.Repeat("x", 300), Filter{}, "at most"},
	} {
		v, _ := url.ParseQuery(tc.query)
		got, err := ParseFilter(v)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one saying %q", tc.query, err, tc.err)
			}
			continue
		}
		if err != nil || got.key() != tc.want.key() {
			t.Errorf("%q: %+v, %v; want %+v", tc.query, got, err, tc.want)
		}
	}
}

// The header and the top lists are those of /v1/stats for the same range,
// and the series adds up to the header.
func TestBuildAgreesWithStats(t *testing.T) {
	src := newFakeSource(t)
	now := t0.Add(2 * time.Hour)
	for _, f := range []Filter{{}, {Range: "1h"}, {From: t0.Add(10 * time.Minute), To: t0.Add(40 * time.Minute)}} {
		ev := Build(src, f, now)
		from, to := f.bounds(src.LastMinute().Minute.Add(time.Minute))
		st := src.Stats(analytics.Query{From: from, To: to})
		if ev.Header.Requests != st.Requests || ev.Header.Bytes != st.Bytes || ev.Header.UniqueIPs != st.UniqueIPs {
			t.Errorf("%+v: header %+v, stats %d requests %d bytes", f, ev.Header, st.Requests, st.Bytes)
		}
		if ev.Filter.From != st.From || ev.Filter.To != st.To {
			t.Errorf("%+v: range %s..%s, stats %s..%s", f, ev.Filter.From, ev.Filter.To, st.From, st.To)
		}
		if len(ev.Top.IPs) != len(st.TopIPs) || ev.Top.IPs[0].Key != st.TopIPs[0].Key || ev.Top.IPs[0].Count != st.TopIPs[0].Count {
			t.Errorf("%+v: top IPs %+v, stats %+v", f, ev.Top.IPs, st.TopIPs)
		}
		var sum, classes int64
		for i, v := range ev.Series.Requests {
			sum += v
			for _, c := range ev.Series.Class {
				classes += c[i]
			}
		}
		if sum != st.Requests || classes != st.Requests {
			t.Errorf("%+v: series sums to %d (classes %d), want %d", f, sum, classes, st.Requests)
		}
		if n := len(ev.Series.Requests); n > maxPoints || n == 0 || len(ev.Series.P99) != n {
			t.Errorf("%+v: %d points, %d p99", f, n, len(ev.Series.P99))
		}
	}
	ev := Build(src, Filter{Range: "1h"}, now)
	if ev.Filter.Range != "1h" || ev.Filter.To != "2026-11-27T11:31:00Z" || ev.Filter.From != "2026-11-27T10:31:00Z" {
		t.Errorf("last hour of event time: %+v", ev.Filter)
	}
	if ev.Series.Step != 60 || len(ev.Series.Requests) != 60 {
		t.Errorf("one hour: step %d, %d points", ev.Series.Step, len(ev.Series.Requests))
	}
	if lm := ev.Header.LastMinute; lm.T != "2026-11-27T11:29:00Z" || lm.RequestsPerS <= 0 || lm.UniqueIPs == 0 {
		t.Errorf("last minute %+v", lm)
	}
}

func TestBuildSecurity(t *testing.T) {
	src := newFakeSource(t)
	ev := Build(src, Filter{}, time.Now())
	sec := ev.Security
	if sec.Alerts != 4 || len(sec.Latest) != 4 || sec.Latest[0].ID != "a3" || sec.TopScenarios[0] != (Row{"http-probing", 2, 0.5}) {
		t.Errorf("alerts %d, latest %+v, scenarios %+v", sec.Alerts, sec.Latest, sec.TopScenarios)
	}
	if len(sec.Decisions) != 1 || sec.Decisions[0].RemainingS < 3*3600-5 || sec.DecisionsInForce != 1 {
		t.Errorf("decisions %+v", sec.Decisions)
	}
	var perMinute int64
	for _, c := range ev.Series.Alerts {
		for _, v := range c {
			perMinute += v
		}
	}
	if perMinute != 4 || len(ev.Series.Alerts["http-probing"]) != len(ev.Series.Requests) {
		t.Errorf("alerts per point: %d in all, %v", perMinute, ev.Series.Alerts)
	}
	// A client search narrows alerts and decisions to its sources.
	ev = Build(src, Filter{Search: "203.0.113.2"}, time.Now())
	if ev.Security.Alerts != 1 || len(ev.Security.Decisions) != 0 {
		t.Errorf("search 203.0.113.2: %d alerts, %d decisions", ev.Security.Alerts, len(ev.Security.Decisions))
	}
	// Outside the range: no alert.
	ev = Build(src, Filter{From: t0, To: t0.Add(time.Minute)}, time.Now())
	if ev.Security.Alerts != 0 || len(ev.Security.Latest) != 0 {
		t.Errorf("first minute: %d alerts", ev.Security.Alerts)
	}
}

func TestBuildFilters(t *testing.T) {
	src := newFakeSource(t)
	all := Build(src, Filter{}, time.Now())
	ev := Build(src, Filter{VHost: "api.example.com"}, time.Now())
	if ev.Header.Requests != 1500 || all.Header.Requests != 3000 {
		t.Errorf("host filter: %d of %d requests", ev.Header.Requests, all.Header.Requests)
	}
	var sum int64
	for _, v := range ev.Series.Requests {
		sum += v
	}
	if sum != 1500 || len(all.Top.VHosts) != 2 || all.Top.VHosts[0].Share != 0.5 {
		t.Errorf("host series sums to %d; hosts %+v", sum, all.Top.VHosts)
	}
	ev = Build(src, Filter{Search: "/shop"}, time.Now())
	if ev.Filter.SearchField != "path" || len(ev.Top.Paths) != 2 || ev.Header.Matched == 0 || len(ev.Series.Matched) != len(ev.Series.Requests) {
		t.Errorf("path search: %+v, matched %d", ev.Top.Paths, ev.Header.Matched)
	}
	for _, r := range ev.Top.Paths {
		if !strings.Contains(r.Key, "/shop") {
			t.Errorf("path search lists %q", r.Key)
		}
	}
	if ev := Build(src, Filter{Range: "5m"}, time.Now()); ev.Header.Requests == 0 || len(ev.Series.Requests) != 5 {
		t.Errorf("last 5 minutes: %d requests, %d points", ev.Header.Requests, len(ev.Series.Requests))
	}
	empty := &fakeSource{store: analytics.NewStore(analytics.Config{})}
	if ev := Build(empty, Filter{Range: "1h"}, time.Now()); ev.Header.Requests != 0 || len(ev.Series.Requests) != 0 {
		t.Errorf("no data: %+v", ev.Header)
	}
}

func TestMemberState(t *testing.T) {
	for _, tc := range []struct {
		recorded string
		live     bool
		want     string
	}{
		{"alive", true, StateAlive}, {"failed", true, StateAlive}, {"alive", false, StateSuspect},
		{"failed", false, StateDead}, {"left", false, StateLeft}, {"", true, StateJoining},
	} {
		if got := MemberState(tc.recorded, tc.live); got != tc.want {
			t.Errorf("MemberState(%q, %v) = %s, want %s", tc.recorded, tc.live, got, tc.want)
		}
	}
}

func TestRates(t *testing.T) {
	r := Rates{Window: 10 * time.Second, MinSpan: time.Second}
	if _, ok := r.Rate("x"); ok {
		t.Error("a rate without samples")
	}
	for i := 0; i <= 20; i++ {
		r.Add(t0.Add(time.Duration(i)*time.Second), map[string]float64{"x": float64(100 * i)})
	}
	if v, ok := r.Rate("x"); !ok || v != 100 {
		t.Errorf("rate %v %v, want 100", v, ok)
	}
	if len(r.samples) != 11 {
		t.Errorf("%d samples kept over a 10 s window", len(r.samples))
	}
	r.Add(t0.Add(21*time.Second), map[string]float64{"x": 5})
	if _, ok := r.Rate("x"); ok {
		t.Error("a counter that went back gives a rate")
	}
	// After a pause longer than the window, old samples say nothing.
	r.Add(t0.Add(time.Hour), map[string]float64{"x": 100})
	if _, ok := r.Rate("x"); ok || len(r.samples) != 1 {
		t.Errorf("a rate across an hour's pause (%d samples)", len(r.samples))
	}
}

func TestHistogramQuantile(t *testing.T) {
	inf := func() float64 { var z float64; return 1 / z }()
	h := Histogram{Bounds: []float64{1, 2, 4, inf}, Counts: []uint64{10, 30, 40, 40}}
	for _, tc := range []struct{ q, want float64 }{{0.25, 1}, {0.5, 1.5}, {0.75, 2}, {0.875, 3}, {1, 4}} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("q%v = %v, want %v", tc.q, got, tc.want)
		}
	}
	old := Histogram{Bounds: h.Bounds, Counts: []uint64{10, 10, 10, 10}}
	d, ok := h.Sub(old)
	if !ok || d.Counts[3] != 30 || d.Quantile(0.5) != 1.75 {
		t.Errorf("difference %+v %v, median %v", d, ok, d.Quantile(0.5))
	}
	var l Latencies
	l.Window = time.Minute
	l.Add(t0, old)
	l.Add(t0.Add(time.Second), h)
	if q := l.Quantiles(1000); q == nil || q.P50 != 1750 {
		t.Errorf("latencies %+v", q)
	}
}

func TestSessions(t *testing.T) {
	s := NewSessions("read-secret", time.Hour)
	now := time.Now()
	c := s.Cookie(now, false)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, "read-secret") || c.Path != "/" {
		t.Fatalf("cookie %+v", c)
	}
	req := func(v string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: CookieName, Value: v})
		return r
	}
	if !s.Valid(req(c.Value), now) {
		t.Error("a fresh cookie is refused")
	}
	exp, mac, _ := strings.Cut(c.Value, ".")
	for name, v := range map[string]string{
		"tampered mac":    exp + "." + mac[:len(mac)-1] + string("AB"[mac[len(mac)-1]%2]),
		"later expiry":    "9" + exp + "." + mac,
		"no mac":          exp,
		"another token's": NewSessions("other", time.Hour).Cookie(now, false).Value,
	} {
		if s.Valid(req(v), now) {
			t.Errorf("%s cookie accepted", name)
		}
	}
	if s.Valid(req(c.Value), now.Add(2*time.Hour)) {
		t.Error("an expired cookie is accepted")
	}
	if s.Valid(httptest.NewRequest("GET", "/", nil), now) {
		t.Error("no cookie accepted")
	}
	if !NewSessions("read-secret", time.Hour).Valid(req(c.Value), now) {
		t.Error("another node with the same token refuses the cookie")
	}
}

func TestLoginAndSafeNext(t *testing.T) {
	for next, want := range map[string]string{"/?range=1h": "/?range=1h", "//evil.example/": "/", "https://evil.example/": "/",
		"/\\evil": "/", "": "/"} {
		if got := SafeNext(next); got != want {
			t.Errorf("SafeNext(%q) = %q, want %q", next, got, want)
		}
	}
	s := NewSessions("tok", 0)
	h := Login(s, func(tok string) bool { return tok == "tok" }, time.Now)
	post := func(form string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(form))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h(w, r)
		return w
	}
	w := post("token=wrong&next=%2F%3Frange%3D1h")
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "Wrong token") || len(w.Result().Cookies()) != 0 {
		t.Errorf("wrong token: %d %s", w.Code, w.Body.String())
	}
	if !strings.Contains(w.Body.String(), `value="/?range=1h"`) {
		t.Errorf("the form lost where to go next: %s", w.Body.String())
	}
	w = post("token=tok&next=%2F%3Frange%3D1h")
	cs := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/?range=1h" || len(cs) != 1 || cs[0].Name != CookieName {
		t.Errorf("right token: %d %v %v", w.Code, w.Header(), cs)
	}
}

// readEvent reads the next "update" event of a stream.
func readEvent(t *testing.T, r *bufio.Reader) *Event {
	t.Helper()
	var event string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: ") && event == "update":
			var ev Event
			if err := json.Unmarshal([]byte(line[len("data: "):]), &ev); err != nil {
				t.Fatal(err)
			}
			return &ev
		}
	}
}

func TestStream(t *testing.T) {
	src := newFakeSource(t)
	done := make(chan struct{})
	st := &Stream{Source: src, Interval: 100 * time.Millisecond, Max: 2, Login: true, Done: done}
	srv := httptest.NewServer(st)
	defer srv.Close()
	open := func(q string) *http.Response {
		resp, err := http.Get(srv.URL + "/v1/events" + q)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := open("?range=1h")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	ev := readEvent(t, r)
	if ev.Node != "n2" || !ev.Login || ev.Filter.Range != "1h" || ev.Header.Requests == 0 {
		t.Errorf("first event: node %q login %v filter %+v requests %d", ev.Node, ev.Login, ev.Filter, ev.Header.Requests)
	}
	// The next one comes by itself, with what changed.
	src.add(t, 100, 90)
	start := time.Now()
	deadline := start.Add(3 * time.Second)
	for ev2 := readEvent(t, r); ev2.Header.Requests == ev.Header.Requests; ev2 = readEvent(t, r) {
		if time.Now().After(deadline) {
			t.Fatal("new requests never reached the stream")
		}
	}
	second := open("")
	if third := open(""); third.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a third stream over Max: %s", third.Status)
	}
	second.Body.Close()
	if bad := open("?from=nope"); bad.StatusCode != http.StatusBadRequest {
		t.Errorf("bad filter: %s", bad.Status)
	}
	close(done)
	if _, err := io.ReadAll(r); err != nil {
		t.Errorf("stream after Done: %v", err)
	}
}

// A stream outlives the server's write timeout (a node's is 60 s): events
// keep coming past it.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	st := &Stream{Source: newFakeSource(t), Interval: 100 * time.Millisecond}
	srv := httptest.NewUnstartedServer(st)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	start := time.Now()
	for n := 0; time.Since(start) < 1500*time.Millisecond; n++ {
		readEvent(t, r)
	}
}
