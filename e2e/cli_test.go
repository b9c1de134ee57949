package e2e

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wardenhq/warden/fsm"
)

// runCLI runs the binary with args and env additions; it returns stdout,
// stderr and the exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(wardenBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

var subcommands = []string{"demo", "broker", "agent", "ship", "analyze", "chaos", "status", "config", "config check", "keygen", "version", "completion"}

func TestCLI_EveryCommandHasHelpAndRefusesUnknownFlags(t *testing.T) {
	for _, sc := range subcommands {
		words := strings.Fields(sc)
		t.Run(strings.ReplaceAll(sc, " ", "_"), func(t *testing.T) {
			for _, h := range []string{"-h", "--help"} {
				out, errOut, code := runCLI(t, nil, append(words, h)...)
				if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
					t.Errorf("%s %s: exit %d, stdout %q, stderr %q", sc, h, code, out, errOut)
				}
				if sc != "version" && sc != "keygen" && sc != "config" && sc != "completion" && !strings.Contains(out, "  --") {
					t.Errorf("%s %s lists no --flags:\n%s", sc, h, out)
				}
			}
			out, _, code := runCLI(t, nil, append([]string{"help"}, words...)...)
			if code != 0 || !strings.Contains(out, "Usage:") {
				t.Errorf("warden help %s: exit %d, %q", sc, code, out)
			}
			_, errOut, code := runCLI(t, nil, append(words, "--frobnicate")...)
			if code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 ||
				!strings.Contains(errOut, "unknown flag: --frobnicate") || !strings.Contains(errOut, "--help") {
				t.Errorf("%s --frobnicate: exit %d, stderr %q", sc, code, errOut)
			}
		})
	}
}

func TestCLI_TypoSuggestsTheCommand(t *testing.T) {
	for typo, want := range map[string]string{"stauts": "status", "agnet": "agent", "analyse": "analyze", "shp": "ship"} {
		_, errOut, code := runCLI(t, nil, typo)
		if code != 2 || !strings.Contains(errOut, `unknown command "`+typo+`"`) || !strings.Contains(errOut, `did you mean "`+want+`"`) {
			t.Errorf("%s: exit %d, stderr %q", typo, code, errOut)
		}
	}
	// No command at all prints the help and exits 2.
	out, _, code := runCLI(t, nil)
	if code != 2 || !strings.Contains(out, "Available Commands") {
		t.Errorf("no command: exit %d, %q", code, out)
	}
}

func TestCLI_VersionAndCompletion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, code := runCLI(t, nil, args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "warden ") ||
			!strings.HasPrefix(lines[1], "commit ") || !strings.HasPrefix(lines[2], "go1.") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
	for shell, want := range map[string]string{"bash": "complete -o default", "zsh": "#compdef warden", "fish": "complete -c warden"} {
		out, _, code := runCLI(t, nil, "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, lacks %q", shell, code, want)
		}
	}
}

func TestCLI_StrayArgumentsRefused(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"status", "http://127.0.0.1:1"}, `did you mean --addr http://127.0.0.1:1?`},
		{[]string{"demo", "extra", "--duration", "1s"}, `unexpected argument "extra"`},
		{[]string{"agent", "n1"}, `unexpected argument "n1"`},
		{[]string{"broker", "x"}, `unexpected argument "x"`},
		{[]string{"chaos", "x"}, `unexpected argument "x"`},
		{[]string{"version", "x"}, `unexpected argument "x"`},
	}
	for _, tt := range tests {
		out, errOut, code := runCLI(t, nil, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q (want %q)", tt.args, code, out, errOut, tt.want)
		}
	}
}

// Flags go before or after positional arguments, as --flag value or
// --flag=value; the single-dash long form of earlier releases still works.
func TestCLI_FlagsAnywhereAndEqualsForm(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	lines := "10.0.0.1 - - [27/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 10 \"-\" \"curl\"\n" +
		"10.0.0.2 - - [27/Nov/2026:10:00:01 +0000] \"GET /a HTTP/1.1\" 404 5 \"-\" \"curl\"\n"
	if err := os.WriteFile(log, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, args := range [][]string{
		{"analyze", "--json", "--top", "3", log},
		{"analyze", log, "--json", "--top=3"},
		{"analyze", "--top=3", log, "--json"},
		{"analyze", "-json", "-top", "3", log},
	} {
		out, errOut, code := runCLI(t, nil, args...)
		if code != 0 || !strings.Contains(out, `"requests": 2`) {
			t.Fatalf("%v: exit %d, %s %s", args, code, out, errOut)
		}
		docs = append(docs, out)
	}
	for _, d := range docs[1:] {
		if d != docs[0] {
			t.Errorf("flag placement changed the result")
		}
	}

	broker := freeAddr(t)
	b := startProc(t, dir, "broker", "broker", "--listen="+broker, "--data-dir", filepath.Join(dir, "broker"), "--topic", "logs", "--partitions=2")
	defer b.kill()
	waitFor(t, 15*time.Second, "broker up", func() bool { return dialOK(broker) })
	// The README's order: file first, then flags.
	out, errOut, code := runCLI(t, nil, "ship", log, "--brokers", broker, "--topic=logs", "--quiet")
	if code != 0 || !strings.Contains(errOut, "shipped 2 lines to logs") {
		t.Fatalf("ship FILE --brokers B --topic T: exit %d, %s %s", code, out, errOut)
	}
}

func TestCLI_ShipReportsAnUnreachableBroker(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	if err := os.WriteFile(log, []byte("10.0.0.1 - - [27/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, errOut, code := runCLI(t, nil, "ship", log, "--brokers", freeAddr(t), "--timeout", "2s")
	took := time.Since(start)
	if code == 0 || !strings.Contains(errOut, "unreachable") || !strings.Contains(errOut, "no lines delivered") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if took > 20*time.Second {
		t.Errorf("took %s with --timeout 2s", took)
	}
}

// A config file, the environment and flags: flag > env > file > default,
// shown by --print-config, which masks secrets.
func TestCLI_ConfigPrecedenceAndPrintConfig(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "agent.yaml")
	body := "id: from-file\ndata-dir: " + filepath.Join(dir, "d") + "\nvoters: 5\nbatch-interval: 300ms\n" +
		"join: [127.0.0.1:7941, 127.0.0.1:7942]\nadmin-token-file: " + tokenFile + "\nretention: 2h\n"
	if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, []string{"WARDEN_VOTERS=1", "WARDEN_RETENTION=3h", "WARDEN_MAX_BATCH_RECORDS=777"},
		"agent", "--config", cfgFile, "--print-config", "--retention=4h")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"id: from-file  # file",
		"voters: 1  # env",
		"retention: 4h0m0s  # flag",
		"max-batch-records: 777  # env",
		"batch-interval: 300ms  # file",
		`join: [127.0.0.1:7941, 127.0.0.1:7942]  # file`,
		"admin-token: '********'  # file",
		"raft-heartbeat: 300ms  # default",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("secret printed:\n%s", out)
	}
	// config check says the same file is fine, and names what is wrong in a bad one.
	out, errOut, code = runCLI(t, nil, "config", "check", "--config", cfgFile)
	if code != 0 || !strings.Contains(out, "ok for warden agent") {
		t.Errorf("config check: exit %d, %s %s", code, out, errOut)
	}
	bad := []struct{ body, want string }{
		{"id: a\ndata-dir: /tmp/x\nvotrs: 3\n", `:3: key "votrs": unknown key; did you mean "voters"?`},
		{"id: a\ndata-dir: /tmp/x\nvoters: three\n", `:3: key "voters": "three": want a whole number`},
		{"id: a\ndata-dir: /tmp/x\nvoters: 4\n", "--voters must be 1, 3 or 5"},
		{"id: [a\n", "not valid YAML"},
	}
	for i, tt := range bad {
		f := filepath.Join(dir, "bad"+string(rune('a'+i))+".yaml")
		_ = os.WriteFile(f, []byte(tt.body), 0o600)
		for _, args := range [][]string{{"config", "check", "--config", f}, {"agent", "--config", f}} {
			_, errOut, code := runCLI(t, nil, args...)
			msg := strings.TrimSpace(errOut)
			if code == 0 || !strings.Contains(msg, f) || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("%v: exit %d, stderr %q, want one line with %q", args, code, msg, tt.want)
			}
		}
	}
	_, errOut, code = runCLI(t, nil, "agent", "--config", filepath.Join(dir, "missing.yaml"))
	if code == 0 || !strings.Contains(errOut, "missing.yaml: cannot read: no such file") {
		t.Errorf("missing file: exit %d, %q", code, errOut)
	}
	_, errOut, code = runCLI(t, []string{"WARDEN_VOTERS=many"}, "agent", "--print-config")
	if code == 0 || !strings.Contains(errOut, "$WARDEN_VOTERS") {
		t.Errorf("bad env: exit %d, %q", code, errOut)
	}
}

// The example configurations shipped in the repository are valid.
func TestCLI_ExampleConfigsCheck(t *testing.T) {
	files, _ := filepath.Glob("../examples/cluster/n*.yaml")
	if len(files) != 3 {
		t.Fatalf("want 3 example node configs under examples/cluster, found %v", files)
	}
	for _, f := range files {
		out, errOut, code := runCLI(t, nil, "config", "check", "--config", f)
		if code != 0 {
			t.Errorf("%s: exit %d, %s %s", f, code, out, errOut)
		}
	}
	for _, f := range []string{"../examples/cluster/broker.yaml", "../packaging/etc/broker.yaml"} {
		if out, errOut, code := runCLI(t, nil, "config", "check", "--for", "broker", "--config", f); code != 0 {
			t.Errorf("%s: exit %d, %s %s", f, code, out, errOut)
		}
	}
	if out, errOut, code := runCLI(t, nil, "config", "check", "--config", "../packaging/etc/agent.yaml"); code != 0 {
		t.Errorf("packaged agent.yaml: exit %d, %s %s", code, out, errOut)
	}
}

// A 3-node cluster started from config files; SIGTERM on one agent makes it
// leave cleanly: exit 0, and not one ERROR line in its log.
func TestProcesses_CleanStopPrintsNoErrors(t *testing.T) {
	c := newProcCluster(t, 3, 4)
	c.waitOwned(4, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 7)
	p.produce(500)
	c.waitApplied(p, 30*time.Second, "n1", "n2", "n3")
	for _, id := range []string{"n2", "n1"} { // a follower or the leader, then another
		a := c.agents[id]
		if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not stop within 20s of SIGTERM", id)
		}
		if code := a.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", id, code)
		}
		delete(c.agents, id)
		b, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
		if i := bytes.Index(b, []byte("leaving the cluster")); i < 0 {
			t.Errorf("%s never said it was leaving", id)
		} else if j := bytes.Index(b[i:], []byte("level=ERROR")); j >= 0 {
			t.Errorf("%s printed an error while stopping:\n%s", id, tail(b[i:], 2000))
		}
	}
}

// The demo runs for a bounded time, counts requests, and stops without an
// ERROR line.
func TestCLI_DemoRunsAndStopsCleanly(t *testing.T) {
	out, errOut, code := runCLI(t, nil, "demo", "--duration", "10s", "--http-port", "0", "--status-every", "2s")
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "http://127.0.0.1:") || !strings.Contains(out, "Load: ") {
		t.Errorf("demo printed no addresses or load:\n%s", out)
	}
	if strings.Contains(out, "Load: 0 requests") && !strings.Contains(out[strings.LastIndex(out, "Stopping"):], "Load: ") {
		t.Errorf("demo counted nothing:\n%s", out)
	}
	final := out[strings.LastIndex(out, "Stopping"):]
	if strings.Contains(final, "Load: 0 requests") {
		t.Errorf("the demo's final status counts no requests:\n%s", final)
	}
	if strings.Contains(errOut, "level=ERROR") || strings.Contains(out, "level=ERROR") {
		t.Errorf("demo printed errors:\n%s", errOut)
	}
}

func dialOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// warden config apply: a dry run changes nothing, --execute makes the next
// version, and every node serves it; config show prints it.
func TestCLI_ConfigApplyThroughTheCluster(t *testing.T) {
	c := newProcClusterWith(t, 3, 2, map[string][]string{
		"n1": {"--admin-token", "boss"}, "n2": {"--admin-token", "boss"}, "n3": {"--admin-token", "boss"}})
	c.waitOwned(2, 30*time.Second)
	addr := "http://" + c.specs["n2"].http
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	_ = os.WriteFile(rules, []byte("scenarios: [{name: http-probing, disabled: true}]\n"), 0o600)
	file := filepath.Join(dir, "cluster.yaml")
	_ = os.WriteFile(file, []byte("log-format: combined\nretention: 2h\nrules-file: rules.yaml\nallow: [192.0.2.0/24]\n"), 0o600)

	out, errOut, code := runCLI(t, nil, "config", "apply", file, "--addr", addr, "--admin-token", "boss")
	if code != 0 || !strings.Contains(out, "dry run: would apply version 2") || !strings.Contains(out, "allow:") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLI(t, nil, "config", "show", "--addr", addr)
	if !strings.Contains(out, "version:    1") {
		t.Fatalf("the dry run changed the configuration:\n%s", out)
	}
	if _, errOut, code := runCLI(t, nil, "config", "apply", file, "--addr", addr, "--admin-token", "wrong", "--execute"); code == 0 || !strings.Contains(errOut, "401") {
		t.Errorf("a wrong admin token: exit %d, %q", code, errOut)
	}
	out, errOut, code = runCLI(t, []string{"WARDEN_ADMIN_TOKEN=boss"}, "config", "apply", file, "--addr", addr, "--execute")
	if code != 0 || !strings.Contains(out, "applied: cluster configuration version 2 (was 1)") {
		t.Fatalf("execute: exit %d\n%s%s", code, out, errOut)
	}
	for id, s := range c.specs {
		waitFor(t, 10*time.Second, id+" serves version 2", func() bool {
			out, _, _ := runCLI(t, nil, "config", "show", "--addr", "http://"+s.http)
			return strings.Contains(out, "version:    2") && strings.Contains(out, "log-format: combined") &&
				strings.Contains(out, "allow:      192.0.2.0/24") && strings.Contains(out, "rule file of")
		})
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("log-fromat: combined\n"), 0o600)
	if _, errOut, code := runCLI(t, nil, "config", "apply", bad, "--addr", addr); code == 0 || !strings.Contains(errOut, "log-fromat") {
		t.Errorf("unknown key: exit %d, %q", code, errOut)
	}
}

// SIGTERM under load drains: the leaving node's batches in flight commit,
// then its partitions move; no commit anywhere is rejected, and the moved
// partitions pause only about as long as a failover.
func TestProcesses_GracefulDrainRejectsNothing(t *testing.T) {
	c := newProcCluster(t, 3, 6)
	c.waitOwned(6, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 51)
	stop := make(chan struct{})
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.produce(200)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second)
	parts, err := c.partitions("n1")
	if err != nil {
		t.Fatal(err)
	}
	moved := map[int32]bool{}
	for _, pi := range parts {
		if pi.Owner == "n2" {
			moved[pi.Partition] = true
		}
	}
	if len(moved) == 0 {
		t.Fatal("n2 owns no partition")
	}
	// Watch the moved partitions' committed offsets from n1.
	lastMove := map[int32]time.Time{}
	lastOff := map[int32]int64{}
	var worst time.Duration
	watch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-watch:
				return
			case <-time.After(20 * time.Millisecond):
			}
			ps, err := c.partitions("n1")
			if err != nil {
				continue
			}
			now := time.Now()
			for _, pi := range ps {
				if !moved[pi.Partition] {
					continue
				}
				if pi.Committed != lastOff[pi.Partition] {
					if !lastMove[pi.Partition].IsZero() {
						worst = max(worst, now.Sub(lastMove[pi.Partition]))
					}
					lastOff[pi.Partition], lastMove[pi.Partition] = pi.Committed, now
				}
			}
		}
	}()
	time.Sleep(time.Second)
	// n2's own count of its rejected commits, read until its API closes.
	var rejected atomic.Int64
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			b, err := getRawURL("http://" + c.specs["n2"].http + "/metrics")
			if err != nil {
				return
			}
			var sum int64
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, "warden_commits_rejected_total{") {
					if f := strings.Fields(line); len(f) == 2 {
						v, _ := strconv.ParseFloat(f[1], 64)
						sum += int64(v)
					}
				}
			}
			rejected.Store(sum)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	before := rejected.Load()
	a := c.agents["n2"]
	sigAt := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("n2 did not stop within 30s of SIGTERM")
	}
	stoppedAfter := time.Since(sigAt)
	delete(c.agents, "n2")
	time.Sleep(3 * time.Second)
	close(watch)
	<-watched
	close(stop)
	<-produced
	c.waitApplied(p, 30*time.Second, "n1", "n3")
	<-scraped
	if n := rejected.Load() - before; n != 0 {
		t.Errorf("n2: %d commits rejected while it drained and left", n)
	}
	for _, id := range []string{"n1", "n3"} {
		b, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
		if n := bytes.Count(b, []byte("batch rejected")); n > 0 {
			t.Errorf("%s: %d rejected commits around the drain", id, n)
		}
	}
	t.Logf("drain of n2 (%d partitions): exit %d, %s after SIGTERM; longest pause of a moved partition %s",
		len(moved), a.cmd.ProcessState.ExitCode(), stoppedAfter.Round(10*time.Millisecond), worst.Round(10*time.Millisecond))
	if worst > 5*time.Second {
		t.Errorf("a moved partition paused %s", worst)
	}
}

func getRawURL(url string) ([]byte, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// A leader that leaves on SIGTERM hands its leadership over and says
// goodbye through gossip: its successor removes it from Raft at once (not
// after --reap-after, as a failed node), so the cluster keeps tolerating
// a failure.
func TestProcesses_LeaderThatLeavesIsRemovedAtOnce(t *testing.T) {
	extra := map[string][]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		extra[id] = []string{"--reap-after", "10m"}
	}
	c := newProcClusterWith(t, 3, 6, extra)
	c.waitOwned(6, 30*time.Second)
	info, err := c.clusterInfo("n1")
	if err != nil || info.Leader == "" {
		t.Fatalf("no leader: %v", err)
	}
	leader := info.Leader
	a := c.agents[leader]
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s of SIGTERM", leader)
	}
	delete(c.agents, leader)
	survivor := "n1"
	if leader == survivor {
		survivor = "n2"
	}
	var members []fsm.Member
	removed := func() bool {
		ci, err := c.clusterInfo(survivor)
		if err != nil || ci.Leader == "" || ci.Leader == leader {
			return false
		}
		members = ci.Members
		for _, m := range ci.Members {
			if m.ID == leader {
				return false
			}
		}
		return len(ci.Members) == 2
	}
	deadline := time.Now().Add(10 * time.Second)
	for !removed() {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the leader %s left, %s still lists it: %+v", leader, survivor, members)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
