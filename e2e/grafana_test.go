package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wardenhq/warden/internal/testenv"
)

// metricName finds the series a PromQL expression reads (Warden's own and
// the Go client's process and runtime series; `up` is Prometheus's).
var metricName = regexp.MustCompile(`\b(?:warden|process|go)_[a-z0-9_]+\b`)

// grafanaQueries returns every query of the dashboard's panels, rows
// included, by panel title.
func grafanaQueries(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON", path)
	}
	type panel struct {
		Title   string  `json:"title"`
		Type    string  `json:"type"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var dash struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("%s: no title, uid or panels", path)
	}
	out := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				out[p.Title] = append(out[p.Title], tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	return out
}

// TestProcesses_GrafanaQueriesNameRealMetrics: examples/grafana/warden.json
// is valid JSON, and every metric its panels query is on the /metrics of a
// running node that has committed traffic; examples/prometheus.yml scrapes
// the three nodes of examples/cluster.
func TestProcesses_GrafanaQueriesNameRealMetrics(t *testing.T) {
	root := testenv.Root(t)
	queries := grafanaQueries(t, filepath.Join(root, "examples", "grafana", "warden.json"))
	want := map[string][]string{} // metric -> panels
	for title, exprs := range queries {
		for _, e := range exprs {
			names := metricName.FindAllString(e, -1)
			if len(names) == 0 && !strings.Contains(e, "up{") {
				t.Errorf("panel %q: no metric in %q", title, e)
			}
			for _, n := range names {
				want[n] = append(want[n], title)
			}
		}
	}

	c := newProcCluster(t, 1, 2)
	c.waitOwned(2, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 9)
	p.produce(300)
	c.waitApplied(p, 30*time.Second, "n1")
	// Lag is sampled once a second, with the topic's end offsets.
	var metrics string
	waitFor(t, 10*time.Second, "partition lag on /metrics", func() bool {
		metrics = string(httpGet(t, "http://"+c.specs["n1"].http+"/metrics"))
		return strings.Contains(metrics, "warden_partition_lag{")
	})
	have := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			have[line[:i]] = true
		}
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !have[n] {
			t.Errorf("%s (panels %q) is not on a node's /metrics", n, want[n])
		}
	}
	// The metrics an operator alerts on, by name and label.
	for _, s := range []string{`warden_raft_leader_changes_total `, `warden_commits_rejected_total{reason="fenced"} `,
		`warden_gossip_members{state="alive"} 1`, `warden_gossip_members{state="dead"} 0`, `warden_gossip_members{state="suspect"} 0`,
		`warden_partition_last_commit_age_seconds{partition="0"} `, `warden_raft_is_leader 1`} {
		if !strings.Contains(metrics, s) {
			t.Errorf("/metrics lacks %q", s)
		}
	}
	t.Logf("%d panels, %d metrics, all on /metrics", len(queries), len(names))

	b, err := os.ReadFile(filepath.Join(root, "examples", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &prom); err != nil {
		t.Fatalf("examples/prometheus.yml: %v", err)
	}
	if len(prom.ScrapeConfigs) != 1 || prom.ScrapeConfigs[0].JobName != "warden" || prom.ScrapeConfigs[0].MetricsPath != "/metrics" ||
		len(prom.ScrapeConfigs[0].StaticConfigs) != 1 ||
		strings.Join(prom.ScrapeConfigs[0].StaticConfigs[0].Targets, ",") != "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083" {
		t.Errorf("examples/prometheus.yml does not scrape the 3 nodes of examples/cluster: %+v", prom)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		b, err := os.ReadFile(filepath.Join(root, "examples", "cluster", id+".yaml"))
		if err != nil || !strings.Contains(string(b), "http: 127.0.0.1:808"+id[1:]) {
			t.Errorf("examples/cluster/%s.yaml does not serve HTTP on 127.0.0.1:808%s", id, id[1:])
		}
	}
}
