package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func entry(ip, method, path string, status int, at time.Duration, ua string) (accesslog.Entry, []byte) {
	line := fmt.Sprintf(`%s - - [%s] "%s %s HTTP/1.1" %d 10 "-" "%s"`, ip, t0.Add(at).Format("02/Jan/2006:15:04:05 -0700"), method, path, status, ua)
	var e accesslog.Entry
	f, _ := accesslog.Lookup("combined")
	if err := f.Parse([]byte(line), &e); err != nil {
		panic(err)
	}
	return e, []byte(line)
}

func TestLeakyBucketOverflowsAtCapacityPlusOne(t *testing.T) {
	rules, err := Parse([]byte(`
scenarios:
  - {name: bf, crowdsec: x/bf, filter: {status: [401]}, trigger: leaky, capacity: 3, leak: 10s, blackhole: 1m, ban: 1h}
  - {name: scan, filter: {status: [404]}, trigger: distinct, distinct: path, capacity: 2, leak: 10s, blackhole: 1m}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDetector(rules, 3, nil)
	obs := func(ip, path string, status int, at time.Duration) {
		e, line := entry(ip, "POST", path, status, at, "ua")
		d.Observe(&e, int64(at/time.Second), line)
	}
	// Four 401s, one every 3 s: no leak yet, the fourth overflows.
	for i := 0; i < 4; i++ {
		obs("10.0.0.1", "/login", 401, time.Duration(i*3)*time.Second)
	}
	// Leaking: one every 10 s, so four spread over 40 s never overflow.
	for i := 0; i < 4; i++ {
		obs("10.0.0.2", "/login", 401, time.Duration(i*11)*time.Second)
	}
	// Distinct: the same path twice counts once.
	for _, p := range []string{"/a", "/a", "/b", "/b", "/c"} {
		obs("10.0.0.3", p, 404, 0)
	}
	// Blackhole: after an alert, more 401s within a minute raise none.
	for i := 0; i < 8; i++ {
		obs("10.0.0.1", "/login", 401, time.Duration(20+i)*time.Second)
	}
	alerts := d.Flush().Alerts
	var got []string
	for _, a := range alerts {
		got = append(got, fmt.Sprintf("%s %s %d %v", a.Scenario, a.SourceIP, a.Events, a.Offsets))
	}
	want := []string{"bf 10.0.0.1 4 [0 10]", "scan 10.0.0.3 3 [0 1]"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("alerts %q, want %q", got, want)
	}
	if alerts[0].CrowdSec != "x/bf" || alerts[0].Partition != 3 || len(alerts[0].Samples) != 3 || alerts[0].FirstSeen != "2026-11-27T10:00:00Z" {
		t.Errorf("alert fields %+v", alerts[0])
	}
}

// TestDetectorDeterministicUnderBatching runs the same records whole and cut
// into random batches, each batch's delta through JSON and applied to a
// state the next batch resumes from, as workers and the FSM do.
func TestDetectorDeterministicUnderBatching(t *testing.T) {
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	type rec struct {
		e    accesslog.Entry
		line []byte
	}
	var recs []rec
	paths := []string{"/", "/.env", "/.git/config", "/wp-login.php", "/admin/", "/x?id=1%27%20union%20select%20", "/p?q=<script>", "/a", "/b", "/c", "/d"}
	for i := 0; i < 20000; i++ {
		ip := fmt.Sprintf("10.1.0.%d", r.IntN(30))
		st := []int{200, 404, 401, 403}[r.IntN(4)]
		e, line := entry(ip, []string{"GET", "POST"}[r.IntN(2)], paths[r.IntN(len(paths))], st, time.Duration(i)*50*time.Millisecond, fmt.Sprintf("ua%d", r.IntN(3)))
		recs = append(recs, rec{e, line})
	}
	whole := NewDetector(rules, 0, nil)
	for i := range recs {
		whole.Observe(&recs[i].e, int64(i), recs[i].line)
	}
	want := whole.Flush()
	if len(want.Alerts) < 10 {
		t.Fatalf("only %d alerts; the workload does not exercise the rules", len(want.Alerts))
	}
	for trial := 0; trial < 3; trial++ {
		state := &PartitionState{}
		var alerts []Alert
		for i := 0; i < len(recs); {
			n := 1 + r.IntN(2500)
			d := NewDetector(rules, 0, state.Clone())
			for j := i; j < min(i+n, len(recs)); j++ {
				d.Observe(&recs[j].e, int64(j), recs[j].line)
			}
			// Through JSON in the first trial, then through Raft's binary
			// form: decoded, and applied straight from the bytes.
			var delta Delta
			switch trial {
			case 0:
				b, _ := json.Marshal(d.Flush())
				if err := json.Unmarshal(b, &delta); err != nil {
					t.Fatal(err)
				}
				state.Apply(&delta)
			case 1:
				dd, err := DecodeDelta(d.Flush().AppendBinary(nil))
				if err != nil {
					t.Fatal(err)
				}
				delta = *dd
				state.Apply(&delta)
			default:
				var err error
				if delta.Alerts, err = state.ApplyBinary(d.Flush().AppendBinary(nil)); err != nil {
					t.Fatal(err)
				}
			}
			alerts = append(alerts, delta.Alerts...)
			i += n
		}
		if !reflect.DeepEqual(alerts, want.Alerts) {
			t.Fatalf("trial %d: %d alerts in batches, %d whole", trial, len(alerts), len(want.Alerts))
		}
		if !reflect.DeepEqual(state.Buckets, whole.State().Buckets) {
			t.Fatalf("trial %d: bucket state differs (%d vs %d buckets)", trial, len(state.Buckets), len(whole.State().Buckets))
		}
	}
}

func TestDecodingDefeatsTrivialEncodings(t *testing.T) {
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/x?q=UNION%20SELECT", "/x?q=union+select", "/x?q=%2575nion%2520select", "/x?q=UnIoN%20SeLeCt",
		"/%252E%252E%252Fetc%252Fpasswd", "/x?q=%3CScRiPt%3E", "/x?a=${jndi:ldap://x}", "/x?a=%24%7Bjndi%3Aldap%3A%2F%2Fx%7D"} {
		e, _ := entry("10.0.0.9", "GET", path, 404, 0, "ua")
		if len(rules.Signals(&e)) == 0 {
			t.Errorf("%s: no scenario sees it", path)
		}
	}
	e, _ := entry("10.0.0.9", "GET", "/products/union-selection-guide", 200, 0, "Mozilla/5.0")
	if s := rules.Signals(&e); len(s) != 0 {
		t.Errorf("benign path flagged by %s", s[0].Name)
	}
}

func TestRuleFileOverridesAndErrors(t *testing.T) {
	r, err := Parse(BuiltinYAML(), []byte(`
scenarios:
  - {name: http-flood, disabled: true}
  - {name: http-bad-user-agent, crowdsec: crowdsecurity/http-bad-user-agent, filter: {ua_contains: [evilbot]}, trigger: match, decision: captcha}
  - {name: my-rule, filter: {path_prefix: [/secret]}, trigger: match, ban: 10m}
`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Scenario("http-flood") != nil || r.Scenario("my-rule") == nil || r.Scenario("http-bad-user-agent").Decision != "captcha" {
		t.Error("override not applied")
	}
	for doc, want := range map[string]string{
		`scenarios: [{name: a, trigger: bucket}]`:                             "trigger",
		`scenarios: [{name: a, trigger: leaky, capacity: 0}]`:                 "capacity",
		`scenarios: [{name: a, trigger: match, filter: {path_regex: ["("]}}]`: "regex",
		`scenarios: [{name: a, trigger: match, ban: soon}]`:                   "not a duration",
		`scenarios: [{name: a, trigger: match, filter: {colour: [red]}}]`:     "colour",
		`scenarios: [{name: a, trigger: distinct, capacity: 2}]`:              "distinct",
	} {
		if _, err := Parse(BuiltinYAML(), []byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one about %s", doc, err, want)
		}
	}
}

func TestBookDecisions(t *testing.T) {
	rules, _ := Builtin()
	s := rules.Scenario("http-sensitive-files")
	b := NewBook(DefaultBookConfig())
	if err := b.SetConfig(BookConfig{Allow: []string{"192.0.2.0/24", "2001:db8::1"}, MaxEscalation: 4, MaxBan: "720h"}); err != nil {
		t.Fatal(err)
	}
	at := func(h int) int64 { return t0.Add(time.Duration(h) * time.Hour).UnixNano() }
	d1 := b.AddAlert(Alert{ID: "a1", SourceIP: "10.0.0.1", Time: at(0)}, s)
	d2 := b.AddAlert(Alert{ID: "a2", SourceIP: "10.0.0.1", Time: at(5)}, s)
	d3 := b.AddAlert(Alert{ID: "a3", SourceIP: "10.0.0.1", Time: at(10)}, s)
	if d1 == nil || d2 == nil || d3 == nil {
		t.Fatal("no decision")
	}
	if time.Duration(d1.Until-d1.Created) != 4*time.Hour || time.Duration(d2.Until-d2.Created) != 8*time.Hour || time.Duration(d3.Until-d3.Created) != 16*time.Hour {
		t.Errorf("escalation: %v %v %v", time.Duration(d1.Until-d1.Created), time.Duration(d2.Until-d2.Created), time.Duration(d3.Until-d3.Created))
	}
	if b.AddAlert(Alert{ID: "a4", SourceIP: "192.0.2.77", Time: at(1)}, s) != nil || b.AddAlert(Alert{ID: "a5", SourceIP: "2001:db8::1", Time: at(1)}, s) != nil {
		t.Error("allow-listed source got a decision")
	}
	if len(b.Alerts) != 5 || b.Alerts[4].Seq != 5 {
		t.Errorf("alerts %d, last seq %d", len(b.Alerts), b.Alerts[len(b.Alerts)-1].Seq)
	}
	if got := len(b.ActiveDecisions(t0.Add(11 * time.Hour))); got != 2 {
		t.Errorf("%d active at +11h, want 2 (d2 until +13h, d3 until +26h)", got)
	}
	m, err := b.AddManual("198.51.100.0/24", "", "abuse", at(11), time.Hour)
	if err != nil || m.Scope != "Range" || m.Origin != "manual" {
		t.Fatalf("manual: %+v %v", m, err)
	}
	if !b.Delete(m.ID) || b.Delete(m.ID) || len(b.ActiveDecisions(t0.Add(11*time.Hour))) != 2 {
		t.Error("delete")
	}
	for _, bad := range []string{"not-an-ip", "10.0.0.0/99"} {
		if _, err := b.AddManual(bad, "ban", "", at(0), time.Hour); err == nil {
			t.Errorf("manual %q accepted", bad)
		}
	}
	if _, err := ParseAllow([]string{"10.0.0.0/8", "nonsense"}); err == nil {
		t.Error("bad allow-list accepted")
	}
}

func TestGroupByVhostCountsEachSiteApart(t *testing.T) {
	rules, err := Parse([]byte(`
scenarios:
  - {name: per-site, filter: {status: [404]}, trigger: leaky, capacity: 2, leak: 1m, groupby: ip_vhost}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := accesslog.Lookup("vhost_combined")
	run := func(hosts ...string) []Alert {
		d := NewDetector(rules, 0, nil)
		for i, h := range hosts {
			line := fmt.Sprintf(`%s:443 10.0.0.1 - - [27/Nov/2026:10:00:0%d +0000] "GET /x HTTP/1.1" 404 1 "-" "ua"`, h, i)
			var e accesslog.Entry
			if err := f.Parse([]byte(line), &e); err != nil {
				t.Fatal(err)
			}
			d.Observe(&e, int64(i), []byte(line))
		}
		b, _ := json.Marshal(d.Flush())
		var delta Delta
		if err := json.Unmarshal(b, &delta); err != nil {
			t.Fatal(err)
		}
		return delta.Alerts
	}
	if a := run("a.example", "b.example", "a.example", "b.example"); len(a) != 0 {
		t.Errorf("two 404s on each of two sites raised %d alerts", len(a))
	}
	if a := run("a.example", "a.example", "a.example"); len(a) != 1 || a[0].SourceIP != "10.0.0.1" {
		t.Errorf("three 404s on one site: %+v", a)
	}
	if _, err := Parse([]byte(`scenarios: [{name: x, trigger: match, groupby: country}]`), nil); err == nil {
		t.Error("unknown groupby accepted")
	}
}

func TestSourcesAreBounded(t *testing.T) {
	rules, err := Parse([]byte(`scenarios: [{name: all, filter: {}, trigger: leaky, capacity: 1000, leak: 1h}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDetector(rules, 0, nil)
	d.maxSources = 100
	for i := 0; i < 3*gcEvery; i++ {
		e, line := entry(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "GET", "/", 200, time.Duration(i)*time.Millisecond, "ua")
		d.Observe(&e, int64(i), line)
	}
	d.Flush()
	if n := len(d.State().Buckets); n > 100+gcEvery {
		t.Errorf("%d sources kept, bound is 100 (+ one collection interval)", n)
	}
}

func FuzzDecodeDelta(f *testing.F) {
	d := &Delta{Partition: 3, Watermark: 99, Buckets: map[string]*Bucket{"a|1.2.3.4": {Level: 2, Keys: []uint64{1, 2}, Extra: &Extra{Samples: []string{"x"}}}, "b|1.2.3.4": nil},
		Alerts: []Alert{{ID: "i", Scenario: "s", SourceIP: "1.2.3.4", Samples: []string{"l"}}}}
	f.Add(d.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDelta(data)
		if err != nil {
			return
		}
		d2, err := DecodeDelta(d.AppendBinary(nil))
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("re-encoded delta differs: %v", err)
		}
	})
}

func TestCheckRange(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"0.0.0.0/0", false},
		{"::/0", false},
		{"1.0.0.0/7", false},
		{"1.0.0.0/8", true},
		{"203.0.113.7", true},
		{"203.0.113.0/24", true},
		{"2001::/31", false},
		{"2001:db8::/32", true},
		{"::ffff:0.0.0.0/96", false}, // every IPv4 client, in IPv6 notation
		{"::ffff:0:0/95", false},
		{"::ffff:10.0.0.0/104", true},
		{"not-a-range/x", true}, // AddManual reports it
	} {
		err := CheckRange(tc.value, FloorPrefixV4, FloorPrefixV6)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrRangeTooWide)) {
			t.Errorf("CheckRange(%q) = %v, want ok=%v", tc.value, err, tc.ok)
		}
	}
	if err := CheckRange("10.0.0.0/8", 16, 48); err == nil || !strings.Contains(err.Error(), "/16") {
		t.Errorf("a node's own limit: %v", err)
	}
	b := NewBook(DefaultBookConfig())
	for _, wide := range []string{"0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96"} {
		if d, err := b.AddManual(wide, "ban", "", 1, time.Hour); !errors.Is(err, ErrRangeTooWide) {
			t.Errorf("AddManual(%q) = %+v, %v; want ErrRangeTooWide", wide, d, err)
		}
	}
	if len(b.Decisions) != 0 {
		t.Fatalf("%d decisions after refusals", len(b.Decisions))
	}
}

// Alerts wait for the alerts topic past the kept number, up to
// MaxUnpublished; past that the oldest unpublished go, counted.
func TestBook_UnpublishedAlertsKeptThenBounded(t *testing.T) {
	cfg := DefaultBookConfig()
	cfg.MaxUnpublished = 30
	b := NewBook(cfg)
	b.Keep = 10
	add := func(n int) {
		for i := 0; i < n; i++ {
			b.AddAlert(Alert{ID: fmt.Sprint(b.NextSeq), SourceIP: "192.0.2.1", Time: int64(b.NextSeq)}, nil)
		}
	}
	add(25)
	if b.Unpublished() != 25 || len(b.Alerts) != 25 || len(b.AlertsSince(time.Time{})) != 10 {
		t.Fatalf("25 unpublished: kept %d, unpublished %d, API %d", len(b.Alerts), b.Unpublished(), len(b.AlertsSince(time.Time{})))
	}
	b.MarkPublished(20)
	if len(b.Alerts) != 10 || b.Alerts[0].Seq != 16 || b.Unpublished() != 5 {
		t.Fatalf("after marking 20: kept %d from seq %d, unpublished %d", len(b.Alerts), b.Alerts[0].Seq, b.Unpublished())
	}
	add(40) // 45 unpublished > 30
	if b.Unpublished() != 30 || b.UnpublishedDropped != 15 || b.Alerts[0].Seq != 36 {
		t.Fatalf("overflow: unpublished %d, dropped %d, first seq %d", b.Unpublished(), b.UnpublishedDropped, b.Alerts[0].Seq)
	}
}
