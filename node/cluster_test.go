package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardenhq/warden/broker"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/internal/clustertest"
	"github.com/wardenhq/warden/workload"
)

// testLogger is quiet unless WARDEN_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("WARDEN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// cluster is an in-process test cluster on one embedded broker.
type cluster struct {
	t      testing.TB
	dir    string
	broker *broker.Broker
	topic  string
	mu     sync.Mutex
	nodes  map[string]*Node
	// configure, when set, adjusts each node's configuration before start.
	configure func(*Config)
}

func newCluster(t testing.TB, partitions int32) *cluster {
	t.Helper()
	dir := t.TempDir()
	bc := broker.DefaultConfig()
	bc.Listen, bc.DataDir, bc.Topics, bc.Partitions = "127.0.0.1:0", filepath.Join(dir, "broker"), []string{"logs"}, partitions
	b, err := broker.Start(context.Background(), bc)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir, broker: b, topic: "logs", nodes: map[string]*Node{}}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Kill()
		}
		_ = b.Close()
	})
	return c
}

// start starts node id; the first `expect` nodes bootstrap together.
func (c *cluster) start(id string, expect int, join ...string) *Node {
	c.t.Helper()
	return c.startEdit(id, expect, nil, join...)
}

// startEdit starts node id like start, its config changed by c.configure
// and then by edit (either may be nil).
func (c *cluster) startEdit(id string, expect int, edit func(*Config), join ...string) *Node {
	c.t.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir = id, filepath.Join(c.dir, id)
	cfg.RaftAddr, cfg.GossipAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Brokers, cfg.Topic, cfg.Join, cfg.BootstrapExpect = []string{c.broker.Addr()}, c.topic, join, expect
	cfg.BatchInterval, cfg.MaxBatchRecords = 50*time.Millisecond, 2000
	cfg.ReapAfter = 2 * time.Second
	cfg.Logger = testLogger()
	if c.configure != nil {
		c.configure(&cfg)
	}
	if edit != nil {
		edit(&cfg)
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return n
}

func (c *cluster) kill(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	n.Kill()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	clustertest.WaitFor(t, timeout, what, cond)
}

// producer sends workload lines and keeps the digest of what Kafka
// acknowledged, per partition: the truth the cluster must match.
type producer struct{ *clustertest.Producer }

func newProducer(t *testing.T, addr, topic string, seed uint64) *producer {
	p, err := clustertest.NewProducer(addr, topic, workload.New(seed, 300, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &producer{p}
}

// produce sends n lines and waits for their acknowledgements.
func (p *producer) produce(n int) error { return p.Produce(n) }

func mustProduce(t *testing.T, p *producer, n int) {
	t.Helper()
	if err := p.produce(n); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// caughtUp reports whether n's replica has every partition committed to
// the producer's end offsets.
func (p *producer) caughtUp(n *Node) bool {
	_, ends, _ := p.Acked()
	s := n.State()
	for part, end := range ends {
		if int(part) >= len(s.Partitions) || s.Partitions[part].Committed < end {
			return false
		}
	}
	return true
}

// check compares every partition's digest on n with the producer's.
func (p *producer) check(t *testing.T, n *Node) {
	t.Helper()
	digests, ends, _ := p.Acked()
	s := n.State()
	var total int64
	for _, part := range s.Partitions {
		want := digests[part.Partition]
		if part.Digest != want {
			t.Errorf("node %s partition %d: digest %+v, producer %+v (lost or duplicated records)", n.ID(), part.Partition, part.Digest, want)
		}
		if part.Committed != ends[part.Partition] {
			t.Errorf("partition %d committed %d, end %d", part.Partition, part.Committed, ends[part.Partition])
		}
		total += part.Digest.Records
	}
	if total == 0 {
		t.Fatal("nothing applied")
	}
}

func TestCluster_KillAndJoinKeepExactlyOnce(t *testing.T) {
	c := newCluster(t, 12)
	n1 := c.start("n1", 3)
	c.start("n2", 3, n1.GossipAddr())
	c.start("n3", 3, n1.GossipAddr())
	waitFor(t, 20*time.Second, "a leader and a full assignment", func() bool {
		s := n1.State()
		if n1.Leader() == "" || len(s.Partitions) != 12 {
			return false
		}
		owners := map[string]int{}
		for _, p := range s.Partitions {
			owners[p.Owner]++
		}
		return owners["n1"] == 4 && owners["n2"] == 4 && owners["n3"] == 4
	})

	p := newProducer(t, c.broker.Addr(), c.topic, 1)
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 10 && err == nil; i++ {
			err = p.produce(5000)
		}
		done <- err
	}()
	// Kill a node that owns partitions (not n1, which we keep for joins)
	// while records flow, as a crash would.
	waitFor(t, 20*time.Second, "records committed", func() bool {
		var committed int64
		for _, part := range n1.State().Partitions {
			committed += part.Committed
		}
		return committed > 5000
	})
	victim := "n2"
	if n1.Leader() == "n2" {
		victim = "n3"
	}
	epochs := map[int32]uint64{}
	for _, part := range n1.State().Partitions {
		epochs[part.Partition] = part.Epoch
	}
	c.kill(victim)
	if err := <-done; err != nil {
		t.Fatalf("produce: %v", err)
	}

	// The victim's partitions move to the survivors; the others keep their
	// worker and epoch: a death pauses only what must move.
	waitFor(t, 20*time.Second, "victim's partitions reassigned", func() bool {
		for _, part := range n1.State().Partitions {
			if part.Owner == victim || part.Owner == "" {
				return false
			}
		}
		return true
	})
	for _, part := range n1.State().Partitions {
		moved := part.Epoch != epochs[part.Partition]
		// Only the victim's partitions may have moved.
		if moved && part.Epoch > epochs[part.Partition]+1 {
			t.Errorf("partition %d moved more than once (epoch %d -> %d)", part.Partition, epochs[part.Partition], part.Epoch)
		}
	}

	// A fourth node joins under load.
	n4 := c.start("n4", 0, n1.GossipAddr())
	more := make(chan error, 1)
	go func() { more <- p.produce(50000) }()
	waitFor(t, 30*time.Second, "n4 owning partitions", func() bool {
		for _, part := range n4.State().Partitions {
			if part.Owner == "n4" {
				return true
			}
		}
		return false
	})
	if err := <-more; err != nil {
		t.Fatalf("produce: %v", err)
	}
	waitFor(t, 180*time.Second, "all records committed", func() bool { return p.caughtUp(n1) })
	waitFor(t, 180*time.Second, "all records committed on n4", func() bool { return p.caughtUp(n4) })
	p.check(t, n1)
	p.check(t, n4)

	// Every live replica converges to the same state. The second stage
	// may still be committing when the first has caught up, so the states
	// are read afresh until all agree at one moment, not compared with one
	// read taken before they settled (a lagging n1 would never be matched
	// by a replica already past it).
	var differ string
	converged := func() bool {
		want := n1.State().Partitions
		for id, n := range c.nodes {
			got := n.State().Partitions
			for i := range want {
				if i >= len(got) || fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
					differ = fmt.Sprintf("%s differs from n1 on partition %d", id, i)
					return false
				}
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !converged(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("replicas never converged: %s\nn1: %+v", differ, n1.State().Partitions)
		}
	}
	// The dead node is reaped, and the recorded members say so.
	waitFor(t, 20*time.Second, "victim reaped and n4 a voter", func() bool {
		ci := n1.ClusterInfo()
		voters := 0
		for _, m := range ci.Members {
			if m.ID == victim {
				return false
			}
			if m.Voter {
				voters++
			}
		}
		return len(ci.Members) == 3 && voters == 3
	})
}

func TestCluster_RestartWithDataRejoinsAsItself(t *testing.T) {
	c := newCluster(t, 4)
	n1 := c.start("n1", 3)
	c.start("n2", 3, n1.GossipAddr())
	n3 := c.start("n3", 3, n1.GossipAddr())
	waitFor(t, 20*time.Second, "cluster formed", func() bool { return len(n1.State().Partitions) == 4 && len(n1.ClusterInfo().Members) == 3 })
	p := newProducer(t, c.broker.Addr(), c.topic, 2)
	mustProduce(t, p, 2000)
	waitFor(t, 20*time.Second, "caught up", func() bool { return p.caughtUp(n1) })

	// n3 stops (abruptly) and comes back on the same data dir and id: it
	// must not bootstrap a second cluster, and it must catch up.
	c.kill(n3.ID())
	mustProduce(t, p, 2000)
	n3b := c.start("n3", 3, n1.GossipAddr())
	waitFor(t, 20*time.Second, "n3 back with the same leader", func() bool { return n3b.Leader() != "" && n3b.Leader() == n1.Leader() })
	waitFor(t, 30*time.Second, "caught up after restart", func() bool { return p.caughtUp(n1) && p.caughtUp(n3b) })
	p.check(t, n3b)

	// A wiped data dir rejoins cleanly as the same member.
	c.kill("n3")
	if err := os.RemoveAll(filepath.Join(c.dir, "n3")); err != nil {
		t.Fatal(err)
	}
	n3c := c.start("n3", 3, n1.GossipAddr())
	waitFor(t, 30*time.Second, "wiped n3 rejoined and caught up", func() bool { return p.caughtUp(n3c) })
	p.check(t, n3c)
	waitFor(t, 10*time.Second, "three alive members after wipe and rejoin", func() bool {
		ms := n1.ClusterInfo().Members
		alive := 0
		for _, m := range ms {
			if m.Status == fsm.StatusAlive {
				alive++
			}
		}
		return len(ms) == 3 && alive == 3
	})
}

func TestNode_UnreachableBrokerIsNotReadyThenRecovers(t *testing.T) {
	// A free port with nothing there yet; the broker starts on it later.
	addr := clustertest.MustFreeAddr(t)
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Topic, cfg.Brokers = "solo", filepath.Join(dir, "solo"), "logs", []string{addr}
	cfg.RaftAddr, cfg.GossipAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Voters, cfg.Logger = 1, testLogger()
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Kill()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + n.HTTPAddr() + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 10*time.Second, "a leader", func() bool { return n.Leader() == "solo" })
	time.Sleep(time.Second) // let one Kafka poll fail
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka") {
		t.Fatalf("readyz with no broker = %d %s", code, body)
	}
	if resp, err := http.Get("http://" + n.HTTPAddr() + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz must stay up: %v", err)
	}
	bc := broker.DefaultConfig()
	bc.Listen, bc.DataDir, bc.Topics, bc.Partitions = addr, filepath.Join(dir, "broker"), []string{"logs"}, 2
	b, err := broker.Start(context.Background(), bc)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, 30*time.Second, "ready once the broker is up", func() bool { code, _ := readyz(); return code == 200 })
	waitFor(t, 10*time.Second, "partitions assigned", func() bool { return len(n.State().Partitions) == 2 })
}
