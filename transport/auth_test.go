package transport

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, ClusterKeySize) }

func listenCfg(t *testing.T, cfg Config) *Mux {
	t.Helper()
	cfg.Bind = "127.0.0.1:0"
	m, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// countingForward answers like echoForward and counts the calls.
func countingForward(m *Mux) *atomic.Int32 {
	var calls atomic.Int32
	m.HandleForward(func(_ context.Context, p []byte) ([]byte, error) {
		calls.Add(1)
		return append([]byte("ok:"), p...), nil
	})
	return &calls
}

// forgedDecision is a forwarded request as the forwarding client writes
// one: the protocol byte, a length and a JSON fsm command.
func forgedDecision() []byte {
	cmd := []byte(`{"kind":"decision_add","decision":{"value":"198.51.100.7","type":"ban","reason":"forged","duration":"87600h","now":1}}`)
	b := []byte{protoForward}
	b = binary.BigEndian.AppendUint32(b, uint32(len(cmd)))
	return append(b, cmd...)
}

// closedByPeer reports whether the server closes c (EOF or reset) within d,
// as opposed to leaving it open.
func closedByPeer(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func rawDial(t *testing.T, m *Mux) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitStats(t *testing.T, m *Mux, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond(m.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats %+v", what, m.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClusterKey_GenerateAndParse(t *testing.T) {
	s, err := GenerateClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseClusterKey(s + "\n")
	if err != nil || len(k) != ClusterKeySize {
		t.Fatalf("generated key: %d bytes, %v", len(k), err)
	}
	if s2, _ := GenerateClusterKey(); s2 == s {
		t.Fatal("two generated keys are equal")
	}
	for in, want := range map[string]string{
		"":    "empty",
		"!!!": "not base64",
		base64.StdEncoding.EncodeToString(make([]byte, 16)): "decodes to 16 bytes; want 32",
	} {
		if _, err := ParseClusterKey(in); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "warden keygen") {
			t.Errorf("ParseClusterKey(%q) = %v, want an error saying %q and how to make one", in, err, want)
		}
	}
	if g := GossipKeyFromClusterKey(k); len(g) != 32 || bytes.Equal(g, k) {
		t.Fatalf("gossip key: %d bytes, equal to the cluster key: %v", len(g), bytes.Equal(g, k))
	}
	if _, err := Listen(Config{Bind: "127.0.0.1:0", ClusterKey: make([]byte, 16)}); err == nil {
		t.Fatal("a 16-byte cluster key was taken")
	}
}

func TestMux_ClusterKeyForwardAndRaft(t *testing.T) {
	key := testKey(7)
	server := listenCfg(t, Config{ClusterKey: key})
	calls := countingForward(server)
	client := listenCfg(t, Config{ClusterKey: key})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Forwarding, small and spanning many sealed records.
	if resp, err := client.Forward(ctx, server.Addr().String(), []byte("cmd")); err != nil || string(resp) != "ok:cmd" {
		t.Fatalf("forward = %q, %v", resp, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB
	resp, err := client.Forward(ctx, server.Addr().String(), big)
	if err != nil || !bytes.Equal(resp[3:], big) {
		t.Fatalf("large forward: %d bytes, %v", len(resp), err)
	}
	if calls.Load() != 2 {
		t.Fatalf("handler called %d times, want 2", calls.Load())
	}

	// Raft: a stream both ways, with a write larger than a record.
	got := make(chan []byte, 1)
	go func() {
		c, err := server.RaftLayer().Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b := make([]byte, 300_000)
		if _, err := io.ReadFull(c, b); err != nil {
			got <- nil
			return
		}
		_, _ = c.Write([]byte("pong"))
		got <- b
	}()
	c, err := client.RaftLayer().Dial(raft.ServerAddress(server.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("r"), 300_000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	pong := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, pong); err != nil || string(pong) != "pong" {
		t.Fatalf("raft answer %q, %v", pong, err)
	}
	if b := <-got; !bytes.Equal(b, msg) {
		t.Fatal("raft stream arrived altered")
	}
	if s := server.Stats(); s.HandshakeFailures != 0 || s.Refused != 0 {
		t.Fatalf("stats %+v after good traffic", s)
	}
}

// captureLog collects the messages a mux logs.
type captureLog struct {
	mu   sync.Mutex
	msgs []string
}

func (c *captureLog) Enabled(context.Context, slog.Level) bool { return true }
func (c *captureLog) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	c.msgs = append(c.msgs, line)
	return nil
}
func (c *captureLog) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captureLog) WithGroup(string) slog.Handler      { return c }
func (c *captureLog) matching(s string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}

func TestMux_ClusterKeyRefusesUnauthenticatedForward(t *testing.T) {
	logs := &captureLog{}
	server := listenCfg(t, Config{ClusterKey: testKey(7), Logger: slog.New(logs)})
	calls := countingForward(server)
	for i := 0; i < 3; i++ {
		c := rawDial(t, server)
		if _, err := c.Write(forgedDecision()); err != nil {
			t.Fatal(err)
		}
		if !closedByPeer(t, c, 3*time.Second) {
			t.Fatal("the connection of a forged request stayed open")
		}
	}
	waitStats(t, server, "three handshake failures", func(s Stats) bool { return s.HandshakeFailures == 3 })
	if calls.Load() != 0 {
		t.Fatalf("a forged request reached the handler (%d calls)", calls.Load())
	}
	// Logged at warn with the remote address, once for the burst.
	warned := logs.matching("handshake")
	if len(warned) != 1 || !strings.HasPrefix(warned[0], "WARN") || !strings.Contains(warned[0], "remote=127.0.0.1:") {
		t.Fatalf("handshake failures logged as %q, want one warning with the remote address", warned)
	}
}

func TestMux_ClusterKeyWrongOrMissing(t *testing.T) {
	server := listenCfg(t, Config{ClusterKey: testKey(7)})
	calls := countingForward(server)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	wrong := listenCfg(t, Config{ClusterKey: testKey(8)})
	if _, err := wrong.Forward(ctx, server.Addr().String(), []byte("x")); !errors.Is(err, ErrHandshake) {
		t.Fatalf("forward with the wrong key: %v, want ErrHandshake", err)
	}
	if _, err := wrong.RaftLayer().Dial(raft.ServerAddress(server.Addr().String()), time.Second); !errors.Is(err, ErrHandshake) {
		t.Fatalf("raft dial with the wrong key: %v, want ErrHandshake", err)
	}
	none := listenCfg(t, Config{})
	if _, err := none.Forward(ctx, server.Addr().String(), []byte("x")); err == nil {
		t.Fatal("a node without a key was served")
	}
	// A keyed node does not talk to a keyless one either.
	good := listenCfg(t, Config{ClusterKey: testKey(7)})
	if _, err := good.Forward(ctx, none.Addr().String(), []byte("x")); !errors.Is(err, ErrHandshake) {
		t.Fatalf("forward to a keyless node: %v, want ErrHandshake", err)
	}
	if calls.Load() != 0 {
		t.Fatalf("handler called %d times", calls.Load())
	}
	waitStats(t, server, "three handshake failures", func(s Stats) bool { return s.HandshakeFailures == 3 })
}

// recorder is a TCP proxy that keeps what clients sent.
type recorder struct {
	ln   net.Listener
	mu   sync.Mutex
	sent []byte
}

func newRecorder(t *testing.T, target string) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &recorder{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(c, s); c.Close() }()
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					r.mu.Lock()
					r.sent = append(r.sent, buf[:n]...)
					r.mu.Unlock()
					if _, werr := s.Write(buf[:n]); err != nil || werr != nil {
						s.Close()
						return
					}
				}
			}()
		}
	}()
	return r
}

func TestMux_ClusterKeyReplayedHandshakeFails(t *testing.T) {
	key := testKey(7)
	server := listenCfg(t, Config{ClusterKey: key})
	calls := countingForward(server)
	client := listenCfg(t, Config{ClusterKey: key})
	rec := newRecorder(t, server.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := client.Forward(ctx, rec.ln.Addr().String(), []byte("decision")); err != nil || string(resp) != "ok:decision" {
		t.Fatalf("forward through the recorder: %q, %v", resp, err)
	}
	rec.mu.Lock()
	transcript := append([]byte(nil), rec.sent...)
	rec.mu.Unlock()

	// The whole client side, replayed byte for byte, is refused.
	c := rawDial(t, server)
	if _, err := c.Write(transcript); err != nil {
		t.Fatal(err)
	}
	if !closedByPeer(t, c, 3*time.Second) {
		t.Fatal("a replayed handshake kept its connection")
	}
	waitStats(t, server, "the replay refused", func(s Stats) bool { return s.HandshakeFailures == 1 })
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times, want only the genuine call", calls.Load())
	}
}

func TestMux_ClusterKeyReflectedProofFails(t *testing.T) {
	server := listenCfg(t, Config{ClusterKey: testKey(7)})
	calls := countingForward(server)
	c := rawDial(t, server)
	hello := append([]byte{protoForward}, helloMagic...)
	hello = append(hello, bytes.Repeat([]byte{1}, nonceSize)...)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, nonceSize+proofSize)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatal(err)
	}
	// Send the server's own proof back as ours.
	if _, err := c.Write(resp[nonceSize:]); err != nil {
		t.Fatal(err)
	}
	if !closedByPeer(t, c, 3*time.Second) {
		t.Fatal("a reflected proof kept its connection")
	}
	waitStats(t, server, "the reflection refused", func(s Stats) bool { return s.HandshakeFailures == 1 })
	if calls.Load() != 0 {
		t.Fatal("the handler was called")
	}
}

// pipeConn is a net.Conn reading from r and writing to w.
type pipeConn struct {
	net.Conn
	r io.Reader
	w io.Writer
}

func (p pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }

func TestSealedConn_RefusesTamperedReplayedAndReflectedRecords(t *testing.T) {
	c2s, s2c := sessionKeys(testKey(7), protoRaft, bytes.Repeat([]byte{1}, nonceSize), bytes.Repeat([]byte{2}, nonceSize))
	records := func(msgs ...string) [][]byte {
		var out [][]byte
		for _, m := range msgs {
			var buf bytes.Buffer
			w := newSealedConn(pipeConn{w: &buf}, nil, c2s)
			w.wseq = uint64(len(out))
			if _, err := w.Write([]byte(m)); err != nil {
				t.Fatal(err)
			}
			out = append(out, buf.Bytes())
		}
		return out
	}
	read := func(key []byte, stream ...[]byte) (string, error) {
		r := newSealedConn(pipeConn{r: bytes.NewReader(bytes.Join(stream, nil))}, key, nil)
		b, err := io.ReadAll(r)
		return string(b), err
	}
	rs := records("first", "second")
	if got, err := read(c2s, rs...); got != "firstsecond" || err != nil {
		t.Fatalf("genuine records: %q, %v", got, err)
	}
	tampered := bytes.Clone(rs[0])
	tampered[5] ^= 1
	cases := map[string][][]byte{
		"tampered":  {tampered},
		"replayed":  {rs[0], rs[0]},
		"reordered": {rs[1], rs[0]},
		"oversized": {binary.BigEndian.AppendUint32(nil, maxRecord+1)},
	}
	for name, stream := range cases {
		if _, err := read(c2s, stream...); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: %v, want ErrBadRecord", name, err)
		}
	}
	// A record sent back the way it came does not verify either.
	if _, err := read(s2c, rs[0]); !errors.Is(err, ErrBadRecord) {
		t.Errorf("reflected record: %v, want ErrBadRecord", err)
	}
}

func TestReadFrame_OversizedHeaderRefusedBeforeAllocating(t *testing.T) {
	huge := binary.BigEndian.AppendUint32(nil, maxFrame+1)
	if _, err := readFrame(bytes.NewReader(huge)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("header over the limit: %v", err)
	}
	// A header within the limit followed by a few bytes costs what came.
	claim := append(binary.BigEndian.AppendUint32(nil, maxFrame), "only this"...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < 10; i++ {
		if _, err := readFrame(bytes.NewReader(claim)); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated frame: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 10<<20 {
		t.Fatalf("10 frame headers allocated %d bytes", got)
	}

	// Over the network, without a key: closed at once, handler not called.
	server := listenCfg(t, Config{})
	calls := countingForward(server)
	c := rawDial(t, server)
	if _, err := c.Write(append([]byte{protoForward}, huge...)); err != nil {
		t.Fatal(err)
	}
	if !closedByPeer(t, c, 2*time.Second) {
		t.Fatal("an oversized frame left its connection open")
	}
	if calls.Load() != 0 {
		t.Fatal("handler called")
	}
}

func TestMux_SlowLorisClosedByDeadline(t *testing.T) {
	const timeout = 200 * time.Millisecond
	keyed := listenCfg(t, Config{ClusterKey: testKey(7), HandshakeTimeout: timeout})
	plain := listenCfg(t, Config{HandshakeTimeout: timeout, RequestTimeout: timeout})
	for _, tc := range []struct {
		name string
		m    *Mux
		send []byte
	}{
		{"silent", keyed, nil},
		{"keyed raft byte", keyed, []byte{protoRaft}},
		{"keyed forward byte", keyed, []byte{protoForward}},
		{"keyed half hello", keyed, append([]byte{protoForward}, helloMagic[:4]...)},
		{"plain forward byte", plain, []byte{protoForward}},
		{"plain half header", plain, []byte{protoForward, 0, 0}},
		{"plain half frame", plain, []byte{protoForward, 0, 0, 0, 10, 'x'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, tc.m)
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if !closedByPeer(t, c, 3*time.Second) {
				t.Fatal("a stalled connection stayed open")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("closed after %s", d)
			}
		})
	}
}

func TestMux_ConnectionCap(t *testing.T) {
	key := testKey(7)
	// Four connections, one of them in its handshake.
	server := listenCfg(t, Config{ClusterKey: key, MaxConns: 4, HandshakeTimeout: 300 * time.Millisecond})
	countingForward(server)
	client := listenCfg(t, Config{ClusterKey: key})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	forward := func() error { _, err := client.Forward(ctx, server.Addr().String(), []byte("x")); return err }

	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := server.RaftLayer().Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := client.RaftLayer().Dial(raft.ServerAddress(server.Addr().String()), time.Second)
		if err != nil {
			t.Fatalf("raft connection %d: %v", i, err)
		}
		defer c.Close()
		held = append(held, <-accepted)
	}
	waitFor := func(what string, f func() error) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for err := f(); err != nil; err = f() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := forward(); err != nil {
		t.Fatalf("forward in the fourth slot: %v", err)
	}
	// The forwarding connection's slot comes back once the server has
	// closed its side.
	waitFor("a fourth raft connection", func() error {
		c, err := client.RaftLayer().Dial(raft.ServerAddress(server.Addr().String()), time.Second)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			held = append(held, <-accepted)
		}
		return err
	})
	if err := forward(); err == nil {
		t.Fatal("a fifth connection was served")
	}
	waitStats(t, server, "a refusal", func(s Stats) bool { return s.Refused >= 1 })
	held[0].Close()
	waitFor("forward after a close", forward)

	// A stranger stalling in the handshake holds the only handshake slot
	// until the deadline, and no longer.
	held[1].Close()
	stall := rawDial(t, server)
	_, _ = stall.Write([]byte{protoForward})
	for deadline := time.Now().Add(5 * time.Second); server.pending.Load() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stranger's connection never arrived")
		}
	}
	if err := forward(); err == nil {
		t.Fatal("served while the handshake slot was taken")
	}
	waitFor("forward after the stranger's deadline", forward)
}

// BenchmarkSealedConn measures the record layer alone: sealing on one side,
// verifying on the other, 256 KiB per write (raft's send buffer).
func BenchmarkSealedConn(b *testing.B) {
	c2s, _ := sessionKeys(testKey(7), protoRaft, make([]byte, nonceSize), make([]byte, nonceSize))
	msg := bytes.Repeat([]byte("x"), 256<<10)
	var wire bytes.Buffer
	w := newSealedConn(pipeConn{w: &wire}, nil, c2s)
	if _, err := w.Write(msg); err != nil {
		b.Fatal(err)
	}
	sealed := wire.Bytes()
	out := make([]byte, len(msg))
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wire.Reset()
		w.wseq = 0
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
		r := newSealedConn(pipeConn{r: bytes.NewReader(sealed)}, c2s, nil)
		if _, err := io.ReadFull(r, out); err != nil {
			b.Fatal(err)
		}
	}
}
