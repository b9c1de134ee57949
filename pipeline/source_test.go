package pipeline

import (
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/fsm"
)

// TestSource_LateEventsAreCountedAndLeftOut: with a max lateness, an event
// more than it older than its partition's watermark is counted late and
// goes neither to the detector nor to the repartition topic; the watermark
// only grows; with no max lateness nothing is late.
func TestSource_LateEventsAreCountedAndLeftOut(t *testing.T) {
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano()
	times := []int64{0, 5 * 60, 60, 4*60 + 30, 6 * 60} // seconds after base
	for _, tt := range []struct {
		lateness  time.Duration
		late      int64
		forwarded []int64
	}{
		{time.Minute, 1, []int64{0, 1, 3, 4}}, // 10:01 is 4 min behind 10:05
		{0, 0, []int64{0, 1, 2, 3, 4}},
	} {
		var got []int64
		src := Source{Clock: NewClock(0, int64(tt.lateness)),
			Forward: func(_ *accesslog.Entry, offset, _ int64, _ []byte) { got = append(got, offset) }}
		b := fsm.Batch{}
		for i, s := range times {
			src.Observe(&b, &accesslog.Entry{Time: base + s*int64(time.Second)}, int64(i), nil)
		}
		src.Finish(&b, nil)
		if b.Late != tt.late || len(got) != len(tt.forwarded) {
			t.Fatalf("max lateness %s: late %d, forwarded %v; want %d and %v", tt.lateness, b.Late, got, tt.late, tt.forwarded)
		}
		for i := range got {
			if got[i] != tt.forwarded[i] {
				t.Fatalf("max lateness %s: forwarded %v, want %v", tt.lateness, got, tt.forwarded)
			}
		}
		if want := base + 6*60*int64(time.Second); b.Watermark != want {
			t.Fatalf("watermark %d, want %d", b.Watermark, want)
		}
	}
}
