package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/workload"
)

// clusterMaxRate is the drain rate (lines/s) BenchmarkClusterThroughput
// measured when it ran earlier in this process (or in this `make bench` run,
// from bench/results.json), else 0. BenchmarkLatency
// offers half of it, so that latency is measured well below saturation.
var clusterMaxRate float64

// savedClusterRate is the cluster throughput recorded in bench/results.json
// (by the same `make bench` run, which runs it first), or 0.
func savedClusterRate() float64 {
	var r Results
	b, err := os.ReadFile(resultsPath())
	if err != nil || json.Unmarshal(b, &r) != nil {
		return 0
	}
	v, _ := r.Benchmarks["cluster_throughput"]["warden_lines_per_s"].(float64)
	return v
}

// latencyWarmup is produced before the measured window of BenchmarkLatency,
// so that workers, fetch sessions and Raft pipelines are under way.
const latencyWarmup = 3 * time.Second

// BenchmarkLatency produces at a fixed rate into a 12-partition topic read
// by 3 agents (separate processes) and reports the end-to-end latency of
// the records produced in the measured window: from each record's Kafka
// timestamp (set by the producer) to its batch's commit being applied, as
// the nodes' warden_record_latency_seconds histograms measure it. The rate
// is $WARDEN_BENCH_RATE, else half of BenchmarkClusterThroughput's rate
// when that ran first (then a second run at a quarter of it follows), else
// 50,000 lines/s; the window is $WARDEN_BENCH_LATENCY_SECONDS (20 s by
// default). It also reports the CPU the processes used in the window.
func BenchmarkLatency(b *testing.B) {
	rate, from := 50_000.0, "default"
	if clusterMaxRate == 0 {
		clusterMaxRate = savedClusterRate()
	}
	if clusterMaxRate > 0 {
		rate, from = clusterMaxRate/2, "half of ClusterThroughput's rate"
	}
	if v := os.Getenv("WARDEN_BENCH_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			b.Fatalf("WARDEN_BENCH_RATE=%q: want a positive number of lines per second", v)
		}
		rate, from = r, "$WARDEN_BENCH_RATE"
	}
	window := 20 * time.Second
	if v := os.Getenv("WARDEN_BENCH_LATENCY_SECONDS"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			b.Fatalf("WARDEN_BENCH_LATENCY_SECONDS=%q: want a positive number of seconds", v)
		}
		window = time.Duration(s * float64(time.Second))
	}
	// Half the maximum is the figure asked for; a quarter shows the
	// latency with the CPU less busy.
	type run struct {
		name, from string
		rate       float64
	}
	runs := []run{{"latency", from, rate}}
	if from == "half of ClusterThroughput's rate" {
		runs = append(runs, run{"latency_quarter_load", "a quarter of ClusterThroughput's rate", clusterMaxRate / 4})
	}
	// And at a fixed, moderate live rate (target p99 < 100 ms).
	runs = append(runs, run{"latency_20k", "a fixed 20,000 lines/s", 20_000})
	for b.Loop() {
		for ri, r := range runs {
			rate, from := r.rate, r.from
			// Nor does it pay the disk's writeback of what ran before it
			// (the earlier runs' and benchmarks' Raft logs and snapshots):
			// every commit waits for an fsync, which waited for that too.
			// Measured third after the half and the quarter load, 20,000
			// lines/s had a p99 of 110-132 ms without this, 70 ms with it
			// and 64-81 ms alone.
			syscall.Sync()
			c := newProcClusterIdle(b, 3, 12, benchAgentFlags())
			ids := []string{"n1", "n2", "n3"}
			for _, id := range ids {
				c.startAgent(id, 3)
			}
			c.waitOwned(12, 60*time.Second)

			cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker), kgo.DefaultProduceTopic(c.topic), kgo.ProducerLinger(time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			// The workload's lines, made in advance so that the producer in
			// this process takes little of the CPU the cluster measures; event
			// times are spread over the last minutes, as in live traffic.
			gen := workload.New(1, 5000, time.Now().Add(-5*time.Minute))
			pool := make([]*kgo.Record, 200_000)
			for i := range pool {
				line, ip := gen.Line()
				pool[i] = &kgo.Record{Key: []byte(detect.PartitionKey(ip)), Value: []byte(line)}
			}
			var sent, acked, failed atomic.Int64
			stop, stopped := make(chan struct{}), make(chan struct{})
			stopProducing := sync.OnceFunc(func() { close(stop); <-stopped })
			b.Cleanup(func() { stopProducing(); cl.Close() })
			go func() {
				defer close(stopped)
				// Every 10 ms, send what is due since the start: rate/100 a tick,
				// and a late tick catches up instead of lowering the rate.
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				begin := time.Now()
				for {
					select {
					case <-stop:
						return
					case now := <-tick.C:
						due := int64(rate * now.Sub(begin).Seconds())
						for n := sent.Load(); n < due; n++ {
							r := pool[n%int64(len(pool))]
							cl.Produce(context.Background(), &kgo.Record{Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
								if err != nil {
									failed.Add(1)
									return
								}
								acked.Add(1)
							})
							sent.Store(n + 1)
						}
					}
				}
			}()

			time.Sleep(latencyWarmup)
			sentBefore, start := sent.Load(), time.Now()
			before := scrapeLatencies(b, c, ids)
			meter := newCPUMeter(map[string]*proc{"broker": c.bproc, "n1": c.agents["n1"].proc, "n2": c.agents["n2"].proc, "n3": c.agents["n3"].proc})
			selfCPU := cpuSeconds(os.Getpid())
			profiled := profileAgents(c, os.Getenv("WARDEN_BENCH_PROFILE"), 0, int(min(window/time.Second, 5)))
			time.Sleep(window - time.Since(start))
			sentAfter, elapsed := sent.Load(), time.Since(start)
			after := scrapeLatencies(b, c, ids)
			cpu := meter.used()
			cpu["producer"] = cpuSeconds(os.Getpid()) - selfCPU
			profiled.Wait()
			saveMetrics(c, ids, os.Getenv("WARDEN_BENCH_PROFILE"))
			stopProducing()
			if err := cl.Flush(context.Background()); err != nil || failed.Load() > 0 {
				b.Fatalf("produce: %v (%d records failed)", err, failed.Load())
			}
			total := acked.Load()
			waitFor(b, 5*time.Minute, fmt.Sprintf("all %d records committed", total), func() bool {
				n, err := committedTotal(c, "n1")
				return err == nil && n == total
			})

			h := after.hist.sub(before.hist)
			samples := h[math.Inf(1)]
			if samples == 0 {
				b.Fatal("no record latency observed in the measured window")
			}
			records := sentAfter - sentBefore
			achieved := float64(records) / elapsed.Seconds()
			p50, p99 := h.quantile(0.50)*1000, h.quantile(0.99)*1000
			maxMs := after.max * 1000
			if ri == 0 {
				b.ReportMetric(achieved, "lines/s")
				b.ReportMetric(p50, "p50_ms")
				b.ReportMetric(p99, "p99_ms")
				b.ReportMetric(maxMs, "max_ms")
			}
			fmt.Printf("\nEnd-to-end latency, 3 agents, 12 partitions, offered %.0f lines/s (%s) for %.0f s after %.0f s of warm-up:\n",
				rate, from, elapsed.Seconds(), latencyWarmup.Seconds())
			fmt.Printf("  produced %d records in the window (%.0f lines/s achieved), %d in all, every one committed\n", records, achieved, total)
			fmt.Printf("  Kafka timestamp -> commit applied, %.0f records:  p50 %.1f ms  p99 %.1f ms  (target p99 250 ms)\n", samples, p50, p99)
			fmt.Printf("  max %.1f ms (since the agents started, warm-up included)\n", maxMs)
			agentCPU := (cpu["n1"] + cpu["n2"] + cpu["n3"]) / elapsed.Seconds()
			allCPU := agentCPU + (cpu["broker"]+cpu["producer"])/elapsed.Seconds()
			fmt.Printf("  CPU in the window: agents %.2f cores, broker %.2f, producer %.2f: %.0f%% of %d cores busy\n\n", agentCPU,
				cpu["broker"]/elapsed.Seconds(), cpu["producer"]/elapsed.Seconds(), 100*allCPU/float64(runtime.NumCPU()), runtime.NumCPU())
			saveResult(b, r.name, map[string]any{
				"offered_lines_per_s":  rate,
				"achieved_lines_per_s": math.Round(achieved),
				"seconds":              math.Round(elapsed.Seconds()*10) / 10,
				"warmup_seconds":       latencyWarmup.Seconds(),
				"records":              records,
				"p50_ms":               round2(p50),
				"p99_ms":               round2(p99),
				"max_ms":               round2(maxMs),
				"target_p99_ms":        250,
				"cpu_busy_fraction":    round2(allCPU / float64(runtime.NumCPU())),
			})
			// The next run shares the machine with nothing of this one
			// (an idle broker holding its records, its producer).
			for _, id := range ids {
				c.killAgent(id)
			}
			cl.Close()
			c.bproc.kill()
		}
	}
}

// BenchmarkFootprint sends 1,000,000 requests ($WARDEN_BENCH_FOOTPRINT_IPS
// to change), each from a distinct client IP and all within the last hour
// of event time (so all retained), through 3 agents, and reports what that
// costs: each agent's peak RSS, the size and write time of an FSM snapshot,
// and how long a 4th node takes from its start until it holds the same
// state ($WARDEN_BENCH_PROFILE names a folder for the agents' heap profiles
// after the ingest). It fails unless the cluster's distinct-client estimate (a
// HyperLogLog) is within 3% of the truth.
func BenchmarkFootprint(b *testing.B) {
	total := 1_000_000
	if v := os.Getenv("WARDEN_BENCH_FOOTPRINT_IPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1<<24 {
			b.Fatalf("WARDEN_BENCH_FOOTPRINT_IPS=%q: want a count from 1 to %d", v, 1<<24)
		}
		total = n
	}
	const token = benchAdminToken
	for b.Loop() {
		extra := map[string][]string{}
		for _, id := range []string{"n1", "n2", "n3", "n4"} {
			// A short log tail, so that once snapshotted the leader no
			// longer holds the log from the start and a joiner gets the
			// snapshot: its restore is what is measured.
			extra[id] = append(benchAgentFlags()["n1"], "--admin-token", token, "--raft-trailing-logs", "8")
		}
		c := newProcClusterIdle(b, 3, 12, extra)
		ids := []string{"n1", "n2", "n3"}
		for _, id := range ids {
			c.startAgent(id, 3)
		}
		c.waitOwned(12, 60*time.Second)
		idleRSS := map[string]float64{}
		for _, id := range ids {
			idleRSS[id] = mib(peakRSS(c.agents[id].cmd.Process.Pid))
		}

		// One request per client: 10.a.b.c from a counter, spread evenly
		// over the hour before base.
		base := time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)
		start := time.Now()
		fillTopic(b, c, total, func(i int) (string, string) {
			ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
			ts := base.Add(-time.Hour + time.Duration(int64(i)*int64(time.Hour)/int64(total)))
			return ip, fmt.Sprintf(`%s - - [%s] "GET /p/%d HTTP/1.1" 200 512 "-" "bench/1.0"`, ip, ts.Format("02/Jan/2006:15:04:05 -0700"), i%1000)
		})
		profiles, midway := os.Getenv("WARDEN_BENCH_PROFILE"), false
		waitFor(b, 30*time.Minute, fmt.Sprintf("all %d records committed", total), func() bool {
			n, err := committedTotal(c, "n1")
			if err == nil && !midway && n >= int64(total)/2 {
				// The ingest's own memory (queued input, batches in
				// flight) is gone once it ends: a profile halfway too.
				midway = true
				saveHeapProfiles(c, ids, profiles, "ingest")
			}
			return err == nil && n == int64(total)
		})
		ingest := time.Since(start)
		ingestRSS := map[string]float64{}
		for _, id := range ids {
			ingestRSS[id] = mib(peakRSS(c.agents[id].cmd.Process.Pid))
		}

		saveHeapProfiles(c, ids, profiles, "heap")

		// Every node snapshots (the leader's is what a joiner receives);
		// the figures are n1's.
		var snap node.SnapshotInfo
		for _, id := range ids {
			si, err := takeSnapshot(c, id, token)
			if err != nil {
				b.Fatal(err)
			}
			if id == "n1" {
				snap = si
			}
		}
		snapRSS, fileRSS := map[string]float64{}, map[string]float64{}
		for _, id := range ids {
			snapRSS[id] = mib(peakRSS(c.agents[id].cmd.Process.Pid))
			fileRSS[id] = mib(fileBackedRSS(c.agents[id].cmd.Process.Pid))
		}

		var st struct {
			Requests  int64  `json:"requests"`
			UniqueIPs uint64 `json:"unique_ips"`
		}
		if err := getJSONWithin(5*time.Minute, "http://"+c.specs["n1"].http+"/v1/stats", &st); err != nil {
			b.Fatal(err)
		}
		estErr := (float64(st.UniqueIPs) - float64(total)) / float64(total)

		// A 4th node joins and catches up: by InstallSnapshot when the
		// leader's log no longer holds what it needs, else by replaying it.
		info, err := c.clusterInfo("n1")
		if err != nil || info.Leader == "" {
			b.Fatalf("no leader before the join: %v", err)
		}
		leader, err := c.clusterInfo(info.Leader)
		if err != nil {
			b.Fatal(err)
		}
		c.addAgent("n4")
		joinStart := time.Now()
		c.startAgent("n4", 3)
		waitFor(b, 10*time.Minute, fmt.Sprintf("n4 at applied index %d with all %d records", leader.AppliedIndex, total), func() bool {
			ci, err := c.clusterInfo("n4")
			if err != nil || ci.AppliedIndex < leader.AppliedIndex {
				return false
			}
			n, err := committedTotal(c, "n4")
			return err == nil && n == int64(total)
		})
		restore := time.Since(joinStart)
		via := "log replay"
		if m, _ := filepath.Glob(filepath.Join(c.specs["n4"].dataDir, "snapshots", "*", "meta.json")); len(m) > 0 {
			via = "InstallSnapshot"
		}

		rss := map[string]float64{}
		for _, id := range append(ids, "n4") {
			rss[id] = mib(peakRSS(c.agents[id].cmd.Process.Pid))
		}
		rss["max"] = max(rss["n1"], rss["n2"], rss["n3"])
		b.ReportMetric(rss["max"], "peak_rss_MiB")
		b.ReportMetric(float64(snap.SizeBytes), "snapshot_bytes")
		b.ReportMetric(restore.Seconds(), "restore_s")
		fmt.Printf("\nFootprint of %d distinct client IPs (one request each, within the last hour of event time), 3 agents:\n", total)
		fmt.Printf("  ingest: all committed %.1f s after the first produce\n", ingest.Seconds())
		idleMax := max(idleRSS["n1"], idleRSS["n2"], idleRSS["n3"])
		perIP := (rss["max"] - idleMax) * (1 << 20) / float64(total)
		fmt.Printf("  peak RSS idle (formed): n1 %.0f MiB  n2 %.0f MiB  n3 %.0f MiB\n", idleRSS["n1"], idleRSS["n2"], idleRSS["n3"])
		fmt.Printf("  peak RSS after ingest:  n1 %.0f MiB  n2 %.0f MiB  n3 %.0f MiB\n", ingestRSS["n1"], ingestRSS["n2"], ingestRSS["n3"])
		fmt.Printf("  peak RSS after snapshots: n1 %.0f MiB  n2 %.0f MiB  n3 %.0f MiB (then file-backed: n1 %.0f MiB  n2 %.0f MiB  n3 %.0f MiB, mostly the Raft log's mapped pages)\n",
			snapRSS["n1"], snapRSS["n2"], snapRSS["n3"], fileRSS["n1"], fileRSS["n2"], fileRSS["n3"])
		fmt.Printf("  peak RSS at the end:    n1 %.0f MiB  n2 %.0f MiB  n3 %.0f MiB  (max %.0f, target 300; %.0f bytes per IP over idle)   joiner n4 %.0f MiB\n",
			rss["n1"], rss["n2"], rss["n3"], rss["max"], perIP, rss["n4"])
		fmt.Printf("  FSM snapshot on n1: %.1f MiB (%.0f bytes per IP), written in %.2f s, at index %d\n",
			float64(snap.SizeBytes)/(1<<20), float64(snap.SizeBytes)/float64(total), snap.Seconds, snap.Index)
		fmt.Printf("  joining node n4: caught up (index %d, all offsets) %.2f s after its start, by %s\n", leader.AppliedIndex, restore.Seconds(), via)
		fmt.Printf("  distinct clients estimated: %d of %d (%+.2f%%), requests counted: %d\n\n", st.UniqueIPs, total, estErr*100, st.Requests)
		saveResult(b, "footprint", map[string]any{
			"distinct_ips":          total,
			"distinct_ips_estimate": st.UniqueIPs,
			"peak_rss_mib":          rss,
			"peak_rss_ingest_mib":   ingestRSS,
			"peak_rss_snapshot_mib": snapRSS,
			"rss_file_backed_mib":   fileRSS,
			"peak_rss_idle_mib":     idleRSS,
			"rss_bytes_per_ip":      math.Round(perIP),
			"snapshot_bytes":        snap.SizeBytes,
			"snapshot_seconds":      round2(snap.Seconds),
			"restore_seconds":       round2(restore.Seconds()),
			"restore_via":           via,
			"target_rss_mib":        300,
		})
		if math.Abs(estErr) > 0.03 {
			b.Fatalf("distinct clients estimated %d, produced %d: off by %+.2f%%, more than 3%%", st.UniqueIPs, total, estErr*100)
		}
		for _, id := range append(ids, "n4") {
			c.killAgent(id)
		}
	}
}

// committedTotal sums the committed offsets that agent id serves.
func committedTotal(c *procCluster, id string) (int64, error) {
	parts, err := c.partitions(id)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range parts {
		n += p.Committed
	}
	return n, nil
}

// saveHeapProfiles saves a heap profile of each agent in ids into dir
// (when dir is not empty), as id.name.pprof: after a collection (gc=1),
// so that it shows what is live now, not what was at the last cycle.
func saveHeapProfiles(c *procCluster, ids []string, dir, name string) {
	if dir == "" {
		return
	}
	_ = os.MkdirAll(dir, 0o755)
	for _, id := range ids {
		saveURL("http://"+c.specs[id].http+"/debug/pprof/heap?gc=1", filepath.Join(dir, id+"."+name+".pprof"))
	}
}

// takeSnapshot asks agent id for a Raft snapshot of its FSM now.
func takeSnapshot(c *procCluster, id, token string) (node.SnapshotInfo, error) {
	var out node.SnapshotInfo
	req, err := http.NewRequest(http.MethodPost, "http://"+c.specs[id].http+"/v1/snapshot", nil)
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return out, fmt.Errorf("snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return out, fmt.Errorf("snapshot: %s: %s", resp.Status, e.Error)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// getJSONWithin is getJSON with a longer timeout, for heavy queries.
func getJSONWithin(timeout time.Duration, url string, v any) error {
	resp, err := (&http.Client{Timeout: timeout}).Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// latencyHist is a classic Prometheus histogram: cumulative counts by upper
// bound (+Inf included).
type latencyHist map[float64]float64

func (h latencyHist) sub(o latencyHist) latencyHist {
	out := latencyHist{}
	for le, n := range h {
		out[le] = n - o[le]
	}
	return out
}

// quantile interpolates linearly inside the bucket that holds rank q, as
// Prometheus's histogram_quantile does; a rank in the +Inf bucket gets the
// highest finite bound.
func (h latencyHist) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(h))
	for le := range h {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	rank := q * h[math.Inf(1)]
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		n := h[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if n == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(n-below)
		}
		lower, below = le, n
	}
	return lower
}

// latencyScrape is the record latency series of a set of nodes at one
// moment: their histograms summed, and the largest of their maxima.
type latencyScrape struct {
	hist latencyHist
	max  float64
}

// scrapeLatencies reads GET /metrics of each agent in ids.
func scrapeLatencies(tb testing.TB, c *procCluster, ids []string) latencyScrape {
	tb.Helper()
	out := latencyScrape{hist: latencyHist{}}
	for _, id := range ids {
		h, m, err := scrapeLatency("http://" + c.specs[id].http + "/metrics")
		if err != nil {
			tb.Fatalf("%s: %v", id, err)
		}
		for le, n := range h {
			out.hist[le] += n
		}
		out.max = max(out.max, m)
	}
	return out
}

// scrapeLatency parses warden_record_latency_seconds_bucket and
// warden_record_latency_max_seconds out of one node's Prometheus text.
func scrapeLatency(url string) (latencyHist, float64, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	const bucket, gauge = `warden_record_latency_seconds_bucket{le="`, "warden_record_latency_max_seconds "
	h, maxSeen, sawMax := latencyHist{}, 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, bucket):
			le, count, ok := strings.Cut(line[len(bucket):], `"} `)
			if !ok {
				return nil, 0, fmt.Errorf("%s: bad bucket line %q", url, line)
			}
			b, err1 := strconv.ParseFloat(le, 64)
			n, err2 := strconv.ParseFloat(count, 64)
			if err1 != nil || err2 != nil {
				return nil, 0, fmt.Errorf("%s: bad bucket line %q", url, line)
			}
			h[b] = n
		case strings.HasPrefix(line, gauge):
			v, err := strconv.ParseFloat(line[len(gauge):], 64)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: bad gauge line %q", url, line)
			}
			maxSeen, sawMax = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if _, ok := h[math.Inf(1)]; !ok || !sawMax {
		return nil, 0, fmt.Errorf("%s: no warden_record_latency_seconds histogram or max gauge", url)
	}
	return h, maxSeen, nil
}

func mib(bytes int64) float64 { return math.Round(float64(bytes)/(1<<20)*10) / 10 }

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// saveMetrics saves each agent's /metrics and log into dir (when dir is not
// empty), as id.metrics.txt and id.log, for looking into a run afterwards.
func saveMetrics(c *procCluster, ids []string, dir string) {
	if dir == "" {
		return
	}
	_ = os.MkdirAll(dir, 0o755)
	for _, id := range ids {
		saveURL("http://"+c.specs[id].http+"/metrics", filepath.Join(dir, id+".metrics.txt"))
		if b, err := os.ReadFile(filepath.Join(c.dir, id+".log")); err == nil {
			_ = os.WriteFile(filepath.Join(dir, id+".log"), b, 0o644)
		}
	}
}
