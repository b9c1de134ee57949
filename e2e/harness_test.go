// Package e2e runs the real warden binary as separate OS processes: the
// embedded broker and cluster agents, killed with SIGKILL, queried over
// HTTP, fed through Kafka. The processes are internal/clustertest's; this
// file gives them the short names the tests use.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/internal/clustertest"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/workload"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// wardenBin returns the binary under test: $WARDEN_BIN, or one built now.
func wardenBin(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("WARDEN_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "warden-e2e-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "warden")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/warden").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	return clustertest.MustFreeAddr(tb)
}

// proc is a running process (a warden command, or a peer program). cmd,
// done and args are the clustertest.Proc's Cmd, Done() and Args under the
// names the tests use.
type proc struct {
	*clustertest.Proc
	cmd  *exec.Cmd
	done <-chan struct{}
	args []string
}

func newProc(p *clustertest.Proc) *proc {
	return &proc{Proc: p, cmd: p.Cmd, done: p.Done(), args: p.Args}
}

func startProc(tb testing.TB, dir, name string, args ...string) *proc {
	tb.Helper()
	return startProcBin(tb, wardenBin(tb), dir, name, args...)
}

// startProcBin is startProc of another binary (a race-enabled build).
func startProcBin(tb testing.TB, bin, dir, name string, args ...string) *proc {
	tb.Helper()
	p, err := clustertest.Start(bin, dir, name, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return newProc(p)
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() { p.Kill() }

func (p *proc) alive() bool { return p.Alive() }

// agentSpec holds an agent's fixed addresses, so it can restart as itself.
type agentSpec struct {
	id, dataDir, raft, gossip, http string
}

func specOf(a *clustertest.Agent) agentSpec {
	return agentSpec{id: a.ID, dataDir: a.DataDir, raft: a.Raft, gossip: a.Gossip, http: a.HTTP}
}

// agent is a started agent: its process and its addresses.
type agent struct {
	*proc
	agentSpec
}

type procCluster struct {
	tb     testing.TB
	cl     *clustertest.Cluster
	dir    string
	broker string
	topic  string
	bproc  *proc
	specs  map[string]agentSpec
	agents map[string]*agent
	// extra holds more agent flags per node id, set before the agents start.
	extra map[string][]string
	// bin, when set, is the binary the agents run (default: wardenBin).
	bin string
}

func newProcCluster(tb testing.TB, nodes int, partitions int) *procCluster {
	return newProcClusterWith(tb, nodes, partitions, nil)
}

// newProcClusterWith starts a cluster whose agents get extra flags by id.
func newProcClusterWith(tb testing.TB, nodes int, partitions int, extra map[string][]string) *procCluster {
	c := newProcClusterIdle(tb, nodes, partitions, extra)
	for i := 1; i <= nodes; i++ {
		c.startAgent(fmt.Sprintf("n%d", i), nodes)
	}
	return c
}

// newProcClusterIdle starts the broker and prepares the agents without
// starting them.
func newProcClusterIdle(tb testing.TB, nodes int, partitions int, extra map[string][]string) *procCluster {
	tb.Helper()
	dir := tb.TempDir()
	c := &procCluster{tb: tb, dir: dir, topic: "access-logs", specs: map[string]agentSpec{}, agents: map[string]*agent{}, extra: extra}
	c.cl = &clustertest.Cluster{Bin: wardenBin(tb), Dir: dir, Topic: c.topic, Partitions: partitions}
	tb.Cleanup(func() {
		for _, p := range c.agents {
			p.kill()
		}
		if c.bproc != nil {
			c.bproc.kill()
		}
		c.cl.KillAll()
		if tb.Failed() {
			for _, name := range append([]string{"broker"}, keys(c.specs)...) {
				b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
				tb.Logf("---- %s.log (tail) ----\n%s", name, tail(b, 3000))
			}
		}
	})
	c.startBroker()
	for i := 1; i <= nodes; i++ {
		c.addAgent(fmt.Sprintf("n%d", i))
	}
	return c
}

// startBroker starts the broker, or restarts it on the same address and
// data dir, and waits until it listens.
func (c *procCluster) startBroker() {
	c.tb.Helper()
	if err := c.cl.StartBroker(); err != nil {
		c.tb.Fatal(err)
	}
	c.broker, c.bproc = c.cl.Broker(), newProc(c.cl.BrokerProc())
	if err := clustertest.WaitTCP(c.tb.Context(), c.broker, 15*time.Second); err != nil {
		c.tb.Fatalf("broker up: %v", err)
	}
}

// addAgent gives agent id its addresses and data dir, without starting it.
func (c *procCluster) addAgent(id string) agentSpec {
	c.tb.Helper()
	a, err := c.cl.AddAgent(id, "127.0.0.1")
	if err != nil {
		c.tb.Fatal(err)
	}
	c.specs[id] = specOf(a)
	return c.specs[id]
}

func keys(m map[string]agentSpec) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startAgent starts (or restarts) agent id; the first expect nodes
// bootstrap together. n1 joins n2, every other node n1.
func (c *procCluster) startAgent(id string, expect int) {
	c.tb.Helper()
	f := c.cl.Flags(c.cl.Agent(id))
	f.BootstrapExpect, f.BatchInterval, f.ReapAfter = expect, 50*time.Millisecond, 5*time.Second
	if id != "n1" {
		f.Join = []string{c.specs["n1"].gossip}
	} else if len(c.specs) > 1 {
		f.Join = []string{c.specs["n2"].gossip}
	}
	f.Extra = c.extra[id]
	c.startAgentWith(id, f)
}

// startAgentWith starts (or restarts) agent id with the flags f, made from
// c.cl.Flags.
func (c *procCluster) startAgentWith(id string, f clustertest.AgentFlags) {
	c.tb.Helper()
	bin := c.bin
	if bin == "" {
		bin = wardenBin(c.tb)
	}
	a := c.cl.Agent(id)
	if err := a.Start(bin, c.dir, f); err != nil {
		c.tb.Fatal(err)
	}
	c.agents[id] = &agent{proc: newProc(a.Proc()), agentSpec: c.specs[id]}
}

// waitOwned waits until n1 reports all n partitions with an owner.
func (c *procCluster) waitOwned(n int, timeout time.Duration) {
	c.tb.Helper()
	waitFor(c.tb, timeout, fmt.Sprintf("all %d partitions owned", n), func() bool { return clustertest.AllOwned(c.specs["n1"].http, n) })
}

// waitApplied waits until each node in ids holds exactly p's records.
func (c *procCluster) waitApplied(p *producer, timeout time.Duration, ids ...string) {
	c.tb.Helper()
	for _, id := range ids {
		waitFor(c.tb, timeout, id+" applied every record", func() bool {
			parts, err := c.partitions(id)
			ok, _ := p.matches(parts)
			return err == nil && ok && c.detected(parts)
		})
	}
}

// detected reports whether the repartition stage of every partition has
// read its topic to the end (lines reach detection there; true with input
// keyed by client, which has no such stage).
func (c *procCluster) detected(parts []node.PartitionInfo) bool {
	var ends map[int32]int64
	for _, part := range parts {
		if part.ByClient == nil {
			continue
		}
		if ends == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var err error
			ends, err = clustertest.EndOffsets(ctx, c.broker, part.ByClient.Topic)
			cancel()
			if err != nil {
				return false
			}
		}
		if part.ByClient.Committed != ends[part.Partition] {
			return false
		}
	}
	return true
}

func (c *procCluster) killAgent(id string) {
	c.agents[id].kill()
	delete(c.agents, id)
}

// partitions reads /v1/partitions from agent id.
func (c *procCluster) partitions(id string) ([]node.PartitionInfo, error) {
	var out []node.PartitionInfo
	return out, getJSON("http://"+c.specs[id].http+"/v1/partitions", &out)
}

func (c *procCluster) clusterInfo(id string) (node.ClusterInfo, error) {
	var out node.ClusterInfo
	return out, getJSON("http://"+c.specs[id].http+"/v1/cluster", &out)
}

// httpClient is the tests' client for requests getJSON does not make.
var httpClient = &http.Client{Timeout: 2 * time.Second}

// getJSON fetches url and decodes its JSON document into v; an answer
// other than 200 is an error.
func getJSON(url string, v any) error { return clustertest.GetJSON(url, v) }

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	clustertest.WaitFor(tb, timeout, what, cond)
}

// producer sends workload lines and keeps per-partition digests of what
// Kafka acknowledged.
type producer struct {
	*clustertest.Producer
	gen *workload.Generator // a test may change its mix before producing
}

func newProducer(tb testing.TB, broker, topic string, seed uint64) *producer {
	gen := workload.New(seed, 200, time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC))
	p, err := clustertest.NewProducer(broker, topic, gen)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return &producer{Producer: p, gen: gen}
}

// produce sends n lines and waits for their acknowledgements; a failure
// shows in matches.
func (p *producer) produce(n int) { _ = p.Produce(n) }

// produceRaw sends one record as is (for lines that do not parse).
func (p *producer) produceRaw(key, value string) { _ = p.ProduceRaw(key, value) }

// readTopic reads every record of topic, per partition in offset order.
func readTopic(tb testing.TB, broker, topic string) map[int32][]*kgo.Record {
	tb.Helper()
	return clustertest.MustReadAll(tb, broker, topic)
}

// matches reports whether the partitions served over HTTP hold exactly the
// producer's records, and says what differs when not.
func (p *producer) matches(parts []node.PartitionInfo) (bool, string) {
	digests, ends, err := p.Acked()
	if err != nil {
		return false, "produce failed: " + err.Error()
	}
	var diff strings.Builder
	for _, part := range parts {
		want := digests[part.Partition]
		if part.Committed != ends[part.Partition] || part.Records != want.Records || part.Bytes != want.Bytes || part.Digest != node.FormatDigest(want.Sum) {
			fmt.Fprintf(&diff, "p%d: committed %d/%d records %d/%d digest %s/%s; ", part.Partition, part.Committed, ends[part.Partition],
				part.Records, want.Records, part.Digest, node.FormatDigest(want.Sum))
		}
	}
	return diff.Len() == 0 && len(parts) > 0, diff.String()
}
