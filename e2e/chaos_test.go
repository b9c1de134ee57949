package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wardenhq/warden/chaos"
	"github.com/wardenhq/warden/internal/testenv"
)

func chaosRun(t *testing.T, env []string, args ...string) (*chaos.Report, int, string) {
	t.Helper()
	return chaosRunWith(t, wardenBin(t), env, args...)
}

func chaosRunWith(t *testing.T, bin string, env []string, args ...string) (*chaos.Report, int, string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, append([]string{"chaos", "--report", dir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("warden chaos: %v\n%s", err, out)
		}
		code = ee.ExitCode()
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatalf("no report.json (exit %d):\n%s", code, out)
	}
	var rep chaos.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep, code, string(out)
}

// TestChaos_ShortTier is the chaos run of `make test`: 3 real agent
// processes and the broker, about a minute of traffic, every fault kind at
// least once, then every check.
func TestChaos_ShortTier(t *testing.T) {
	nft := testenv.Tool(t, "nft")
	testenv.NeedRoot(t, "the chaos short tier (partition faults through nft)")
	if out, err := exec.Command(nft, "list", "tables").CombinedOutput(); err != nil {
		t.Fatalf("partition faults need nft to work as root: %s list tables: %v\n%s", nft, err, out)
	}
	rep, code, out := chaosRun(t, nil, "--nodes", "3", "--duration", "55s", "--rate", "1000", "--seed", "7", "--every", "6s")
	t.Logf("\n%s", out[strings.Index(out, "Warden chaos run"):])
	if code != 0 || !rep.OK() {
		t.Fatalf("chaos run failed (exit %d)", code)
	}
	if rep.Semantics != "exactly-once" || rep.LostRecords != 0 || rep.DuplicatedRecords != 0 {
		t.Errorf("exactly-once: semantics %q, %d lost, %d duplicated", rep.Semantics, rep.LostRecords, rep.DuplicatedRecords)
	}
	kinds := map[string]bool{}
	for _, f := range rep.Faults {
		kinds[f.Kind] = true
	}
	for _, k := range chaos.AllFaults {
		if !kinds[k] {
			t.Errorf("fault kind %s never ran", k)
		}
	}
	if rep.InTopic < 30000 || rep.Alerts == 0 {
		t.Errorf("%d records, %d alerts: the run did too little", rep.InTopic, rep.Alerts)
	}
}

// TestChaos_CheckerCatchesEachViolation breaks the FSM on purpose through
// the test-only hook (a skipped commit, a commit applied twice, an offset
// moved back) and shows that the checker reports each as a failed check
// and the run exits non-zero.
func TestChaos_CheckerCatchesEachViolation(t *testing.T) {
	for fault, wantFailed := range map[string][]string{
		"skip-commit":  {"no record lost"},
		"double-apply": {"no record applied twice"},
		"offset-back":  {"no record applied twice", "commit history: offsets never back, one node per (partition, epoch)"},
		"hang-on-stop": {"graceful stops"},
		"skip-lines":   {"every line detected once"},
	} {
		t.Run(fault, func(t *testing.T) {
			rep, code, out := chaosRunWith(t, faultBin(t), []string{"WARDEN_TEST_FAULT=" + fault}, "--nodes", "3", "--duration", "10s", "--rate", "1500",
				"--faults", "none", "--partitions", "4", "--seed", "2")
			if code != 1 || rep.OK() {
				t.Fatalf("exit %d, verdict %s: the checker missed %s\n%s", code, rep.Verdict, fault, out)
			}
			failed := map[string]bool{}
			for _, c := range rep.Checks {
				if !c.OK {
					failed[c.Name] = true
					t.Logf("caught: %s: %s", c.Name, c.Detail)
				}
			}
			for _, name := range wantFailed {
				if !failed[name] {
					t.Errorf("check %q did not fail", name)
				}
			}
			if fault == "hang-on-stop" {
				// The agent that would not stop left its goroutines'
				// stacks in its log (SIGQUIT before SIGKILL).
				log, err := os.ReadFile(filepath.Join(rep.Dir, "n1.log"))
				if err != nil || !strings.Contains(string(log), "SIGQUIT") || !strings.Contains(string(log), "node.(*Node).Shutdown") {
					t.Errorf("n1.log holds no goroutine dump (err %v)", err)
				}
			}
		})
	}
}

var (
	faultBinOnce sync.Once
	faultBinPath string
	faultBinErr  error
)

// faultBin builds the test-only binary whose FSM can be told to break its
// rules ($WARDEN_TEST_FAULT, the wardenfault build tag).
func faultBin(t *testing.T) string {
	t.Helper()
	faultBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "warden-fault-bin-")
		if err != nil {
			faultBinErr = err
			return
		}
		faultBinPath = filepath.Join(dir, "warden")
		out, err := exec.Command("go", "build", "-tags", "wardenfault", "-o", faultBinPath, "../cmd/warden").CombinedOutput()
		if err != nil {
			faultBinErr = fmt.Errorf("go build -tags wardenfault: %v\n%s", err, out)
		}
	})
	if faultBinErr != nil {
		t.Fatal(faultBinErr)
	}
	return faultBinPath
}

// The release binary has no fault switch: the symbols of the fault build are
// not in it, and $WARDEN_TEST_FAULT changes nothing (the other half, that
// the fault build does break its rules, is TestChaos_CheckerCatchesEachViolation).
func TestRelease_BinaryHasNoTestFault(t *testing.T) {
	out, err := exec.Command("go", "tool", "nm", wardenBin(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool nm: %v\n%s", err, tail(out, 2000))
	}
	if strings.Contains(string(out), "fsm.testFault") {
		t.Errorf("the release binary holds fsm.testFault")
	}
	fout, err := exec.Command("go", "tool", "nm", faultBin(t)).CombinedOutput()
	if err != nil || !strings.Contains(string(fout), "fsm.testFault") {
		t.Fatalf("the fault build lacks fsm.testFault (so this check proves nothing): %v", err)
	}
	// Nor the node's crash after forwarding: its switch is not even a
	// string in the release binary.
	rel, err := os.ReadFile(wardenBin(t))
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.ReadFile(faultBin(t))
	if err != nil {
		t.Fatal(err)
	}
	const crash = "crash-after-forward"
	if bytes.Contains(rel, []byte(crash)) {
		t.Errorf("the release binary can be told %q", crash)
	}
	if !bytes.Contains(fb, []byte(crash)) {
		t.Fatalf("the fault build lacks %q (so this check proves nothing)", crash)
	}
}

// The three delivery semantics side by side, under the same kills: the
// short tier above shows exactly-once with nothing lost or repeated; here
// at-least-once repeats records and loses none, at-most-once loses records
// and repeats none, and each run passes (its checker counts instead of
// failing). At most once loses only what a kill finds between a batch's
// offsets and its results, a window of milliseconds that three kills can
// all miss: it runs again with the next seed, up to three times, until one
// run loses records; every run must repeat none.
func TestChaos_AtLeastAndAtMostOnceCountTheirCost(t *testing.T) {
	for _, sem := range []string{"at-least-once", "at-most-once"} {
		t.Run(sem, func(t *testing.T) {
			for seed := 3; ; seed++ {
				rep := semanticsRun(t, sem, seed)
				switch {
				case sem == "at-least-once":
					if rep.LostRecords != 0 || rep.DuplicatedRecords == 0 {
						t.Errorf("at-least-once after kills: %d lost, %d duplicated; want 0 lost and some duplicated", rep.LostRecords, rep.DuplicatedRecords)
					}
					return
				case rep.DuplicatedRecords != 0:
					t.Fatalf("at-most-once after kills (seed %d): %d duplicated; want none", seed, rep.DuplicatedRecords)
				case rep.LostRecords > 0:
					return
				case seed == 5:
					t.Fatalf("at-most-once after kills: no record lost in 3 runs (seeds 3-5); want some lost")
				}
				t.Logf("at-most-once, seed %d: no kill fell between a batch's offsets and its results; again with the next seed", seed)
			}
		})
	}
}

// semanticsRun is one chaos run of 15 s under kills with the given
// delivery semantics; it fails the test unless the run passes and its
// per-partition counts add up to its totals.
func semanticsRun(t *testing.T, sem string, seed int) *chaos.Report {
	t.Helper()
	rep, code, out := chaosRun(t, nil, "--nodes", "3", "--duration", "15s", "--rate", "1500", "--faults", "kill",
		"--every", "5s", "--partitions", "4", "--seed", strconv.Itoa(seed), "--semantics", sem)
	if i := strings.Index(out, "Semantics"); i >= 0 {
		t.Logf("%s", out[i:min(len(out), i+200)])
	}
	if code != 0 || !rep.OK() {
		t.Fatalf("exit %d, verdict %s\n%s", code, rep.Verdict, out)
	}
	if rep.Semantics != sem {
		t.Errorf("report semantics %q", rep.Semantics)
	}
	var lost, dup int64
	for _, pc := range rep.PerPartition {
		lost += pc.LostRecords
		dup += pc.DuplicatedRecords
	}
	if lost != rep.LostRecords || dup != rep.DuplicatedRecords {
		t.Errorf("per-partition counts %d/%d differ from the totals %d/%d", lost, dup, rep.LostRecords, rep.DuplicatedRecords)
	}
	return rep
}
