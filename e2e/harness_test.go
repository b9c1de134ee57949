// Package e2e runs the real warden binary as separate OS processes: the
// embedded broker and cluster agents, killed with SIGKILL, queried over
// HTTP, fed through Kafka.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/transport"
	"github.com/wardenhq/warden/workload"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// wardenBin returns the binary under test: $WARDEN_BIN, or one built now.
func wardenBin(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("WARDEN_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "warden-e2e-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "warden")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/warden").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	port, err := transport.FreePort("127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// proc is a running warden process.
type proc struct {
	name string
	args []string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func startProc(tb testing.TB, dir, name string, args ...string) *proc {
	tb.Helper()
	return startProcBin(tb, wardenBin(tb), dir, name, args...)
}

// startProcBin is startProc of another binary (a race-enabled build).
func startProcBin(tb testing.TB, bin, dir, name string, args ...string) *proc {
	tb.Helper()
	f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &proc{name: name, args: args, cmd: cmd, log: f, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.log.Close()
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// agentSpec holds an agent's fixed addresses, so it can restart as itself.
type agentSpec struct {
	id, dataDir, raft, gossip, http string
}

type procCluster struct {
	tb     testing.TB
	dir    string
	broker string
	topic  string
	bproc  *proc
	specs  map[string]agentSpec
	agents map[string]*proc
	// extra holds more agent flags per node id, set before the agents start.
	extra map[string][]string
	// bin, when set, is the binary the agents run (default: wardenBin).
	bin string
}

func newProcCluster(tb testing.TB, nodes int, partitions int) *procCluster {
	return newProcClusterWith(tb, nodes, partitions, nil)
}

// newProcClusterWith starts a cluster whose agents get extra flags by id.
func newProcClusterWith(tb testing.TB, nodes int, partitions int, extra map[string][]string) *procCluster {
	c := newProcClusterIdle(tb, nodes, partitions, extra)
	for i := 1; i <= nodes; i++ {
		c.startAgent(fmt.Sprintf("n%d", i), nodes)
	}
	return c
}

// newProcClusterIdle starts the broker and prepares the agents without
// starting them.
func newProcClusterIdle(tb testing.TB, nodes int, partitions int, extra map[string][]string) *procCluster {
	tb.Helper()
	dir := tb.TempDir()
	c := &procCluster{tb: tb, dir: dir, broker: freeAddr(tb), topic: "access-logs", specs: map[string]agentSpec{}, agents: map[string]*proc{}, extra: extra}
	c.bproc = startProc(tb, dir, "broker", "broker", "--listen", c.broker, "--data-dir", filepath.Join(dir, "broker"),
		"--topic", c.topic, "--partitions", strconv.Itoa(partitions))
	tb.Cleanup(func() {
		for _, p := range c.agents {
			p.kill()
		}
		c.bproc.kill()
		if tb.Failed() {
			for _, name := range append([]string{"broker"}, keys(c.specs)...) {
				b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
				tb.Logf("---- %s.log (tail) ----\n%s", name, tail(b, 3000))
			}
		}
	})
	waitFor(tb, 15*time.Second, "broker up", func() bool {
		conn, err := net.DialTimeout("tcp", c.broker, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	for i := 1; i <= nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		c.specs[id] = agentSpec{id: id, dataDir: filepath.Join(dir, id), raft: freeAddr(tb), gossip: freeAddr(tb), http: freeAddr(tb)}
	}
	return c
}

func keys(m map[string]agentSpec) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (c *procCluster) startAgent(id string, expect int) {
	s := c.specs[id]
	args := []string{"agent", "--id", id, "--data-dir", s.dataDir, "--raft", s.raft, "--gossip", s.gossip, "--http", s.http,
		"--brokers", c.broker, "--topic", c.topic, "--bootstrap-expect", strconv.Itoa(expect), "--batch-interval", "50ms",
		"--reap-after", "5s"}
	if id != "n1" {
		args = append(args, "--join", c.specs["n1"].gossip)
	} else if len(c.specs) > 1 {
		args = append(args, "--join", c.specs["n2"].gossip)
	}
	args = append(args, c.extra[id]...)
	bin := c.bin
	if bin == "" {
		bin = wardenBin(c.tb)
	}
	c.agents[id] = startProcBin(c.tb, bin, c.dir, id, args...)
}

// waitOwned waits until n1 reports all n partitions with an owner.
func (c *procCluster) waitOwned(n int, timeout time.Duration) {
	c.tb.Helper()
	waitFor(c.tb, timeout, fmt.Sprintf("all %d partitions owned", n), func() bool {
		parts, err := c.partitions("n1")
		if err != nil || len(parts) != n {
			return false
		}
		for _, p := range parts {
			if p.Owner == "" {
				return false
			}
		}
		return true
	})
}

// waitApplied waits until each node in ids holds exactly p's records.
func (c *procCluster) waitApplied(p *producer, timeout time.Duration, ids ...string) {
	c.tb.Helper()
	for _, id := range ids {
		waitFor(c.tb, timeout, id+" applied every record", func() bool {
			parts, err := c.partitions(id)
			ok, _ := p.matches(parts)
			return err == nil && ok
		})
	}
}

func (c *procCluster) killAgent(id string) {
	c.agents[id].kill()
	delete(c.agents, id)
}

// partitions reads /v1/partitions from agent id.
func (c *procCluster) partitions(id string) ([]node.PartitionInfo, error) {
	var out []node.PartitionInfo
	return out, getJSON("http://"+c.specs[id].http+"/v1/partitions", &out)
}

func (c *procCluster) clusterInfo(id string) (node.ClusterInfo, error) {
	var out node.ClusterInfo
	return out, getJSON("http://"+c.specs[id].http+"/v1/cluster", &out)
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// producer sends workload lines and keeps per-partition digests of what
// Kafka acknowledged.
type producer struct {
	mu      sync.Mutex
	cl      *kgo.Client
	gen     *workload.Generator
	digests map[int32]fsm.Digest
	ends    map[int32]int64
	err     error
}

func newProducer(tb testing.TB, broker, topic string, seed uint64) *producer {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return &producer{cl: cl, gen: workload.New(seed, 200, time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)),
		digests: map[int32]fsm.Digest{}, ends: map[int32]int64{}}
}

// produceRaw sends one record as is (for lines that do not parse).
func (p *producer) produceRaw(key, value string) {
	res := p.cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(key), Value: []byte(value)})
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := res.First()
	if err != nil {
		p.err = err
		return
	}
	d := p.digests[r.Partition]
	d.AddRecord(r.Partition, r.Offset, r.Value)
	p.digests[r.Partition] = d
	p.ends[r.Partition] = max(p.ends[r.Partition], r.Offset+1)
}

// readTopic reads every record of topic, per partition in offset order.
func readTopic(tb testing.TB, broker, topic string) map[int32][]*kgo.Record {
	tb.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		tb.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(context.Background(), topic)
	adm.Close()
	if err != nil {
		tb.Fatal(err)
	}
	want := map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset; total += o.Offset })
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	out := map[int32][]*kgo.Record{}
	var got int64
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for got < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("read %s: %d of %d records", topic, got, total)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < want[r.Partition] {
				out[r.Partition] = append(out[r.Partition], r)
				got++
			}
		})
	}
	return out
}

func (p *producer) produce(n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		line, ip := p.gen.Line()
		wg.Add(1)
		p.cl.Produce(context.Background(), &kgo.Record{Key: []byte(detect.PartitionKey(ip)), Value: []byte(line)}, func(r *kgo.Record, err error) {
			defer wg.Done()
			p.mu.Lock()
			defer p.mu.Unlock()
			if err != nil {
				p.err = err
				return
			}
			d := p.digests[r.Partition]
			d.AddRecord(r.Partition, r.Offset, r.Value)
			p.digests[r.Partition] = d
			p.ends[r.Partition] = max(p.ends[r.Partition], r.Offset+1)
		})
	}
	wg.Wait()
}

// matches reports whether the partitions served over HTTP hold exactly the
// producer's records, and says what differs when not.
func (p *producer) matches(parts []node.PartitionInfo) (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return false, "produce failed: " + p.err.Error()
	}
	var diff bytes.Buffer
	for _, part := range parts {
		want := p.digests[part.Partition]
		if part.Committed != p.ends[part.Partition] || part.Records != want.Records || part.Bytes != want.Bytes || part.Digest != node.FormatDigest(want.Sum) {
			fmt.Fprintf(&diff, "p%d: committed %d/%d records %d/%d digest %s/%s; ", part.Partition, part.Committed, p.ends[part.Partition],
				part.Records, want.Records, part.Digest, node.FormatDigest(want.Sum))
		}
	}
	return diff.Len() == 0 && len(parts) > 0, diff.String()
}
