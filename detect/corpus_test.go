package detect

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The corpora in testdata/: benign/ holds traffic that must raise no
// alert (each file one kind of client that naive rules ban), attacks/ the
// attacks short buckets and substring lists miss, with attackers.txt
// saying who attacks.

// corpusAlerts runs the built-in rules over a file of the corpus.
func corpusAlerts(t *testing.T, path string) (alerts []Alert, clients map[string]bool) {
	t.Helper()
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	lines := readLog(t, path)
	alerts, parsed, clients := runLines(t, rules, lines)
	if parsed != len(lines) {
		t.Fatalf("%s: %d of %d lines parse", path, parsed, len(lines))
	}
	return alerts, clients
}

// TestBenignCorpus_NoAlert: no client of the benign corpus is alerted:
// natural-language searches with SQL and HTML words, an office NAT, a page
// of missing images, a health checker, a fast API client, a user mistyping
// a password.
func TestBenignCorpus_NoAlert(t *testing.T) {
	files, _ := filepath.Glob("testdata/benign/*.log")
	if len(files) < 6 {
		t.Fatalf("benign corpus: %d files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			alerts, clients := corpusAlerts(t, f)
			for _, a := range alerts {
				t.Errorf("%s alerted %s (%d events): %s", a.Scenario, a.SourceIP, a.Events, strings.Join(a.Samples, " | "))
			}
			t.Logf("%d clients, %d alerts", len(clients), len(alerts))
		})
	}
}

// attacker is one line of testdata/attacks/attackers.txt.
type attacker struct {
	source, family, file string
}

func readAttackers(t *testing.T) []attacker {
	t.Helper()
	fh, err := os.Open("testdata/attacks/attackers.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []attacker
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("attackers.txt: %q: want source family file", l)
		}
		out = append(out, attacker{f[0], f[1], f[2]})
	}
	return out
}

// TestAttackCorpus_AttackersAlerted: at least 95% of the attackers of the
// attack corpus are alerted (a network as a whole for a distributed scan),
// and no other client is.
func TestAttackCorpus_AttackersAlerted(t *testing.T) {
	atk := readAttackers(t)
	byFile := map[string][]attacker{}
	for _, a := range atk {
		byFile[a.file] = append(byFile[a.file], a)
	}
	var files []string
	for f := range byFile {
		files = append(files, f)
	}
	sort.Strings(files)
	caught, total := 0, 0
	families := map[string][2]int{}
	var report strings.Builder
	for _, f := range files {
		alerts, _ := corpusAlerts(t, filepath.Join("testdata/attacks", f))
		alerted := map[string][]string{}
		for _, a := range alerts {
			alerted[a.SourceIP] = append(alerted[a.SourceIP], a.Scenario)
		}
		want := map[string]bool{}
		for _, a := range byFile[f] {
			want[a.source] = true
			total++
			fc := families[a.family]
			fc[1]++
			if len(alerted[a.source]) > 0 {
				caught++
				fc[0]++
			} else {
				fmt.Fprintf(&report, "  missed %-20s %-18s %s\n", a.source, a.family, f)
			}
			families[a.family] = fc
		}
		for src, sc := range alerted {
			// An address of an attacking network may be alerted on its own.
			if !want[src] && !want[RangeOf(src)] {
				t.Errorf("%s: %s is not an attacker and was alerted by %v", f, src, sc)
			}
		}
	}
	var fams []string
	for f := range families {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	for _, f := range fams {
		fmt.Fprintf(&report, "  %-22s %d/%d\n", f, families[f][0], families[f][1])
	}
	t.Logf("attack corpus: %d of %d attackers alerted\n%s", caught, total, report.String())
	if caught*100 < total*95 {
		t.Errorf("%d of %d attackers alerted: under 95%%", caught, total)
	}
}
