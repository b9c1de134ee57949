package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// ErrPortClosed: a probe's connection was refused. The peer's host
// answered, and nothing listens on the port: the process that served it
// is gone (killed, crashed, or stopped), since a live process keeps its
// listener and the kernel accepts into its backlog even while the process
// is paused or starved.
var ErrPortClosed = errors.New("transport: port refuses connections")

// Probe dials addr over TCP, from the node's own address, and closes the
// connection at once; the peer's mux takes a connection that says nothing
// as a port probe and logs nothing. It returns nil when the port accepted,
// an error wrapping ErrPortClosed when it refused, and another error
// (a timeout, an unreachable network) when it cannot tell.
func (m *Mux) Probe(addr string, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	if m.local != nil {
		d.LocalAddr = &net.TCPAddr{IP: m.local}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w: %s", ErrPortClosed, addr)
		}
		return fmt.Errorf("transport: probe %s: %w", addr, err)
	}
	return c.Close()
}

// connError reports err, an error of a Raft or forwarding connection to
// addr, to Config.OnConnError unless it says nothing about the peer's
// process: a timeout (the peer may only be slow), our own close, or our
// caller giving up.
func (m *Mux) connError(addr string, err error) {
	if m.onConnError == nil || err == nil {
		return
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrRemote):
		return
	}
	m.onConnError(addr, err)
}

// watchedConn is a Raft or forwarding connection this node dialled: its read and write
// errors (a reset, or EOF when the peer's side closed) are reported, as
// the dial's are. This is how replication and heartbeat failures, which
// hashicorp/raft keeps to itself, reach the node.
type watchedConn struct {
	net.Conn
	m    *Mux
	addr string
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		// EOF too: the peer's side closed under a call.
		c.m.connError(c.addr, err)
	}
	return n, err
}

func (c *watchedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.m.connError(c.addr, err)
	}
	return n, err
}
