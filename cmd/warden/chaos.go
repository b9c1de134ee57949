package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenhq/warden/chaos"
	"github.com/wardenhq/warden/transport"
)

func newChaosCmd() *cobra.Command {
	var o chaosFlags
	c := &cobra.Command{
		Use:   "chaos [--nodes 5] [--duration 2m] [--records N] [--rate R] [--seed S] [--faults LIST] [--report DIR] [--json]",
		Short: "Run a real multi-process cluster through faults and check nothing was lost or doubled",
		Long: `Start a broker and --nodes agent processes, write a seeded workload while
injecting faults (kill, pause, partition, wipe, churn, broker-restart), heal,
check that nothing was lost or applied twice, and print a timeline, recovery
times, throughput and a verdict. Exit status 1 on any violation.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return o.run() },
	}
	fs := c.Flags()
	fs.IntVar(&o.nodes, "nodes", 5, "agent processes")
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "length of the fault phase")
	fs.IntVar(&o.records, "records", 0, "stop producing after this many records (0: produce for the whole duration)")
	fs.IntVar(&o.rate, "rate", 1000, "records per second")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the workload and the fault schedule")
	fs.StringVar(&o.faults, "faults", "all", "fault kinds: kill,pause,partition,wipe,churn,broker-restart, all or none")
	fs.DurationVar(&o.every, "every", 6*time.Second, "one fault per this much time (at least one of each kind)")
	fs.IntVar(&o.partitions, "partitions", 12, "partitions of the input topic")
	fs.StringVar(&o.reportDir, "report", "", "directory for the JSON report, node logs and data (default: a temporary directory, kept)")
	fs.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&o.semantics, "semantics", "exactly-once", "the agents' --semantics: exactly-once, or at-least-once / at-most-once, whose duplicated / lost records the checker counts (report fields lost_records and duplicated_records) instead of failing on them")
	o.kafka.add(fs)
	return c
}

type chaosFlags struct {
	nodes, records, rate, partitions int
	duration, every                  time.Duration
	seed                             uint64
	faults, reportDir, semantics     string
	asJSON                           bool
	kafka                            kafkaFlags
}

func (o *chaosFlags) run() error {
	nodes, duration, records, rate, seed, faults, every, partitions, reportDir, asJSON :=
		&o.nodes, &o.duration, &o.records, &o.rate, &o.seed, &o.faults, &o.every, &o.partitions, &o.reportDir, &o.asJSON
	kinds, err := chaos.ParseFaults(*faults)
	if err != nil {
		return fmt.Errorf("--faults: %w", err)
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	logf := func(f string, a ...any) {
		if !*asJSON {
			fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.0"), fmt.Sprintf(f, a...))
		}
	}
	if k := o.kafka.cfg; k.CAFile != "" || k.CertFile != "" || k.KeyFile != "" || k.ServerName != "" {
		return fmt.Errorf("--kafka-tls-ca, --kafka-tls-cert, --kafka-tls-key and --kafka-tls-server-name do not apply: chaos starts its own broker and makes its certificates; give --kafka-tls alone")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := chaos.Config{Bin: bin, Nodes: *nodes, Partitions: *partitions, Duration: *duration, Records: *records,
		Rate: *rate, Seed: *seed, Faults: kinds, Every: *every, Logf: logf, Semantics: o.semantics}
	if err := cfg.Validate(); err != nil {
		return err
	}
	dir := *reportDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "warden-chaos-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	cfg.Dir = dir
	if err := o.secureKafka(&cfg, logf); err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintf(os.Stderr, "fault schedule (seed %d):\n", *seed)
		for _, st := range chaos.Schedule(*seed, kinds, *duration, *every) {
			fmt.Fprintf(os.Stderr, "  %s\n", st)
		}
	}
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if *asJSON {
		fmt.Println(string(b))
	} else {
		rep.Text(os.Stdout)
	}
	if !rep.OK() {
		return errViolation
	}
	return nil
}

// secureKafka makes the run's broker require what the --kafka-* flags ask
// for (TLS with a certificate from a CA made for the run, SASL with the
// given user) and gives the agents and the run's own clients the matching
// settings.
func (o *chaosFlags) secureKafka(cfg *chaos.Config, logf func(string, ...any)) error {
	k := &o.kafka
	if !k.cfg.Enabled() {
		return nil
	}
	if _, err := k.options(func(string) {}); err != nil {
		return err
	}
	if k.cfg.TLSEnabled() {
		dir := filepath.Join(cfg.Dir, "tls")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		pki, err := transport.NewTestPKI(dir)
		if err != nil {
			return fmt.Errorf("chaos: make the broker's certificate: %w", err)
		}
		cert, key, err := pki.Issue("broker")
		if err != nil {
			return fmt.Errorf("chaos: make the broker's certificate: %w", err)
		}
		cfg.BrokerArgs = append(cfg.BrokerArgs, "--tls-cert", cert, "--tls-key", key)
		if !k.cfg.InsecureSkipVerify {
			k.cfg.CAFile = pki.CAFile
		}
	}
	pwFile := filepath.Join(cfg.Dir, "kafka-password")
	if k.cfg.Password != "" {
		if err := os.WriteFile(pwFile, []byte(k.cfg.Password), 0o600); err != nil {
			return err
		}
		cfg.BrokerArgs = append(cfg.BrokerArgs, "--sasl-mechanism", k.cfg.Mechanism(), "--sasl-user", k.cfg.User, "--sasl-password-file", pwFile)
	}
	opts, err := k.options(func(w string) { logf("WARNING: %s", w) })
	if err != nil {
		return err
	}
	cfg.KafkaOpts, cfg.AgentArgs = opts, k.args(pwFile)
	return nil
}
