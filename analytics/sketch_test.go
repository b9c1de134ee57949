package analytics

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wardenhq/warden/accesslog"
)

// batchesOf encodes the entries as Raft deltas of random sizes.
func batchesOf(t *testing.T, seed uint64, n, minutes int) [][]byte {
	t.Helper()
	es := entries(seed, n, minutes)
	r := rand.New(rand.NewPCG(seed, 2))
	var out [][]byte
	for i := 0; i < len(es); {
		a := NewAggregate()
		for end := min(i+1+r.IntN(4000), len(es)); i < end; i++ {
			k := r.IntN(50_000)
			es[i].Client = fmt.Appendf(nil, "10.%d.%d.%d", k>>16, k>>8&255, k&255)
			a.Add(&es[i])
		}
		out = append(out, a.AppendBinary(nil))
	}
	return out
}

// eagerSketch is the sketch of w's clients, each inserted once.
func eagerSketch(w *Window) []byte {
	h := newHLL()
	for i := range w.Clients.Len() {
		h.Insert(w.Clients.key(i))
	}
	b, _ := h.MarshalBinary()
	return b
}

// A store's sketches are filled when they are read, not at each merge.
// Read between merges, through a binary or a JSON snapshot and merged into
// again, every window's sketch is that of its clients, and the stores
// answer and encode the same.
func TestStore_SketchesFilledWhenReadAreThoseOfTheClients(t *testing.T) {
	batches := batchesOf(t, 3, 60_000, 12)
	half := len(batches) / 2
	merge := func(s *Store, bs [][]byte, query func(i int) bool) {
		t.Helper()
		for i, b := range bs {
			if err := s.MergeBinary(b); err != nil {
				t.Fatal(err)
			}
			if query(i) {
				_ = s.Stats(Query{})
			}
		}
	}
	never := func(int) bool { return false }

	stores := map[string]*Store{}
	plain := NewStore(DefaultConfig())
	merge(plain, batches, never)
	stores["merged, read once at the end"] = plain

	queried := NewStore(DefaultConfig())
	r := rand.New(rand.NewPCG(7, 7))
	merge(queried, batches, func(int) bool { return r.IntN(4) == 0 })
	stores["read between merges"] = queried

	// Half, then a snapshot taken (and read) part way, then the rest.
	for _, via := range []string{"binary", "JSON"} {
		s := NewStore(DefaultConfig())
		merge(s, batches[:half], func(i int) bool { return i == half/2 })
		var restored *Store
		if via == "binary" {
			f := s.Freeze()
			var err error
			if restored, err = DecodeStore(f.AppendBinary(nil)); err != nil {
				t.Fatal(err)
			}
		} else {
			j, err := s.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			restored = NewStore(DefaultConfig())
			if err := restored.UnmarshalJSON(j); err != nil {
				t.Fatal(err)
			}
		}
		merge(restored, batches[half:], never)
		stores["through a "+via+" snapshot, merged into again"] = restored
	}

	want := plain.Stats(Query{}).UniqueIPs
	wantStats := statsJSON(t, plain, Query{Top: -1})
	wantSnap := plain.Freeze().AppendBinary(nil)
	for name, s := range stores {
		if got := s.Stats(Query{}).UniqueIPs; got != want {
			t.Errorf("%s: %d distinct clients, want %d", name, got, want)
		}
		if statsJSON(t, s, Query{Top: -1}) != wantStats {
			t.Errorf("%s: the stats differ", name)
		}
		for start, w := range s.windows {
			got, _ := w.ips.MarshalBinary()
			if !bytes.Equal(got, eagerSketch(w)) {
				t.Errorf("%s: window %d: its sketch is not that of its %d clients", name, start, w.Clients.Len())
			}
		}
		// (JSON keeps counts by key, not in insertion order.)
		if got := s.Freeze().AppendBinary(nil); !strings.Contains(name, "JSON") && !bytes.Equal(got, wantSnap) {
			t.Errorf("%s: the snapshot differs (%d bytes, want %d)", name, len(got), len(wantSnap))
		}
	}
	if want < 20_000 {
		t.Fatalf("%d distinct clients: the test needs many", want)
	}
}

// Readers fill sketches: queries and snapshots that run at once, as the
// FSM runs them under its read lock, take turns (go test -race).
func TestStore_ReadersFillSketchesInTurn(t *testing.T) {
	batches := batchesOf(t, 5, 8_000, 2)
	for round := range 20 {
		s := NewStore(DefaultConfig())
		for _, b := range batches {
			if err := s.MergeBinary(b); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		got := make([]uint64, 4)
		for i := range got {
			wg.Go(func() {
				<-start
				if i%2 == 0 {
					got[i] = s.Stats(Query{}).UniqueIPs
					return
				}
				d, err := DecodeStore(s.Freeze().AppendBinary(nil))
				if err != nil {
					t.Error(err)
					return
				}
				got[i] = d.Stats(Query{}).UniqueIPs
			})
		}
		close(start)
		wg.Wait()
		for i, n := range got {
			if n != got[0] {
				t.Errorf("round %d, reader %d: %d distinct clients, reader 0: %d", round, i, n, got[0])
			}
		}
	}
}

// Windows idleAge before the newest that no merge touched for idleMerges
// merges drop their counts' indexes, and a late line into one builds them again: the stats and the
// snapshot are those of a store that merged the same lines in a few large
// merges (so that no window went idle), and a restored store starts with
// none.
func TestStore_IdleWindowsDropTheirIndexes(t *testing.T) {
	es := entries(5, 40_000, 10) // over 10 minutes, in time order
	slices.SortStableFunc(es, func(a, b accesslog.Entry) int { return cmp.Compare(a.Time, b.Time) })
	late := entries(6, 200, 10)
	many, few := NewStore(DefaultConfig()), NewStore(DefaultConfig())
	all := NewAggregate()
	r := rand.New(rand.NewPCG(5, 1))
	for i := 0; i < len(es); {
		a := NewAggregate()
		for end := min(i+1+r.IntN(100), len(es)); i < end; i++ {
			a.Add(&es[i])
			all.Add(&es[i])
		}
		if r.IntN(20) == 0 && len(late) > 0 { // a late line, minutes back
			a.Add(&late[0])
			all.Add(&late[0])
			late = late[1:]
		}
		if err := many.MergeBinary(a.AppendBinary(nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := few.MergeBinary(all.AppendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	dropped := 0
	for _, w := range many.windows {
		if w.Clients.Len() > smallCounts && w.Clients.table == nil {
			dropped++
		} else if many.merges-w.touched >= idleMerges && w.Start <= many.newest-idleAge {
			t.Errorf("window %d, %d s before the newest and idle for %d merges, keeps its index", w.Start, many.newest-w.Start, many.merges-w.touched)
		}
	}
	if dropped < 5 {
		t.Fatalf("%d of %d windows dropped their indexes", dropped, len(many.windows))
	}
	if statsJSON(t, many, Query{Top: -1}) != statsJSON(t, few, Query{Top: -1}) {
		t.Fatal("the stats differ from those of a store whose windows never went idle")
	}
	if !bytes.Equal(many.Freeze().AppendBinary(nil), few.Freeze().AppendBinary(nil)) {
		t.Fatal("the snapshot differs from that of a store whose windows never went idle")
	}
	restored, err := DecodeStore(many.Freeze().AppendBinary(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range restored.windows {
		if w.Clients.table != nil {
			t.Fatalf("restored window %d holds an index before any merge", w.Start)
		}
	}
}
