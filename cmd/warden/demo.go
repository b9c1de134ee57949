package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/broker"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/workload"
)

func newDemoCmd() *cobra.Command {
	var o demoFlags
	c := &cobra.Command{
		Use:   "demo [--rate N] [--duration D] [--http-port P] [--data-dir DIR]",
		Short: "All-in-one: embedded broker, 3 nodes, generated traffic",
		Long: `Run the embedded broker, a 3-node cluster and a traffic generator with
attacks in one process; print the nodes' addresses and, every few seconds,
the status table. Ctrl-C stops it.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return o.run() },
	}
	fs := c.Flags()
	fs.IntVar(&o.rate, "rate", 2000, "generated lines per second")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	fs.StringVar(&o.dataDir, "data-dir", "", "keep broker and node data here (default: a temporary directory, removed at exit)")
	fs.IntVar(&o.httpPort, "http-port", 8080, "HTTP port of the first node; the others use the next ones (0: any free ports)")
	fs.IntVar(&o.partitions, "partitions", 12, "partitions of the demo topic")
	fs.DurationVar(&o.every, "status-every", 5*time.Second, "how often to print the status table")
	fs.StringVar(&o.level, "log-level", "warn", "debug, info, warn or error")
	return c
}

type demoFlags struct {
	rate, httpPort, partitions int
	duration, every            time.Duration
	dataDir, level             string
}

func (o *demoFlags) run() error {
	rate, duration, dataDir, httpPort, partitions, every, level :=
		&o.rate, &o.duration, &o.dataDir, &o.httpPort, &o.partitions, &o.every, &o.level
	if *rate <= 0 {
		return fmt.Errorf("--rate must be positive, got %d", *rate)
	}
	lg, err := newLogger(*level)
	if err != nil {
		return err
	}
	dir := *dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "warden-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	const topic = "access-logs"
	bcfg := broker.DefaultConfig()
	bcfg.Listen, bcfg.DataDir, bcfg.Topics, bcfg.Partitions, bcfg.Logger = "127.0.0.1:0", filepath.Join(dir, "broker"), []string{topic}, int32(*partitions), lg
	b, err := broker.Start(ctx, bcfg)
	if err != nil {
		return err
	}
	defer b.Close()

	var nodes []*node.Node
	defer func() {
		// All three stop together: each first says so, so that none logs
		// the others' closing as an error.
		for _, n := range nodes {
			n.BeginShutdown()
		}
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); _ = n.Shutdown() }()
		}
		wg.Wait()
	}()
	var join []string
	for i := 1; i <= 3; i++ {
		cfg := node.DefaultConfig()
		cfg.ID = fmt.Sprintf("n%d", i)
		cfg.DataDir = filepath.Join(dir, cfg.ID)
		cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.HTTPAddr = "127.0.0.1:0"
		if *httpPort > 0 {
			cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", *httpPort+i-1)
		}
		cfg.Brokers, cfg.Topic, cfg.Join, cfg.BootstrapExpect, cfg.Logger = []string{b.Addr()}, topic, join, 3, lg
		n, err := node.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("start %s: %w (is the port taken? try --http-port 0)", cfg.ID, err)
		}
		nodes = append(nodes, n)
		join = []string{nodes[0].GossipAddr()}
	}
	fmt.Printf("Dashboard: http://%s/\n", nodes[0].HTTPAddr())
	fmt.Printf("Warden demo: broker %s, topic %q with %d partitions, %d lines/s of generated traffic\n", b.Addr(), topic, *partitions, *rate)
	for _, n := range nodes {
		fmt.Printf("  node %s  http://%s   (warden status --addr http://%s)\n", n.ID(), n.HTTPAddr(), n.HTTPAddr())
	}
	fmt.Println("Press Ctrl-C to stop.")

	go generate(ctx, b.Addr(), topic, *rate)

	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nStopping: final status")
			printDemoStatus(nodes)
			return nil
		case <-t.C:
			printDemoStatus(nodes)
		}
	}
}

func printDemoStatus(nodes []*node.Node) {
	for _, n := range nodes {
		if n.Leader() == "" {
			continue
		}
		fmt.Println()
		printStatus(os.Stdout, n.ClusterInfo(), n.Partitions())
		printLoad(os.Stdout, n.Stats(analytics.Query{Top: 1}))
		now := time.Now()
		printDetectSummary(os.Stdout, n.Alerts(time.Time{}), detect.DecisionViews(n.Decisions(now), now))
		return
	}
	fmt.Println("(no leader yet)")
}

// generate produces rate lines per second until ctx ends.
func generate(ctx context.Context, brokerAddr, topic string, rate int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return
	}
	defer cl.Close()
	g := workload.New(uint64(time.Now().UnixNano()), 500, time.Now())
	g.Clock = time.Now
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	perTick := max(1, rate/20)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for i := 0; i < perTick; i++ {
			line, ip := g.Line()
			cl.Produce(ctx, &kgo.Record{Key: []byte(detect.PartitionKey(ip)), Value: []byte(line)}, nil)
		}
	}
}
