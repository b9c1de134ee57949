package clustertest

import (
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Agent is one `warden agent` by its fixed identity: an id, a data dir and
// three addresses it keeps across restarts, so that it restarts as itself.
// Its process changes with each start; the methods are safe to call from
// several goroutines.
type Agent struct {
	ID      string
	IP      string // the loopback address its three ports are on
	DataDir string
	Raft    string // host:port of --raft
	Gossip  string // host:port of --gossip
	HTTP    string // host:port of --http

	mu          sync.Mutex
	proc        *Proc
	paused      bool
	incarnation int
}

// NewAgent gives an agent that has not started three ports free on ip
// (Raft, gossip, HTTP, in that order) and the data dir dataDir.
func NewAgent(id, ip, dataDir string) (*Agent, error) {
	a := &Agent{ID: id, IP: ip, DataDir: dataDir}
	for _, p := range []*string{&a.Raft, &a.Gossip, &a.HTTP} {
		addr, err := FreeAddr(ip)
		if err != nil {
			return nil, err
		}
		*p = addr
	}
	return a, nil
}

// Flags is the agent's flag set with its identity, its addresses and where
// it reads from filled in; the caller sets the rest.
func (a *Agent) Flags(broker, topic string) AgentFlags {
	return AgentFlags{ID: a.ID, DataDir: a.DataDir, Raft: a.Raft, Gossip: a.Gossip, HTTP: a.HTTP, Brokers: broker, Topic: topic}
}

// Start starts bin as the agent with the flags f, its output appended to
// <logDir>/<id>.log. Each start is a new incarnation, not paused.
func (a *Agent) Start(bin, logDir string, f AgentFlags) error {
	p, err := Start(bin, logDir, a.ID, f.Args()...)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.proc, a.paused = p, false
	a.incarnation++
	a.mu.Unlock()
	return nil
}

// Proc is the agent's latest process (nil before the first start).
func (a *Agent) Proc() *Proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// Alive reports whether the agent's process runs (paused or not).
func (a *Agent) Alive() bool {
	p := a.Proc()
	return p != nil && p.Alive()
}

// Paused reports whether the agent was paused (SIGSTOP) and not resumed.
func (a *Agent) Paused() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.paused
}

// Running reports, at one instant, whether the agent's process runs and is
// not paused, and which start of the agent it is (1 for the first).
func (a *Agent) Running() (incarnation int, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.incarnation, a.proc != nil && a.proc.Alive() && !a.paused
}

// Kill ends the agent's process with SIGKILL, as a crash does, and waits.
func (a *Agent) Kill() {
	if p := a.Proc(); p != nil {
		p.Kill()
	}
}

// Stop sends sig (SIGTERM: a graceful leave) and waits for the process to
// end. An agent still running after grace gets SIGQUIT, on which the Go
// runtime writes every goroutine's stack to the agent's log and exits,
// and SIGKILL if it is still there quitDump later. Stop reports whether
// the agent had to be made to end so.
func (a *Agent) Stop(sig syscall.Signal, grace time.Duration) (forced bool) {
	p := a.Proc()
	if p == nil {
		return false
	}
	p.Signal(sig)
	if p.Wait(grace) {
		return false
	}
	p.Stop(syscall.SIGQUIT, quitDump)
	return true
}

// quitDump is how long Stop gives an agent that got SIGQUIT to write its
// goroutines' stacks.
const quitDump = 2 * time.Second

// Pause stops the process with SIGSTOP: it keeps its sockets and answers
// nothing, as a node in a long GC pause or a frozen VM.
func (a *Agent) Pause() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil {
		a.proc.Signal(syscall.SIGSTOP)
		a.paused = true
	}
}

// Resume continues a paused process with SIGCONT.
func (a *Agent) Resume() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil {
		a.proc.Signal(syscall.SIGCONT)
		a.paused = false
	}
}

// AgentFlags is the command line of one `warden agent`. The fields are the
// flags the harness and its callers choose; Extra holds any other flag, as
// given on a command line.
type AgentFlags struct {
	ID, DataDir, Raft, Gossip, HTTP string
	// Brokers is --brokers (comma-separated seed brokers); Topic is --topic.
	Brokers, Topic string
	// BootstrapExpect is --bootstrap-expect, always given (0: the node
	// forms a cluster alone or joins one with Join).
	BootstrapExpect int
	// Voters is --voters; 0 leaves the agent's default.
	Voters int
	// ReapAfter and BatchInterval are --reap-after and --batch-interval; 0
	// leaves the agent's default.
	ReapAfter, BatchInterval time.Duration
	// Join is --join: gossip addresses of members; none: the flag is not
	// given.
	Join []string
	// Extra are more flags, given last so that they win over the fields.
	Extra []string
}

// Args is f as the arguments of the warden binary, subcommand first.
func (f AgentFlags) Args() []string {
	args := []string{"agent", "--id", f.ID, "--data-dir", f.DataDir, "--raft", f.Raft, "--gossip", f.Gossip, "--http", f.HTTP,
		"--brokers", f.Brokers, "--topic", f.Topic, "--bootstrap-expect", strconv.Itoa(f.BootstrapExpect)}
	if f.Voters != 0 {
		args = append(args, "--voters", strconv.Itoa(f.Voters))
	}
	if f.ReapAfter != 0 {
		args = append(args, "--reap-after", f.ReapAfter.String())
	}
	if f.BatchInterval != 0 {
		args = append(args, "--batch-interval", f.BatchInterval.String())
	}
	if len(f.Join) > 0 {
		args = append(args, "--join", strings.Join(f.Join, ","))
	}
	return append(args, f.Extra...)
}
