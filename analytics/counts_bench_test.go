package analytics

import (
	"fmt"
	"runtime"
	"testing"
)

// clientKeys returns n distinct IPv4 addresses, as the footprint benchmark
// sends them.
func clientKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return keys
}

// BenchmarkCountsInsert adds 1,000,000 distinct client addresses to one
// Counts, and reports the heap that holds them per key.
func BenchmarkCountsInsert(b *testing.B) {
	keys := clientKeys(1_000_000)
	var perKey float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var c Counts
		for _, k := range keys {
			c.Add(k, 1)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / float64(len(keys))
		runtime.KeepAlive(&c)
	}
	b.ReportMetric(perKey, "heap_B/key")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
}

// BenchmarkCountsLookup adds to keys a Counts already holds (a replica
// merging a delta of known clients).
func BenchmarkCountsLookup(b *testing.B) { benchLookup(b, 100_000) }

// BenchmarkCountsLookupSmall is the same over 500 keys, which stay in
// the cache (a log's paths or agents).
func BenchmarkCountsLookupSmall(b *testing.B) { benchLookup(b, 500) }

// BenchmarkCountsLookupTiny is the same over 5 keys (a minute's statuses).
func BenchmarkCountsLookupTiny(b *testing.B) { benchLookup(b, 5) }

func benchLookup(b *testing.B, n int) {
	keys := clientKeys(n)
	var c Counts
	for _, k := range keys {
		c.Add(k, 1)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Add(keys[i%len(keys)], 1)
		i++
	}
}

// BenchmarkCountsTop builds a top list over 100,000 keys.
func BenchmarkCountsTop(b *testing.B) {
	keys := clientKeys(100_000)
	var c Counts
	for i, k := range keys {
		c.Add(k, int64(i%977))
	}
	for b.Loop() {
		var m Counts
		m.Merge(&c)
		_ = Top(&m, 10)
	}
}
