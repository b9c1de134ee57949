// Package transport carries Warden's node-to-node traffic.
//
// One TCP port per node (the --raft address) carries two protocols, told
// apart by the first byte a client sends: Raft's own RPCs (through the
// raft.StreamLayer this package provides to hashicorp/raft's
// NetworkTransport) and the forwarding RPC by which a follower hands a
// proposal to the leader. The port is optionally wrapped in TLS, mutual when a
// CA is configured, so a node without a certificate signed by that CA can
// neither join Raft nor propose.
//
// Gossip (memberlist) has its own UDP+TCP port; GossipConfig builds its
// configuration, tuned for a LAN and encrypted with the shared key.
package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Protocol bytes: the first byte of every connection.
const (
	protoRaft    byte = 'R'
	protoForward byte = 'F'
)

// ErrClosed is returned by Accept once the mux is closed.
var ErrClosed = errors.New("transport: closed")

// Mux listens on one address and hands each connection to the protocol it
// names.
type Mux struct {
	ln        net.Listener
	advertise net.Addr
	serverTLS *tls.Config
	clientTLS *tls.Config
	log       *slog.Logger

	// local is the IP outgoing connections leave from: the bound one, so
	// that every node is one address to peers and packet filters.
	local net.IP

	raftConns chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once

	mu      sync.RWMutex
	forward ForwardHandler
}

// Config configures a Mux.
type Config struct {
	// Bind is the host:port to listen on.
	Bind string
	// Advertise is the address peers dial; defaults to the bound address.
	Advertise string
	// TLS, when set, secures every connection both ways.
	TLS *TLSConfig
	// Logger receives transport errors.
	Logger *slog.Logger
}

// Listen opens the node's Raft/forwarding port.
func Listen(cfg Config) (*Mux, error) {
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", cfg.Bind, err)
	}
	adv := ln.Addr()
	if cfg.Advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("transport: advertise address %q: %w", cfg.Advertise, err)
		}
		adv = a
	}
	if tcp, ok := adv.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("transport: %s is not an address peers can dial; give a concrete IP", adv)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	m := &Mux{
		local:     bindIP(ln.Addr()),
		ln:        ln,
		advertise: adv,
		log:       lg,
		raftConns: make(chan net.Conn, 16),
		closed:    make(chan struct{}),
	}
	if cfg.TLS != nil {
		m.serverTLS, m.clientTLS = cfg.TLS.server, cfg.TLS.client
	}
	go m.serve()
	return m, nil
}

// Addr is the advertised address of the mux.
func (m *Mux) Addr() net.Addr { return m.advertise }

// Close stops accepting connections.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.closed)
		err = m.ln.Close()
	})
	return err
}

func (m *Mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Error("accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go m.route(c)
	}
}

// route reads the protocol byte (after the TLS handshake, if any) and hands
// the connection on. A peer that says nothing in time is dropped.
func (m *Mux) route(c net.Conn) {
	if m.serverTLS != nil {
		tc := tls.Server(c, m.serverTLS)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			m.log.Warn("tls handshake refused", "remote", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
		c = tc
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		select {
		case m.raftConns <- c:
		case <-m.closed:
			c.Close()
		}
	case protoForward:
		m.serveForward(c)
	default:
		m.log.Warn("unknown protocol byte", "remote", c.RemoteAddr(), "byte", b[0])
		c.Close()
	}
}

// dial opens a connection to addr speaking proto.
func (m *Mux) dial(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if m.local != nil {
		d.LocalAddr = &net.TCPAddr{IP: m.local}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if m.clientTLS != nil {
		cfg := m.clientTLS.Clone()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
		tc := tls.Client(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(timeout + 5*time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("transport: tls handshake with %s: %w", addr, err)
		}
		_ = tc.SetDeadline(time.Time{})
		c = tc
	}
	if _, err := c.Write([]byte{proto}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// RaftLayer returns the raft.StreamLayer over this mux.
func (m *Mux) RaftLayer() raft.StreamLayer { return raftLayer{m} }

type raftLayer struct{ m *Mux }

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftConns:
		return c, nil
	case <-l.m.closed:
		return nil, ErrClosed
	}
}

func (l raftLayer) Close() error   { return l.m.Close() }
func (l raftLayer) Addr() net.Addr { return l.m.advertise }

func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.m.dial(string(addr), protoRaft, timeout)
}

func bindIP(a net.Addr) net.IP {
	if t, ok := a.(*net.TCPAddr); ok && !t.IP.IsUnspecified() {
		return t.IP
	}
	return nil
}
