package e2e

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/testenv"
)

// TestProcesses_FirstStageCrashAfterForwardRepeatsNothing: a first-stage
// worker that dies (SIGKILL, from the test-only fault build) after its
// lines reached the repartition topic and before its batch committed makes
// its successor forward them again; the second stage drops every repeat:
// each line reaches detection exactly once (the applied count equals the
// lines), the input's digests count each record once, and the figures and
// alerts equal warden analyze's.
func TestProcesses_FirstStageCrashAfterForwardRepeatsNothing(t *testing.T) {
	bin := faultBin(t)
	path, lines := attackLog(t, 12000)
	aout, err := exec.Command(bin, "analyze", "--json", "--doc", "alerts", "--quiet", path).Output()
	if err != nil {
		t.Fatalf("analyze: %v", err)
	}
	want := alertPairs(t, aout)
	wantStats, err := exec.Command(bin, "analyze", "--json", "--top", "0", "--quiet", path).Output()
	if err != nil {
		t.Fatalf("analyze: %v", err)
	}
	// Every agent inherits the fault; each node crashes once, on its first
	// forwarded batch.
	t.Setenv("WARDEN_TEST_FAULT", "crash-after-forward")
	c := newProcClusterIdle(t, 3, 6, nil)
	c.bin = bin
	for _, id := range []string{"n1", "n2", "n3"} {
		c.startAgent(id, 3)
	}
	c.waitOwned(6, 30*time.Second)
	if out, err := exec.Command(testenv.Tool(t, "kcat"), "-P", "-b", c.broker, "-t", c.topic, "-X", "topic.partitioner=random", "-l", path).CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	// Restart the nodes that crashed (as a supervisor would) until none
	// does any more: the file in each data dir keeps the fault to once.
	crashed := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range []string{"n1", "n2", "n3"} {
			if !c.agents[id].alive() {
				crashed[id] = true
				c.startAgent(id, 3)
			}
		}
		if len(crashed) > 0 && c.applied(len(lines)) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(crashed) == 0 {
		t.Fatal("no node crashed after forwarding: the fault did not fire")
	}
	var applied, dropped, records int64
	waitFor(t, 60*time.Second, "every line applied once", func() bool { return c.applied(len(lines)) })
	ps, err := c.partitions("n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		records += p.Records
		applied += p.ByClient.Applied
		dropped += p.ByClient.Dropped
	}
	if records != int64(len(lines)) {
		t.Errorf("the input's digests count %d records, want %d", records, len(lines))
	}
	if applied != int64(len(lines)) || dropped == 0 {
		t.Errorf("the second stage applied %d lines of %d and dropped %d repeats: want every line once, and repeats dropped", applied, len(lines), dropped)
	}
	base := "http://" + c.specs["n1"].http
	var got []string
	var stats []byte
	waitFor(t, 30*time.Second, "the figures and alerts of analyze", func() bool {
		stats, _ = getRawURL(base + "/v1/stats?top=0")
		doc, err := getRawURL(base + "/v1/alerts")
		if err == nil {
			got = alertPairs(t, doc)
		}
		return bytes.Equal(stats, wantStats) && strings.Join(got, "\n") == strings.Join(want, "\n")
	})
	t.Logf("crashed after forwarding: %v; %d lines applied once, %d repeats dropped; %d (scenario, source) pairs as analyze", crashed, applied, dropped, len(got))
}

// applied reports whether the second stage has taken n lines in all.
func (c *procCluster) applied(n int) bool {
	ps, err := c.partitions("n1")
	if err != nil {
		return false
	}
	var sum int64
	for _, p := range ps {
		if p.ByClient == nil {
			return false
		}
		sum += p.ByClient.Applied
	}
	return sum >= int64(n)
}
