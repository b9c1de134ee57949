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

	"github.com/wardenhq/warden/chaos"
)

func runChaos(args []string) error {
	fs := newFlags("chaos", "[--nodes 5] [--duration 2m] [--records N] [--rate R] [--seed S] [--faults kill,pause,partition,wipe,churn,broker-restart] [--report DIR] [--json]")
	nodes := fs.Int("nodes", 5, "agent processes")
	duration := fs.Duration("duration", 2*time.Minute, "length of the fault phase")
	records := fs.Int("records", 0, "stop producing after this many records (0: produce for the whole duration)")
	rate := fs.Int("rate", 1000, "records per second")
	seed := fs.Uint64("seed", 1, "seed of the workload and the fault schedule")
	faults := fs.String("faults", "all", "fault kinds: kill,pause,partition,wipe,churn,broker-restart, all or none")
	every := fs.Duration("every", 6*time.Second, "one fault per this much time (at least one of each kind)")
	partitions := fs.Int("partitions", 12, "partitions of the input topic")
	reportDir := fs.String("report", "", "directory for the JSON report, node logs and data (default: a temporary directory, kept)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "warden chaos: unexpected argument %q (run 'warden chaos -h' for usage)\n", fs.Arg(0))
		return errUsage
	}
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := chaos.Config{Bin: bin, Nodes: *nodes, Partitions: *partitions, Duration: *duration, Records: *records,
		Rate: *rate, Seed: *seed, Faults: kinds, Every: *every, Logf: logf}
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
