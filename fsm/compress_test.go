package fsm

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/wardenhq/warden/analytics"
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
