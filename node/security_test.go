package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/transport"
)

func clusterKey(b byte) []byte { return bytes.Repeat([]byte{b}, transport.ClusterKeySize) }

// startSolo starts a one-node cluster on loopback addresses, with no
// broker behind its Kafka address (decisions need none).
func startSolo(t *testing.T, id string, adjust func(*Config)) *Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Topic, cfg.Brokers = id, filepath.Join(t.TempDir(), id), "logs", []string{"127.0.0.1:1"}
	cfg.RaftAddr, cfg.GossipAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Voters, cfg.Logger = 1, testLogger()
	if adjust != nil {
		adjust(&cfg)
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Kill)
	waitFor(t, 10*time.Second, id+" leading", func() bool { return n.IsLeader() })
	return n
}

// forgedForward is what the forwarding client writes for cmd, byte for
// byte: the protocol byte, a length and the encoded command.
func forgedForward(t *testing.T, cmd fsm.Command) []byte {
	t.Helper()
	data, err := fsm.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	b := binary.BigEndian.AppendUint32([]byte{'F'}, uint32(len(data)))
	return append(b, data...)
}

func TestNode_ForgedForwardRefusedWithClusterKey(t *testing.T) {
	forged := forgedForward(t, fsm.Command{Kind: fsm.KindDecisionAdd, Decision: &fsm.ManualDecision{
		Value: "198.51.100.7", Type: "ban", Reason: "forged", Duration: "8760h", Now: time.Now().UnixNano()}})
	send := func(n *Node) []byte {
		c, err := net.Dial("tcp", n.RaftAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(forged); err != nil {
			t.Fatal(err)
		}
		// The answer (status, length, body), or nothing if closed.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		status, err := r.ReadByte()
		if err != nil {
			return nil
		}
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		return append([]byte{status}, body...)
	}

	// The frame is a genuine proposal: a node without a key applies it,
	// which is why such a node may listen on loopback only.
	open := startSolo(t, "open", nil)
	if resp := send(open); len(resp) == 0 || resp[0] != 0 {
		t.Fatalf("keyless node answered %q, want a success", resp)
	}
	if got := open.fsm.Decisions(true, time.Now()); len(got) != 1 || got[0].Value != "198.51.100.7" {
		t.Fatalf("keyless node: decisions %+v, want the forged one", got)
	}

	// With a cluster key the same bytes are refused, and so is a peer
	// with another key.
	keyed := startSolo(t, "keyed", func(c *Config) { c.ClusterKey = clusterKey(1) })
	if resp := send(keyed); len(resp) != 0 {
		t.Fatalf("keyed node answered a forged request: %q", resp)
	}
	intruder, err := transport.Listen(transport.Config{Bind: "127.0.0.1:0", ClusterKey: clusterKey(2)})
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	data, _ := fsm.Encode(fsm.Command{Kind: fsm.KindDecisionAdd, Decision: &fsm.ManualDecision{
		Value: "198.51.100.8", Type: "ban", Duration: "1h", Now: time.Now().UnixNano()}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := intruder.Forward(ctx, keyed.RaftAddr(), data); !errors.Is(err, transport.ErrHandshake) {
		t.Fatalf("forward with another key: %v, want ErrHandshake", err)
	}
	time.Sleep(100 * time.Millisecond) // nothing to poll for: the point is that nothing comes
	if got := keyed.fsm.Decisions(true, time.Now()); len(got) != 0 {
		t.Fatalf("keyed node holds decisions %+v", got)
	}
	if s := keyed.mux.Stats(); s.HandshakeFailures != 2 {
		t.Fatalf("keyed node counted %d handshake failures, want 2", s.HandshakeFailures)
	}
}

func TestCluster_ClusterKeyFormsAndCommits(t *testing.T) {
	c := newCluster(t, 6)
	c.configure = func(cfg *Config) { cfg.ClusterKey = clusterKey(1); cfg.AdminToken = "admin" }
	n1 := c.start("n1", 3)
	n2 := c.start("n2", 3, n1.GossipAddr())
	c.start("n3", 3, n1.GossipAddr())
	waitFor(t, 20*time.Second, "a leader and every node owning partitions", func() bool {
		owners := map[string]int{}
		for _, p := range n1.State().Partitions {
			owners[p.Owner]++
		}
		return n1.Leader() != "" && owners["n1"] == 2 && owners["n2"] == 2 && owners["n3"] == 2
	})
	// Two of the three nodes commit through the forwarding RPC.
	p := newProducer(t, c.broker.Addr(), c.topic, 3)
	mustProduce(t, p, 3000)
	waitFor(t, 30*time.Second, "all records committed", func() bool { return p.caughtUp(n1) })
	p.check(t, n1)

	// An operator's decision through a follower is forwarded too.
	follower := n2
	if n1.Leader() != "n1" {
		follower = n1
	}
	code, body := postDecision(t, follower, "admin", `{"value":"203.0.113.0/24","duration":"1h"}`)
	if code != http.StatusCreated {
		t.Fatalf("decision through follower %s: %d %s", follower.ID(), code, body)
	}
	for id, n := range c.nodes {
		if s := n.mux.Stats(); s.HandshakeFailures != 0 {
			t.Errorf("%s: %d handshake failures between nodes of one key", id, s.HandshakeFailures)
		}
	}
}

func TestCluster_NodeWithAnotherKeyNeverJoins(t *testing.T) {
	c := newCluster(t, 2)
	c.configure = func(cfg *Config) { cfg.ClusterKey = clusterKey(1) }
	n1 := c.start("n1", 2)
	c.start("n2", 2, n1.GossipAddr())
	waitFor(t, 20*time.Second, "two members", func() bool { return n1.Leader() != "" && len(n1.ClusterInfo().Members) == 2 })

	c.configure = func(cfg *Config) { cfg.ClusterKey = clusterKey(2) }
	n3 := c.start("n3", 0, n1.GossipAddr())
	// Nothing to poll for: watch a few reconcile rounds go by.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, m := range n1.gossipMembers() {
			if m.id == "n3" {
				t.Fatal("n3 is in n1's gossip")
			}
		}
		for _, m := range n1.ClusterInfo().Members {
			if m.ID == "n3" {
				t.Fatal("n3 is a cluster member")
			}
		}
		if n3.Leader() != "" || n3.inCluster() {
			t.Fatalf("n3 follows leader %q", n3.Leader())
		}
	}
}

func TestConfig_NonLoopbackNeedsAuthentication(t *testing.T) {
	dir := t.TempDir()
	pki, err := transport.NewTestPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue("n1")
	if err != nil {
		t.Fatal(err)
	}
	mutual, err := transport.LoadTLS(cert, key, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	serverOnly, err := transport.LoadTLS(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	base := DefaultConfig()
	base.ID, base.DataDir, base.Topic, base.Brokers = "n1", dir, "logs", []string{"127.0.0.1:9092"}
	base.RaftAddr, base.GossipAddr, base.HTTPAddr = "127.0.0.1:7001", "127.0.0.1:7946", "127.0.0.1:8080"
	for _, tc := range []struct {
		name   string
		adjust func(*Config)
		want   string // "" for valid
	}{
		{"loopback without key", func(*Config) {}, ""},
		{"localhost without key", func(c *Config) { c.RaftAddr, c.GossipAddr = "localhost:7001", "[::1]:7946" }, ""},
		{"raft on a LAN address", func(c *Config) { c.RaftAddr = "10.0.0.5:7001" },
			"--raft 10.0.0.5:7001 is not a loopback address: give --cluster-key (make one with 'warden keygen') or mutual TLS (--tls-ca), or --insecure-no-auth"},
		{"raft on every address", func(c *Config) { c.RaftAddr = "0.0.0.0:7001" }, "--cluster-key"},
		{"raft on a host name", func(c *Config) { c.RaftAddr = "node1.example:7001" }, "--cluster-key"},
		{"gossip on a LAN address", func(c *Config) { c.GossipAddr = "10.0.0.5:7946" }, "--gossip 10.0.0.5:7946 is not a loopback address"},
		{"cluster key", func(c *Config) {
			c.RaftAddr, c.GossipAddr, c.ClusterKey = "10.0.0.5:7001", "10.0.0.5:7946", clusterKey(1)
		}, ""},
		{"short cluster key", func(c *Config) { c.ClusterKey = make([]byte, 16) }, "--cluster-key must be 32 bytes"},
		{"mutual TLS and gossip key", func(c *Config) {
			c.RaftAddr, c.GossipAddr, c.TLS, c.GossipKey = "10.0.0.5:7001", "10.0.0.5:7946", mutual, make([]byte, 32)
		}, ""},
		{"mutual TLS, no gossip key", func(c *Config) { c.RaftAddr, c.GossipAddr, c.TLS = "10.0.0.5:7001", "10.0.0.5:7946", mutual }, "--gossip"},
		{"TLS without a CA", func(c *Config) { c.RaftAddr, c.TLS = "10.0.0.5:7001", serverOnly }, "--cluster-key"},
		{"insecure", func(c *Config) { c.RaftAddr, c.GossipAddr, c.InsecureNoAuth = "10.0.0.5:7001", "10.0.0.5:7946", true }, ""},
		{"decision prefix below the floor", func(c *Config) { c.MinDecisionPrefixV4 = 4 }, "--min-decision-prefix-v4 must be between 8 and 32"},
		{"decision prefix v6 too long", func(c *Config) { c.MinDecisionPrefixV6 = 129 }, "--min-decision-prefix-v6 must be between 32 and 128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.adjust(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// nonLoopbackIP returns an IPv4 address of this machine that is not
// loopback, or skips the test.
func nonLoopbackIP(t *testing.T) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address here")
	return ""
}

func TestNode_NonLoopbackStartsOnlyWithAuthOrInsecure(t *testing.T) {
	ip := nonLoopbackIP(t)
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Topic, cfg.Brokers = "lan", filepath.Join(t.TempDir(), "lan"), "logs", []string{"127.0.0.1:1"}
	cfg.RaftAddr, cfg.GossipAddr, cfg.HTTPAddr = net.JoinHostPort(ip, "0"), net.JoinHostPort(ip, "0"), "127.0.0.1:0"
	cfg.Voters, cfg.Logger = 1, testLogger()
	if n, err := Start(context.Background(), cfg); err == nil {
		n.Kill()
		t.Fatal("a node on a LAN address started without any authentication")
	} else if !strings.Contains(err.Error(), "--cluster-key") || !strings.Contains(err.Error(), "--insecure-no-auth") {
		t.Fatalf("error %q does not say what to give", err)
	}
	for name, adjust := range map[string]func(*Config){
		"insecure":    func(c *Config) { c.InsecureNoAuth = true },
		"cluster key": func(c *Config) { c.ClusterKey = clusterKey(1) },
	} {
		c := cfg
		c.DataDir = filepath.Join(t.TempDir(), "lan")
		adjust(&c)
		n, err := Start(context.Background(), c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		waitFor(t, 10*time.Second, name+": leading", func() bool { return n.IsLeader() })
		n.Kill()
	}
}

func postDecision(t *testing.T, n *Node, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.HTTPAddr()+"/v1/decisions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNode_WideDecisionRefusedAtAPIAndInApply(t *testing.T) {
	n := startSolo(t, "solo", func(c *Config) { c.AdminToken, c.MinDecisionPrefixV4 = "admin", 16 })
	for _, tc := range []struct {
		value string
		code  int
		want  string
	}{
		{"0.0.0.0/0", http.StatusBadRequest, "/16"},
		{"::/0", http.StatusBadRequest, "/32"},
		{"::ffff:0.0.0.0/96", http.StatusBadRequest, "IPv4"},
		{"10.0.0.0/8", http.StatusBadRequest, "--min-decision-prefix-v4"},
		{"10.1.0.0/16", http.StatusCreated, ""},
		{"2001:db8::/32", http.StatusCreated, ""},
		{"192.0.2.1", http.StatusCreated, ""},
	} {
		body, _ := json.Marshal(DecisionRequest{Value: tc.value, Duration: "1h"})
		code, resp := postDecision(t, n, "admin", string(body))
		if code != tc.code || !strings.Contains(resp, tc.want) {
			t.Errorf("POST %s: %d %s; want %d and %q", tc.value, code, resp, tc.code, tc.want)
		}
	}
	// A command that skips the API is refused by apply.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, wide := range []string{"0.0.0.0/0", "::/0"} {
		res, err := n.propose(ctx, fsm.Command{Kind: fsm.KindDecisionAdd, Decision: &fsm.ManualDecision{
			Value: wide, Type: "ban", Duration: "1h", Now: time.Now().UnixNano()}})
		if err != nil || res.Err == "" || res.DecisionID != 0 {
			t.Errorf("proposed %s: %+v, %v; want refused by apply", wide, res, err)
		}
	}
	for _, d := range n.fsm.Decisions(true, time.Now()) {
		if d.Value == "0.0.0.0/0" || d.Value == "::/0" || d.Value == "10.0.0.0/8" {
			t.Errorf("decision %s exists", d.Value)
		}
	}
}
