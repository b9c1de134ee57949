// Package clustertest starts Warden clusters of real processes for tests and
// for `warden chaos`: the embedded broker (`warden broker`) and N agents
// (`warden agent`) of one warden binary, each on fixed loopback addresses so
// that it can be killed, paused, stopped and restarted as itself.
//
// The package is a harness, not a test: the parts `warden chaos` uses return
// errors and import no testing package. The helpers that fail a test
// (WaitFor, MustFreeAddr) take the TB interface, which *testing.T satisfies.
// It never imports package node, so that node's own tests can use its
// generic pieces (free ports, waiting, the producer); the node types a
// caller decodes from the HTTP API stay with the caller. DESIGN.md says why.
package clustertest

import (
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/wardenhq/warden/transport"
)

// Cluster is one embedded broker and the agents around it, all processes of
// the same warden binary. Set the exported fields, then StartBroker, AddAgent
// and StartAgent; the methods are safe to call from several goroutines.
type Cluster struct {
	// Bin is the warden binary the broker and the agents run.
	Bin string
	// Dir holds each process's log, <name>.log, and the data dirs:
	// <Dir>/broker and <Dir>/<agent id>.
	Dir string
	// Topic is the input topic the broker creates and the agents read;
	// Partitions is its partition count.
	Topic      string
	Partitions int
	// BrokerArgs are more broker flags (TLS, SASL), given after the
	// harness's own.
	BrokerArgs []string

	mu         sync.Mutex
	broker     string
	brokerProc *Proc
	agents     []*Agent
}

// Broker is the broker's address ("" before the first StartBroker).
func (c *Cluster) Broker() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broker
}

// BrokerProc is the broker's latest process (nil before StartBroker).
func (c *Cluster) BrokerProc() *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.brokerProc
}

// StartBroker starts the broker: the first time on a free port of
// 127.0.0.1, afterwards (a restart) on the same address and data dir. It
// does not wait for the broker to listen: see WaitTCP.
func (c *Cluster) StartBroker() error {
	c.mu.Lock()
	addr := c.broker
	c.mu.Unlock()
	if addr == "" {
		var err error
		if addr, err = FreeAddr("127.0.0.1"); err != nil {
			return err
		}
	}
	args := append([]string{"broker", "--listen", addr, "--data-dir", filepath.Join(c.Dir, "broker"),
		"--topic", c.Topic, "--partitions", strconv.Itoa(c.Partitions)}, c.BrokerArgs...)
	p, err := Start(c.Bin, c.Dir, "broker", args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.broker, c.brokerProc = addr, p
	c.mu.Unlock()
	return nil
}

// AddAgent adds an agent that has not started, on three free ports of ip
// (127.0.0.1, or another loopback address so that a network cut can tell
// nodes apart), with the data dir <Dir>/<id>.
func (c *Cluster) AddAgent(id, ip string) (*Agent, error) {
	a, err := NewAgent(id, ip, filepath.Join(c.Dir, id))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.agents = append(c.agents, a)
	c.mu.Unlock()
	return a, nil
}

// Remove takes a (a node that left for good) out of the cluster.
func (c *Cluster) Remove(a *Agent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.agents {
		if x == a {
			c.agents = append(c.agents[:i:i], c.agents[i+1:]...)
			return
		}
	}
}

// Agents is the cluster's agents in the order they were added.
func (c *Cluster) Agents() []*Agent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Agent(nil), c.agents...)
}

// Agent is the agent with id, or nil.
func (c *Cluster) Agent(id string) *Agent {
	for _, a := range c.Agents() {
		if a.ID == id {
			return a
		}
	}
	return nil
}

// Flags is a's flag set reading the cluster's broker and topic.
func (c *Cluster) Flags(a *Agent) AgentFlags { return a.Flags(c.Broker(), c.Topic) }

// StartAgent starts (or restarts) a with the flags f.
func (c *Cluster) StartAgent(a *Agent, f AgentFlags) error { return a.Start(c.Bin, c.Dir, f) }

// Leader asks the running agents, in order, who leads; "" when none knows.
func (c *Cluster) Leader() string {
	for _, a := range c.Agents() {
		if _, ok := a.Running(); !ok {
			continue
		}
		var d ClusterDoc
		if GetJSON("http://"+a.HTTP+"/v1/cluster", &d) == nil && d.Leader != "" {
			return d.Leader
		}
	}
	return ""
}

// StopAll ends every process gracefully: each agent (resumed first if
// paused) and then the broker get SIGTERM, and SIGKILL after grace.
func (c *Cluster) StopAll(grace time.Duration) {
	for _, a := range c.Agents() {
		if a.Alive() {
			if a.Paused() {
				a.Resume()
			}
			a.Stop(syscall.SIGTERM, grace)
		}
	}
	if p := c.BrokerProc(); p != nil {
		p.Stop(syscall.SIGTERM, grace)
	}
}

// KillAll ends every process with SIGKILL: the agents, then the broker.
func (c *Cluster) KillAll() {
	for _, a := range c.Agents() {
		a.Kill()
	}
	if p := c.BrokerProc(); p != nil {
		p.Kill()
	}
}

// FreeAddr returns host:port on ip with a port free right now for TCP and
// UDP, below the kernel's ephemeral range so that a restarted process can
// take it back (transport.FreePort).
func FreeAddr(ip string) (string, error) {
	port, err := transport.FreePort(ip)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip, strconv.Itoa(port)), nil
}
