package transport

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

func listen(t *testing.T, tc *TLSConfig) *Mux {
	t.Helper()
	m, err := Listen(Config{Bind: "127.0.0.1:0", TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func echoForward(m *Mux) {
	m.HandleForward(func(_ context.Context, p []byte) ([]byte, error) {
		if string(p) == "fail" {
			return nil, errors.New("refused on purpose")
		}
		return append([]byte("ok:"), p...), nil
	})
}

func TestMux_RoutesRaftAndForward(t *testing.T) {
	m := listen(t, nil)
	echoForward(m)
	layer := m.RaftLayer()

	// Raft: a dialled stream arrives at Accept with its bytes intact.
	done := make(chan []byte, 1)
	go func() {
		c, err := layer.Accept()
		if err != nil {
			done <- nil
			return
		}
		b := make([]byte, 5)
		_, _ = io.ReadFull(c, b)
		c.Close()
		done <- b
	}()
	c, err := layer.Dial(raft.ServerAddress(m.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("hello"))
	select {
	case got := <-done:
		if string(got) != "hello" {
			t.Fatalf("raft stream got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("raft connection never accepted")
	}
	c.Close()

	// Forward: answer and error both come back.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := m.Forward(ctx, m.Addr().String(), []byte("cmd"))
	if err != nil || string(resp) != "ok:cmd" {
		t.Fatalf("forward = %q, %v", resp, err)
	}
	big := bytes.Repeat([]byte("x"), 1<<20)
	resp, err = m.Forward(ctx, m.Addr().String(), big)
	if err != nil || len(resp) != len(big)+3 {
		t.Fatalf("large forward: %d bytes, %v", len(resp), err)
	}
	_, err = m.Forward(ctx, m.Addr().String(), []byte("fail"))
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "refused on purpose") {
		t.Fatalf("remote error = %v", err)
	}
}

func TestMux_MutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki, err := NewTestPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue("n1")
	if err != nil {
		t.Fatal(err)
	}
	good, err := LoadTLS(cert, key, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	server := listen(t, good)
	echoForward(server)
	client := listen(t, good)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if resp, err := client.Forward(ctx, server.Addr().String(), []byte("x")); err != nil || string(resp) != "ok:x" {
		t.Fatalf("mTLS forward = %q, %v", resp, err)
	}

	// A node whose certificate comes from another CA is refused both ways.
	other, _ := NewTestPKI(t.TempDir())
	oc, ok, _ := other.Issue("intruder")
	bad, err := LoadTLS(oc, ok, other.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	intruder := listen(t, bad)
	if _, err := intruder.Forward(ctx, server.Addr().String(), []byte("x")); err == nil {
		t.Fatal("a node with a foreign certificate was served")
	}
	// A plain-TCP node is refused too.
	plain := listen(t, nil)
	if _, err := plain.Forward(ctx, server.Addr().String(), []byte("x")); err == nil {
		t.Fatal("a node without TLS was served")
	}
}

func TestLoadTLS_Errors(t *testing.T) {
	if _, err := LoadTLS("a.pem", "", ""); err == nil || !strings.Contains(err.Error(), "together") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := LoadTLS("/nonexistent.pem", "/nonexistent-key.pem", ""); err == nil {
		t.Fatal("missing files accepted")
	}
}

func TestParseGossipKey(t *testing.T) {
	k32 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	if k, err := ParseGossipKey(k32); err != nil || len(k) != 32 {
		t.Fatalf("32-byte key: %v", err)
	}
	if k, err := ParseGossipKey(""); err != nil || k != nil {
		t.Fatalf("no key: %v %v", k, err)
	}
	for _, bad := range []string{"!!!", base64.StdEncoding.EncodeToString(make([]byte, 10))} {
		if _, err := ParseGossipKey(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	for _, bad := range []string{"", "host", "host:", ":80", "h:99999", "h:x", "1.2.3.4:80:1"} {
		if _, _, err := SplitHostPort(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if h, p, err := SplitHostPort("127.0.0.1:7946"); err != nil || h != "127.0.0.1" || p != 7946 {
		t.Fatalf("good address: %s %d %v", h, p, err)
	}
}

func TestGossip_KeyMismatchCannotJoin(t *testing.T) {
	key := make([]byte, 32)
	key[0] = 1
	start := func(name string, k []byte) *memberlist.Memberlist {
		cfg := DefaultGossipConfig()
		cfg.Name, cfg.Bind, cfg.Key = name, "127.0.0.1:0", k
		ml, err := NewMemberlist(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ml.Shutdown() })
		return ml
	}
	a := start("a", key)
	b := start("b", key)
	if _, err := b.Join([]string{a.LocalNode().Address()}); err != nil {
		t.Fatalf("same key: %v", err)
	}
	other := make([]byte, 32)
	c := start("c", other)
	if n, err := c.Join([]string{a.LocalNode().Address()}); err == nil && n > 0 {
		t.Fatal("a node with another key joined")
	}
	d := start("d", nil)
	if n, err := d.Join([]string{a.LocalNode().Address()}); err == nil && n > 0 {
		t.Fatal("a node without a key joined")
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && a.NumMembers() != 2 {
		time.Sleep(20 * time.Millisecond)
	}
	if a.NumMembers() != 2 {
		t.Fatalf("a sees %d members, want 2", a.NumMembers())
	}
}
