package shipper

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// SyslogConfig configures a syslog listener.
type SyslogConfig struct {
	// URL is udp://HOST:PORT or tcp://HOST:PORT.
	URL string
	// ShipID is written in every record (HeaderShipID).
	ShipID string
	// LogFormat finds each message's client, its record key.
	LogFormat string
	// MaxMessage bounds one message (longer UDP datagrams are cut by the
	// kernel; longer TCP frames are dropped and counted).
	MaxMessage int
	// StopTimeout bounds, at stop, the wait for room in the producer's
	// buffer (while Kafka is away); default 5s.
	StopTimeout time.Duration
	Logger      *slog.Logger
	Metrics     *Metrics
}

// Syslog receives RFC 3164 and RFC 5424 messages, as nginx's
// `access_log syslog:server=...` and rsyslog send them, and ships their
// payload, the log line, keyed by its client; the sender's host and app go
// into headers. UDP is at most once by nature: a datagram the socket buffer
// has no room for is lost, and the kernel's count of those is exported
// (warden_ship_syslog_dropped_total{reason="kernel"}). TCP takes
// octet-counted (RFC 6587) and newline-delimited framing; it has no
// acknowledgement either, so a message in flight when ship stops is lost.
type Syslog struct {
	cfg   SyslogConfig
	cl    Producer
	lg    *slog.Logger
	m     *Metrics
	udp   *net.UDPConn
	tcp   net.Listener
	addr  net.Addr
	kmu   sync.Mutex
	drops uint32 // the kernel's drop counter last seen
	wg    sync.WaitGroup
	errMu sync.Mutex
	err   error
	pctx  context.Context // for Produce: outlives the stop by StopTimeout
}

// ListenSyslog binds the address of cfg.URL.
func ListenSyslog(cfg SyslogConfig, cl Producer) (*Syslog, error) {
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = 64 << 10
	}
	if cfg.LogFormat == "" {
		cfg.LogFormat = "auto"
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if _, err := NewKeyer(cfg.LogFormat); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("syslog address %q: want udp://HOST:PORT or tcp://HOST:PORT", cfg.URL)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Syslog{cfg: cfg, cl: cl, lg: lg.With("subsystem", "syslog", "listen", cfg.URL), m: cfg.Metrics}
	switch u.Scheme {
	case "udp":
		ua, err := net.ResolveUDPAddr("udp", u.Host)
		if err != nil {
			return nil, fmt.Errorf("syslog address %q: %w", cfg.URL, err)
		}
		if s.udp, err = net.ListenUDP("udp", ua); err != nil {
			return nil, fmt.Errorf("syslog: %w", err)
		}
		// Room for bursts: what does not fit is lost (and counted).
		_ = s.udp.SetReadBuffer(4 << 20)
		if err := countKernelDrops(s.udp); err != nil {
			s.lg.Warn("the kernel will not count dropped datagrams on this system", "err", err)
		}
		s.addr = s.udp.LocalAddr()
	case "tcp":
		if s.tcp, err = net.Listen("tcp", u.Host); err != nil {
			return nil, fmt.Errorf("syslog: %w", err)
		}
		s.addr = s.tcp.Addr()
	default:
		return nil, fmt.Errorf("syslog address %q: want udp:// or tcp://", cfg.URL)
	}
	return s, nil
}

// Addr is the address listened on.
func (s *Syslog) Addr() net.Addr { return s.addr }

// Serve ships messages until ctx is done, then closes the listener.
func (s *Syslog) Serve(ctx context.Context) error {
	s.lg.Info("listening for syslog", "addr", s.addr.String())
	pctx, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	s.pctx = pctx
	stopWaiting := context.AfterFunc(ctx, func() { time.AfterFunc(s.cfg.StopTimeout, pcancel) })
	defer stopWaiting()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		if s.udp != nil {
			s.udp.Close()
		}
		if s.tcp != nil {
			s.tcp.Close()
		}
	}()
	defer close(done)
	var err error
	if s.udp != nil {
		err = s.serveUDP()
	} else {
		err = s.serveTCP(ctx)
	}
	s.wg.Wait()
	if ctx.Err() != nil {
		err = nil
	}
	if err == nil {
		s.errMu.Lock()
		err = s.err
		s.errMu.Unlock()
	}
	return err
}

func (s *Syslog) serveUDP() error {
	k, _ := NewKeyer(s.cfg.LogFormat)
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for {
		n, oobn, _, _, err := s.udp.ReadMsgUDP(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("syslog: %w", err)
		}
		if d, ok := kernelDrops(oob[:oobn]); ok {
			s.kmu.Lock()
			if d > s.drops {
				s.m.drop("kernel", uint64(d-s.drops))
			}
			s.drops = d
			s.kmu.Unlock()
		}
		s.m.syslogMessage("udp")
		s.ship(k, buf[:n])
	}
}

func (s *Syslog) serveTCP(ctx context.Context) error {
	for {
		conn, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("syslog: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			s.serveConn(conn)
		}()
	}
}

// serveConn reads the frames of one TCP connection: octet-counted ("LEN
// MSG") when a frame starts with a digit, else up to a newline.
func (s *Syslog) serveConn(conn net.Conn) {
	k, _ := NewKeyer(s.cfg.LogFormat)
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		b, err := r.Peek(1)
		if err != nil {
			return
		}
		var msg []byte
		if b[0] >= '1' && b[0] <= '9' {
			lenStr, err := r.ReadSlice(' ')
			if err != nil {
				s.m.drop("malformed", 1)
				return
			}
			n, err := strconv.Atoi(string(lenStr[:len(lenStr)-1]))
			if err != nil || n < 1 {
				s.m.drop("malformed", 1)
				return
			}
			if n > s.cfg.MaxMessage {
				s.m.drop("oversized", 1)
				if _, err := r.Discard(n); err != nil {
					return
				}
				continue
			}
			msg = make([]byte, n)
			if _, err := io.ReadFull(r, msg); err != nil {
				return
			}
		} else {
			line, err := r.ReadBytes('\n')
			if len(line) > s.cfg.MaxMessage {
				s.m.drop("oversized", 1)
				if err != nil {
					return
				}
				continue
			}
			if err != nil && len(bytes.TrimSpace(line)) == 0 {
				return
			}
			msg = line
		}
		s.m.syslogMessage("tcp")
		s.ship(k, msg)
	}
}

// ship sends one message's payload.
func (s *Syslog) ship(k *Keyer, raw []byte) {
	m := ParseSyslog(raw)
	line := bytes.TrimRight(m.Msg, "\r\n\x00")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	r := &kgo.Record{Value: append([]byte(nil), line...), Headers: []kgo.RecordHeader{{Key: HeaderShipID, Value: []byte(s.cfg.ShipID)}}}
	if len(m.Host) > 0 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderSyslogHost, Value: append([]byte(nil), m.Host...)})
	}
	if len(m.App) > 0 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderSyslogApp, Value: append([]byte(nil), m.App...)})
	}
	r.Key = k.Key(r.Value)
	s.cl.Produce(s.pctx, r, func(_ *kgo.Record, err error) {
		if err != nil && s.pctx.Err() != nil {
			s.m.err("produce")
			return // given up at stop
		}
		if err != nil {
			s.m.err("produce")
			s.errMu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("a syslog line refused by Kafka: %w", err)
				s.lg.Error("Kafka refused a syslog line", "err", err)
			}
			s.errMu.Unlock()
			return
		}
		s.m.ack()
	})
	s.m.sent("syslog", len(line))
}

// SyslogMessage is what ParseSyslog finds in a message. Its slices alias
// the message.
type SyslogMessage struct {
	// OK is false for a message with no syslog header; Msg is then all
	// of it.
	OK        bool
	Priority  int
	Host, App []byte
	Msg       []byte
}

// ParseSyslog splits an RFC 5424 message ("<PRI>1 TIMESTAMP HOST APP
// PROCID MSGID SD MSG") or an RFC 3164 one ("<PRI>Mmm dd hh:mm:ss HOST
// TAG: MSG", the host left out by some senders, the timestamp by others)
// into its header fields and its payload.
func ParseSyslog(b []byte) SyslogMessage {
	out := SyslogMessage{Msg: b}
	if len(b) < 3 || b[0] != '<' {
		return out
	}
	end := bytes.IndexByte(b[:min(len(b), 6)], '>')
	if end < 2 {
		return out
	}
	pri, err := strconv.Atoi(string(b[1:end]))
	if err != nil || pri < 0 || pri > 191 {
		return out
	}
	rest := b[end+1:]
	out.Priority, out.OK = pri, true
	if len(rest) > 2 && rest[0] >= '1' && rest[0] <= '9' && rest[1] == ' ' {
		// RFC 5424: version, then timestamp host app procid msgid.
		f := rest[2:]
		var fields [5][]byte
		for i := range fields {
			sp := bytes.IndexByte(f, ' ')
			if sp < 0 {
				out.OK = false
				return out
			}
			fields[i], f = f[:sp], f[sp+1:]
		}
		out.Host, out.App = nilDash(fields[1]), nilDash(fields[2])
		// Structured data: "-" or one or more [id k="v" ...] elements.
		if len(f) > 0 && f[0] == '-' {
			f = f[1:]
		} else {
			for len(f) > 0 && f[0] == '[' {
				j := sdEnd(f)
				if j < 0 {
					out.OK = false
					return out
				}
				f = f[j+1:]
			}
		}
		f = bytes.TrimPrefix(f, []byte(" "))
		out.Msg = bytes.TrimPrefix(f, []byte("\xef\xbb\xbf"))
		return out
	}
	// RFC 3164. The timestamp "Mmm dd hh:mm:ss " when present.
	if len(rest) >= 16 && rest[3] == ' ' && rest[6] == ' ' && rest[9] == ':' && rest[12] == ':' && rest[15] == ' ' {
		rest = rest[16:]
	}
	// HOST TAG: or TAG: alone.
	first, after, _ := bytes.Cut(rest, []byte(" "))
	if isTag(first) {
		out.App, out.Msg = tagName(first), after
		return out
	}
	second, msg, found := bytes.Cut(after, []byte(" "))
	if found && isTag(second) {
		out.Host, out.App, out.Msg = first, tagName(second), msg
		return out
	}
	out.Msg = rest
	return out
}

func nilDash(b []byte) []byte {
	if len(b) == 1 && b[0] == '-' {
		return nil
	}
	return b
}

// isTag reports whether b is an RFC 3164 tag: "app:" or "app[pid]:".
func isTag(b []byte) bool {
	if len(b) < 2 || b[len(b)-1] != ':' {
		return false
	}
	for _, c := range b[:len(b)-1] {
		if c == ' ' || c == '"' {
			return false
		}
	}
	return true
}

func tagName(b []byte) []byte {
	b = b[:len(b)-1]
	if i := bytes.IndexByte(b, '['); i > 0 {
		b = b[:i]
	}
	return b
}

// sdEnd returns the index of the ']' closing the structured-data element
// that starts f, honouring \] escapes inside quoted values.
func sdEnd(f []byte) int {
	quoted := false
	for i := 1; i < len(f); i++ {
		switch f[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ']':
			if !quoted {
				return i
			}
		}
	}
	return -1
}
