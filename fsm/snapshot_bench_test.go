package fsm

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

var (
	benchOnce  sync.Once
	benchState *FSM
)

// benchFSM is the state of bench/README.md's footprint item, built through
// the apply path: WARDEN_BENCH_SNAPSHOT_CLIENTS distinct clients (default
// 1,000,000) over an hour of windows, detector buckets for
// WARDEN_BENCH_SNAPSHOT_SOURCES of them (default one in 20; two scenarios
// each), 12 partitions.
func benchFSM(b *testing.B) *FSM {
	benchOnce.Do(func() {
		clients := 1_000_000
		if v, err := strconv.Atoi(os.Getenv("WARDEN_BENCH_SNAPSHOT_CLIENTS")); err == nil && v > 0 {
			clients = v
		}
		sources := clients / 20
		if v, err := strconv.Atoi(os.Getenv("WARDEN_BENCH_SNAPSHOT_SOURCES")); err == nil && v >= 0 {
			sources = v
		}
		benchState = build(b, shape{clients: clients, minutes: 60, sources: sources, batches: 50, partitions: 12})
	})
	return benchState
}

// BenchmarkSnapshotPause measures a snapshot of a large state, the JSON
// snapshot of earlier releases and the binary one side by side: how long
// Snapshot holds the FSM's lock (pause-ms: applies wait that long), the
// longest an apply took while the snapshot was taken and persisted
// (apply-wait-ms, from a goroutine applying a one-record commit every 0.1
// ms, partitions in turn),
// Persist's time, the size, and ReadSnapshot's time.
func BenchmarkSnapshotPause(b *testing.B) {
	f := benchFSM(b)
	feed := newFeeder(f)
	for _, mode := range []string{"json", "binary"} {
		b.Run(mode, func(b *testing.B) {
			var pause, persist, restore, wait time.Duration
			var size int
			for b.Loop() {
				stop, waited := make(chan struct{}), make(chan time.Duration)
				go func() {
					var worst time.Duration
					for {
						select {
						case <-stop:
							waited <- worst
							return
						default:
						}
						e := feed.next(b)
						t := time.Now()
						r := f.Apply(&raft.Log{Type: raft.LogCommand, Data: e}).(Result)
						worst = max(worst, time.Since(t))
						if err := r.BatchErr(0); err != nil {
							b.Error(err)
						}
						time.Sleep(100 * time.Microsecond)
					}
				}()
				time.Sleep(time.Millisecond)
				var sink memSink
				t0 := time.Now()
				if mode == "json" {
					// What Snapshot did before the binary form.
					f.mu.RLock()
					data, err := json.Marshal(f.state)
					f.mu.RUnlock()
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					pause += t1.Sub(t0)
					if err := snapshot(data).Persist(&sink); err != nil {
						b.Fatal(err)
					}
					persist += time.Since(t1)
				} else {
					snap, err := f.Snapshot()
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					pause += t1.Sub(t0)
					if err := snap.Persist(&sink); err != nil {
						b.Fatal(err)
					}
					persist += time.Since(t1)
				}
				close(stop)
				wait += <-waited
				size = sink.Len()
				t2 := time.Now()
				s, err := ReadSnapshot(bytes.NewReader(sink.Bytes()))
				if err != nil || s.Analytics.Windows() != 60 {
					b.Fatalf("restore: %v", err)
				}
				restore += time.Since(t2)
			}
			n := float64(b.N)
			b.ReportMetric(float64(pause.Microseconds())/1e3/n, "pause-ms")
			b.ReportMetric(float64(wait.Microseconds())/1e3/n, "apply-wait-ms")
			b.ReportMetric(float64(persist.Microseconds())/1e3/n, "persist-ms")
			b.ReportMetric(float64(restore.Microseconds())/1e3/n, "restore-ms")
			b.ReportMetric(float64(size)/(1<<20), "MiB")
		})
	}
}

// feeder makes commits that follow f's: a record and an overwrite of a
// known detector bucket per batch, on each partition in turn (the first
// change of a partition's buckets after a Snapshot copies its map).
type feeder struct {
	committed []int64
	keys      []string
	n         int
}

func newFeeder(f *FSM) *feeder {
	fd := &feeder{}
	for _, p := range f.state.Partitions {
		fd.committed = append(fd.committed, p.Committed)
		key := ""
		for k := range f.state.Detect[p.Partition].State().Buckets {
			key = k
			break
		}
		fd.keys = append(fd.keys, key)
	}
	return fd
}

func (fd *feeder) next(tb testing.TB) []byte {
	p := int32(fd.n % len(fd.committed))
	fd.n++
	agg := analytics.NewAggregate()
	e := accesslog.Entry{Time: time.Date(2026, 11, 27, 10, 30, 0, 0, time.UTC).UnixNano(), Client: clientIP(fd.n), Method: []byte("GET"),
		Path: []byte("/"), Status: 200, Duration: -1}
	agg.Add(&e)
	d := &detect.Delta{Partition: p, Buckets: map[string]*detect.Bucket{fd.keys[p]: {Level: fd.n % 7}}}
	from := fd.committed[p]
	fd.committed[p]++
	data, err := Encode(Command{Kind: KindCommit, Commit: []Batch{{Node: "n1", Partition: p, Epoch: 1, From: from, Until: from + 1,
		Digest: Digest{Records: 1}, Analytics: agg, Detect: d}}})
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// snapshot is the JSON snapshot of earlier releases, for the benchmark.
type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
