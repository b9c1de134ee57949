package analytics

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wardenhq/warden/accesslog"
)

// TestCounts_SameAsAMap adds random keys (the empty one, short ones that
// repeat, long ones) with random counts and checks every way of reading a
// Counts against a map and the order keys were first seen.
func TestCounts_SameAsAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	want := map[string]int64{}
	var order []string
	var c, merged Counts
	for range 200_000 {
		var k string
		switch r.IntN(4) {
		case 0:
			k = fmt.Sprintf("10.%d.%d", r.IntN(300), r.IntN(256))
		case 1:
			k = string(make([]byte, r.IntN(3))) // "", "\x00", "\x00\x00"
		case 2:
			k = fmt.Sprintf("/p/%0*d", r.IntN(260), r.IntN(50))
		default:
			k = fmt.Sprintf("agent %d", r.IntN(20_000))
		}
		n := int64(r.IntN(1000)) - 10
		if _, ok := want[k]; !ok {
			order = append(order, k)
		}
		want[k] += n
		if r.IntN(2) == 0 {
			c.Add([]byte(k), n)
		} else {
			c.AddString(k, n)
		}
	}
	merged.AddString("only in merged", 5)
	merged.Merge(&c)
	if c.Len() != len(want) {
		t.Fatalf("Len %d, want %d", c.Len(), len(want))
	}
	var got []string
	c.Each(func(k string, n int64) {
		got = append(got, k)
		if n != want[k] {
			t.Fatalf("Each: %q counts %d, want %d", k, n, want[k])
		}
	})
	if !slices.Equal(got, order) {
		t.Fatalf("Each is not in insertion order")
	}
	for k, n := range want {
		if c.Get(k) != n || merged.Get(k) != n {
			t.Fatalf("Get(%q) = %d, merged %d, want %d", k, c.Get(k), merged.Get(k), n)
		}
	}
	if c.Get("never added") != 0 || merged.Get("only in merged") != 5 || merged.Len() != len(want)+1 {
		t.Fatalf("a key not added counts %d; merged's own key %d, merged Len %d", c.Get("never added"), merged.Get("only in merged"), merged.Len())
	}
}

// TestCounts_SameTagDifferentKeys gives keys one hash, so that they share
// a tag and a probe chain: each must still find its own count.
func TestCounts_SameTagDifferentKeys(t *testing.T) {
	var c Counts
	c.grow() // an index from the start, which 5 keys do not grow
	const h = 0xABCD_1234_0000_0003
	keys := []string{"a", "b", "", "ab", "ba"}
	for i, k := range keys {
		if !c.addHashed([]byte(k), h, int64(i+1)) {
			t.Fatalf("%q reported as known", k)
		}
	}
	for i, k := range keys {
		if c.addHashed([]byte(k), h, 10) {
			t.Fatalf("%q reported as new", k)
		}
		if _, j := c.find([]byte(k), h); j != i || c.n[j] != int64(i+11) {
			t.Fatalf("%q found at %d with %d, want %d with %d", k, j, c.n[max(j, 0)], i, i+11)
		}
	}
	if _, j := c.find([]byte("abc"), h); j != -1 {
		t.Fatalf("an absent key found at %d", j)
	}
}

// TestCounts_FrozenKeepsItsState checks that a frozen copy reads the keys
// and counts of its moment while the Counts goes on growing.
func TestCounts_FrozenKeepsItsState(t *testing.T) {
	var c Counts
	for i := range 100 {
		c.AddString(fmt.Sprint("k", i), int64(i))
	}
	f := c.frozen()
	for i := range 10_000 {
		c.AddString(fmt.Sprint("k", i), 1000)
	}
	if f.Len() != 100 {
		t.Fatalf("frozen Len %d, want 100", f.Len())
	}
	i := 0
	f.Each(func(k string, n int64) {
		if k != fmt.Sprint("k", i) || n != int64(i) {
			t.Fatalf("frozen key %d: %q %d", i, k, n)
		}
		i++
	})
}

// TestAggregate_ResetEncodesAsNew folds batches of entries into one
// Aggregate, reset between them, and into a new Aggregate each: both
// must encode to the same bytes, whatever the previous batch held.
func TestAggregate_ResetEncodesAsNew(t *testing.T) {
	es := entries(5, 6000, 7)
	reused := NewAggregate()
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(es); {
		n := 1 + r.IntN(1500)
		batch := es[i:min(i+n, len(es))]
		i += n
		fresh := NewAggregate()
		reused.Reset()
		for j := range batch {
			fresh.Add(&batch[j])
			reused.Add(&batch[j])
		}
		if r.IntN(3) == 0 {
			fresh.AddMalformed()
			reused.AddMalformed()
		}
		if got, want := reused.AppendBinary(nil), fresh.AppendBinary(nil); !slices.Equal(got, want) {
			t.Fatalf("batch at %d (%d entries): a reset Aggregate encodes %d bytes unlike a new one's %d", i-n, len(batch), len(got), len(want))
		}
	}
}

// TestFrozen_SizeHintHoldsTheEncoding checks that a snapshot's buffer,
// sized by SizeHint, holds the Store's encoding without growing, and is
// not far larger.
func TestFrozen_SizeHintHoldsTheEncoding(t *testing.T) {
	for _, n := range []int{0, 50, 20_000} {
		s := NewStore(DefaultConfig())
		if n > 0 {
			a := NewAggregate()
			for _, e := range entries(9, n, 30) {
				a.Add(&e)
			}
			for i := range n { // many distinct clients, as a busy site has
				e := accesslog.Entry{Time: base.UnixNano() + int64(i)*1e9, Client: fmt.Appendf(nil, "10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
					Path: fmt.Appendf(nil, "/item/%d", i), Status: 200, Duration: int64(i % 5000)}
				a.Add(&e)
			}
			if err := s.Merge(a); err != nil {
				t.Fatal(err)
			}
		}
		f := s.Freeze()
		hint, got := f.SizeHint(), len(f.AppendBinary(nil))
		if got > hint || hint > 2*got+64<<10 {
			t.Fatalf("%d entries: encoding of %d bytes, hint %d", n, got, hint)
		}
	}
}

// A Counts whose index was dropped (an idle window's) counts as before:
// reads scan, the next add builds the index again, and no key is doubled
// or lost across drops.
func TestCounts_DroppedIndexChangesNoCount(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	want := map[string]int64{}
	var order []string
	var c Counts
	drops := 0
	for i := range 100_000 {
		k := fmt.Sprintf("10.%d.%d", r.IntN(100), r.IntN(256))
		if _, ok := want[k]; !ok {
			order = append(order, k)
		}
		want[k]++
		c.AddString(k, 1)
		if r.IntN(2000) == 0 {
			c.dropIndex()
			drops++
			if c.table != nil {
				t.Fatalf("add %d: an index after the drop", i)
			}
			probe := order[r.IntN(len(order))]
			if got := c.Get(probe); got != want[probe] {
				t.Fatalf("add %d: Get(%q) without an index = %d, want %d", i, probe, got, want[probe])
			}
		}
	}
	if drops < 20 || c.table == nil {
		t.Fatalf("%d drops, index at the end %v: not exercised", drops, c.table != nil)
	}
	var got []string
	c.Each(func(k string, n int64) {
		got = append(got, k)
		if n != want[k] {
			t.Fatalf("%q counts %d, want %d", k, n, want[k])
		}
	})
	if !slices.Equal(got, order) {
		t.Fatalf("%d keys, want %d in insertion order", len(got), len(order))
	}
	for k, n := range want {
		if c.Get(k) != n {
			t.Fatalf("Get(%q) = %d, want %d", k, c.Get(k), n)
		}
	}
	// A small Counts has no index to drop, and keeps scanning.
	var small Counts
	small.AddString("GET", 1)
	small.dropIndex()
	small.AddString("GET", 1)
	if small.Get("GET") != 2 || small.Len() != 1 {
		t.Fatalf("small: GET %d, %d keys", small.Get("GET"), small.Len())
	}
}
