package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/testenv"
)

// bouncerFlags are the agent flags of the bouncer tests, on every node.
func bouncerFlags(nodes int) map[string][]string {
	m := map[string][]string{}
	for i := 1; i <= nodes; i++ {
		m[fmt.Sprintf("n%d", i)] = []string{"--bouncer-keys", "secret-key", "--admin-token", "admin-secret"}
	}
	return m
}

func (c *procCluster) waitReady(ids ...string) {
	c.tb.Helper()
	for _, id := range ids {
		waitFor(c.tb, 30*time.Second, id+" ready", func() bool {
			resp, err := httpClient.Get("http://" + c.specs[id].http + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
}

// adminDecision adds (value set) or deletes (id set) a decision through
// node id's admin API and returns the decision's id.
func (c *procCluster) adminDecision(id, value string, del int64) int64 {
	c.tb.Helper()
	method, url, body := http.MethodPost, "http://"+c.specs[id].http+"/v1/decisions", fmt.Sprintf(`{"value":%q,"duration":"4h","reason":"e2e"}`, value)
	if del != 0 {
		method, url, body = http.MethodDelete, url+"/"+strconv.FormatInt(del, 10), ""
	}
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := httpClient.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		c.tb.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
	}
	var v struct {
		ID int64 `json:"id"`
	}
	_ = json.Unmarshal(b, &v)
	return v.ID
}

// rawPull is a bouncer's pull of node addr's stream: the values new and
// deleted.
func rawPull(t *testing.T, cl *http.Client, addr string, startup bool) (newVals, deleted string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/decisions/stream?startup="+strconv.FormatBool(startup), nil)
	req.Header.Set("X-Api-Key", "secret-key")
	req.Header.Set("User-Agent", "crowdsec-firewall-bouncer/v0.0.31")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		New, Deleted []detect.DecisionView
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("pull %s: %s: %v", addr, resp.Status, err)
	}
	join := func(ds []detect.DecisionView) string {
		var s []string
		for _, d := range ds {
			s = append(s, d.Value)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	return join(a.New), join(a.Deleted)
}

// held is what a bouncer enforces: it applies each answer's deleted list,
// then its new one, as CrowdSec's bouncers do.
type held map[string]bool

func (h held) apply(newVals, deleted string) {
	for _, v := range strings.Split(deleted, ",") {
		delete(h, v)
	}
	for _, v := range strings.Split(newVals, ",") {
		if v != "" {
			h[v] = true
		}
	}
}

func (h held) String() string {
	var s []string
	for v := range h {
		s = append(s, v)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

// TestProcesses_BouncerStreamDeletionSurvivesNodeKill: a bouncer pulls from
// n1; the operator deletes a decision; n1's answers carrying the deletion
// are lost (a connection dropped before reading, an answer read and thrown
// away); n1 is SIGKILLed; the bouncer's next pull goes to n2 and brings the
// deletion, because the bouncer's position is in the replicated state.
func TestProcesses_BouncerStreamDeletionSurvivesNodeKill(t *testing.T) {
	c := newProcClusterWith(t, 3, 2, bouncerFlags(3))
	c.waitReady("n1", "n2", "n3")
	n1, n2 := c.specs["n1"].http, c.specs["n2"].http
	gone := c.adminDecision("n1", "198.51.100.7", 0)
	c.adminDecision("n1", "198.51.100.8", 0)
	cl := &http.Client{Timeout: 5 * time.Second}
	h := held{}
	h.apply(rawPull(t, cl, n1, true))
	if h.String() != "198.51.100.7,198.51.100.8" {
		t.Fatalf("startup from n1: holds %s", h)
	}
	h.apply(rawPull(t, cl, n1, false))
	c.adminDecision("n1", "", gone)
	conn, err := net.Dial("tcp", n1)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /v1/decisions/stream HTTP/1.1\r\nHost: %s\r\nX-Api-Key: secret-key\r\nUser-Agent: crowdsec-firewall-bouncer/v0.0.31\r\n\r\n", n1)
	conn.Close()
	rawPull(t, cl, n1, false) // read and thrown away
	c.waitDeleted(gone, "n2")
	c.killAgent("n1")
	nv, del := rawPull(t, cl, n2, false)
	h.apply(nv, del)
	if del != "198.51.100.7" || h.String() != "198.51.100.8" {
		t.Fatalf("first pull from n2 after n1's SIGKILL: new %q deleted %q; the bouncer holds %s, want 198.51.100.8", nv, del, h)
	}
	t.Logf("n1 SIGKILLed after answers carrying the deletion were lost; n2 sent deleted=%s; the bouncer holds %s", del, h)
}

// waitDeleted waits until the nodes' replicas hold decision id as deleted.
func (c *procCluster) waitDeleted(id int64, nodes ...string) {
	c.tb.Helper()
	for _, n := range nodes {
		waitFor(c.tb, 10*time.Second, fmt.Sprintf("%s to hold the deletion of decision %d", n, id), func() bool {
			var ds []detect.DecisionView
			if err := getJSON("http://"+c.specs[n].http+"/v1/decisions?all=1", &ds); err != nil {
				return false
			}
			for _, d := range ds {
				if d.ID == id {
					return !d.Active
				}
			}
			return false
		})
	}
}

// balancer is a TCP load balancer in front of one node at a time, as a
// bouncer behind a load balancer sees the cluster.
type balancer struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
}

func newBalancer(t *testing.T, target string) *balancer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); b.point("") })
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			target := b.target
			b.mu.Unlock()
			if target == "" {
				down.Close()
				continue
			}
			up, err := net.DialTimeout("tcp", target, time.Second)
			if err != nil {
				down.Close()
				continue
			}
			b.mu.Lock()
			b.conns[down], b.conns[up] = true, true
			b.mu.Unlock()
			go func() { _, _ = io.Copy(up, down); up.Close(); down.Close() }()
			go func() { _, _ = io.Copy(down, up); up.Close(); down.Close() }()
		}
	}()
	return b
}

// point sends new connections to target ("": refuse them) and cuts the
// open ones.
func (b *balancer) point(target string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.target = target
	for c := range b.conns {
		c.Close()
	}
	b.conns = map[net.Conn]bool{}
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

// customBouncer runs Debian's crowdsec-custom-bouncer against api; its
// script appends "ACTION VALUE" lines to calls.
type customBouncer struct {
	t     *testing.T
	cmd   *exec.Cmd
	calls string
	out   bytes.Buffer
	once  sync.Once
}

func startCustomBouncer(t *testing.T, dir, api string) *customBouncer {
	t.Helper()
	bin := testenv.Tool(t, "crowdsec-custom-bouncer")
	b := &customBouncer{t: t, calls: filepath.Join(dir, "calls.log")}
	script := filepath.Join(dir, "enforce.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2\" >> "+b.calls+"\n"), 0o755)
	cfg := filepath.Join(dir, "bouncer.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`bin_path: %s
feed_via_stdin: false
total_retries: 0
scenarios_containing: []
scenarios_not_containing: []
origins: []
piddir: %s
update_frequency: 1s
cache_retention_duration: 1s
daemonize: false
log_mode: file
log_dir: %s
log_level: debug
api_url: http://%s/
api_key: secret-key
prometheus:
  enabled: false
`, script, dir, dir, api)), 0o644)
	b.cmd = exec.Command(bin, "-c", cfg)
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.stop)
	return b
}

func (b *customBouncer) stop() { b.once.Do(func() { b.cmd.Process.Kill(); b.cmd.Wait() }) }

func (b *customBouncer) has(line string) bool {
	data, _ := os.ReadFile(b.calls)
	for _, l := range strings.Split(string(data), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func (b *customBouncer) log() string {
	data, _ := os.ReadFile(b.calls)
	return string(data)
}

// TestProcesses_CustomBouncerSeesDeletionAcrossNodeKill runs Debian's
// crowdsec-custom-bouncer against a 3-process cluster. Behind a load
// balancer: it holds a ban from n1; the balancer loses n1; the operator
// deletes the ban; n1 is SIGKILLed; the balancer moves the bouncer to n2,
// whose next answer (not a startup one) deletes the ban. Restarted: it
// holds a ban from n2 and stops; the ban is deleted; n2 is SIGKILLed; the
// bouncer, restarted against n3, is told of the deletion at startup.
func TestProcesses_CustomBouncerSeesDeletionAcrossNodeKill(t *testing.T) {
	c := newProcClusterWith(t, 3, 2, bouncerFlags(3))
	c.waitReady("n1", "n2", "n3")
	lb := newBalancer(t, c.specs["n1"].http)
	b := startCustomBouncer(t, t.TempDir(), lb.addr())

	first := c.adminDecision("n2", "198.51.100.7", 0)
	waitFor(t, 20*time.Second, "add 198.51.100.7 at the bouncer, through n1", func() bool { return b.has("add 198.51.100.7") })
	lb.point("")
	c.adminDecision("n2", "", first)
	c.waitDeleted(first, "n2")
	c.killAgent("n1")
	lb.point(c.specs["n2"].http)
	waitFor(t, 20*time.Second, "del 198.51.100.7 at the bouncer, through n2", func() bool { return b.has("del 198.51.100.7") })
	c.startAgent("n1", 3)
	c.waitReady("n1")

	second := c.adminDecision("n2", "198.51.100.8", 0)
	waitFor(t, 20*time.Second, "add 198.51.100.8 at the bouncer", func() bool { return b.has("add 198.51.100.8") })
	b.stop()
	c.adminDecision("n2", "", second)
	c.waitDeleted(second, "n3")
	c.killAgent("n2")
	b2 := startCustomBouncer(t, t.TempDir(), c.specs["n3"].http)
	waitFor(t, 20*time.Second, "del 198.51.100.8 at the bouncer restarted against n3", func() bool { return b2.has("del 198.51.100.8") })
	if b2.has("add 198.51.100.8") {
		t.Error("the restarted bouncer was given the deleted ban")
	}
	t.Logf("behind the balancer:\n%s\nrestarted against n3:\n%s", b.log(), b2.log())
}
