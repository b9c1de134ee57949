package e2e

import (
	"bytes"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/testenv"
	"github.com/wardenhq/warden/workload"
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

// TestProcesses_LeaderPausedMidDrainLosesNoLine: the Raft leader paused
// (SIGSTOP) again and again while three agents drain a full topic through
// the repartition stage. Commits fail on every node, their workers stop in
// the middle of forwarding, and their successors forward the same lines
// again: every line still reaches detection exactly once, and the input
// counts every record once. With one producer shared by a node's workers
// (node.newWorkerProducer), lines were lost in one run of two; the
// deterministic check of that is TestForwarders_AStoppedWorkerLeavesNoHole.
func TestProcesses_LeaderPausedMidDrainLosesNoLine(t *testing.T) {
	const total, partitions = 1_000_000, 12
	// The agent's own batch interval: batches of tens of thousands of
	// lines, whose forwarding takes long enough to be stopped midway.
	flags := map[string][]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		flags[id] = []string{"--batch-interval", "200ms"}
	}
	c := newProcClusterIdle(t, 3, partitions, flags)
	gen := workload.New(1, 5000, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	fillTopic(t, c, total, func(int) (string, string) {
		line, ip := gen.Line()
		return ip, line
	})
	for _, id := range []string{"n1", "n2", "n3"} {
		c.startAgent(id, 3)
	}
	c.waitOwned(partitions, 60*time.Second)
	pauses := 0
	for ; pauses < 8 && !c.applied(total); pauses++ {
		var leader string
		waitFor(t, 30*time.Second, "a leader", func() bool {
			info, err := c.clusterInfo("n1")
			leader = info.Leader
			return err == nil && leader != ""
		})
		// Past Raft's timeouts (a heartbeat timeout of 300 ms), short of
		// gossip's suspicion: the others elect a leader, nothing moves.
		p := c.agents[leader].cmd.Process
		_ = p.Signal(syscall.SIGSTOP)
		time.Sleep(1500 * time.Millisecond)
		_ = p.Signal(syscall.SIGCONT)
		time.Sleep(500 * time.Millisecond)
	}
	var applied, dropped, records int64
	done := func() bool {
		ps, err := c.partitions("n1")
		if err != nil {
			return false
		}
		applied, dropped, records = 0, 0, 0
		for _, p := range ps {
			records += p.Records
			if p.ByClient != nil {
				applied += p.ByClient.Applied
				dropped += p.ByClient.Dropped
			}
		}
		return records == total && applied >= total
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
	}
	if records != total || applied != total {
		t.Fatalf("after %d pauses of the leader: the input counts %d records of %d, and %d lines reached detection (%d repeats dropped): want every line once",
			pauses, records, total, applied, dropped)
	}
	t.Logf("%d pauses of the leader: %d lines reached detection once, %d repeats dropped", pauses, applied, dropped)
}
