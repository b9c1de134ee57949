package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Probe tells a refused port (the process is gone) from one that accepts
// and from one that cannot be told; a probe is no handshake failure, with
// TLS or without.
func TestProbe_RefusedAcceptedAndQuiet(t *testing.T) {
	pki, err := NewTestPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue("n1")
	if err != nil {
		t.Fatal(err)
	}
	tc, err := LoadTLS(cert, key, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, tlsc := range map[string]*TLSConfig{"plain": nil, "tls": tc} {
		t.Run(name, func(t *testing.T) {
			server, client := listen(t, tlsc), listen(t, tlsc)
			if err := client.Probe(server.Addr().String(), time.Second); err != nil {
				t.Errorf("probe of a listening mux: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			if s := server.Stats(); s.HandshakeFailures != 0 {
				t.Errorf("a probe counted as %d handshake failures", s.HandshakeFailures)
			}
			addr := server.Addr().String()
			server.Close()
			if err := client.Probe(addr, time.Second); !errors.Is(err, ErrPortClosed) {
				t.Errorf("probe of a closed port: %v, want ErrPortClosed", err)
			}
		})
	}
	// Listening but never accepting, as a stopped process: the kernel
	// accepts, so the probe connects.
	paused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer paused.Close()
	if err := listen(t, nil).Probe(paused.Addr().String(), time.Second); err != nil {
		t.Errorf("probe of a paused listener: %v", err)
	}
}

// OnConnError hears of a forward to a closed port and of a Raft
// connection the peer closes under a call, not of a call that times out
// against a peer that does not answer.
func TestMux_OnConnErrorHintsButNotTimeouts(t *testing.T) {
	var mu sync.Mutex
	hints := map[string]int{}
	m, err := Listen(Config{Bind: "127.0.0.1:0", OnConnError: func(addr string, err error) {
		mu.Lock()
		hints[addr]++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	count := func(addr string) int {
		mu.Lock()
		defer mu.Unlock()
		return hints[addr]
	}

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := m.Forward(ctx, closedAddr, []byte("x")); err == nil {
		t.Fatal("forward to a closed port succeeded")
	}
	if count(closedAddr) == 0 {
		t.Error("no hint for a forward to a closed port")
	}

	// A peer that accepts and never answers: the call times out, no hint.
	paused, _ := net.Listen("tcp", "127.0.0.1:0")
	defer paused.Close()
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := m.Forward(short, paused.Addr().String(), []byte("x")); err == nil {
		t.Fatal("forward to a paused peer succeeded")
	}
	if n := count(paused.Addr().String()); n != 0 {
		t.Errorf("%d hints for a peer that only timed out", n)
	}

	// A Raft connection whose peer closes it: the read under the call fails.
	peer := listen(t, nil)
	go func() {
		if c, err := peer.RaftLayer().Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := m.RaftLayer().Dial(raft.ServerAddress(peer.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from a closed Raft connection succeeded")
	}
	if count(peer.Addr().String()) == 0 {
		t.Error("no hint for a Raft connection the peer closed")
	}
}
