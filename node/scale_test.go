package node

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/internal/benchresults"
	"github.com/wardenhq/warden/partitioner"
	"github.com/wardenhq/warden/workload"
)

// scaleSpec is the size of a scale simulation: peak nodes (one of them
// joins during the run, another dies), partitions of the input topic, the
// batch interval and the records per second produced to every partition.
type scaleSpec struct {
	nodes      int
	partitions int32
	interval   time.Duration
	rate       float64
}

// scaleSpecFromEnv is the benchmark's size: 20 nodes, 250 partitions, a
// 500 ms batch interval, 4 records/s per partition, each overridden by
// WARDEN_BENCH_SCALE_NODES, _PARTITIONS, _INTERVAL (a Go duration), _RATE.
// 250 partitions is the largest size that has run on the 2-core bench
// machine: at 1,000 the cluster never forms (bench/README.md, item 8).
func scaleSpecFromEnv(tb testing.TB) scaleSpec {
	s := scaleSpec{nodes: 20, partitions: 250, interval: 500 * time.Millisecond, rate: 4}
	get := func(name string, set func(string) error) {
		if v := os.Getenv("WARDEN_BENCH_SCALE_" + name); v != "" {
			if err := set(v); err != nil {
				tb.Fatalf("WARDEN_BENCH_SCALE_%s=%q: %v", name, v, err)
			}
		}
	}
	get("NODES", func(v string) (err error) { s.nodes, err = strconv.Atoi(v); return })
	get("PARTITIONS", func(v string) error { n, err := strconv.ParseInt(v, 10, 32); s.partitions = int32(n); return err })
	get("INTERVAL", func(v string) (err error) { s.interval, err = time.ParseDuration(v); return })
	get("RATE", func(v string) (err error) { s.rate, err = strconv.ParseFloat(v, 64); return })
	if s.nodes < 4 || s.partitions < 1 || s.interval <= 0 || s.rate <= 0 {
		tb.Fatalf("scale simulation: need at least 4 nodes, a partition, a positive interval and rate: %+v", s)
	}
	return s
}

// scaleEvent is what one membership change cost.
type scaleEvent struct {
	// settled: every partition owned by a live member, the assignment
	// balanced, and every partition committed since the event (a moved
	// one under its new epoch); assigned: the balanced assignment applied.
	settled, assigned time.Duration
	ok                bool // settled before the deadline
	// moved: partitions whose epoch changed; minimum: the partitioner's
	// moves for the change (partitioner.Moves of Assign, from the owners
	// before); bumps: the epoch increments summed (a partition moved twice
	// counts two).
	moved, minimum, bumps int
	// maxGap is the longest time between two consecutive commits of a
	// partition that did not move, from the event to settling (the gap
	// open at settling included); gapPartition is that partition.
	maxGap       time.Duration
	gapPartition int32
}

// scaleResult is one simulation's figures.
type scaleResult struct {
	spec                 scaleSpec
	formed               time.Duration // start to every partition committing
	baselineGap          time.Duration // longest commit gap of any partition, steady state
	join, death          scaleEvent
	victim, joiner       string
	cpuSeconds           float64 // process CPU (user+system) from formed to the end
	wallSeconds          float64
	heapMiB              float64
	goroutines, clients  int
	commitsPerSecond     float64
	recordsPerSecond     float64
	raftEntriesPerSecond float64
}

// BenchmarkScaleSimulation runs a whole cluster in this process (20 nodes,
// 250 partitions by default; scaleSpecFromEnv), each node with its Raft
// on a loopback transport, gossip on loopback and one franz-go client per
// partition worker, against the embedded broker (kfake), with a few records
// per second on every partition. It measures a node joining and a node dying
// (killed: no leave, its ports closed at once): the time until every
// partition is owned and committing again, the partitions moved against the
// partitioner's minimum, and, for the partitions that did not move, the
// longest gap between two commits, in batch intervals. Targets: settling
// < 5 s, moved == minimum, no gap > 2 intervals.
func BenchmarkScaleSimulation(b *testing.B) {
	spec := scaleSpecFromEnv(b)
	var r scaleResult
	for i := 0; i < b.N; i++ {
		r = runScale(b, spec)
	}
	iv := spec.interval.Seconds()
	b.ReportMetric(r.join.settled.Seconds(), "join-settle-s")
	b.ReportMetric(float64(r.join.moved), "join-moved")
	b.ReportMetric(float64(r.join.minimum), "join-min-moves")
	b.ReportMetric(r.join.maxGap.Seconds()/iv, "join-max-gap-intervals")
	b.ReportMetric(r.death.settled.Seconds(), "death-settle-s")
	b.ReportMetric(float64(r.death.moved), "death-moved")
	b.ReportMetric(float64(r.death.minimum), "death-min-moves")
	b.ReportMetric(r.death.maxGap.Seconds()/iv, "death-max-gap-intervals")
	b.ReportMetric(r.cpuSeconds/r.wallSeconds, "cores")
	event := func(e scaleEvent) map[string]any {
		return map[string]any{
			"settle_s": round3(e.settled.Seconds()), "assigned_s": round3(e.assigned.Seconds()), "settled": e.ok,
			"moved": e.moved, "min_moves": e.minimum, "epoch_bumps": e.bumps,
			"max_gap_s": round3(e.maxGap.Seconds()), "max_gap_intervals": round3(e.maxGap.Seconds() / iv),
			"max_gap_partition": e.gapPartition,
		}
	}
	figures := map[string]any{
		"nodes": spec.nodes, "partitions": spec.partitions, "batch_interval_s": iv,
		"records_per_s_per_partition": spec.rate,
		"formed_s":                    round3(r.formed.Seconds()),
		"baseline_max_gap_intervals":  round3(r.baselineGap.Seconds() / iv),
		"join":                        event(r.join), "death": event(r.death),
		"joiner": r.joiner, "victim": r.victim,
		"cpu_cores_used": round3(r.cpuSeconds / r.wallSeconds), "heap_mib": round3(r.heapMiB),
		"goroutines": r.goroutines, "kafka_clients": r.clients,
		"commits_per_s": round3(r.commitsPerSecond), "records_per_s": round3(r.recordsPerSecond),
		"raft_entries_per_s": round3(r.raftEntriesPerSecond),
		"target_settle_s":    5.0, "target_max_gap_intervals": 2.0,
	}
	if err := benchresults.Save("scale_simulation", figures); err != nil {
		b.Fatal(err)
	}
}

// TestScaleSimulation_SmallMovesTheMinimum runs the simulation at a size a
// test affords (6 nodes, 60 partitions): a join and a death each move
// exactly the partitioner's minimum and settle.
func TestScaleSimulation_SmallMovesTheMinimum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node cluster")
	}
	r := runScale(t, scaleSpec{nodes: 6, partitions: 60, interval: 200 * time.Millisecond, rate: 10})
	for name, e := range map[string]scaleEvent{"join": r.join, "death": r.death} {
		if !e.ok {
			t.Errorf("%s: not settled after %s", name, e.settled)
		}
		if e.moved != e.minimum || e.bumps != e.minimum {
			t.Errorf("%s: %d partitions moved (%d epoch bumps), the partitioner's minimum is %d", name, e.moved, e.bumps, e.minimum)
		}
		t.Logf("%s: settled in %s (assigned %s), moved %d (min %d), longest gap of an unmoved partition %s (%.1f intervals, partition %d)",
			name, e.settled, e.assigned, e.moved, e.minimum, e.maxGap, e.maxGap.Seconds()/r.spec.interval.Seconds(), e.gapPartition)
	}
	t.Logf("formed in %s, baseline gap %s, %.2f cores", r.formed, r.baselineGap, r.cpuSeconds/r.wallSeconds)
}

// runScale starts spec.nodes-1 nodes, lets them settle under traffic, then
// a node joins (spec.nodes nodes) and, once settled, a non-voter other than
// the joiner and the observer is killed.
func runScale(tb testing.TB, spec scaleSpec) scaleResult {
	tb.Helper()
	// Twenty nodes' Raft logs fsync on one disk here, where each would have
	// its own: on tmpfs the simulation measures the cluster, not the disk.
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		tb.Setenv("TMPDIR", "/dev/shm")
	}
	began := time.Now()
	c := newCluster(tb, spec.partitions)
	c.configure = func(cfg *Config) {
		cfg.BatchInterval = spec.interval
		cfg.MaxBatchRecords = DefaultConfig().MaxBatchRecords
		cfg.ReapAfter = time.Minute // the dead node stays a failed member while measured
		// kfake offers every client a KIP-714 metrics subscription, so each
		// of the thousand clients would push gzipped metrics (a tenth of
		// the process's CPU and allocations in the first run); a broker
		// without a metrics plugin offers none.
		cfg.KafkaOpts = append(cfg.KafkaOpts, kgo.DisableClientMetrics())
		setInputKeyedByClient(cfg)
	}
	id := func(i int) string { return fmt.Sprintf("n%02d", i) }
	first := c.start(id(1), 3)
	c.start(id(2), 3, first.GossipAddr())
	c.start(id(3), 3, first.GossipAddr())
	waitFor(tb, 30*time.Second, "a leader", func() bool { return first.Leader() != "" })
	for i := 4; i < spec.nodes; i++ {
		c.start(id(i), 0, first.GossipAddr())
	}
	leader := func() *Node {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.nodes[first.Leader()]
	}
	live := func() map[string]bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := map[string]bool{}
		for id := range c.nodes {
			out[id] = true
		}
		return out
	}
	waitFor(tb, 3*time.Minute, "every node in Raft and the partitions balanced", func() bool {
		l := leader()
		if l == nil {
			return false
		}
		f := l.raft.GetConfiguration()
		if f.Error() != nil || len(f.Configuration().Servers) != spec.nodes-1 {
			return false
		}
		return balanced(l.State().Owners(), live(), spec.partitions)
	})
	tb.Logf("scale: %d nodes in Raft, %d partitions balanced after %s", spec.nodes-1, spec.partitions, time.Since(began))
	obs := leader() // never killed: it stamps every commit as it applies it
	log := newCommitLog()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); log.watch(ctx, obs) }()
	prod := newScaleProducer(tb, c.broker.Addr(), c.topic, spec.partitions)
	go func() { defer wg.Done(); prod.run(ctx, spec.rate) }()
	defer cancel()

	// Formed: every partition committing under its owner.
	next := time.Now().Add(15 * time.Second)
	waitFor(tb, 3*time.Minute, "every partition committing", func() bool {
		if time.Now().After(next) {
			next = time.Now().Add(15 * time.Second)
			committing, _ := log.counts()
			term := obs.raft.Stats()["term"]
			tb.Logf("scale: %d of %d partitions have committed; leader %q, term %s, %.0f commit errors on the observer",
				committing, spec.partitions, obs.Leader(), term, counterValue(obs.metrics.commitErrors))
		}
		return log.committedSince(began, spec.partitions)
	})
	res := scaleResult{spec: spec, formed: time.Since(began)}
	tb.Logf("scale: every partition committing after %s", res.formed)
	cpu0, wall0 := cpuTime(), time.Now()
	_, commits0 := log.counts()
	recs0 := prod.sent.Load()
	entries0, _ := obs.fsm.EntriesApplied()

	// The steady state, for reference: how far apart commits are when
	// nothing happens.
	steady := time.Now()
	time.Sleep(max(3*time.Second, 6*spec.interval))
	res.baselineGap, _ = log.maxGap(steady, time.Now(), nil)

	// A node joins.
	res.joiner = id(spec.nodes)
	after := live()
	after[res.joiner] = true
	res.join = measureEvent(tb, obs, log, spec, after, func() {
		c.start(res.joiner, 0, first.GossipAddr())
	})
	tb.Logf("scale: join %+v", res.join)
	time.Sleep(max(2*time.Second, 4*spec.interval))

	// A node dies: a non-voter, neither the joiner nor the observer.
	res.victim = pickScaleVictim(tb, obs, res.joiner)
	after = live()
	delete(after, res.victim)
	res.death = measureEvent(tb, obs, log, spec, after, func() { c.kill(res.victim) })
	tb.Logf("scale: death of %s %+v", res.victim, res.death)

	res.cpuSeconds, res.wallSeconds = cpuTime()-cpu0, time.Since(wall0).Seconds()
	_, commits1 := log.counts()
	res.commitsPerSecond = float64(commits1-commits0) / res.wallSeconds
	res.recordsPerSecond = float64(prod.sent.Load()-recs0) / res.wallSeconds
	entries1, _ := obs.fsm.EntriesApplied()
	res.raftEntriesPerSecond = float64(entries1-entries0) / res.wallSeconds
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.heapMiB = float64(ms.HeapInuse) / (1 << 20)
	res.goroutines = runtime.NumGoroutine()
	c.mu.Lock()
	for _, n := range c.nodes {
		res.clients += n.kafkaClients()
	}
	c.mu.Unlock()
	return res
}

// measureEvent runs do (a join or a kill) and waits until the cluster has
// settled on the members after: see scaleEvent.
func measureEvent(tb testing.TB, obs *Node, log *commitLog, spec scaleSpec, after map[string]bool, do func()) scaleEvent {
	tb.Helper()
	before := obs.State()
	owners := before.Owners()
	epochs := make(map[int32]uint64, len(before.Partitions))
	for _, p := range before.Partitions {
		epochs[p.Partition] = p.Epoch
	}
	var members []string
	for id := range after {
		members = append(members, id)
	}
	var e scaleEvent
	e.minimum = len(partitioner.Moves(owners, partitioner.Assign(owners, members, spec.partitions)))
	t0 := time.Now()
	do()
	deadline := t0.Add(time.Minute)
	for {
		now := time.Now()
		s := obs.State()
		ok := balanced(s.Owners(), after, spec.partitions)
		if ok && e.assigned == 0 {
			e.assigned = now.Sub(t0)
		}
		for _, p := range s.Partitions {
			if !ok {
				break
			}
			if p.Epoch != epochs[p.Partition] {
				// Moved: committing again means under the new epoch.
				h := p.History
				ok = len(h) > 0 && h[len(h)-1].Epoch == p.Epoch && h[len(h)-1].Commits > 0
			}
		}
		ok = ok && log.committedSince(t0, spec.partitions)
		if ok || now.After(deadline) {
			e.ok, e.settled = ok, now.Sub(t0)
			unmoved := map[int32]bool{}
			for _, p := range s.Partitions {
				if d := p.Epoch - epochs[p.Partition]; d > 0 {
					e.moved++
					e.bumps += int(d)
				} else {
					unmoved[p.Partition] = true
				}
			}
			e.maxGap, e.gapPartition = log.maxGap(t0, now, unmoved)
			return e
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// balanced reports whether every partition has an owner among members and
// owners differ by at most one partition, every member counted.
func balanced(owners map[int32]string, members map[string]bool, partitions int32) bool {
	if int32(len(owners)) != partitions || len(members) == 0 {
		return false
	}
	count := map[string]int{}
	for _, o := range owners {
		if !members[o] {
			return false
		}
		count[o]++
	}
	lo, hi := int(partitions), 0
	for m := range members {
		lo, hi = min(lo, count[m]), max(hi, count[m])
	}
	return hi-lo <= 1
}

// pickScaleVictim is a non-voter that owns partitions, neither skip nor
// obs (the leader), the last by id.
func pickScaleVictim(tb testing.TB, obs *Node, skip string) string {
	tb.Helper()
	f := obs.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		tb.Fatal(err)
	}
	owning := map[string]bool{}
	for _, o := range obs.State().Owners() {
		owning[o] = true
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		if id := string(s.ID); s.Suffrage == raft.Nonvoter && id != skip && id != obs.ID() && owning[id] {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		tb.Fatal("no non-voter to kill")
	}
	sort.Strings(ids)
	return ids[len(ids)-1]
}

// commitLog keeps, per partition, the times the observer applied its
// commits, read from the node's own record of its last commit
// (metrics.lastCommit) every 2 ms: far finer than a batch interval, so
// consecutive commits are not merged unless they are applied within the
// same few milliseconds, which would only shorten the gaps measured here,
// never lengthen them.
type commitLog struct {
	mu     sync.Mutex
	stamps map[int32][]time.Time
	total  int
}

func newCommitLog() *commitLog { return &commitLog{stamps: map[int32][]time.Time{}} }

func (l *commitLog) watch(ctx context.Context, n *Node) {
	last := map[int32]time.Time{}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	var fresh []struct {
		p  int32
		at time.Time
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fresh = fresh[:0]
		n.metrics.appliedMu.Lock()
		for p, at := range n.metrics.lastCommit {
			if !at.Equal(last[p]) {
				last[p] = at
				fresh = append(fresh, struct {
					p  int32
					at time.Time
				}{p, at})
			}
		}
		n.metrics.appliedMu.Unlock()
		l.mu.Lock()
		for _, f := range fresh {
			l.stamps[f.p] = append(l.stamps[f.p], f.at)
		}
		l.total += len(fresh)
		l.mu.Unlock()
	}
}

// committedSince reports whether every partition has a commit applied
// after t.
func (l *commitLog) committedSince(t time.Time, partitions int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := int32(0); p < partitions; p++ {
		s := l.stamps[p]
		if len(s) == 0 || !s[len(s)-1].After(t) {
			return false
		}
	}
	return true
}

func (l *commitLog) counts() (partitions, commits int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.stamps), l.total
}

// maxGap is the longest time between consecutive commits of one of only's
// partitions (every partition when only is nil) that ends after from, the
// gap still open at to included, and that partition.
func (l *commitLog) maxGap(from, to time.Time, only map[int32]bool) (time.Duration, int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var worst time.Duration
	var at int32 = -1
	for p, s := range l.stamps {
		if only != nil && !only[p] {
			continue
		}
		prev := time.Time{}
		for _, t := range s {
			if t.After(to) {
				break
			}
			if !prev.IsZero() && t.After(from) && t.Sub(prev) > worst {
				worst, at = t.Sub(prev), p
			}
			prev = t
		}
		if !prev.IsZero() && to.Sub(prev) > worst {
			worst, at = to.Sub(prev), p
		}
	}
	return worst, at
}

// scaleProducer sends one record to every partition at each tick, so that
// every partition has records at a steady rate.
type scaleProducer struct {
	cl         *kgo.Client
	partitions int32
	gen        *workload.Generator
	sent       atomic.Int64
}

func newScaleProducer(tb testing.TB, addr, topic string, partitions int32) *scaleProducer {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(int(4*partitions)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	gen := workload.New(7, 5000, time.Now())
	gen.Clock = time.Now // live traffic: lines dated now
	return &scaleProducer{cl: cl, partitions: partitions, gen: gen}
}

func (p *scaleProducer) run(ctx context.Context, rate float64) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for part := int32(0); part < p.partitions; part++ {
			line, _ := p.gen.Line()
			p.cl.Produce(ctx, &kgo.Record{Partition: part, Value: []byte(line)}, func(_ *kgo.Record, err error) {
				if err == nil {
					p.sent.Add(1)
				}
			})
		}
	}
}

// cpuTime is the CPU this process has used, user and system, in seconds.
func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// setInputKeyedByClient sets Config.InputKeyedByClient where the node has
// it (one stage per partition: detection on the input's partitions).
func setInputKeyedByClient(cfg *Config) {
	cfg.InputKeyedByClient = true
}

// kafkaClients bounds n's Kafka clients while its workers run: its own
// (admin and metadata) and its input fetcher, and with the repartition
// stage its second stages' fetcher and at most a producer per running
// worker (the first stages' forward; a worker that only sends dead letters
// makes its producer at the first, which the count leaves out).
func (n *Node) kafkaClients() int {
	c := 2
	if twoStage(n.fsm.Config()) {
		c += 1 + int(n.runningWorkers.Load())
	}
	return c
}
