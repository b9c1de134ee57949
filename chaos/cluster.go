package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wardenhq/warden/internal/clustertest"
)

// cluster is the broker and agents of a run: clustertest's processes, with
// the run's own choices (one loopback address per node, the flags, who
// joins whom) and its network cuts.
type cluster struct {
	*clustertest.Cluster
	cfg    Config
	cut    *netCut
	logf   func(string, ...any)
	mu     sync.Mutex
	joined int      // newcomers so far
	stops  int      // graceful stops so far
	forced []string // those that needed SIGQUIT and SIGKILL
}

// stopGrace is how long an agent has to end after SIGTERM: its drain is
// bounded by --shutdown-timeout (10 s), and leaving the cluster takes a
// few seconds at most after it.
const stopGrace = 20 * time.Second

// leave stops agent a gracefully (SIGTERM), as an operator does, and
// records it when it did not end on its own within stopGrace (its log
// then holds its goroutines' stacks).
func (c *cluster) leave(a *clustertest.Agent, why string) {
	start := time.Now()
	forced := a.Stop(syscall.SIGTERM, stopGrace)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stops++
	if !forced {
		return
	}
	c.forced = append(c.forced, fmt.Sprintf("%s (%s) still ran %s after SIGTERM: its stacks are in its log (SIGQUIT), then SIGKILL ended it %.1fs after SIGTERM",
		a.ID, why, stopGrace, time.Since(start).Seconds()))
}

// stopCheck stops every agent still running gracefully, one after the
// other, and checks that every graceful stop of the run ended its agent
// on its own.
func (c *cluster) stopCheck() Check {
	for _, a := range c.Agents() {
		if a.Alive() {
			if a.Paused() {
				a.Resume()
			}
			c.leave(a, "the final stop")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.stops
	if len(c.forced) > 0 {
		return Check{Name: "graceful stops", Detail: fmt.Sprintf("%d of %d needed SIGKILL: %s", len(c.forced), n, strings.Join(c.forced, "; "))}
	}
	return Check{Name: "graceful stops", OK: true, Detail: fmt.Sprintf("every SIGTERM (%d) ended its agent within %s", n, stopGrace)}
}

func newCluster(cfg Config) *cluster {
	return &cluster{
		Cluster: &clustertest.Cluster{Bin: cfg.Bin, Dir: cfg.Dir, Topic: cfg.Topic, Partitions: cfg.Partitions, BrokerArgs: cfg.BrokerArgs},
		cfg:     cfg, logf: cfg.Logf,
	}
}

func (c *cluster) start(ctx context.Context) error {
	if err := c.StartBroker(); err != nil {
		return err
	}
	if err := clustertest.WaitTCP(ctx, c.Broker(), 20*time.Second); err != nil {
		return fmt.Errorf("broker did not start: %w", err)
	}
	for i := 0; i < c.cfg.Nodes; i++ {
		// Each node has its own loopback address, so that a partition
		// can cut the packets between two nodes and nothing else.
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		id := fmt.Sprintf("n%d", i+1)
		if _, err := c.AddAgent(id, ip); err != nil {
			return fmt.Errorf("node %s: %w (is %s usable on the loopback interface?)", id, err, ip)
		}
	}
	for _, a := range c.Agents() {
		if err := c.startAgent(a); err != nil {
			return err
		}
	}
	return nil
}

// newcomer prepares (does not start) a node that was never in the cluster,
// on the next free loopback address.
func (c *cluster) newcomer() (*clustertest.Agent, error) {
	c.mu.Lock()
	c.joined++
	n := c.joined
	c.mu.Unlock()
	return c.AddAgent(fmt.Sprintf("x%d", n), fmt.Sprintf("127.0.0.%d", 11+c.cfg.Nodes))
}

// isNewcomer tells a node that joined during the run from the first ones.
func isNewcomer(a *clustertest.Agent) bool { return strings.HasPrefix(a.ID, "x") }

// startAgent starts (or restarts) a: the first nodes bootstrap together and
// each joins the others; a newcomer joins the running cluster.
func (c *cluster) startAgent(a *clustertest.Agent) error {
	voters := 3
	if c.cfg.Nodes >= 5 {
		voters = 5
	}
	if c.cfg.Nodes < 3 {
		voters = 1
	}
	f := c.Flags(a)
	for _, o := range c.Agents() {
		if o != a && !isNewcomer(o) {
			f.Join = append(f.Join, o.Gossip)
		}
	}
	f.BootstrapExpect = c.cfg.Nodes
	if isNewcomer(a) {
		f.BootstrapExpect = 0
	}
	f.Voters, f.ReapAfter, f.BatchInterval = voters, 20*time.Second, 100*time.Millisecond
	f.Extra = append([]string{"--retention", "0", "--semantics", c.cfg.Semantics, "--offset-commit-interval", "2s"}, c.cfg.AgentArgs...)
	return c.StartAgent(a, f)
}

// restartBroker restarts the broker on its address and waits for it.
func (c *cluster) restartBroker(ctx context.Context) {
	_ = c.StartBroker()
	_ = clustertest.WaitTCP(ctx, c.Broker(), 20*time.Second)
}

// get fetches a node's JSON document into v.
func get(addr, path string, v any) error { return clustertest.GetJSON("http://"+addr+path, v) }

// getRaw fetches a node's document as it is.
func getRaw(addr, path string) ([]byte, error) { return clustertest.GetRaw("http://" + addr + path) }
