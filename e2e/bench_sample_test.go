package e2e

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/testenv"
)

// BenchmarkSampleDrain is the steady drain of a pre-filled topic of the
// real sample (testdata/elastic-apache, 10,000 lines repeated to
// $WARDEN_BENCH_SAMPLE_RECORDS, default 2,000,000, in 12 partitions keyed by
// client as warden ship keys them) by a 3-node cluster, against kcat reading
// the same topic to its end in the same run: the rate between 10% and 90%
// of the records, read from /v1/partitions every 100 ms (committed offsets;
// with the repartition stage, the lines it took into detection), with and
// without the repartition stage. $WARDEN_BENCH_PROFILE names a folder for
// the agents' CPU profiles of the drain's first 2 s (a subfolder per mode).
func BenchmarkSampleDrain(b *testing.B) {
	total := 2_000_000
	if v := os.Getenv("WARDEN_BENCH_SAMPLE_RECORDS"); v != "" {
		fmt.Sscan(v, &total)
	}
	src, err := os.ReadFile(testenv.Data(b, "elastic-apache/apache_logs"))
	if err != nil {
		b.Fatal(err)
	}
	sample := strings.Split(strings.TrimRight(string(src), "\n"), "\n")
	kcat := testenv.Tool(b, "kcat")
	for b.Loop() {
		res := map[bool]map[string]any{}
		modes := []bool{false, true}
		if os.Getenv("WARDEN_BENCH_SAMPLE_ONE") != "" { // one cluster, default flags: to compare binaries
			modes = modes[:1]
		}
		for _, keyed := range modes {
			flags := benchAgentFlags()
			if keyed {
				for id := range flags {
					flags[id] = append(flags[id], "--input-keyed-by-client")
				}
			}
			c := newProcClusterIdle(b, 3, 12, flags)
			fillTopic(b, c, total, func(i int) (string, string) {
				line := sample[i%len(sample)]
				client, _, _ := strings.Cut(line, " ")
				return detect.PartitionKey(client), line
			})
			// kcat reads the whole topic to its end.
			start := time.Now()
			out, err := exec.Command(kcat, "-C", "-b", c.broker, "-t", c.topic, "-o", "beginning", "-e", "-q", "-f", "x\n").Output()
			if err != nil {
				b.Fatalf("kcat: %v", err)
			}
			kcatTime := time.Since(start)
			if n := bytes.Count(out, []byte("\n")); n != total {
				b.Fatalf("kcat read %d records, want %d", n, total)
			}
			for i := 1; i <= 3; i++ {
				c.startAgent(fmt.Sprintf("n%d", i), 3)
			}
			c.waitOwned(12, 60*time.Second)
			what := "repartition stage"
			if keyed {
				what = "input keyed by client"
			}
			dir := os.Getenv("WARDEN_BENCH_PROFILE")
			if dir != "" {
				dir = filepath.Join(dir, strings.ReplaceAll(what, " ", "-"))
			}
			profiled := profileAgents(c, dir, 0, 2) // none without a folder
			progress := func() int64 {
				parts, err := c.partitions("n1")
				if err != nil {
					return -1
				}
				var sum int64
				for _, p := range parts {
					if p.ByClient != nil {
						sum += p.ByClient.Applied
					} else {
						sum += p.Committed
					}
				}
				return sum
			}
			var t10, t90 time.Time
			deadline := time.Now().Add(20 * time.Minute)
			for t90.IsZero() && time.Now().Before(deadline) {
				n := progress()
				now := time.Now()
				if t10.IsZero() && n >= int64(total)/10 {
					t10 = now
				}
				if !t10.IsZero() && n >= int64(total)*9/10 {
					t90 = now
				}
				time.Sleep(100 * time.Millisecond)
			}
			if t90.IsZero() {
				b.Fatalf("the cluster did not reach 90%% of %d lines", total)
			}
			rate := 0.8 * float64(total) / t90.Sub(t10).Seconds()
			kcatRate := float64(total) / kcatTime.Seconds()
			profiled.Wait()
			fmt.Printf("\nReal sample, %d lines in 12 partitions, %s: 10%%-90%% at %.0f lines/s; kcat %.0f lines/s (%.2f s); ratio %.2f\n",
				total, what, rate, kcatRate, kcatTime.Seconds(), rate/kcatRate)
			res[keyed] = map[string]any{
				"lines": total, "partitions": 12, "agents": 3, "input_keyed_by_client": keyed,
				"warden_lines_per_s": math.Round(rate), "kcat_lines_per_s": math.Round(kcatRate), "ratio": round2(rate / kcatRate),
				"target_lines_per_s": 1_000_000, "target_ratio": 0.5,
			}
			for _, id := range []string{"n1", "n2", "n3"} {
				c.killAgent(id)
			}
		}
		b.ReportMetric(res[false]["warden_lines_per_s"].(float64), "lines/s")
		if res[true] == nil {
			continue
		}
		b.ReportMetric(res[true]["warden_lines_per_s"].(float64), "keyed_lines/s")
		saveResult(b, "sample_drain", res[false])
		saveResult(b, "sample_drain_keyed", res[true])
	}
}
