package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/clustertest"
	"github.com/wardenhq/warden/workload"
)

// Config is one chaos run.
type Config struct {
	Bin        string        // the warden binary
	Dir        string        // where data dirs, logs and the report go
	Nodes      int           //
	Partitions int           //
	Topic      string        //
	Duration   time.Duration // the fault phase
	Records    int           // stop producing after this many (0: produce for Duration)
	Rate       int           // records per second
	Seed       uint64        //
	Faults     []string      //
	Every      time.Duration // spacing of faults
	// Semantics is the agents' --semantics: exactly-once (default),
	// at-least-once or at-most-once. Under the last two the checker counts
	// the records duplicated (resp. lost) instead of failing on them.
	Semantics string
	Logf      func(format string, args ...any)
	// KafkaOpts are the franz-go options (TLS, SASL) of the run's own
	// clients; AgentArgs and BrokerArgs are the matching flags given to
	// every agent and to the broker.
	KafkaOpts             []kgo.Opt
	AgentArgs, BrokerArgs []string
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Bin == "":
		return errors.New("no warden binary")
	case c.Nodes < 1 || c.Nodes > 9:
		return fmt.Errorf("--nodes %d: want 1 to 9", c.Nodes)
	case c.Duration <= 0:
		return fmt.Errorf("--duration must be positive")
	case c.Rate <= 0:
		return fmt.Errorf("--rate must be positive")
	case c.Records < 0:
		return fmt.Errorf("--records must not be negative")
	}
	if c.Partitions == 0 {
		c.Partitions = 12
	}
	if c.Topic == "" {
		c.Topic = "access-logs"
	}
	switch c.Semantics {
	case "":
		c.Semantics = "exactly-once"
	case "exactly-once", "at-least-once", "at-most-once":
	default:
		return fmt.Errorf("--semantics %q: want exactly-once, at-least-once or at-most-once", c.Semantics)
	}
	if c.Every == 0 {
		c.Every = 6 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	for _, f := range c.Faults {
		if f == Partition {
			if err := nftAvailable(); err != nil {
				return err
			}
		}
		if (f == Partition || f == Kill || f == Pause || f == Wipe || f == Churn) && c.Nodes < 3 {
			return fmt.Errorf("fault %s needs at least 3 nodes", f)
		}
	}
	return nil
}

// FaultEvent is a fault as it happened.
type FaultEvent struct {
	AtS       float64  `json:"at_s"`
	Kind      string   `json:"kind"`
	Variant   string   `json:"variant"`
	Targets   []string `json:"targets"`
	HoldS     float64  `json:"hold_s"`
	Affected  []int32  `json:"affected_partitions"`
	Recovered bool     `json:"recovered"`
	// RecoveryS is the time from the fault until every partition the
	// victims owned committed again.
	RecoveryS float64 `json:"recovery_s"`
	Note      string  `json:"note,omitempty"`
}

// Check is one property verified at the end.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Report is the outcome of a run.
type Report struct {
	Seed           uint64       `json:"seed"`
	Nodes          int          `json:"nodes"`
	Partitions     int          `json:"partitions"`
	DurationS      float64      `json:"duration_s"`
	Rate           int          `json:"rate"`
	Produced       int64        `json:"records_produced"`
	InTopic        int64        `json:"records_in_topic"`
	ThroughputRPS  float64      `json:"throughput_rps"`
	Faults         []FaultEvent `json:"faults"`
	RecoveryMedian float64      `json:"recovery_median_s"`
	RecoveryWorst  float64      `json:"recovery_worst_s"`
	SettleS        float64      `json:"settle_s"`
	Checks         []Check      `json:"checks"`
	Alerts         int          `json:"alerts"`
	// Semantics is the agents' delivery mode; LostRecords and
	// DuplicatedRecords count, on the first node, the records of the topic
	// not applied and those applied more than once (per partition too).
	Semantics         string                   `json:"semantics"`
	LostRecords       int64                    `json:"lost_records"`
	DuplicatedRecords int64                    `json:"duplicated_records"`
	PerPartition      map[int32]PartitionCount `json:"per_partition,omitempty"`
	Verdict           string                   `json:"verdict"`
	Dir               string                   `json:"dir"`
}

// PartitionCount is one partition's lost and duplicated records.
type PartitionCount struct {
	LostRecords       int64 `json:"lost_records"`
	DuplicatedRecords int64 `json:"duplicated_records"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool { return r.Verdict == "pass" }

// Run performs the run and returns its report; err is for a run that could
// not be carried out at all (a violation is a report with verdict "fail").
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	c := newCluster(cfg)
	c.cut = &netCut{table: fmt.Sprintf("warden_chaos_%d", os.Getpid())}
	defer c.cut.heal()
	defer c.StopAll(5 * time.Second)
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Partitions: cfg.Partitions, Rate: cfg.Rate, Dir: cfg.Dir, Faults: []FaultEvent{},
		Semantics: cfg.Semantics}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	cfg.Logf("cluster: broker %s, %d nodes on 127.0.0.11-%d; logs in %s", c.Broker(), cfg.Nodes, 10+cfg.Nodes, cfg.Dir)
	if err := c.waitOwned(ctx, 60*time.Second); err != nil {
		return nil, fmt.Errorf("cluster did not form: %w", err)
	}
	watch := newWatcher(c)
	watch.start(ctx)
	defer watch.stop()

	// The producer: a seeded workload at a steady rate.
	prod, err := newProducer(c.Broker(), cfg.Topic, cfg.Seed, cfg.KafkaOpts)
	if err != nil {
		return nil, err
	}
	defer prod.close()
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	var pwg sync.WaitGroup
	pwg.Add(1)
	go func() {
		defer pwg.Done()
		prod.run(pctx, cfg.Rate, cfg.Records)
	}()

	start := time.Now()
	steps := Schedule(cfg.Seed, cfg.Faults, cfg.Duration, cfg.Every)
	r := rand.New(rand.NewPCG(cfg.Seed, 7))
	var events []*FaultEvent
	var measuring []chan struct{}
	for _, st := range steps {
		if wait := time.Until(start.Add(st.At)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		at := time.Since(start).Seconds()
		ev, done := c.inject(ctx, st, watch, r)
		ev.AtS = at
		cfg.Logf("fault %-14s %-14s targets %v (held %.1fs)", st.Kind, st.Variant, ev.Targets, st.Hold.Seconds())
		events = append(events, ev)
		measuring = append(measuring, done)
	}
	if wait := time.Until(start.Add(cfg.Duration)); wait > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	phase := time.Since(start)
	committedPhase := watch.committedDuring()
	// Recovery of the last faults is measured while traffic still flows.
	for _, done := range measuring {
		<-done
	}
	for _, ev := range events {
		rep.Faults = append(rep.Faults, *ev)
		cfg.Logf("fault at %.1fs %s %s %v: recovered=%v in %.2fs %s", ev.AtS, ev.Kind, ev.Variant, ev.Targets, ev.Recovered, ev.RecoveryS, ev.Note)
	}
	stopProducing()
	pwg.Wait()
	rep.DurationS = phase.Seconds()
	rep.Produced = prod.acked()
	if err := prod.err(); err != nil {
		cfg.Logf("producer: %v", err)
	}

	// Heal and settle.
	c.healAll(ctx)
	settleStart := time.Now()
	settled, ends, settleErr := c.settle(ctx, 3*time.Minute)
	rep.SettleS = time.Since(settleStart).Seconds()
	watch.stop()

	var recov []float64
	for _, f := range rep.Faults {
		if len(f.Affected) > 0 && f.Recovered && f.Kind != BrokerRestart {
			recov = append(recov, f.RecoveryS)
		}
	}
	sort.Float64s(recov)
	if len(recov) > 0 {
		rep.RecoveryMedian, rep.RecoveryWorst = recov[len(recov)/2], recov[len(recov)-1]
	}
	var committed int64
	for _, e := range ends {
		committed += e
	}
	rep.InTopic = committed
	rep.ThroughputRPS = float64(committedPhase) / phase.Seconds()

	rep.Checks = append(rep.Checks, Check{Name: "settled", OK: settled, Detail: settleDetail(settled, settleErr, rep.SettleS)})
	rep.Checks = append(rep.Checks, watch.checks()...)
	if settled {
		rep.Checks = append(rep.Checks, c.verify(ctx, rep)...)
	}
	rep.Checks = append(rep.Checks, c.stopCheck())
	rep.Verdict = "pass"
	for _, ch := range rep.Checks {
		if !ch.OK {
			rep.Verdict = "fail"
		}
	}
	return rep, nil
}

func settleDetail(ok bool, err error, s float64) string {
	if ok {
		return fmt.Sprintf("every node applied every record in the topic %.1fs after healing", s)
	}
	return fmt.Sprintf("not settled after %.0fs: %v", s, err)
}

// partitionsDoc is the part of /v1/partitions the checker reads.
type partitionsDoc []struct {
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	Committed int64  `json:"committed_offset"`
	LogEnd    int64  `json:"log_end_offset"`
	// ByClient is the repartition stage (absent with input keyed by
	// client).
	ByClient *struct {
		Topic     string `json:"topic"`
		Committed int64  `json:"committed_offset"`
		Applied   int64  `json:"applied"`
	} `json:"by_client"`
	Late    int64  `json:"late"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
	Digest  string `json:"digest"`
	Commits uint64 `json:"commits"`
	History []struct {
		Epoch   uint64 `json:"epoch"`
		Node    string `json:"node"`
		From    int64  `json:"from"`
		Until   int64  `json:"until"`
		Commits uint64 `json:"commits"`
	} `json:"history"`
}

// waitOwned waits until every partition has an owner.
func (c *cluster) waitOwned(ctx context.Context, timeout time.Duration) error {
	first := c.Agents()[0]
	err := clustertest.Poll(ctx, timeout, 200*time.Millisecond, func() bool { return clustertest.AllOwned(first.HTTP, c.cfg.Partitions) })
	if errors.Is(err, clustertest.ErrTimeout) {
		return fmt.Errorf("partitions not all owned after %s", timeout)
	}
	return err
}

// healAll removes every network cut, resumes paused nodes, restarts dead
// ones and the broker.
func (c *cluster) healAll(ctx context.Context) {
	c.cut.pairs = nil
	c.cut.heal()
	if p := c.BrokerProc(); p != nil && !p.Alive() {
		c.restartBroker(ctx)
	}
	for _, a := range c.Agents() {
		if a.Paused() && a.Alive() {
			a.Resume()
		}
		if !a.Alive() {
			_ = c.startAgent(a)
		}
	}
}

// settle waits until every node has applied every record in the topic
// (committed offset equal to the end offset on every partition) and, with
// the repartition stage, every record of the repartition topic (lines
// reach detection there), and all nodes agree; it returns the end offsets.
func (c *cluster) settle(ctx context.Context, timeout time.Duration) (bool, map[int32]int64, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ends, err := clustertest.EndOffsets(ctx, c.Broker(), c.cfg.Topic, c.cfg.KafkaOpts...)
		if err != nil {
			last = err
		} else {
			ok := true
			var rends map[int32]int64 // the repartition topic's, read once a round
			for _, a := range c.Agents() {
				var parts partitionsDoc
				if err := get(a.HTTP, "/v1/partitions", &parts); err != nil {
					ok, last = false, fmt.Errorf("%s: %v", a.ID, err)
					break
				}
				if len(parts) != len(ends) {
					ok, last = false, fmt.Errorf("%s knows %d partitions, the topic has %d", a.ID, len(parts), len(ends))
					break
				}
				for _, p := range parts {
					if p.Committed != ends[p.Partition] {
						ok, last = false, fmt.Errorf("%s: partition %d committed %d of %d", a.ID, p.Partition, p.Committed, ends[p.Partition])
						break
					}
					if bc := p.ByClient; bc != nil {
						var err error
						if rends == nil {
							rends, err = clustertest.EndOffsets(ctx, c.Broker(), bc.Topic, c.cfg.KafkaOpts...)
						}
						if err != nil || bc.Committed != rends[p.Partition] {
							ok, last = false, fmt.Errorf("%s: repartition partition %d committed %d of %d (%v)", a.ID, p.Partition, bc.Committed, rends[p.Partition], err)
							break
						}
					}
				}
				if !ok {
					break
				}
			}
			if ok {
				return true, ends, nil
			}
		}
		select {
		case <-ctx.Done():
			return false, nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	ends, _ := clustertest.EndOffsets(ctx, c.Broker(), c.cfg.Topic, c.cfg.KafkaOpts...)
	return false, ends, last
}

// producer writes the seeded workload, keyed by client IP.
type producer struct {
	cl   *kgo.Client
	gen  *workload.Generator
	mu   sync.Mutex
	n    int64
	last error
}

func newProducer(broker, topic string, seed uint64, kopts []kgo.Opt) (*producer, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5 * time.Millisecond),
		kgo.RecordDeliveryTimeout(2 * time.Minute)}, kopts...)...)
	if err != nil {
		return nil, err
	}
	g := workload.New(seed, 400, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	g.AttackShare = 0.1
	return &producer{cl: cl, gen: g}, nil
}

func (p *producer) run(ctx context.Context, rate, limit int) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	per := max(1, rate/50)
	sent := 0
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			_ = p.cl.Flush(fctx)
			cancel()
			return
		case <-tick.C:
		}
		for i := 0; i < per && (limit == 0 || sent < limit); i++ {
			line, ip := p.gen.Line()
			sent++
			p.cl.Produce(ctx, &kgo.Record{Key: []byte(detect.PartitionKey(ip)), Value: []byte(line)}, func(_ *kgo.Record, err error) {
				p.mu.Lock()
				defer p.mu.Unlock()
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						p.last = err
					}
					return
				}
				p.n++
			})
		}
	}
}

func (p *producer) acked() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *producer) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *producer) close() { p.cl.Close() }
