package detect

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/internal/testenv"
)

type hubCase struct {
	Case      string   `json:"case"`
	LogFile   string   `json:"log_file"`
	LogType   string   `json:"log_type"`
	Scenarios []string `json:"scenarios"`
	Expected  []struct {
		Scenario string   `json:"scenario"`
		Events   int      `json:"events"`
		Sources  []string `json:"sources"`
	} `json:"expected_alerts"`
}

// hubNames maps the names a case uses for a scenario (its file name in
// config.yaml, a typo in an expected result, an author's own copy) to the
// name the scenario declares, which Warden's alerts carry. CrowdSec's SQLi
// and XSS scenarios really are named with "probbing".
var hubNames = map[string]string{
	"crowdsecurity/http-sqli-probing":     "crowdsecurity/http-sqli-probbing-detection",
	"crowdsecurity/http-xss-probing":      "crowdsecurity/http-xss-probbing",
	"crowdsecurity/http-dos-swithcing-ua": "crowdsecurity/http-dos-switching-ua",
	"LePresidente/http-generic-401-bf":    "crowdsecurity/http-generic-bf",
}

func hubClass(name string) string {
	name = strings.Trim(strings.TrimSpace(name), `"`)
	name = strings.TrimPrefix(strings.TrimPrefix(name, "./"), "scenarios/")
	name = strings.TrimSuffix(name, ".yaml")
	if !strings.Contains(name, "/") {
		name = "crowdsecurity/" + name
	}
	if n, ok := hubNames[name]; ok {
		return n
	}
	return name
}

// runLines runs the built-in rules over lines as one partition, in order.
// clients are the client addresses of the lines that are access-log lines.
func runLines(t testing.TB, rules *Rules, lines []string) (alerts []Alert, parsed int, clients map[string]bool) {
	f := accesslog.Auto()
	d := NewDetector(rules, 0, nil)
	var e accesslog.Entry
	clients = map[string]bool{}
	for i, l := range lines {
		if f.Parse([]byte(l), &e) != nil {
			continue
		}
		parsed++
		clients[string(e.Client)] = true
		d.Observe(&e, int64(i), []byte(l))
	}
	return d.Flush().Alerts, parsed, clients
}

func readLog(t testing.TB, path string) []string {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestConformanceCrowdSecHub runs the built-in scenarios on every case of
// CrowdSec's hub tests whose log is an Apache or nginx access log, and
// compares per case and attack class which source IPs are alerted.
func TestConformanceCrowdSecHub(t *testing.T) {
	base := testenv.Data(t, "crowdsec-hub")
	raw, err := os.ReadFile(filepath.Join(base, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []hubCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	pass, applicable := 0, 0
	for _, c := range cases {
		if c.LogType != "apache2" && c.LogType != "nginx" {
			fmt.Fprintf(&report, "  n/a   %-34s log type %s is not an Apache or nginx access log\n", c.Case, c.LogType)
			continue
		}
		lines := readLog(t, filepath.Join(base, "tests", c.LogFile))
		alerts, parsed, clients := runLines(t, rules, lines)
		if parsed == 0 {
			fmt.Fprintf(&report, "  n/a   %-34s no line is an access-log line (an error log)\n", c.Case)
			continue
		}
		classes := map[string]map[string]bool{}
		for _, s := range c.Scenarios {
			classes[hubClass(s)] = map[string]bool{}
		}
		for _, a := range c.Expected {
			cl := hubClass(a.Scenario)
			if classes[cl] == nil {
				classes[cl] = map[string]bool{}
			}
			for _, ip := range a.Sources {
				if clients[ip] {
					classes[cl][ip] = true
				} else {
					// CrowdSec saw this source in a line of another log
					// type (an error log): not an access-log case.
					fmt.Fprintf(&report, "  note  %-34s %s from %s is only in lines that are not access-log lines\n", c.Case, cl, ip)
				}
			}
		}
		if len(classes) == 0 {
			fmt.Fprintf(&report, "  n/a   %-34s runs no scenario (a parser test); Warden raised %d alerts\n", c.Case, len(alerts))
			continue
		}
		applicable++
		got := map[string]map[string]bool{}
		for _, a := range alerts {
			if got[a.CrowdSec] == nil {
				got[a.CrowdSec] = map[string]bool{}
			}
			got[a.CrowdSec][a.SourceIP] = true
		}
		var diffs []string
		var names []string
		for cl := range classes {
			names = append(names, cl)
		}
		sort.Strings(names)
		for _, cl := range names {
			want, have := keysOf(classes[cl]), keysOf(got[cl])
			if strings.Join(want, ",") != strings.Join(have, ",") {
				diffs = append(diffs, fmt.Sprintf("%s: want %v, got %v", cl, want, have))
			}
		}
		if len(diffs) == 0 {
			pass++
			fmt.Fprintf(&report, "  pass  %-34s %s\n", c.Case, strings.Join(names, ", "))
		} else {
			fmt.Fprintf(&report, "  FAIL  %-34s %s\n", c.Case, strings.Join(diffs, "; "))
			t.Errorf("case %s: %s", c.Case, strings.Join(diffs, "; "))
		}
	}
	t.Logf("CrowdSec hub conformance: %d of %d applicable cases pass\n%s", pass, applicable, report.String())
}

func keysOf(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestBenignSample measures false positives on the elastic sample (real
// traffic, crawlers, no attacks): it reports every alert and fails if more
// than 1% of the sources are alerted.
func TestBenignSample(t *testing.T) {
	lines := readLog(t, testenv.Data(t, "elastic-apache/apache_logs"))
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	alerts, parsed, clients := runLines(t, rules, lines)
	by := map[string]map[string]bool{}
	for _, a := range alerts {
		if by[a.Scenario] == nil {
			by[a.Scenario] = map[string]bool{}
		}
		by[a.Scenario][a.SourceIP] = true
	}
	var rep strings.Builder
	sources := map[string]bool{}
	for s, ips := range by {
		fmt.Fprintf(&rep, "  %-32s %d sources: %v\n", s, len(ips), keysOf(ips))
		for ip := range ips {
			sources[ip] = true
		}
	}
	t.Logf("elastic sample: %d lines, %d clients; %d alerts on %d sources (%.2f%%)\n%s", parsed, len(clients), len(alerts), len(sources),
		float64(len(sources))*100/float64(len(clients)), rep.String())
	if parsed != 10000 {
		t.Fatalf("parsed %d lines of 10000", parsed)
	}
	if len(sources)*100 > len(clients) {
		t.Errorf("%d of %d benign sources alerted: more than 1%%", len(sources), len(clients))
	}
}
