package detect

import "strings"

// A bucket is what one scenario remembers of one source between requests.
// Each batch that touches a bucket replicates it (Flush copies it into the
// Delta), so its sample lines are copied out of the caller's records only
// then.

// Bucket is the state of one scenario for one client IP in one partition.
// There is one per (IP, scenario) a client has touched, so it is kept small:
// the sample lines, which most buckets never hold, live in Extra. The
// distinct values are in the bucket itself: a window scenario's slots are
// kept there too, so most buckets of the replicated state hold some, and
// an Extra of their own cost each of those a second allocation.
type Bucket struct {
	Level     int      `json:"l"`
	LastLeak  int64    `json:"t"`            // Unix ns of the last leak step
	FirstT    int64    `json:"ft"`           // first event of the current fill
	FirstOff  int64    `json:"fo"`           //
	LastT     int64    `json:"lt"`           // newest event seen
	Blackhole int64    `json:"bh,omitempty"` // no new alert before this time
	Keys      []uint64 `json:"k,omitempty"`  // distinct values poured (a window's slots), oldest first
	// Extra is nil unless the bucket holds samples.
	*Extra
}

// Extra is the part of a Bucket few buckets need.
type Extra struct {
	Samples []string `json:"s,omitempty"` // the last few lines poured
	// raw holds the lines poured since Samples was last settled; they
	// alias the caller's records, which live until the next Flush or
	// TakeAlerts, where they are copied (so most lines are never copied).
	raw [][]byte
}

// extra returns b's Extra, making it if needed.
func (b *Bucket) extra() *Extra {
	if b.Extra == nil {
		b.Extra = &Extra{}
	}
	return b.Extra
}

// keys is the bucket's distinct values; samples reads Extra's lines, empty
// when there is none.
func (b *Bucket) keys() []uint64 { return b.Keys }

func (b *Bucket) samples() []string {
	if b.Extra == nil {
		return nil
	}
	return b.Samples
}

// settle moves the raw lines into Samples, keeping the last maxSamples.
func (b *Bucket) settle() {
	if b.Extra == nil || len(b.raw) == 0 {
		return
	}
	for _, l := range b.raw {
		b.Samples = append(b.Samples, strings.ToValidUTF8(string(l), ""))
	}
	if over := len(b.Samples) - maxSamples; over > 0 {
		b.Samples = append(b.Samples[:0], b.Samples[over:]...)
	}
	b.raw = b.raw[:0]
}

// copy returns a copy of b, settled, sharing nothing with it; its Keys are
// nil when it holds none, its Extra nil when it holds no sample.
func (b *Bucket) copy() *Bucket {
	b.settle()
	nb := *b
	nb.Keys, nb.Extra = nil, nil
	if len(b.Keys) > 0 {
		nb.Keys = append([]uint64(nil), b.Keys...)
	}
	if len(b.samples()) > 0 {
		nb.Extra = &Extra{Samples: append([]string(nil), b.samples()...)}
	}
	return &nb
}

// maxSamples lines are kept per bucket, each cut at maxSampleBytes.
const (
	maxSamples     = 3
	maxSampleBytes = 300
)
