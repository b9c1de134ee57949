package detect

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/internal/testenv"
	"github.com/wardenhq/warden/workload"
)

// benchLines is the workload's traffic (5% attacks), parsed.
func benchLines(b *testing.B, n int) ([][]byte, []accesslog.Entry) {
	f, err := accesslog.Lookup("combined")
	if err != nil {
		b.Fatal(err)
	}
	g := workload.New(1, 5000, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	lines := make([][]byte, n)
	es := make([]accesslog.Entry, n)
	for i := range lines {
		l, _ := g.Line()
		lines[i] = []byte(l)
		if err := f.Parse(lines[i], &es[i]); err != nil {
			b.Fatal(err)
		}
	}
	return lines, es
}

// BenchmarkEvaluate runs every built-in scenario's filter on one line.
func BenchmarkEvaluate(b *testing.B) {
	lines, es := benchLines(b, 10_000)
	benchEvaluate(b, lines, es)
}

// benchEvaluate evaluates the built-in scenarios on the lines in turn,
// one per op, with one event as a worker keeps it.
func benchEvaluate(b *testing.B, lines [][]byte, es []accesslog.Entry) {
	rules, err := Builtin()
	if err != nil {
		b.Fatal(err)
	}
	var ev Event
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		j := i % len(lines)
		rules.Evaluate(&es[j], lines[j], int64(i), &ev)
	}
}

// BenchmarkObserve is Evaluate and Pour: one line through the detector.
func BenchmarkObserve(b *testing.B) {
	rules, err := Builtin()
	if err != nil {
		b.Fatal(err)
	}
	lines, es := benchLines(b, 100_000)
	d := NewDetector(rules, 0, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		j := i % len(lines)
		d.Observe(&es[j], int64(i), lines[j])
		if i%10_000 == 9_999 {
			d.Flush()
		}
	}
}

// BenchmarkEvaluateReal runs every built-in scenario's filter on the lines
// of the elastic sample (real traffic), one line per op.
func BenchmarkEvaluateReal(b *testing.B) {
	f, err := accesslog.Lookup("combined")
	if err != nil {
		b.Fatal(err)
	}
	src, err := os.ReadFile(testenv.Data(b, "elastic-apache/apache_logs"))
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	var es []accesslog.Entry
	for _, l := range bytes.Split(src, []byte("\n")) {
		var e accesslog.Entry
		if f.Parse(l, &e) == nil {
			lines, es = append(lines, l), append(es, e)
		}
	}
	benchEvaluate(b, lines, es)
}
