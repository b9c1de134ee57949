package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipConfig describes a node's memberlist.
type GossipConfig struct {
	Name      string
	Bind      string // host:port for gossip (UDP and TCP)
	Advertise string // host:port peers use; defaults to Bind
	// Key encrypts all gossip (AES); nodes with another key cannot join.
	Key []byte
	// ProbeInterval is how often each node probes a random peer. Failure
	// detection takes about ProbeInterval*(1+SuspicionMult) on a LAN.
	ProbeInterval time.Duration
	SuspicionMult int
	Delegate      memberlist.Delegate
	Events        memberlist.EventDelegate
	Logger        *slog.Logger
}

// DefaultGossipConfig is tuned for a LAN: a SIGKILLed node is declared
// failed in about a second, against memberlist's default of several.
func DefaultGossipConfig() GossipConfig {
	return GossipConfig{ProbeInterval: 200 * time.Millisecond, SuspicionMult: 3}
}

// NewMemberlist builds and starts a memberlist from cfg.
func NewMemberlist(cfg GossipConfig) (*memberlist.Memberlist, error) {
	host, port, err := SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("transport: gossip address: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	if cfg.Advertise != "" {
		ah, ap, err := SplitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("transport: gossip advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
		mc.ProbeTimeout = cfg.ProbeInterval / 2
		mc.GossipInterval = cfg.ProbeInterval / 2
	}
	if cfg.SuspicionMult > 0 {
		mc.SuspicionMult = cfg.SuspicionMult
	}
	mc.SuspicionMaxTimeoutMult = 3
	mc.PushPullInterval = 5 * time.Second
	mc.TCPTimeout = 2 * time.Second
	// A node that restarts with a new address may reclaim its name quickly.
	mc.DeadNodeReclaimTime = time.Second
	mc.GossipToTheDeadTime = 5 * time.Second
	mc.SecretKey = cfg.Key
	// Membership messages fit a packet as they are; compressing each
	// makes a new LZW writer (tens of KB zeroed) per packet, a cost that
	// grows with probes, not with what is said. Peers that compress are
	// still understood.
	mc.EnableCompression = false
	// Our own transport, so that outgoing TCP leaves from the gossip
	// address as UDP does: peers (and packet filters) see one address
	// per node.
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port,
		Logger: mc.Logger})
	if err != nil {
		return nil, fmt.Errorf("transport: gossip listen %s: %w", cfg.Bind, err)
	}
	if port == 0 {
		mc.BindPort = nt.GetAutoBindPort()
		if cfg.Advertise == "" {
			mc.AdvertisePort = mc.BindPort
		}
	}
	mc.Transport = &boundTransport{NetTransport: nt, local: localIP(host)}
	mc.Delegate = cfg.Delegate
	mc.Events = cfg.Events
	mc.LogOutput = nil
	mc.Logger = log.New(LogWriter(cfg.Logger), "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("transport: start gossip on %s: %w", cfg.Bind, err)
	}
	return ml, nil
}

// JoinWithRetry joins the gossip cluster through any of addrs, retrying with
// capped exponential backoff until one answers or ctx ends. Each failure is
// logged, so an unreachable join target is visible while the node stays up.
func JoinWithRetry(ctx context.Context, ml *memberlist.Memberlist, addrs []string, lg *slog.Logger) error {
	backoff := 200 * time.Millisecond
	for {
		n, err := ml.Join(addrs)
		if n > 0 {
			return nil
		}
		lg.Warn("cannot reach any join address; retrying", "join", strings.Join(addrs, ","), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// SplitHostPort splits host:port and checks both halves, so a malformed
// address is refused up front with a message naming it.
func SplitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q has no valid port", addr)
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q has no host", addr)
	}
	return host, port, nil
}

// LogWriter returns an io.Writer that turns the text lines of hashicorp's
// loggers ("[WARN] memberlist: ...") into slog records of the same level.
func LogWriter(lg *slog.Logger) io.Writer {
	if lg == nil {
		lg = slog.Default()
	}
	return &logWriter{lg: lg}
}

type logWriter struct {
	mu  sync.Mutex
	lg  *slog.Logger
	buf bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			// Keep the partial line for the next write.
			rest := line
			w.buf.Reset()
			w.buf.WriteString(rest)
			return len(p), nil
		}
		w.emit(strings.TrimRight(line, "\r\n"))
	}
}

func (w *logWriter) emit(line string) {
	level := slog.LevelInfo
	for tag, l := range map[string]slog.Level{
		"[TRACE]": slog.LevelDebug - 4, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo,
		"[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
	} {
		if i := strings.Index(line, tag); i >= 0 {
			level = l
			line = strings.TrimSpace(line[i+len(tag):])
			break
		}
	}
	w.lg.Log(context.Background(), level, line)
}

// boundTransport is memberlist's TCP/UDP transport with outgoing TCP
// connections bound to the node's gossip IP.
type boundTransport struct {
	*memberlist.NetTransport
	local net.IP
}

func (t *boundTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *boundTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if t.local != nil {
		d.LocalAddr = &net.TCPAddr{IP: t.local}
	}
	return d.Dial("tcp", a.Addr)
}

// localIP is host as an IP to bind outgoing connections to, or nil for an
// unspecified or non-IP host (let the kernel choose).
func localIP(host string) net.IP {
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil
	}
	return ip
}
