package analytics

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// TestBinaryMergeEqualsMerge cuts records into batches, encodes each one in
// the binary form, and merges the bytes in a shuffled order; the figures
// equal one in-order pass, with and without retention cutting windows.
func TestBinaryMergeEqualsMerge(t *testing.T) {
	es := entries(2, 20000, 30)
	for _, ret := range []time.Duration{0, 10 * time.Minute} {
		whole := NewAggregate()
		for i := range es {
			whole.Add(&es[i])
		}
		whole.AddMalformed()
		ref := NewStore(Config{Retention: ret})
		if err := ref.Merge(whole); err != nil {
			t.Fatal(err)
		}
		want := statsJSON(t, ref, Query{Top: -1})
		r := rand.New(rand.NewPCG(7, 9))
		var deltas [][]byte
		for i := 0; i < len(es); {
			n := 1 + r.IntN(3000)
			a := NewAggregate()
			for j := i; j < min(i+n, len(es)); j++ {
				a.Add(&es[j])
			}
			if i == 0 {
				a.AddMalformed()
			}
			// The decoded form must re-encode to the same bytes.
			b := a.AppendBinary(nil)
			d, err := DecodeAggregate(b)
			if err != nil {
				t.Fatal(err)
			}
			if string(d.AppendBinary(nil)) != string(b) {
				t.Fatal("decode then encode changed the bytes")
			}
			deltas = append(deltas, b)
			i += n
		}
		s := NewStore(Config{Retention: ret})
		if ret == 0 {
			// In any order when nothing expires; in order otherwise (the
			// newest window seen decides what is retained).
			r.Shuffle(len(deltas), func(i, j int) { deltas[i], deltas[j] = deltas[j], deltas[i] })
		}
		for _, d := range deltas {
			if err := s.MergeBinary(d); err != nil {
				t.Fatal(err)
			}
		}
		if got := statsJSON(t, s, Query{Top: -1}); got != want {
			t.Fatalf("retention %v: binary merge differs from one pass:\n got %.300s\nwant %.300s", ret, got, want)
		}
	}
}

func TestBinaryRejectsTruncatedData(t *testing.T) {
	es := entries(3, 500, 3)
	a := NewAggregate()
	for i := range es {
		a.Add(&es[i])
	}
	b := a.AppendBinary(nil)
	for _, cut := range []int{1, len(b) / 3, len(b) / 2, len(b) - 1} {
		if _, err := DecodeAggregate(b[:cut]); err == nil {
			t.Fatalf("cut at %d of %d: no error", cut, len(b))
		}
		if err := NewStore(DefaultConfig()).MergeBinary(b[:cut]); err == nil {
			t.Fatalf("merge cut at %d of %d: no error", cut, len(b))
		}
	}
}

// TestMergeBinary_CorruptChangesNothing: bytes that break off after whole
// windows, or carry a sketch no Warden writes past them, are refused before
// any window merges.
func TestMergeBinary_CorruptChangesNothing(t *testing.T) {
	s := NewStore(DefaultConfig())
	a := NewAggregate()
	es := entries(6, 2000, 8)
	for i := range es[:1000] {
		a.Add(&es[i])
	}
	if err := s.Merge(a); err != nil {
		t.Fatal(err)
	}
	// A store's windows carry their distinct-client sketch.
	more := NewStore(DefaultConfig())
	b := NewAggregate()
	for i := range es[1000:] {
		b.Add(&es[1000+i])
	}
	if err := more.Merge(b); err != nil {
		t.Fatal(err)
	}
	good := (&Aggregate{Windows: more.windows}).AppendBinary(nil)
	if _, err := CheckAggregate(good); err != nil {
		t.Fatal(err)
	}
	before := statsJSON(t, s, Query{Top: -1})
	badSketch := bytes.Clone(good)
	last := bytes.LastIndex(badSketch, []byte{0x88, 0x80, 0x01, 2, 14}) // length 16,392, format 2, precision 14
	if last < 0 {
		t.Fatal("no distinct-client sketch in the encoded windows")
	}
	badSketch[last+4] = 12
	for name, data := range map[string][]byte{
		"cut in the middle":                good[:len(good)/2],
		"cut at the end":                   good[:len(good)-1],
		"last sketch of another precision": badSketch,
	} {
		if _, err := CheckAggregate(data); err == nil {
			t.Errorf("%s: checked", name)
		}
		if err := s.MergeBinary(data); err == nil {
			t.Errorf("%s: merged", name)
		}
		if got := statsJSON(t, s, Query{Top: -1}); got != before {
			t.Fatalf("%s: a refused merge changed the figures", name)
		}
	}
	if err := s.MergeBinary(good); err != nil || statsJSON(t, s, Query{Top: -1}) == before {
		t.Fatalf("the whole bytes did not merge: %v", err)
	}
}

func FuzzDecodeAggregate(f *testing.F) {
	es := entries(4, 50, 2)
	a := NewAggregate()
	for i := range es {
		a.Add(&es[i])
	}
	f.Add(a.AppendBinary(nil))
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeAggregate(data)
		if err != nil {
			return
		}
		if _, err := DecodeAggregate(a.AppendBinary(nil)); err != nil {
			t.Fatalf("re-encoded aggregate does not decode: %v", err)
		}
		_ = NewStore(DefaultConfig()).MergeBinary(data)
	})
}

// FuzzCheckAggregate: what the check refuses changes no store; what it
// accepts merges, and decodes.
func FuzzCheckAggregate(f *testing.F) {
	es := entries(4, 50, 2)
	a := NewAggregate()
	for i := range es {
		a.Add(&es[i])
	}
	f.Add(a.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewStore(DefaultConfig())
		if err := s.Merge(a); err != nil {
			t.Fatal(err)
		}
		before := statsJSON(t, s, Query{Top: -1})
		if _, err := CheckAggregate(data); err != nil {
			if s.MergeBinary(data) == nil || statsJSON(t, s, Query{Top: -1}) != before {
				t.Fatal("refused bytes merged")
			}
			return
		}
		if err := s.MergeBinary(data); err != nil {
			t.Fatalf("checked bytes do not merge: %v", err)
		}
		if _, err := DecodeAggregate(data); err != nil {
			t.Fatalf("checked bytes do not decode: %v", err)
		}
	})
}

// TestBinaryKeepsDistinctClientSketch: a store's windows (with their
// sketch) survive the binary form, so the dense-sketch check accepts what
// Warden writes.
func TestBinaryKeepsDistinctClientSketch(t *testing.T) {
	es := entries(5, 3000, 5)
	s := NewStore(DefaultConfig())
	a := NewAggregate()
	for i := range es {
		a.Add(&es[i])
	}
	if err := s.Merge(a); err != nil {
		t.Fatal(err)
	}
	whole := &Aggregate{Windows: s.windows}
	d, err := DecodeAggregate(whole.AppendBinary(nil))
	if err != nil {
		t.Fatal(err)
	}
	for start, w := range d.Windows {
		if w.ips == nil || w.ips.Estimate() != s.windows[start].ips.Estimate() {
			t.Fatalf("window %d: distinct clients lost in the binary form", start)
		}
	}
}
