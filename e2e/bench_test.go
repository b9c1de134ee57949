package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/internal/testenv"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/workload"
)

// BenchmarkAnalyzeVsGoAccess times `warden analyze --json` and `goaccess
// --log-format=COMBINED -o json` on the same 1,000,000-line file (the
// elastic sample repeated), in the same run, three times each, and reports
// each one's median lines per second and their ratio.
func BenchmarkAnalyzeVsGoAccess(b *testing.B) {
	goaccess := testenv.Tool(b, "goaccess")
	sample := testenv.Data(b, "elastic-apache/apache_logs")
	src, err := os.ReadFile(sample)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	file := filepath.Join(dir, "1m.log")
	fh, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(fh, 1<<20)
	lines := 0
	for lines < 1_000_000 {
		w.Write(src)
		lines += 10_000
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	fh.Close()

	run := func(name string, args ...string) time.Duration {
		var times []time.Duration
		for i := 0; i < 3; i++ {
			cmd := exec.Command(name, args...)
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%s: %v\n%s", name, err, out)
			}
			times = append(times, time.Since(start))
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		return times[1]
	}
	b.ResetTimer()
	for b.Loop() {
		wt := run(wardenBin(b), "analyze", "--json", "--quiet", file)
		// Everything on: the terminal report, load figures and every
		// scenario's detection.
		ft := run(wardenBin(b), "analyze", "--quiet", file)
		gt := run(goaccess, file, "--log-format=COMBINED", "--no-global-config", "-o", filepath.Join(dir, "goaccess.json"))
		wr, gr := float64(lines)/wt.Seconds(), float64(lines)/gt.Seconds()
		fr := float64(lines) / ft.Seconds()
		b.ReportMetric(wr, "warden_lines/s")
		b.ReportMetric(gr, "goaccess_lines/s")
		b.ReportMetric(wr/gr, "ratio")
		fmt.Printf("\nOffline analysis of %d lines (elastic sample x100), median of 3 runs each:\n", lines)
		fmt.Printf("  %-34s %8.2f s  %12.0f lines/s\n", "warden analyze --json", wt.Seconds(), wr)
		fmt.Printf("  %-34s %8.2f s  %12.0f lines/s\n", "goaccess --log-format=COMBINED -o json", gt.Seconds(), gr)
		fmt.Printf("  %-34s %8.2f s  %12.0f lines/s\n", "warden analyze (report, detection)", ft.Seconds(), fr)
		fmt.Printf("  ratio: warden is %.1f times GoAccess's rate (%.1f with everything on)\n\n", wr/gr, fr/gr)
		saveResult(b, "analyze_vs_goaccess", map[string]any{"lines": lines, "warden_lines_per_s": math.Round(wr),
			"goaccess_lines_per_s": math.Round(gr), "ratio": round2(wr / gr), "target_ratio": 25,
			"full_lines_per_s": math.Round(fr), "full_ratio": round2(fr / gr), "target_full_ratio": 10})
	}
}

// BenchmarkDetectVsFail2ban times all of Warden's built-in scenarios
// (`warden analyze --json --doc alerts`, which parses, counts and detects)
// and `fail2ban-regex` with each of Debian's Apache filters, one after the
// other as fail2ban runs one filter per pass, on the same 100,000-line file
// (the elastic sample repeated), in the same run.
func BenchmarkDetectVsFail2ban(b *testing.B) {
	f2b := testenv.Tool(b, "fail2ban-regex")
	filters, _ := filepath.Glob("/etc/fail2ban/filter.d/apache-*.conf")
	var use []string
	for _, f := range filters {
		if !strings.HasSuffix(f, "apache-common.conf") {
			use = append(use, f)
		}
	}
	if len(use) == 0 {
		b.Fatalf("no Apache filters in /etc/fail2ban/filter.d: run scripts/test-deps (%s)", testenv.InstallCommand("fail2ban"))
	}
	src, err := os.ReadFile(testenv.Data(b, "elastic-apache/apache_logs"))
	if err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "100k.log")
	lines := 100_000
	if err := os.WriteFile(file, bytes.Repeat(src, lines/10_000), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if out, err := exec.Command(wardenBin(b), "analyze", "--json", "--doc", "alerts", "--quiet", file).CombinedOutput(); err != nil {
			b.Fatalf("warden: %v\n%.500s", err, out)
		}
		wt := time.Since(start)
		start = time.Now()
		for _, f := range use {
			if out, err := exec.Command(f2b, file, f).CombinedOutput(); err != nil {
				b.Fatalf("fail2ban-regex %s: %v\n%.500s", f, err, out)
			}
		}
		ft := time.Since(start)
		wr, fr := float64(lines)/wt.Seconds(), float64(lines)/ft.Seconds()
		b.ReportMetric(wr, "warden_lines/s")
		b.ReportMetric(fr, "fail2ban_lines/s")
		b.ReportMetric(wr/fr, "ratio")
		fmt.Printf("\nDetection on %d lines (elastic sample x10):\n", lines)
		fmt.Printf("  %-44s %8.2f s  %12.0f lines/s\n", fmt.Sprintf("warden analyze (all %s scenarios)", "built-in"), wt.Seconds(), wr)
		fmt.Printf("  %-44s %8.2f s  %12.0f lines/s\n", fmt.Sprintf("fail2ban-regex (%d Apache filters)", len(use)), ft.Seconds(), fr)
		fmt.Printf("  ratio: warden is %.1f times fail2ban-regex's rate\n\n", wr/fr)
		saveResult(b, "detect_vs_fail2ban", map[string]any{"lines": lines, "warden_lines_per_s": math.Round(wr),
			"fail2ban_lines_per_s": math.Round(fr), "ratio": round2(wr / fr), "fail2ban_filters": len(use)})
	}
}

// BenchmarkClusterThroughput pre-fills a 12-partition topic (2,000,000
// lines by default; $WARDEN_BENCH_RECORDS to change), reads it with a bare
// franz-go consumer (no parsing, no commits), then starts 3 agents
// (separate processes) and times, exactly once, until every partition is
// committed; it reports both rates and their ratio.
func BenchmarkClusterThroughput(b *testing.B) {
	total := 2_000_000
	if v := os.Getenv("WARDEN_BENCH_RECORDS"); v != "" {
		fmt.Sscan(v, &total)
	}
	for b.Loop() {
		// Side by side in one run: the default pipeline (the repartition
		// stage: every line forwarded to <topic>.by-client and detected
		// there) and input declared keyed by client (one stage).
		two := drainCluster(b, total, false)
		one := drainCluster(b, total, true)
		b.ReportMetric(two.wardenRate, "warden_lines/s")
		b.ReportMetric(one.wardenRate, "warden_keyed_lines/s")
		b.ReportMetric(two.bareRate, "bare_consumer_lines/s")
		b.ReportMetric(two.wardenRate/two.bareRate, "ratio")
		fmt.Printf("  repartition stage: %.0f lines/s with it, %.0f without (input keyed by client): %.2f of the rate without\n\n",
			two.wardenRate, one.wardenRate, two.wardenRate/one.wardenRate)
		clusterMaxRate = two.wardenRate
		saveResult(b, "cluster_throughput", two.result(total))
		saveResult(b, "cluster_throughput_keyed", one.result(total))
		saveResult(b, "repartition_cost", map[string]any{
			"with_lines_per_s":              math.Round(two.wardenRate),
			"without_lines_per_s":           math.Round(one.wardenRate),
			"ratio":                         round2(two.wardenRate / one.wardenRate),
			"agent_cpu_us_per_line_with":    round2(two.agentCPU / float64(total) * 1e6),
			"agent_cpu_us_per_line_without": round2(one.agentCPU / float64(total) * 1e6),
		})
		saveResult(b, "raft_economy", map[string]any{
			"entries":              two.entries,
			"entries_per_s":        round2(two.entries / two.wardenTime.Seconds()),
			"bytes_per_entry":      math.Round(two.entryBytes / max(two.entries, 1)),
			"bytes_per_line":       round2(two.entryBytes / float64(total)),
			"at_lines_per_s":       math.Round(two.wardenRate),
			"keyed_bytes_per_line": round2(one.entryBytes / float64(total)),
		})
	}
}

// drained is one cluster's drain of a pre-filled topic.
type drained struct {
	keyed                bool
	wardenRate, bareRate float64
	wardenTime           time.Duration
	cores, agentCPU      float64
	entries, entryBytes  float64
}

func (d drained) result(total int) map[string]any {
	return map[string]any{
		"lines":                 total,
		"partitions":            12,
		"agents":                3,
		"input_keyed_by_client": d.keyed,
		"warden_lines_per_s":    math.Round(d.wardenRate),
		"bare_lines_per_s":      math.Round(d.bareRate),
		"ratio":                 round2(d.wardenRate / d.bareRate),
		"cpu_cores_used":        round2(d.cores),
		"target_lines_per_s":    1_000_000,
		"target_ratio":          0.5,
		"agent_flags":           os.Getenv("WARDEN_BENCH_AGENT_FLAGS"),
		"agent_cpu_us_per_line": round2(d.agentCPU / float64(total) * 1e6),
	}
}

// drainCluster pre-fills a topic with total synthetic lines, reads it
// with a bare franz-go consumer, then starts 3 agents and measures how
// long they take, from formation, until every line is through the whole
// pipeline (committed, and with the repartition stage also detected on).
func drainCluster(b *testing.B, total int, keyed bool) drained {
	flags := benchAgentFlags()
	if keyed {
		for id := range flags {
			flags[id] = append(flags[id], "--input-keyed-by-client")
		}
	}
	c := newProcClusterIdle(b, 3, 12, flags)
	gen := workload.New(1, 5000, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	start := time.Now()
	fillTopic(b, c, total, func(int) (string, string) {
		line, ip := gen.Line()
		return ip, line
	})
	fill := time.Since(start)

	// The bare consumer.
	bare, err := kgo.NewClient(kgo.SeedBrokers(c.broker), kgo.ConsumeTopics(c.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(8<<20))
	if err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	read := 0
	for read < total {
		fs := bare.PollFetches(context.Background())
		read += fs.NumRecords()
	}
	bareTime := time.Since(start)
	bare.Close()

	for i := 1; i <= 3; i++ {
		c.startAgent(fmt.Sprintf("n%d", i), 3)
	}
	c.waitOwned(12, 60*time.Second)
	formed := time.Now()
	meter := newCPUMeter(map[string]*proc{"broker": c.bproc, "n1": c.agents["n1"].proc, "n2": c.agents["n2"].proc, "n3": c.agents["n3"].proc})
	raftBefore, err := scrapeMetrics("http://" + c.specs["n1"].http + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	// A subfolder per mode, as BenchmarkSampleDrain's.
	dir := os.Getenv("WARDEN_BENCH_PROFILE")
	if dir != "" {
		dir = filepath.Join(dir, map[bool]string{false: "repartition-stage", true: "input-keyed-by-client"}[keyed])
	}
	profiled := profileAgents(c, dir, time.Second, 5)
	waitFor(b, 30*time.Minute, "every record through the pipeline", func() bool {
		if keyed {
			n, err := committedTotal(c, "n1")
			return err == nil && n >= int64(total)
		}
		return c.applied(total)
	})
	d := drained{keyed: keyed, wardenTime: time.Since(formed), bareRate: float64(total) / bareTime.Seconds()}
	cpu := meter.used()
	raftAfter, err := scrapeMetrics("http://" + c.specs["n1"].http + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	profiled.Wait()
	d.entries = raftAfter["warden_raft_entries_applied_total"] - raftBefore["warden_raft_entries_applied_total"]
	d.entryBytes = raftAfter["warden_raft_entry_bytes_applied_total"] - raftBefore["warden_raft_entry_bytes_applied_total"]
	d.wardenRate = float64(total) / d.wardenTime.Seconds()
	d.agentCPU = cpu["n1"] + cpu["n2"] + cpu["n3"]
	d.cores = (cpu["broker"] + d.agentCPU) / d.wardenTime.Seconds()
	what := "warden, 3 agents, repartition stage (parse, count, forward, detect)"
	if keyed {
		what = "warden, 3 agents, input keyed by client (parse, count, detect)"
	}
	fmt.Printf("\nCluster throughput, %d lines pre-filled in 12 partitions (fill took %.1fs):\n", total, fill.Seconds())
	fmt.Printf("  %-68s %8.2f s  %12.0f lines/s\n", "bare franz-go consumer (no parsing, no commits)", bareTime.Seconds(), d.bareRate)
	fmt.Printf("  %-68s %8.2f s  %12.0f lines/s\n", what, d.wardenTime.Seconds(), d.wardenRate)
	fmt.Printf("  ratio: %.2f of the bare consumer's rate\n", d.wardenRate/d.bareRate)
	fmt.Printf("  CPU while draining: broker %.1fs, agents %.1fs %.1fs %.1fs (%.2f of %d cores)\n", cpu["broker"], cpu["n1"], cpu["n2"], cpu["n3"],
		d.cores/float64(runtime.NumCPU()), runtime.NumCPU())
	fmt.Printf("  Raft: %.0f entries applied, %.1f entries/s, %.0f bytes/entry, %.1f bytes/line\n\n", d.entries, d.entries/d.wardenTime.Seconds(),
		d.entryBytes/max(d.entries, 1), d.entryBytes/float64(total))
	for _, id := range []string{"n1", "n2", "n3"} {
		c.killAgent(id)
	}
	return d
}

// benchAgentFlags are the agent flags of the performance benchmarks' nodes:
// the agent's own default batch interval (the test harness shortens it for
// quick tests), then $WARDEN_BENCH_AGENT_FLAGS (e.g. "--max-batch-records
// 10000"), so that what is measured is what ships.
// benchAdminToken is the agents' admin token in benchmarks: profiles
// (--pprof) are for the admin only.
const benchAdminToken = "bench"

func benchAgentFlags() map[string][]string {
	flags := append([]string{"--batch-interval", node.DefaultConfig().BatchInterval.String(), "--pprof", "--admin-token", benchAdminToken},
		strings.Fields(os.Getenv("WARDEN_BENCH_AGENT_FLAGS"))...)
	return map[string][]string{"n1": flags, "n2": flags, "n3": flags}
}
