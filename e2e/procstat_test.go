package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// cpuSeconds is the CPU time (user + system) process pid has used so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// peakRSS is the process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) int64 {
	return procStatusKB(pid, "VmHWM:") << 10
}

// procStatusKB reads the field of /proc/pid/status that starts with
// prefix, in kB (0 if it cannot be read).
func procStatusKB(pid int, prefix string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// fileBackedRSS returns how much of process pid's resident memory is
// file-backed now (RssFile: mapped files, such as BoltDB's Raft log), in
// bytes, or 0 if it cannot be read.
func fileBackedRSS(pid int) int64 {
	return procStatusKB(pid, "RssFile:") << 10
}

// cpuMeter reads the CPU time of a set of processes at two points.
type cpuMeter struct {
	procs map[string]*proc
	start map[string]float64
}

func newCPUMeter(procs map[string]*proc) *cpuMeter {
	m := &cpuMeter{procs: procs, start: map[string]float64{}}
	for name, p := range procs {
		m.start[name] = cpuSeconds(p.cmd.Process.Pid)
	}
	return m
}

// used returns each process's CPU seconds since the meter started.
func (m *cpuMeter) used() map[string]float64 {
	out := map[string]float64{}
	for name, p := range m.procs {
		out[name] = cpuSeconds(p.cmd.Process.Pid) - m.start[name]
	}
	return out
}

// profileAgents saves a CPU profile of secs seconds from every agent, all
// at once, into dir (when dir is not empty), in the background.
func profileAgents(c *procCluster, dir string, after time.Duration, secs int) *sync.WaitGroup {
	var wg sync.WaitGroup
	if dir == "" {
		return &wg
	}
	_ = os.MkdirAll(dir, 0o755)
	for id, s := range c.specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(after)
			saveURL("http://"+s.http+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), filepath.Join(dir, id+".cpu.pprof"))
		}()
	}
	return &wg
}

// scrapeMetrics reads the samples without labels of one node's /metrics.
func scrapeMetrics(url string) (map[string]float64, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out, nil
}

// saveURL writes what GET url answers into the file at path (best effort:
// it serves looking into a run afterwards, not the figures).
func saveURL(url, path string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+benchAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if f, err := os.Create(path); err == nil {
		_, _ = io.Copy(f, resp.Body)
		f.Close()
	}
}

// fillTopic produces total records, the i-th made by record(i), and waits
// until Kafka has acknowledged all of them.
func fillTopic(tb testing.TB, c *procCluster, total int, record func(i int) (key, value string)) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker), kgo.DefaultProduceTopic(c.topic), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	var failed atomic.Bool
	for i := 0; i < total; i++ {
		k, v := record(i)
		cl.Produce(context.Background(), &kgo.Record{Key: []byte(k), Value: []byte(v)}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(true)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil || failed.Load() {
		tb.Fatalf("filling the topic: %v", err)
	}
}
