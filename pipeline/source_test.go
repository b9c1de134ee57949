package pipeline

import (
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
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

// TestFoldOffline_SameAsFoldButTheHash folds the same lines, good and bad,
// both ways: the same entries, errors, figures, malformed sample and digest
// counts; only the digest's hash is left out offline.
func TestFoldOffline_SameAsFoldButTheHash(t *testing.T) {
	lines := [][]byte{
		[]byte(`203.0.113.9 - - [27/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8"`),
		[]byte(`not a line`),
		[]byte(`198.51.100.7 - - [27/Nov/2026:10:00:01 +0000] "POST /login HTTP/1.1" 401 20 "-" "x"`),
	}
	f1, f2 := newTestFolder(t), newTestFolder(t)
	online, offline := NewBatch("n", 0, 1, 0), NewBatch("n", 0, 1, 0)
	for i, l := range lines {
		e1, err1 := Fold(f1, &online, 0, int64(i), l)
		e2, err2 := FoldOffline(f2, &offline, 0, int64(i), l)
		if (e1 == nil) != (e2 == nil) || (err1 == nil) != (err2 == nil) || e1 != nil && e1.Time != e2.Time {
			t.Fatalf("line %d: %v %v against %v %v", i, e1, err1, e2, err2)
		}
	}
	if string(online.Analytics.AppendBinary(nil)) != string(offline.Analytics.AppendBinary(nil)) || len(online.Malformed) != 1 || len(offline.Malformed) != 1 {
		t.Fatal("the figures or the malformed samples differ")
	}
	if online.Digest.Records != 3 || offline.Digest.Records != 3 || online.Digest.Bytes != offline.Digest.Bytes || online.Digest.Sum == 0 || offline.Digest.Sum != 0 {
		t.Fatalf("digests: %+v online, %+v offline", online.Digest, offline.Digest)
	}
}

func newTestFolder(t *testing.T) *analytics.Folder {
	t.Helper()
	format, err := accesslog.Lookup("combined")
	if err != nil {
		t.Fatal(err)
	}
	f := analytics.NewFolder(format)
	f.MaxSkew = 0
	return f
}
