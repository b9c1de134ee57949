package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/testenv"
	"github.com/wardenhq/warden/workload"
)

// alertPairs reads an alerts document as its sorted (scenario, source)
// pairs.
func alertPairs(tb testing.TB, doc []byte) []string {
	tb.Helper()
	var as []detect.Alert
	if err := json.Unmarshal(doc, &as); err != nil {
		tb.Fatalf("alerts document: %v\n%s", err, tail(doc, 500))
	}
	return pairsOf(as)
}

// pairsOf is the sorted distinct (scenario, source) pairs of alerts.
func pairsOf(as []detect.Alert) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range as {
		p := a.Scenario + " " + a.SourceIP
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// attackLog writes a reproducible log of benign traffic with a share of
// attacks from a few dozen sources, and returns its path and lines.
func attackLog(t *testing.T, n int) (string, []string) {
	g := workload.New(1515, 400, time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	g.AttackShare = 0.12
	lines := make([]string, n)
	for i := range lines {
		lines[i], _ = g.Line()
	}
	path := filepath.Join(t.TempDir(), "attack.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, lines
}

// TestProcesses_AlertsDoNotDependOnPartitioning: the same attack log,
// produced three ways into 12 partitions (keyed by client with warden
// ship; with no key through kcat, spread over every partition; keyed by a
// "web server" through kcat, so that three partitions hold everything and
// each client is spread over them), through a 3-node cluster with a node
// SIGKILLed mid-stream, raises the (scenario, source) alerts warden
// analyze raises on the file, and serves load figures byte-identical to
// analyze's.
func TestProcesses_AlertsDoNotDependOnPartitioning(t *testing.T) {
	path, lines := attackLog(t, 24000)
	aout, err := exec.Command(wardenBin(t), "analyze", "--json", "--doc", "alerts", "--quiet", path).Output()
	if err != nil {
		t.Fatalf("analyze: %v", err)
	}
	want := alertPairs(t, aout)
	if len(want) < 20 {
		t.Fatalf("analyze raises only %d (scenario, source) pairs: the workload is too tame for this test", len(want))
	}
	wantStats, err := exec.Command(wardenBin(t), "analyze", "--json", "--top", "0", "--quiet", path).Output()
	if err != nil {
		t.Fatalf("analyze: %v", err)
	}
	kcat := testenv.Tool(t, "kcat")
	half := len(lines) / 2
	writeLines := func(t *testing.T, ls []string, keyOf func(i int) string) string {
		var b strings.Builder
		for i, l := range ls {
			if keyOf != nil {
				b.WriteString(keyOf(i) + "\t")
			}
			b.WriteString(l + "\n")
		}
		p := filepath.Join(t.TempDir(), fmt.Sprintf("part-%d.log", len(ls)))
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	server := func(off int) func(int) string {
		return func(i int) string { return fmt.Sprintf("web%d.example.net", (off+i)%3+1) }
	}
	kcatNoKeys := func(t *testing.T, c *procCluster, ls []string, _ int) {
		p := writeLines(t, ls, nil)
		// No key: librdkafka spreads the lines over every partition.
		if out, err := exec.Command(kcat, "-P", "-b", c.broker, "-t", c.topic, "-X", "topic.partitioner=random", "-l", p).CombinedOutput(); err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
	}
	modes := []struct {
		name    string
		flags   []string // for every agent
		produce func(t *testing.T, c *procCluster, ls []string, off int)
		// misled: the cluster is told the input is keyed by client when
		// it is not: it must miss alerts, and say so.
		misled bool
	}{
		{"ship keyed by client", nil, func(t *testing.T, c *procCluster, ls []string, _ int) {
			p := writeLines(t, ls, nil)
			if out, err := exec.Command(wardenBin(t), "ship", "--brokers", c.broker, "--topic", c.topic, "--quiet", p).CombinedOutput(); err != nil {
				t.Fatalf("ship: %v\n%s", err, out)
			}
		}, false},
		{"kcat without keys", nil, kcatNoKeys, false},
		{"kcat keyed by web server", nil, func(t *testing.T, c *procCluster, ls []string, off int) {
			p := writeLines(t, ls, server(off))
			if out, err := exec.Command(kcat, "-P", "-b", c.broker, "-t", c.topic, "-K", "\t", "-l", p).CombinedOutput(); err != nil {
				t.Fatalf("kcat: %v\n%s", err, out)
			}
		}, false},
		{"kcat without keys, declared keyed by client", []string{"--input-keyed-by-client"}, kcatNoKeys, true},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			extra := map[string][]string{"n1": m.flags, "n2": m.flags, "n3": m.flags}
			c := newProcClusterIdle(t, 3, 12, extra)
			for _, id := range []string{"n1", "n2", "n3"} {
				c.startAgent(id, 3)
			}
			c.waitOwned(12, 30*time.Second)
			m.produce(t, c, lines[:half], 0)
			// Kill a node once the cluster has committed some of the first
			// half.
			waitFor(t, 30*time.Second, "commits", func() bool {
				ps, err := c.partitions("n1")
				if err != nil {
					return false
				}
				var sum int64
				for _, p := range ps {
					sum += p.Committed
				}
				return sum > int64(half)/4
			})
			c.killAgent("n2")
			m.produce(t, c, lines[half:], half)
			base := "http://" + c.specs["n1"].http
			if m.misled {
				// Detection per input partition sees a share of each
				// attacker: alerts go missing, and the nodes say why.
				waitFor(t, 60*time.Second, "every line counted", func() bool {
					stats, _ := getRawURL(base + "/v1/stats?top=0")
					return bytes.Equal(stats, wantStats)
				})
				time.Sleep(2 * time.Second) // the last batches' alerts
				var misplaced float64
				waitFor(t, 30*time.Second, "warden_clients_in_several_partitions above 0", func() bool {
					misplaced = metricValue(base, "warden_clients_in_several_partitions")
					return misplaced > 0
				})
				doc, err := getRawURL(base + "/v1/alerts")
				if err != nil {
					t.Fatal(err)
				}
				got := alertPairs(t, doc)
				if missing, _ := diffSets(want, got); len(missing) == 0 {
					t.Errorf("declared keyed by client with lines spread over partitions, yet the cluster raised every pair analyze raises (%d)", len(got))
				}
				t.Logf("%s: %d (scenario, source) pairs of analyze's %d; %v clients seen in several partitions", m.name, len(got), len(want), misplaced)
				return
			}
			var got []string
			var stats []byte
			deadline := time.Now().Add(90 * time.Second)
			for time.Now().Before(deadline) {
				stats, _ = getRawURL(base + "/v1/stats?top=0")
				doc, err := getRawURL(base + "/v1/alerts")
				if err == nil {
					got = alertPairs(t, doc)
				}
				if bytes.Equal(stats, wantStats) && strings.Join(got, "\n") == strings.Join(want, "\n") {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if !bytes.Equal(stats, wantStats) {
				t.Errorf("/v1/stats differs from warden analyze on the same lines")
			}
			if missing, extra := diffSets(want, got); len(missing) > 0 || len(extra) > 0 {
				t.Errorf("cluster raised %d (scenario, source) pairs, analyze %d\nmissing: %v\nextra: %v", len(got), len(want), missing, extra)
			}
			if ps, err := c.partitions("n1"); err == nil {
				var late, dropped, ooo, applied int64
				for _, p := range ps {
					late += p.Late
					if p.ByClient != nil {
						dropped += p.ByClient.Dropped
						ooo += p.ByClient.OutOfOrder
						applied += p.ByClient.Applied
					}
				}
				t.Logf("%s: %d (scenario, source) pairs (analyze %d); repartition: %d of %d lines applied, %d repeats dropped, %d out of order, %d late",
					m.name, len(got), len(want), applied, len(lines), dropped, ooo, late)
				if t.Failed() {
					b, _ := json.MarshalIndent(ps, "", " ")
					t.Logf("partitions: %s", b)
				}
			}
		})
	}
}

func diffSets(want, got []string) (missing, extra []string) {
	in := map[string]bool{}
	for _, g := range got {
		in[g] = true
	}
	for _, w := range want {
		if !in[w] {
			missing = append(missing, w)
		}
		delete(in, w)
	}
	for g := range in {
		extra = append(extra, g)
	}
	sort.Strings(extra)
	return missing, extra
}

// metricValue reads one unlabelled metric from a node's /metrics (-1 when
// absent).
func metricValue(base, name string) float64 {
	b, err := getRawURL(base + "/metrics")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f
			}
		}
	}
	return -1
}
