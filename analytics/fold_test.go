package analytics

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/internal/testenv"
	"github.com/wardenhq/warden/workload"
)

// TestFoldRefusesFutureLines: a line dated past the clock by more than
// MaxSkew is malformed ("future time"), so it moves no window: before, one
// line dated 2200 expired every window of a store with a retention.
func TestFoldRefusesFutureLines(t *testing.T) {
	format, err := accesslog.Lookup("combined")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	reads := 0
	folder := NewFolder(format)
	folder.Now = func() time.Time { reads++; return now }
	line := func(t time.Time) []byte {
		return []byte(fmt.Sprintf(`192.0.2.1 - - [%s] "GET / HTTP/1.1" 200 10 "-" "ua"`, t.Format("02/Jan/2006:15:04:05 -0700")))
	}
	store := NewStore(Config{Retention: 24 * time.Hour})
	a := NewAggregate()
	for _, at := range []time.Time{now.Add(-2 * time.Hour), now.Add(-time.Minute), now.Add(59 * time.Minute), time.Date(2015, 5, 17, 10, 5, 3, 0, time.UTC)} {
		if parsed, err := folder.Fold(a, line(at)); !parsed || err != nil {
			t.Fatalf("line at %s: %v %v", at, parsed, err)
		}
	}
	if err := store.Merge(a); err != nil {
		t.Fatal(err)
	}
	before := store.Stats(Query{})

	a = NewAggregate()
	future := []struct {
		at   time.Time
		want error
	}{
		{now.Add(61 * time.Minute), accesslog.ErrFutureTime},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), accesslog.ErrFutureTime},
		{time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC), accesslog.ErrBadTime}, // past int64 nanoseconds
	}
	for _, f := range future {
		parsed, err := folder.Fold(a, line(f.at))
		if parsed || err != f.want {
			t.Errorf("line at %s: parsed %v, err %v; want %v", f.at, parsed, err, f.want)
		}
	}
	if got := accesslog.Reason(accesslog.ErrFutureTime); got != "future time" {
		t.Errorf("reason %q", got)
	}
	if err := store.Merge(a); err != nil {
		t.Fatal(err)
	}
	after := store.Stats(Query{})
	if after.Malformed != before.Malformed+3 {
		t.Errorf("malformed %d, want %d", after.Malformed, before.Malformed+3)
	}
	after.Malformed = before.Malformed
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("future lines changed the figures:\nbefore %s\nafter  %s", b1, b2)
	}
	if before.Requests != 3 || before.ExpiredRequests != 1 {
		t.Errorf("requests %d, expired %d; want 3 and 1 (the 2015 line)", before.Requests, before.ExpiredRequests)
	}
	// The clock is read when a line passes the horizon it last gave, not
	// per line.
	if reads != 3 {
		t.Errorf("clock read %d times, want 3 (the first line, then each future line)", reads)
	}
	// The check is off with MaxSkew <= 0 (replaying logs of a host whose
	// clock was ahead).
	folder.MaxSkew = 0
	if parsed, err := folder.Fold(NewAggregate(), line(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))); !parsed || err != nil {
		t.Errorf("MaxSkew 0: %v %v", parsed, err)
	}
}

// benchFold folds the workload's lines (5% attacks) with the format spec:
// parsing and the load figures, what a worker does per line before the
// detector.
func benchFold(b *testing.B, spec string) {
	g := workload.New(1, 5000, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	lines := make([][]byte, 10_000)
	for i := range lines {
		l, _ := g.Line()
		lines[i] = []byte(l)
	}
	foldLines(b, spec, lines)
}

// BenchmarkFoldReal is BenchmarkFoldCombined on the elastic sample's
// lines: a site's clients, agents and referers repeat from one line to the
// next (a page and its assets), the workload's do not.
func BenchmarkFoldReal(b *testing.B) {
	src, err := os.ReadFile(testenv.Data(b, "elastic-apache/apache_logs"))
	if err != nil {
		b.Fatal(err)
	}
	foldLines(b, "combined", bytes.Split(bytes.TrimRight(src, "\n"), []byte("\n")))
}

func foldLines(b *testing.B, spec string, lines [][]byte) {
	format, err := accesslog.Lookup(spec)
	if err != nil {
		b.Fatal(err)
	}
	folder := NewFolder(format)
	folder.MaxSkew = 0
	a := NewAggregate()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := folder.Fold(a, lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFoldCombined(b *testing.B) { benchFold(b, "combined") }

// BenchmarkFoldAuto is BenchmarkFoldCombined with --log-format auto.
func BenchmarkFoldAuto(b *testing.B) { benchFold(b, "auto") }
