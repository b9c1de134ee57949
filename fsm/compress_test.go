package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// Figures past compressMin go compressed and come back whole; compressed
// bytes that do not decompress, or that decompress to figures that do not
// decode, refuse the batch and change nothing.
func TestCompress_FiguresRoundTripAndCorruptOnesRefuse(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	fig := figures(r, 2000, 0, 3)
	b := Batch{Node: "a", Partition: 0, Epoch: 1, From: 0, Until: 2000, Digest: Digest{Records: 2000}, Analytics: fig}
	raw := fig.AppendBinary(nil)
	data := EncodeBatch(&b)
	if len(data) >= len(raw) {
		t.Fatalf("batch of %d bytes for %d bytes of figures: not compressed", len(data), len(raw))
	}
	cmd, err := Decode(CommitEntry([][]byte{data}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cmd.Commit[0].analytics.Bytes(); string(got) != string(raw) {
		t.Fatalf("figures came back as %d other bytes (sent %d)", len(got), len(raw))
	}
	s := assigned(1, "a")
	if res := Apply(s, cmd); res.Rejected[0] != "" {
		t.Fatalf("rejected %v", res.Rejected)
	}
	direct := analytics.NewStore(analytics.DefaultConfig())
	if err := direct.Merge(fig); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(s.Analytics)
	want, _ := json.Marshal(direct)
	if string(got) != string(want) {
		t.Fatal("the figures applied from compressed bytes differ from the batch's")
	}

	// Flip a byte inside the compressed figures (they start after the
	// node, partition, epoch, offsets and digest).
	refused := 0
	for _, at := range []int{40, len(data) / 2, len(data) / 3} {
		bad := append([]byte(nil), data...)
		bad[at] ^= 0x5a
		cmd, err := Decode(CommitEntry([][]byte{bad}))
		if err != nil {
			continue // the frame itself broke: the entry is refused whole
		}
		if err := cmd.Commit[0].checked(); !errors.Is(err, ErrBadBatch) {
			t.Fatalf("byte %d flipped: %v, want %v", at, err, ErrBadBatch)
		}
		refused++
	}
	if refused == 0 {
		t.Fatal("no flip reached the figures")
	}
}

// bigDelta is a checkpoint's worth of detector state: many buckets and
// alerts with line samples, as a busy partition's.
func bigDelta(p int32, n int) *detect.Delta {
	d := &detect.Delta{Partition: p, Watermark: 1_700_000_000e9, Buckets: map[string]*detect.Bucket{}}
	for i := range n {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		d.Buckets["http-flood|"+ip] = &detect.Bucket{Level: i % 9, LastLeak: 1_700_000_000e9 + int64(i)*1e6, LastT: 1_700_000_000e9 + int64(i)*1e6}
		if i%50 == 0 {
			d.Alerts = append(d.Alerts, detect.Alert{ID: fmt.Sprint("a", i), Scenario: "http-probing", SourceIP: ip, Partition: p, Events: 6,
				Time: 1_700_000_000e9 + int64(i), Offsets: [2]int64{int64(i), int64(i + 5)},
				Samples: []string{ip + ` - - [27/Nov/2026:10:00:00 +0000] "GET /.env HTTP/1.1" 404 196 "-" "Nikto/2.5.0"`}})
		}
	}
	return d
}

// Detector deltas past compressMin go compressed too (flag bit 2) and
// apply as the uncompressed bytes do; compressed bytes that do not
// decompress refuse the batch.
func TestCompress_DetectorDeltaRoundTripsAndCorruptOnesRefuse(t *testing.T) {
	delta := bigDelta(0, 3000)
	raw := delta.AppendBinary(nil)
	b := Batch{Node: "a", Partition: 0, Epoch: 1, From: 0, Until: 3000, Digest: Digest{Records: 3000}, Detect: delta, Checkpoint: true}
	data := EncodeBatch(&b)
	if len(data) >= len(raw)/2 {
		t.Fatalf("batch of %d bytes for a delta of %d: not compressed", len(data), len(raw))
	}
	cmd, err := Decode(CommitEntry([][]byte{data}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cmd.Commit[0].detect.Bytes(); len(got) != len(raw) { // the buckets' order is the map's
		t.Fatalf("the delta came back as %d bytes (sent %d)", len(got), len(raw))
	}
	if again := EncodeBatch(&cmd.Commit[0]); string(again) != string(data) {
		t.Fatal("a decoded batch encodes to other bytes")
	}
	s := assigned(1, "a")
	if res := Apply(s, cmd); res.Rejected[0] != "" {
		t.Fatalf("rejected %v", res.Rejected)
	}
	direct := &detect.PartitionState{}
	if _, err := direct.ApplyBinary(raw); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(s.Detect[0])
	want, _ := json.Marshal(direct)
	if string(got) != string(want) || len(s.Detect[0].State().Buckets) != 3000 || len(s.Book.Alerts) != 60 {
		t.Fatalf("the state applied from compressed bytes differs (%d buckets, %d alerts)", len(s.Detect[0].State().Buckets), len(s.Book.Alerts))
	}

	// A byte flipped in the compressed delta (the batch's second half).
	refused := 0
	for _, at := range []int{len(data) / 2, len(data) * 2 / 3, len(data) - 40} {
		bad := append([]byte(nil), data...)
		bad[at] ^= 0x5a
		cmd, err := Decode(CommitEntry([][]byte{bad}))
		if err != nil {
			continue
		}
		if err := cmd.Commit[0].checked(); !errors.Is(err, ErrBadBatch) {
			t.Fatalf("byte %d flipped: %v, want %v", at, err, ErrBadBatch)
		}
		refused++
	}
	if refused == 0 {
		t.Fatal("no flip reached the delta")
	}
	// A small delta stays as it is.
	small := Batch{Node: "a", Partition: 0, Epoch: 1, Detect: detectorDelta(0, 1)}
	enc := EncodeBatch(&small)
	if cmd, err := Decode(CommitEntry([][]byte{enc})); err != nil || len(cmd.Commit[0].detect.Bytes()) != len(small.Detect.AppendBinary(nil)) {
		t.Fatalf("a small delta: %v", err)
	}
	if flags := enc[len(enc)-1]; flags&flagDetectZstd != 0 {
		t.Fatalf("a small delta went compressed (flags %b)", flags)
	}
}
