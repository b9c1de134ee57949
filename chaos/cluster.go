package chaos

import (
	"context"
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
	"syscall"
	"time"

	"github.com/wardenhq/warden/transport"
)

// proc is one OS process of the run.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// stop sends sig and waits for the process to end (SIGKILL after grace).
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	p.signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// agent is a node's fixed identity: it restarts as itself.
type agent struct {
	id, ip                 string
	dataDir                string
	raft, gossip, httpAddr string
	proc                   *proc
	paused                 bool
	incarnation            int
}

// cluster is the broker and agents of a run.
type cluster struct {
	cfg    Config
	dir    string
	broker string
	bproc  *proc
	agents []*agent
	mu     sync.Mutex
	cut    *netCut
	logf   func(string, ...any)
	joined int // newcomers so far
}

func (c *cluster) start(ctx context.Context) error {
	bp, err := transport.FreePort("127.0.0.1")
	if err != nil {
		return err
	}
	c.broker = net.JoinHostPort("127.0.0.1", strconv.Itoa(bp))
	if err := c.startBroker(); err != nil {
		return err
	}
	if err := waitTCP(ctx, c.broker, 20*time.Second); err != nil {
		return fmt.Errorf("broker did not start: %w", err)
	}
	for i := 0; i < c.cfg.Nodes; i++ {
		// Each node has its own loopback address, so that a partition
		// can cut the packets between two nodes and nothing else.
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		a := &agent{id: fmt.Sprintf("n%d", i+1), ip: ip, dataDir: filepath.Join(c.dir, fmt.Sprintf("n%d", i+1))}
		ports := make([]int, 3)
		for j := range ports {
			if ports[j], err = transport.FreePort(ip); err != nil {
				return fmt.Errorf("node %s: %w (is %s usable on the loopback interface?)", a.id, err, ip)
			}
		}
		a.raft = net.JoinHostPort(ip, strconv.Itoa(ports[0]))
		a.gossip = net.JoinHostPort(ip, strconv.Itoa(ports[1]))
		a.httpAddr = net.JoinHostPort(ip, strconv.Itoa(ports[2]))
		c.agents = append(c.agents, a)
	}
	for _, a := range c.agents {
		if err := c.startAgent(a); err != nil {
			return err
		}
	}
	return nil
}

// newcomer prepares (does not start) a node that was never in the cluster,
// on the next free loopback address.
func (c *cluster) newcomer() (*agent, error) {
	c.mu.Lock()
	c.joined++
	n := c.joined
	c.mu.Unlock()
	ip := fmt.Sprintf("127.0.0.%d", 11+c.cfg.Nodes)
	a := &agent{id: fmt.Sprintf("x%d", n), ip: ip, dataDir: filepath.Join(c.dir, fmt.Sprintf("x%d", n))}
	for _, p := range []*string{&a.raft, &a.gossip, &a.httpAddr} {
		port, err := transport.FreePort(ip)
		if err != nil {
			return nil, err
		}
		*p = net.JoinHostPort(ip, strconv.Itoa(port))
	}
	c.mu.Lock()
	c.agents = append(c.agents, a)
	c.mu.Unlock()
	return a, nil
}

// retire removes a node that left for good from the run.
func (c *cluster) retire(a *agent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.agents {
		if x == a {
			c.agents = append(c.agents[:i:i], c.agents[i+1:]...)
			return
		}
	}
}

func (c *cluster) startBroker() error {
	args := append([]string{"broker", "--listen", c.broker, "--data-dir", filepath.Join(c.dir, "broker"),
		"--topic", c.cfg.Topic, "--partitions", strconv.Itoa(c.cfg.Partitions)}, c.cfg.BrokerArgs...)
	p, err := c.spawn("broker", args...)
	if err != nil {
		return err
	}
	c.bproc = p
	return nil
}

func (c *cluster) startAgent(a *agent) error {
	voters := 3
	if c.cfg.Nodes >= 5 {
		voters = 5
	}
	if c.cfg.Nodes < 3 {
		voters = 1
	}
	var others []string
	for _, o := range c.agents {
		if o != a && !strings.HasPrefix(o.id, "x") {
			others = append(others, o.gossip)
		}
	}
	join := strings.Join(others, ",")
	expect := c.cfg.Nodes
	if strings.HasPrefix(a.id, "x") {
		expect = 0 // a newcomer joins the running cluster
	}
	args := []string{"agent", "--id", a.id, "--data-dir", a.dataDir, "--raft", a.raft, "--gossip", a.gossip, "--http", a.httpAddr,
		"--brokers", c.broker, "--topic", c.cfg.Topic, "--bootstrap-expect", strconv.Itoa(expect), "--voters", strconv.Itoa(voters),
		"--reap-after", "20s", "--batch-interval", "100ms", "--retention", "0", "--semantics", c.cfg.Semantics,
		"--offset-commit-interval", "2s"}
	if join != "" {
		args = append(args, "--join", join)
	}
	args = append(args, c.cfg.AgentArgs...)
	p, err := c.spawn(a.id, args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	a.proc, a.paused = p, false
	a.incarnation++
	c.mu.Unlock()
	return nil
}

// spawn starts the warden binary with args, its output appended to
// <dir>/<name>.log.
func (c *cluster) spawn(name string, args ...string) (*proc, error) {
	f, err := os.OpenFile(filepath.Join(c.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.cfg.Bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (a *agent) alive() bool {
	if a.proc == nil {
		return false
	}
	select {
	case <-a.proc.done:
		return false
	default:
		return true
	}
}

// stopAll ends every process.
func (c *cluster) stopAll() {
	for _, a := range c.agents {
		if a.proc != nil && a.alive() {
			if a.paused {
				a.proc.signal(syscall.SIGCONT)
			}
			a.proc.stop(syscall.SIGTERM, 5*time.Second)
		}
	}
	if c.bproc != nil {
		c.bproc.stop(syscall.SIGTERM, 5*time.Second)
	}
}

func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not answering after %s", addr, timeout)
}

var httpc = &http.Client{Timeout: 2 * time.Second}

// get fetches a node's JSON document into v.
func get(addr, path string, v any) error {
	b, err := getRaw(addr, path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func getRaw(addr, path string) ([]byte, error) {
	resp, err := httpc.Get("http://" + addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

// clusterDoc is the part of /v1/cluster the checker reads.
type clusterDoc struct {
	Leader string `json:"leader"`
}

// leader asks the live nodes who leads; "" when none knows.
func (c *cluster) leader() string {
	for _, a := range c.agents {
		if !a.alive() || a.paused {
			continue
		}
		var d clusterDoc
		if get(a.httpAddr, "/v1/cluster", &d) == nil && d.Leader != "" {
			return d.Leader
		}
	}
	return ""
}

func (c *cluster) agent(id string) *agent {
	for _, a := range c.agents {
		if a.id == id {
			return a
		}
	}
	return nil
}

// netCut cuts packets between node addresses with an nftables table of its
// own: one drop rule per directed pair.
type netCut struct {
	table string
	pairs [][2]string
}

func nftAvailable() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("partition faults need nft (apt-get install nftables)")
	}
	if out, err := exec.Command("nft", "list", "tables").CombinedOutput(); err != nil {
		return fmt.Errorf("partition faults need nftables and root: nft: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (n *netCut) apply() error {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n chain out {\n  type filter hook output priority 0; policy accept;\n", n.table, n.table, n.table)
	sort.Slice(n.pairs, func(i, j int) bool { return n.pairs[i][0]+n.pairs[i][1] < n.pairs[j][0]+n.pairs[j][1] })
	for _, p := range n.pairs {
		fmt.Fprintf(&b, "  ip saddr %s ip daddr %s drop\n", p[0], p[1])
	}
	b.WriteString(" }\n}\n")
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, out)
	}
	return nil
}

func (n *netCut) heal() {
	_ = exec.Command("nft", "delete", "table", "inet", n.table).Run()
}
