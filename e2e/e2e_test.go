package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/testenv"
	"github.com/wardenhq/warden/node"
)

func TestProcesses_SIGKILLMidStreamLosesAndRepeatsNothing(t *testing.T) {
	c := newProcCluster(t, 3, 12)
	c.waitOwned(12, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 7)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			p.produce(1000)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// SIGKILL a follower that owns partitions, mid-stream, then restart it.
	waitFor(t, 20*time.Second, "records committing", func() bool {
		parts, err := c.partitions("n1")
		if err != nil {
			return false
		}
		var n int64
		for _, p := range parts {
			n += p.Records
		}
		return n > 2000
	})
	ci, err := c.clusterInfo("n1")
	if err != nil {
		t.Fatal(err)
	}
	victim := "n2"
	if ci.Leader == victim {
		victim = "n3"
	}
	c.killAgent(victim)
	time.Sleep(500 * time.Millisecond)
	c.startAgent(victim, 3)
	<-done
	p.produce(5000)

	var why string
	waitFor(t, 60*time.Second, "every partition's digest equal to the producer's", func() bool {
		parts, err := c.partitions("n1")
		if err != nil {
			return false
		}
		var ok bool
		ok, why = p.matches(parts)
		return ok
	})
	// Every node serves the same figures.
	for id := range c.specs {
		waitFor(t, 20*time.Second, id+" agrees", func() bool {
			parts, err := c.partitions(id)
			if err != nil {
				return false
			}
			ok, _ := p.matches(parts)
			return ok
		})
	}
	_ = why
	// And `warden status` shows it the way an operator reads it.
	out, err := exec.Command(wardenBin(t), "status", "--addr", "http://"+c.specs[victim].http).CombinedOutput()
	if err != nil {
		t.Fatalf("warden status: %v\n%s", err, out)
	}
	for _, want := range []string{"Leader: n", "COMMITTED-OFFSET", "LAG", "alive", "25000 records applied, total lag 0"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
}

func TestProcesses_KcatTalksToTheEmbeddedBroker(t *testing.T) {
	kcat := testenv.Tool(t, "kcat")
	dir := t.TempDir()
	addr := freeAddr(t)
	start := func() *proc {
		return startProc(t, dir, "broker", "broker", "--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--topic", "t", "--partitions", "3")
	}
	b := start()
	kc := func(stdin string, args ...string) string {
		cmd := exec.Command(kcat, append([]string{"-b", addr, "-t", "t"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	waitFor(t, 15*time.Second, "broker answering kcat metadata", func() bool {
		out, err := exec.Command(kcat, "-b", addr, "-L", "-t", "t").CombinedOutput()
		return err == nil && bytes.Contains(out, []byte("3 partitions"))
	})
	kc("10.0.0.1:line one\n10.0.0.2:line two\n10.0.0.1:line three\n", "-P", "-K:")
	read := func() []string {
		out := kc("", "-C", "-e", "-q", "-f", "%k=%s\n")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		sort.Strings(lines)
		return lines
	}
	want := "10.0.0.1=line one,10.0.0.1=line three,10.0.0.2=line two"
	if got := strings.Join(read(), ","); got != want {
		t.Fatalf("kcat read back %q, want %q", got, want)
	}
	// Records survive a broker restart on the same data dir.
	_ = b.cmd.Process.Signal(os.Interrupt)
	<-b.done
	b = start()
	defer b.kill()
	waitFor(t, 15*time.Second, "broker back", func() bool {
		out, err := exec.Command(kcat, "-b", addr, "-L", "-t", "t").CombinedOutput()
		return err == nil && bytes.Contains(out, []byte("3 partitions"))
	})
	if got := strings.Join(read(), ","); got != want {
		t.Fatalf("after restart kcat read %q, want %q", got, want)
	}
}

func TestCLI_BadInputGivesOneClearLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"agent", "--id", "x", "--raft", freeAddr(t), "--gossip", freeAddr(t), "--http", freeAddr(t)}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"agent", "--frobnicate"}, "unknown flag: --frobnicate"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"data dir is a file", append(base, "--data-dir", file), "is a file, not a directory"},
		{"unwritable data dir", append(base, "--data-dir", "/proc/warden"), "--data-dir /proc/warden"},
		{"malformed join", append(base, "--data-dir", filepath.Join(dir, "d1"), "--join", "nohost"), `--join: "nohost" is not host:port`},
		{"bad port", append(base[:7], "--http", "127.0.0.1:99999", "--data-dir", filepath.Join(dir, "d2")), "--http"},
		{"missing id", []string{"agent", "--data-dir", filepath.Join(dir, "d3")}, "--id is required"},
		{"bad voters", append(base, "--data-dir", filepath.Join(dir, "d4"), "--voters", "4"), "--voters must be 1, 3 or 5"},
		{"bad gossip key", append(base, "--data-dir", filepath.Join(dir, "d5"), "--gossip-key", "short"), "--gossip-key"},
		{"broker without data dir", []string{"broker", "--listen", freeAddr(t)}, "--data-dir is required"},
		{"ship missing file", []string{"ship", filepath.Join(dir, "nope.log")}, "cannot read"},
		{"status unreachable", []string{"status", "--addr", "http://" + freeAddr(t)}, "cannot reach"},
		{"agent bad log format", append(base, "--data-dir", filepath.Join(dir, "d6"), "--log-format", `%h %Z %t`), "unknown directive %Z at position 4"},
		{"agent short retention", append(base, "--data-dir", filepath.Join(dir, "d7"), "--retention", "5s"), "--retention"},
		{"analyze no file", []string{"analyze", "--json"}, "name at least one log file"},
		{"analyze missing file", []string{"analyze", filepath.Join(dir, "nope.log")}, "no such file"},
		{"analyze bad format", []string{"analyze", "--log-format", `%h %{Foo}y %t`, file}, "unknown directive %{Foo}y"},
		{"analyze unknown preset", []string{"analyze", "--log-format", "combind", file}, `unknown log format "combind"`},
		{"analyze bad from", []string{"analyze", "--from", "yesterday", file}, `--from "yesterday"`},
		{"analyze undetectable", []string{"analyze", file}, "could not detect the log format"},
		{"analyze directory", []string{"analyze", dir}, "is a directory"},
		{"chaos unknown fault", []string{"chaos", "--faults", "kill,meteor"}, `unknown fault "meteor"`},
		{"chaos bad nodes", []string{"chaos", "--nodes", "0", "--faults", "none"}, "--nodes 0"},
		{"agent bad rules", append(base, "--data-dir", filepath.Join(dir, "d8"), "--rules", file), "--rules"},
		{"agent bad allow", append(base, "--data-dir", filepath.Join(dir, "d9"), "--allow", "10.0.0.0/99"), "--allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(wardenBin(t), tt.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatalf("exit 0 for %v", tt.args)
			}
			msg := strings.TrimSpace(stderr.String())
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("want one line on stderr, got:\n%s", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("stderr %q lacks %q", msg, tt.want)
			}
			if strings.Contains(msg, "panic") || stdout.Len() > 0 {
				t.Errorf("unexpected output: stdout %q stderr %q", stdout.String(), msg)
			}
		})
	}
}

func TestProcesses_UnreachableJoinTargetKeepsNodeUpAndRetrying(t *testing.T) {
	dir := t.TempDir()
	http := freeAddr(t)
	p := startProc(t, dir, "lonely", "agent", "--id", "lonely", "--data-dir", filepath.Join(dir, "d"), "--raft", freeAddr(t),
		"--gossip", freeAddr(t), "--http", http, "--brokers", freeAddr(t), "--join", freeAddr(t))
	defer p.kill()
	waitFor(t, 10*time.Second, "healthz up", func() bool {
		var v map[string]string
		return getJSON("http://"+http+"/healthz", &v) == nil
	})
	// Not ready (no leader), yet up, retrying, and logging why.
	resp, err := httpClient.Get("http://" + http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("readyz = %d, want 503", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "a retry logged", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "lonely.log"))
		return bytes.Count(b, []byte("cannot reach any join address")) >= 2
	})
	if !p.alive() {
		t.Fatal("the node exited")
	}
}

// BenchmarkFailover SIGKILLs a partition-owning follower 20 times (and the
// leader 20 times; $WARDEN_BENCH_KILLS to change) and reports how long its
// partitions take to commit again on the other nodes: for each kill, the
// time until every one of them has (the slowest partition); median and
// worst over the kills.
func BenchmarkFailover(b *testing.B) {
	kills := 20
	if v := os.Getenv("WARDEN_BENCH_KILLS"); v != "" {
		fmt.Sscan(v, &kills)
	}
	figures := map[string]any{"kills": kills, "target_median_s": 0.5, "target_worst_s": 1.0}
	defer func() {
		if len(figures) > 3 {
			saveResult(b, "failover", figures)
		}
	}()
	for _, target := range []string{"follower", "leader"} {
		b.Run(target, func(b *testing.B) {
			c := newProcCluster(b, 3, 12)
			pr := newProducer(b, c.broker, c.topic, 11)
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					pr.produce(200)
					time.Sleep(20 * time.Millisecond)
				}
			}()
			defer close(stop)
			var times []time.Duration
			for k := 0; k < kills; k++ {
				observer, victim := pickVictim(b, c, target == "leader")
				// Settled: the same owners and epochs over 300 ms, and every
				// partition committing under them.
				var before []node.PartitionInfo
				waitFor(b, 30*time.Second, "every partition owned and committing", func() bool {
					first, err := c.partitions(observer)
					if err != nil || len(first) != 12 {
						return false
					}
					time.Sleep(300 * time.Millisecond)
					before, err = c.partitions(observer)
					if err != nil || len(before) != 12 {
						return false
					}
					for i, p := range before {
						if p.Owner == "" || p.Owner != first[i].Owner || p.Epoch != first[i].Epoch || p.Committed <= first[i].Committed {
							return false
						}
					}
					return true
				})
				start := time.Now()
				c.killAgent(victim)
				waitFor(b, 30*time.Second, "victim's partitions committing elsewhere", func() bool {
					parts, err := c.partitions(observer)
					if err != nil {
						return false
					}
					moved := 0
					for i, p := range parts {
						if before[i].Owner != victim {
							continue
						}
						// Recovered: owned elsewhere under a new epoch, and committing.
						if p.Owner == victim || p.Owner == "" || p.Epoch <= before[i].Epoch || p.Committed <= before[i].Committed {
							return false
						}
						moved++
					}
					return moved > 0
				})
				times = append(times, time.Since(start))
				c.startAgent(victim, 3)
				waitFor(b, 30*time.Second, "victim back and the cluster rebalanced", func() bool {
					parts, err := c.partitions(observer)
					if err != nil {
						return false
					}
					owned := map[string]int{}
					for _, p := range parts {
						owned[p.Owner]++
					}
					return owned["n1"] == 4 && owned["n2"] == 4 && owned["n3"] == 4
				})
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			med, worst := times[len(times)/2], times[len(times)-1]
			b.ReportMetric(med.Seconds(), "median-s")
			b.ReportMetric(worst.Seconds(), "worst-s")
			fmt.Printf("failover (%s SIGKILL, %d kills): median %.2fs, worst %.2fs, all %v\n", target, len(times), med.Seconds(), worst.Seconds(), times)
			figures[target+"_median_s"] = round2(med.Seconds())
			figures[target+"_worst_s"] = round2(worst.Seconds())
		})
	}
}

// pickVictim returns a live observer and a victim: the leader, or a
// follower that owns partitions.
func pickVictim(b testing.TB, c *procCluster, leader bool) (observer, victim string) {
	var ci = struct{ Leader string }{}
	waitFor(b, 30*time.Second, "a leader", func() bool {
		for id := range c.agents {
			info, err := c.clusterInfo(id)
			if err == nil && info.Leader != "" {
				ci.Leader = info.Leader
				return true
			}
		}
		return false
	})
	for id := range c.agents {
		if leader && id == ci.Leader || !leader && id != ci.Leader && victim == "" {
			victim = id
		}
	}
	for id := range c.agents {
		if id != victim {
			observer = id
		}
	}
	return observer, victim
}

// A node that was reaped while down, restarted with its data dir and a
// --join that names only its own gossip address, finds its cluster again
// (it remembers its peers) and is added back.
func TestProcesses_ReapedNodeRestartedFindsItsCluster(t *testing.T) {
	// No snapshot, so the restarted node's replicated state is empty until
	// it reaches a leader: only what it remembered can lead it back.
	noSnap := []string{"--raft-snapshot-entries", "1000000"}
	c := newProcClusterWith(t, 3, 4, map[string][]string{"n1": noSnap, "n2": noSnap, "n3": noSnap})
	c.waitOwned(4, 30*time.Second)
	time.Sleep(3 * time.Second) // the nodes write down their peers
	c.killAgent("n3")
	waitFor(t, 30*time.Second, "n3 reaped", func() bool {
		ci, err := c.clusterInfo("n1")
		if err != nil {
			return false
		}
		for _, m := range ci.Members {
			if m.ID == "n3" {
				return false
			}
		}
		return true
	})
	// Past the time the others still gossip to a dead member (5 s).
	time.Sleep(8 * time.Second)
	s := c.specs["n3"]
	f := c.cl.Flags(c.cl.Agent("n3"))
	f.BatchInterval, f.ReapAfter, f.Join = 50*time.Millisecond, 5*time.Second, []string{s.gossip}
	f.Extra = []string{"--raft-snapshot-entries", "1000000"}
	c.startAgentWith("n3", f)
	waitFor(t, 30*time.Second, "n3 back in the cluster and ready", func() bool {
		resp, err := httpClient.Get("http://" + s.http + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		ci, err := c.clusterInfo("n1")
		if err != nil || resp.StatusCode != 200 {
			return false
		}
		for _, m := range ci.Members {
			if m.ID == "n3" {
				return true
			}
		}
		return false
	})
	p := newProducer(t, c.broker, c.topic, 4)
	p.produce(400)
	c.waitApplied(p, 30*time.Second, "n1", "n2", "n3")
	for _, id := range []string{"n1", "n3"} {
		parts, err := c.partitions(id)
		if err != nil {
			t.Fatal(err)
		}
		for _, pi := range parts {
			if pi.LogEnd >= 0 && pi.LogEnd < pi.Committed {
				t.Errorf("%s partition %d: log end %d below committed %d", id, pi.Partition, pi.LogEnd, pi.Committed)
			}
		}
	}
}
