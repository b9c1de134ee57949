package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/detect"
)

// corpusLines reads every file of detect's attack corpus, merged in time
// order (each line's timestamp; the files all cover one day).
func corpusLines(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("../detect/testdata/attacks/*.log")
	if len(files) == 0 {
		t.Fatal("no attack corpus under detect/testdata/attacks")
	}
	var lines []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		fh.Close()
	}
	stamp := func(l string) string {
		i := strings.IndexByte(l, '[')
		return l[i : i+21]
	}
	sort.SliceStable(lines, func(i, j int) bool { return stamp(lines[i]) < stamp(lines[j]) })
	return lines
}

// TestProcesses_AttackCorpusSameAlertsAsAnalyze sends the attack corpus
// (handful-of-requests injections, slow scans, a /24 and a /64 of
// scanners, nested Log4Shell) through a 3-process cluster, keyed as ship
// keys it (by the client's network, detect.PartitionKey), and checks that
// every node raises the same (scenario, source) set as warden analyze on
// the topic's records, the network alerts included.
func TestProcesses_AttackCorpusSameAlertsAsAnalyze(t *testing.T) {
	c := newProcCluster(t, 3, 4)
	c.waitOwned(4, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 31)
	lines := corpusLines(t)
	for _, l := range lines {
		ip, _, _ := strings.Cut(l, " ")
		p.produceRaw(detect.PartitionKey(ip), l)
	}
	c.waitApplied(p, 90*time.Second, "n1", "n2", "n3")

	recs := readTopic(t, c.broker, c.topic)
	var file bytes.Buffer
	for part := int32(0); part < 4; part++ {
		for _, r := range recs[part] {
			file.Write(r.Value)
			file.WriteByte('\n')
		}
	}
	path := filepath.Join(t.TempDir(), "topic.log")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wardenBin(t), "analyze", "--json", "--doc", "alerts", "--quiet", path).Output()
	if err != nil {
		t.Fatalf("warden analyze: %v", err)
	}
	var want []detect.Alert
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	set := pairsOf
	wantSet := set(want)
	joined := strings.Join(wantSet, "\n")
	for _, must := range []string{"http-range-probing 203.0.113.0/24", "http-range-probing 2001:db8:85a3:4::/64"} {
		if !strings.Contains(joined, must) {
			t.Errorf("analyze raised no %q", must)
		}
	}
	if len(wantSet) < 60 {
		t.Fatalf("analyze raised only %d (scenario, source) pairs", len(wantSet))
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		var got []detect.Alert
		waitFor(t, 30*time.Second, id+" alerts", func() bool {
			got = alertsOf(t, c.specs[id].http)
			return len(set(got)) >= len(wantSet)
		})
		if g := strings.Join(set(got), "\n"); g != joined {
			t.Fatalf("%s: %d (scenario, source) pairs, analyze %d; they differ:\ncluster:\n%s\nanalyze:\n%s", id, len(set(got)), len(wantSet), g, joined)
		}
		for _, a := range got {
			if strings.Contains(a.SourceIP, "/") && a.Scope != "range" {
				t.Errorf("%s: alert on %s has scope %q", id, a.SourceIP, a.Scope)
			}
		}
	}
	var decisions []detect.DecisionView
	if err := getJSON("http://"+c.specs["n1"].http+"/v1/decisions?all=1", &decisions); err != nil {
		t.Fatal(err)
	}
	ranges := 0
	for _, d := range decisions {
		if d.Scope == "Range" {
			ranges++
		}
	}
	if ranges < 2 {
		t.Errorf("%d Range decisions, want the /24 and the /64", ranges)
	}
	t.Logf("%d lines, %d (scenario, source) pairs, %d Range decisions: every node agrees with warden analyze", len(lines), len(wantSet), ranges)
}
