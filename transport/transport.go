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
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
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

	key              []byte
	handshakeTimeout time.Duration
	requestTimeout   time.Duration
	maxConns         int64
	maxPending       int64

	// open counts accepted connections not yet closed; pending those of
	// them still in their handshake.
	open, pending atomic.Int64
	stats         struct{ handshakeFailures, refused atomic.Uint64 }
	authLog       rateLog
	refuseLog     rateLog
	frameLog      rateLog

	raftConns chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once

	mu      sync.RWMutex
	forward ForwardHandler

	onConnError func(addr string, err error)
}

// Defaults of Config's limits.
const (
	DefaultMaxConns         = 256
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultRequestTimeout   = 30 * time.Second
)

// Config configures a Mux.
type Config struct {
	// Bind is the host:port to listen on.
	Bind string
	// Advertise is the address peers dial; defaults to the bound address.
	Advertise string
	// TLS, when set, secures every connection both ways.
	TLS *TLSConfig
	// ClusterKey, when set (ClusterKeySize bytes, see ParseClusterKey), is
	// the secret every node shares: each connection, both protocols, opens
	// with a handshake in which both sides prove they hold it, and every
	// byte after it is MAC'd. A peer without it can neither join Raft nor
	// propose. It combines with TLS (inside it).
	ClusterKey []byte
	// MaxConns caps the accepted connections open at once
	// (DefaultMaxConns when 0); at most a quarter of them may be in their
	// handshake, so a flood of strangers cannot crowd out established
	// Raft connections. Raft keeps a few per peer; forwarding opens one
	// per call.
	MaxConns int
	// HandshakeTimeout bounds what a peer must do before it is served: the
	// TLS handshake, the protocol byte and the cluster-key handshake
	// (DefaultHandshakeTimeout when 0).
	HandshakeTimeout time.Duration
	// RequestTimeout bounds receiving one forwarded request and sending
	// its answer, and how long a forwarding connection may sit idle
	// (DefaultRequestTimeout when 0).
	RequestTimeout time.Duration
	// Logger receives transport errors.
	Logger *slog.Logger
	// OnConnError, when set, is told of every Raft or forwarding
	// connection to a peer that failed other than by a timeout: a refused
	// dial, a reset, the peer's side closing under a call. It is a hint
	// that the peer's process is gone, not proof (Probe gives that); it is
	// called on the failing goroutine and must not block.
	OnConnError func(addr string, err error)
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
	if cfg.ClusterKey != nil && len(cfg.ClusterKey) != ClusterKeySize {
		ln.Close()
		return nil, fmt.Errorf("transport: cluster key of %d bytes; want %d", len(cfg.ClusterKey), ClusterKeySize)
	}
	m := &Mux{
		local:            bindIP(ln.Addr()),
		ln:               ln,
		advertise:        adv,
		log:              lg,
		key:              cfg.ClusterKey,
		handshakeTimeout: orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout),
		requestTimeout:   orDefault(cfg.RequestTimeout, DefaultRequestTimeout),
		maxConns:         int64(cfg.MaxConns),
		onConnError:      cfg.OnConnError,
		raftConns:        make(chan net.Conn, 16),
		closed:           make(chan struct{}),
	}
	if m.maxConns <= 0 {
		m.maxConns = DefaultMaxConns
	}
	m.maxPending = max(1, m.maxConns/4)
	if cfg.TLS != nil {
		m.serverTLS, m.clientTLS = cfg.TLS.server, cfg.TLS.client
	}
	go m.serve()
	return m, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Addr is the advertised address of the mux.
func (m *Mux) Addr() net.Addr { return m.advertise }

// Stats counts the connections a mux turned away.
type Stats struct {
	// HandshakeFailures is the connections closed because they failed the
	// TLS or cluster-key handshake, or sent no protocol byte in time.
	HandshakeFailures uint64
	// Refused is the connections closed on arrival because MaxConns were
	// open, or a quarter of that were in their handshake.
	Refused uint64
}

// Stats returns the counts since the mux opened.
func (m *Mux) Stats() Stats {
	return Stats{HandshakeFailures: m.stats.handshakeFailures.Load(), Refused: m.stats.refused.Load()}
}

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
		if !m.admit() {
			m.stats.refused.Add(1)
			if ok, dropped := m.refuseLog.allow(); ok {
				m.log.Warn("connection refused: too many open", "remote", c.RemoteAddr(),
					"open", m.open.Load(), "handshaking", m.pending.Load(), "max_conns", m.maxConns, "refused_since_last_log", dropped)
			}
			c.Close()
			continue
		}
		go m.route(&countedConn{Conn: c, m: m})
	}
}

// admit takes a connection slot and a handshake slot, or neither.
func (m *Mux) admit() bool {
	if m.open.Add(1) > m.maxConns {
		m.open.Add(-1)
		return false
	}
	if m.pending.Add(1) > m.maxPending {
		m.pending.Add(-1)
		m.open.Add(-1)
		return false
	}
	return true
}

// countedConn gives its slot back when closed, by whoever closes it.
type countedConn struct {
	net.Conn
	m    *Mux
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.m.open.Add(-1) })
	return c.Conn.Close()
}

// refuse closes a connection that failed before being served and logs it,
// at most once a second.
func (m *Mux) refuse(c net.Conn, err error) {
	m.stats.handshakeFailures.Add(1)
	if ok, dropped := m.authLog.allow(); ok {
		m.log.Warn("connection failed its handshake; closed", "remote", c.RemoteAddr(), "err", err, "failed_since_last_log", dropped)
	}
	c.Close()
}

// route authenticates a connection and hands it to the protocol it names.
// Until then every read is under the handshake deadline, so a peer that
// stalls is dropped; after it, Raft connections have no deadline (raft sets
// its own per RPC, and its idle pooled connections must stay open) and
// forwarding connections one per request.
func (m *Mux) route(c net.Conn) {
	handshaking := true
	defer func() {
		if handshaking {
			m.pending.Add(-1)
		}
	}()
	_ = c.SetDeadline(time.Now().Add(m.handshakeTimeout))
	if m.serverTLS != nil {
		tc := tls.Server(c, m.serverTLS)
		if err := tc.Handshake(); errors.Is(err, io.EOF) {
			c.Close() // a port probe (Probe), before any TLS record
			return
		} else if err != nil {
			m.refuse(c, fmt.Errorf("tls: %w", err))
			return
		}
		c = tc
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); errors.Is(err, io.EOF) {
		c.Close() // a port probe: connected, said nothing, left
		return
	} else if err != nil {
		m.refuse(c, fmt.Errorf("no protocol byte: %w", err))
		return
	}
	proto := b[0]
	if proto != protoRaft && proto != protoForward {
		m.refuse(c, fmt.Errorf("unknown protocol byte %#x", proto))
		return
	}
	if m.key != nil {
		sc, err := serverHandshake(c, m.key, proto)
		if err != nil {
			m.refuse(c, err)
			return
		}
		c = sc
	}
	_ = c.SetDeadline(time.Time{})
	handshaking = false
	m.pending.Add(-1)
	switch proto {
	case protoRaft:
		select {
		case m.raftConns <- c:
		case <-m.closed:
			c.Close()
		}
	case protoForward:
		m.serveForward(c)
	}
}

// dial opens a connection to addr speaking proto: TLS and the cluster-key
// handshake, if configured, are done when it returns.
func (m *Mux) dial(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if m.local != nil {
		d.LocalAddr = &net.TCPAddr{IP: m.local}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		m.connError(addr, err)
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout + m.handshakeTimeout))
	if m.clientTLS != nil {
		cfg := m.clientTLS.Clone()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("transport: tls handshake with %s: %w", addr, err)
		}
		c = tc
	}
	if m.key != nil {
		sc, err := clientHandshake(c, m.key, proto)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("transport: handshake with %s: %w", addr, err)
		}
		c = sc
	} else if _, err := c.Write([]byte{proto}); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
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
	c, err := l.m.dial(string(addr), protoRaft, timeout)
	if err != nil || l.m.onConnError == nil {
		return c, err
	}
	return &watchedConn{Conn: c, m: l.m, addr: string(addr)}, nil
}

func bindIP(a net.Addr) net.IP {
	if t, ok := a.(*net.TCPAddr); ok && !t.IP.IsUnspecified() {
		return t.IP
	}
	return nil
}

// rateLog lets one message through per second and counts the others.
type rateLog struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (r *rateLog) allow() (ok bool, dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.last) < time.Second {
		r.dropped++
		return false, 0
	}
	r.last, dropped, r.dropped = now, r.dropped, 0
	return true, dropped
}
