package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
)

func mustParse(t *testing.T, doc string) *Rules {
	t.Helper()
	r, err := Parse([]byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWindow_CountsWithinTheWindowOnly: a window trigger counts what fell
// within its span of event time, whatever the spacing inside it, and
// forgets what slid out.
func TestWindow_CountsWithinTheWindowOnly(t *testing.T) {
	rules := mustParse(t, `
scenarios:
  - {name: slow, filter: {status: [404]}, trigger: window, window: 1h, capacity: 5, blackhole: 1h}
  - {name: slow-distinct, filter: {status: [404]}, trigger: window, window: 1h, distinct: path, capacity: 5, blackhole: 1h}
`)
	run := func(spacing time.Duration, paths ...string) map[string]int {
		d := NewDetector(rules, 0, nil)
		for i, p := range paths {
			e, line := entry("192.0.2.7", "GET", p, 404, time.Duration(i)*spacing, "ua")
			d.Observe(&e, int64(i), line)
		}
		got := map[string]int{}
		for _, a := range d.Flush().Alerts {
			got[a.Scenario]++
		}
		return got
	}
	// Eight paths: two values may share a bit of the sketch (and count
	// once), so the test leaves a margin over the capacity.
	eight := []string{"/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h"}
	if got := run(6*time.Minute, eight...); got["slow"] != 1 || got["slow-distinct"] != 1 {
		t.Errorf("eight in 42 minutes: %v, want both to fire", got)
	}
	if got := run(15*time.Minute, eight...); len(got) != 0 {
		t.Errorf("eight in 105 minutes, five at most in any hour: %v, want none", got)
	}
	if got := run(time.Minute, "/a", "/a", "/b", "/b", "/c", "/c"); got["slow"] != 1 || got["slow-distinct"] != 0 {
		t.Errorf("three paths twice: %v, want slow only", got)
	}
}

// TestWindow_DistinctRatio: many distinct values fire only if they are most
// of the events (one user agent per request, not many users behind one
// address).
func TestWindow_DistinctRatio(t *testing.T) {
	rules := mustParse(t, `
scenarios:
  - {name: ua, filter: {}, trigger: window, window: 2m, distinct: user_agent, distinct_ratio: 0.7, capacity: 10}
`)
	run := func(uas []string) int {
		d := NewDetector(rules, 0, nil)
		for i, ua := range uas {
			e, line := entry("192.0.2.8", "GET", "/", 200, time.Duration(i)*200*time.Millisecond, ua)
			d.Observe(&e, int64(i), line)
		}
		return len(d.Flush().Alerts)
	}
	var bot, nat []string
	for i := 0; i < 30; i++ {
		bot = append(bot, fmt.Sprintf("Mozilla/5.0 bot %d", i))
		for j := 0; j < 6; j++ { // a page and its assets
			nat = append(nat, fmt.Sprintf("Mozilla/5.0 user %d", i))
		}
	}
	if n := run(bot); n != 1 {
		t.Errorf("a new user agent per request: %d alerts, want 1", n)
	}
	if n := run(nat); n != 0 {
		t.Errorf("30 users behind one address: %d alerts, want none", n)
	}
}

// TestRangeScope_AlertsTheNetwork: addresses of one network each sending a
// probe or two raise one alert on the network, which becomes a Range
// decision, unless the network holds an allowed address.
func TestRangeScope_AlertsTheNetwork(t *testing.T) {
	rules := mustParse(t, `
scenarios:
  - {name: probe, filter: {status: [404], path_contains: [/.env]}, trigger: leaky, capacity: 5, leak: 1s}
  - {name: net, scope: range, filter: {evidence: [probe]}, trigger: window, window: 1h, distinct: ip, capacity: 5, ban: 2h}
`)
	d := NewDetector(rules, 0, nil)
	n := 0
	for _, ip := range []string{"192.0.2.1", "192.0.2.9", "192.0.2.17", "192.0.2.33", "192.0.2.40", "192.0.2.41", "192.0.2.77", "192.0.2.200", "198.51.100.3",
		"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:aa::3", "2001:db8:1:2::4", "2001:db8:1:2::5", "2001:db8:1:2::6", "2001:db8:1:2::7", "2001:db8:1:2:ffff::8"} {
		for k := 0; k < 2; k++ {
			e, line := entry(ip, "GET", fmt.Sprintf("/.env%d", k), 404, time.Duration(n)*time.Minute, "ua")
			d.Observe(&e, int64(n), line)
			n++
		}
	}
	alerts := d.Flush().Alerts
	var got []string
	for _, a := range alerts {
		got = append(got, a.Scenario+" "+a.SourceIP+" "+a.Scope)
	}
	want := []string{"net 192.0.2.0/24 range", "net 2001:db8:1:2::/64 range"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("alerts %q, want %q", got, want)
	}
	b := NewBook(DefaultBookConfig())
	dec := b.AddAlert(alerts[0], rules.Scenario("net"))
	if dec == nil || dec.Scope != "Range" || dec.Value != "192.0.2.0/24" || time.Duration(dec.Until-dec.Created) != 2*time.Hour {
		t.Fatalf("decision %+v", dec)
	}
	if b.Alerts[0].Scope != ScopeRange {
		t.Errorf("book alert scope %q", b.Alerts[0].Scope)
	}
	for _, allow := range []string{"192.0.2.77", "192.0.0.0/16", "192.0.2.128/25"} {
		b := NewBook(BookConfig{Allow: []string{allow}, MaxEscalation: 4, MaxBan: "720h"})
		if dec := b.AddAlert(alerts[0], rules.Scenario("net")); dec != nil {
			t.Errorf("allow %s: the network holding it was banned: %+v", allow, dec)
		}
	}
	b = NewBook(BookConfig{Allow: []string{"192.0.3.1"}, MaxEscalation: 4, MaxBan: "720h"})
	if dec := b.AddAlert(alerts[0], rules.Scenario("net")); dec == nil {
		t.Error("an allowed address outside the network kept it from being banned")
	}
	if dec := b.AddAlert(alerts[1], rules.Scenario("net")); dec == nil || dec.Value != "2001:db8:1:2::/64" || dec.Scope != "Range" {
		t.Errorf("IPv6 decision %+v", dec)
	}
	if err := CheckRange(dec.Value, FloorPrefixV4, FloorPrefixV6); err != nil {
		t.Error(err)
	}
}

func TestRangeOf(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.77": "192.0.2.0/24", "::ffff:192.0.2.77": "192.0.2.0/24",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64", "fe80::1%eth0": "", "not-an-ip": "", "": "",
		"10.1.2.3": "", "192.168.1.9": "", "172.16.0.1": "", "100.64.12.1": "", "127.0.0.1": "", "fd00::1": "", "fe80::1": ""} {
		if got := RangeOf(in); got != want {
			t.Errorf("RangeOf(%q) = %q, want %q", in, got, want)
		}
	}
	if PartitionKey("192.0.2.77") != PartitionKey("192.0.2.1") || PartitionKey("x") != "x" {
		t.Error("PartitionKey does not keep a network together")
	}
}

// TestCorpus_DeterministicUnderBatching runs the attack corpus (window and
// range buckets, injections) whole and cut into random batches, each
// batch's delta through the binary form and applied to the state the next
// batch resumes from: the same alerts and the same state.
func TestCorpus_DeterministicUnderBatching(t *testing.T) {
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	f := accesslog.Auto()
	files, _ := filepath.Glob("testdata/attacks/*.log")
	var lines [][]byte
	for _, p := range files {
		for _, l := range readLog(t, p) {
			lines = append(lines, []byte(l))
		}
	}
	entries := make([]accesslog.Entry, len(lines))
	for i := range lines {
		if err := f.Parse(lines[i], &entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	whole := NewDetector(rules, 2, nil)
	for i := range lines {
		whole.Observe(&entries[i], int64(i), lines[i])
	}
	want := whole.Flush()
	ranges := 0
	for _, a := range want.Alerts {
		if a.Scope == ScopeRange {
			ranges++
		}
	}
	if len(want.Alerts) < 50 || ranges == 0 {
		t.Fatalf("%d alerts, %d on networks: the corpus does not exercise the rules", len(want.Alerts), ranges)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 2; trial++ {
		state := &PartitionState{}
		var alerts []Alert
		for i := 0; i < len(lines); {
			n := 1 + r.IntN(400)
			d := NewDetector(rules, 2, state.Clone())
			for j := i; j < min(i+n, len(lines)); j++ {
				d.Observe(&entries[j], int64(j), lines[j])
			}
			var got []Alert
			if trial == 0 {
				b, _ := json.Marshal(d.Flush())
				var delta Delta
				if err := json.Unmarshal(b, &delta); err != nil {
					t.Fatal(err)
				}
				state.Apply(&delta)
				got = delta.Alerts
			} else if got, err = state.ApplyBinary(d.Flush().AppendBinary(nil)); err != nil {
				t.Fatal(err)
			}
			alerts = append(alerts, got...)
			i += n
		}
		if !reflect.DeepEqual(alerts, want.Alerts) {
			t.Fatalf("trial %d: %d alerts in batches, %d whole", trial, len(alerts), len(want.Alerts))
		}
		if !reflect.DeepEqual(state.Buckets, whole.State().Buckets) {
			t.Fatalf("trial %d: bucket state differs", trial)
		}
	}
}

// TestWindow_CollectedWhenItsWindowIsOver: a window bucket is dropped once
// its newest slot has left the window (plus the grace), not before.
func TestWindow_CollectedWhenItsWindowIsOver(t *testing.T) {
	rules := mustParse(t, `
scenarios:
  - {name: slow, filter: {status: [404]}, trigger: window, window: 1h, capacity: 50}
`)
	d := NewDetector(rules, 0, nil)
	off := int64(0)
	obs := func(ip string, status int, at time.Duration) {
		e, line := entry(ip, "GET", "/x", status, at, "ua")
		d.Observe(&e, off, line)
		off++
	}
	obs("192.0.2.1", 404, 0)
	for off < gcEvery {
		obs("192.0.2.2", 200, 50*time.Minute)
	}
	if _, ok := d.State().Buckets["slow|192.0.2.1"]; !ok {
		t.Fatal("a window 50 minutes old was collected")
	}
	for off < 2*gcEvery {
		obs("192.0.2.2", 200, 90*time.Minute)
	}
	if _, ok := d.State().Buckets["slow|192.0.2.1"]; ok {
		t.Fatal("a window over for 20 minutes was kept")
	}
}

// TestSimulate: a simulating scenario, or a simulating book, raises its
// alerts and makes decisions that are marked simulated, never in force, and
// leave no history that would lengthen a real ban later.
func TestSimulate(t *testing.T) {
	rules := mustParse(t, `
scenarios:
  - {name: real, filter: {}, trigger: match, ban: 1h}
  - {name: trial, filter: {}, trigger: match, ban: 1h, simulate: true}
`)
	at := t0.UnixNano()
	b := NewBook(DefaultBookConfig())
	d1 := b.AddAlert(Alert{ID: "1", SourceIP: "192.0.2.1", Time: at}, rules.Scenario("trial"))
	if d1 == nil || !d1.Simulated || d1.Active(t0) || !b.Alerts[0].Simulated {
		t.Fatalf("simulated scenario: decision %+v, alert %+v", d1, b.Alerts[0])
	}
	if len(b.ActiveDecisions(t0)) != 0 || !d1.View(t0).Simulated {
		t.Error("a simulated decision is in force")
	}
	d2 := b.AddAlert(Alert{ID: "2", SourceIP: "192.0.2.1", Time: at + 1}, rules.Scenario("real"))
	if d2.Simulated || !d2.Active(t0) || time.Duration(d2.Until-d2.Created) != time.Hour {
		t.Errorf("real decision after a simulated one: %+v (simulations must not escalate)", d2)
	}
	cfg := DefaultBookConfig()
	cfg.Simulate = true
	g := NewBook(cfg)
	if d := g.AddAlert(Alert{ID: "3", SourceIP: "192.0.2.1", Time: at}, rules.Scenario("real")); d == nil || !d.Simulated || d.Active(t0) {
		t.Errorf("simulating book: %+v", d)
	}
}

// TestAllowRules: requests an allow rule lets through feed no scenario; a
// user agent rule with `from` holds only for its ranges.
func TestAllowRules(t *testing.T) {
	rules, err := Parse(BuiltinYAML(), []byte(`
allow:
  - {name: googlebot, ua_contains: [Googlebot], from: [66.249.64.0/19]}
  - {name: health, path: [/healthz], methods: [GET, HEAD]}
  - {name: uptime, header: {referer: [uptime.example]}, path_prefix: [/status/]}
`))
	if err != nil {
		t.Fatal(err)
	}
	gb := "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	for _, tc := range []struct {
		ip, path, ua, referer string
		allowed               string
	}{
		{"66.249.66.1", "/.env", gb, "-", "googlebot"},
		{"203.0.113.9", "/.env", gb, "-", ""}, // the same user agent from elsewhere
		{"203.0.113.9", "/healthz", "kube-probe/1.31", "-", "health"},
		{"203.0.113.9", "/healthz/../.env", "kube-probe/1.31", "-", ""},
		{"203.0.113.9", "/healthzx", "kube-probe/1.31", "-", ""},
		{"203.0.113.9", "/status/db", "x", "https://uptime.example/check", "uptime (on what the client says about itself: spoofable)"},
		{"203.0.113.9", "/status/db", "x", "-", ""},
	} {
		e, _ := entry(tc.ip, "GET", tc.path, 404, 0, tc.ua)
		e.Referer = []byte(tc.referer)
		by, _ := rules.Explain(&e)
		if by != tc.allowed {
			t.Errorf("%s %s %q: allowed by %q, want %q", tc.ip, tc.path, tc.ua, by, tc.allowed)
		}
		var ev Event
		if matched := rules.Evaluate(&e, nil, 0, &ev); matched == (tc.allowed != "") && tc.path != "/healthzx" && tc.path != "/status/db" {
			t.Errorf("%s %s: Evaluate matched %v", tc.ip, tc.path, matched)
		}
	}
	for doc, want := range map[string]string{
		`allow: [{name: x}]`:                                              "at least one",
		`allow: [{name: x, from: [nope]}]`:                                "neither an IP",
		`allow: [{name: x, header: {cookie: [a]}}]`:                       "access log holds",
		`allow: [{ua_contains: [a]}]`:                                     "no name",
		`scenarios: [{name: a, filter: {evidence: [b]}, trigger: match}]`: "not an enabled scenario",
	} {
		if _, err := Parse(BuiltinYAML(), []byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one about %s", doc, err, want)
		}
	}
}

// TestExplain: the explanation of a client names the requests that fed
// each scenario, why, and whether the scenario fired.
func TestExplain(t *testing.T) {
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	f := accesslog.Auto()
	x := &Explainer{IP: "192.0.2.66", Rules: rules, Parse: func(l []byte, e *accesslog.Entry) error { return f.Parse(l, e) }}
	d := NewDetector(rules, 0, nil)
	d.Trace(x.IP, x.Step)
	b := NewBook(DefaultBookConfig())
	for i, target := range []string{"/search?q=case+%28black%29+for+grinder", "/item?id=1%27+OR+%271%27%3D%271", "/item?id=-1+UNION+SELECT+1,2,3--+-", "/.env"} {
		e, line := entry(x.IP, "GET", target, 404, time.Duration(i)*time.Second, "Mozilla/5.0")
		d.Observe(&e, int64(i), line)
	}
	for _, a := range d.Flush().Alerts {
		b.AddAlert(a, rules.Scenario(a.Scenario))
	}
	var out bytes.Buffer
	x.Write(&out, b)
	s := out.String()
	for _, want := range []string{"Explain 192.0.2.66", "sqli in query parameter id", "http-sqli-probing", "fired 1 time",
		"http-sensitive-files", "did not fire", "Decisions: 1", "ban Ip 192.0.2.66"} {
		if !strings.Contains(s, want) {
			t.Errorf("explanation lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "case (black)") && strings.Contains(s, "line 1\n") {
		t.Errorf("a request that fed nothing is shown:\n%s", s)
	}
}

// TestWindow_SlotsNeedNoExtra: a window bucket far from overflowing holds
// its slots in the bucket itself, with no Extra, in the detector, in its
// delta and in the state the delta applies to: an Extra for the slots was
// a second allocation for most buckets of a replica's state. One that
// takes samples has them in its Extra, whole.
func TestWindow_SlotsNeedNoExtra(t *testing.T) {
	rules := mustParse(t, `
scenarios:
  - {name: slow, filter: {status: [404]}, trigger: window, window: 1h, capacity: 50, blackhole: 1h}
  - {name: near, filter: {status: [404]}, trigger: window, window: 1h, capacity: 3, blackhole: 1h}
`)
	d := NewDetector(rules, 0, nil)
	for i := range 3 {
		e, line := entry("192.0.2.7", "GET", "/missing", 404, time.Duration(i)*time.Minute, "ua")
		d.Observe(&e, int64(i), line)
	}
	delta := d.Flush()
	var st PartitionState
	if _, err := st.ApplyBinary(delta.AppendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]map[string]*Bucket{"delta": delta.Buckets, "applied": st.Buckets, "detector": d.State().Buckets} {
		slow, near := in["slow|192.0.2.7"], in["near|192.0.2.7"]
		if slow == nil || near == nil {
			t.Fatalf("%s: buckets %v", name, in)
		}
		if len(slow.Keys) == 0 || slow.Extra != nil {
			t.Errorf("%s: far from overflowing: keys %v, extra %+v; want slots and no extra", name, slow.Keys, slow.Extra)
		}
		if len(near.Keys) == 0 || near.Extra == nil || len(near.Samples) != 3 {
			t.Errorf("%s: near overflowing: keys %v, extra %+v; want slots and 3 samples", name, near.Keys, near.Extra)
		}
	}
	if src := d.sources["192.0.2.7"]; src == nil || src.bucket(rules.byName["slow"]).Extra != nil {
		t.Error("the detector's own bucket far from overflowing has an extra")
	}
}
