package pipeline

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/fsm"
)

// genSources makes nsrc sources of n events each, times mostly rising
// with some disorder, and returns their lines with watermarks, and the
// order a merge must give them back in.
func genSources(r *rand.Rand, nsrc, n int) ([][]Origin, []Key) {
	var all []Key
	out := make([][]Origin, nsrc)
	for s := range nsrc {
		c := NewClock(NoWatermark, 0)
		t := int64(1000)
		var off int64
		for range n {
			off += 1 + r.Int64N(3) // a sparse share of the source
			t += r.Int64N(5) - 1   // mostly forward, sometimes back
			c.Observe(t)
			o := Origin{Kind: KindLine, Source: int32(s), Offset: off, Watermark: c.Watermark}
			out[s] = append(out[s], o)
			all = append(all, o.Key())
		}
	}
	slices.SortFunc(all, func(a, b Key) int {
		if a.Less(b) {
			return -1
		}
		if b.Less(a) {
			return 1
		}
		return 0
	})
	return out, all
}

// arrivals interleaves the sources at random, as first-stage workers
// would write them: each source's lines in order, a progress marker after
// each run, some runs written twice (a retried batch), and an idle marker
// at the end of each source.
func arrivals(r *rand.Rand, srcs [][]Origin) []Origin {
	pos := make([]int, len(srcs))
	var out []Origin
	for {
		open := []int{}
		for s := range srcs {
			if pos[s] < len(srcs[s]) {
				open = append(open, s)
			}
		}
		if len(open) == 0 {
			break
		}
		s := open[r.IntN(len(open))]
		n := 1 + r.IntN(10)
		end := min(pos[s]+n, len(srcs[s]))
		run := srcs[s][pos[s]:end]
		out = append(out, run...)
		last := run[len(run)-1]
		out = append(out, Origin{Kind: KindProgress, Source: int32(s), Offset: last.Offset + 1, Watermark: last.Watermark})
		if r.IntN(4) == 0 { // a retry: the run again, from an earlier point
			back := max(0, pos[s]-r.IntN(5))
			out = append(out, srcs[s][back:end]...)
		}
		pos[s] = end
	}
	for s := range srcs {
		last := srcs[s][len(srcs[s])-1]
		out = append(out, Origin{Kind: KindIdle, Source: int32(s), Offset: last.Offset + 1, Watermark: last.Watermark})
	}
	return out
}

func drain(m *Merger, got *[]Key) {
	for {
		it, ok := m.Next()
		if !ok {
			return
		}
		*got = append(*got, it.Key())
	}
}

// TestMerger_AnyInterleavingGivesKeyOrderOnce: however the sources'
// writes interleave and repeat, the lines come back in key order, each
// exactly once.
func TestMerger_AnyInterleavingGivesKeyOrderOnce(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 7))
		srcs, want := genSources(r, 1+r.IntN(6), 1+r.IntN(200))
		m := NewMerger(fsm.ByClient{}, int32(len(srcs)))
		var got []Key
		for i, o := range arrivals(r, srcs) {
			if err := m.Add(int64(i), int64(i)*1000, o, nil, nil); err != nil {
				t.Fatal(err)
			}
			drain(m, &got)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: got %d lines, want %d; first difference at %d", seed, len(got), len(want), firstDiff(got, want))
		}
		if c := m.TakeCounts(); c.OutOfOrder != 0 || c.Applied != int64(len(want)) {
			t.Fatalf("seed %d: counts %+v", seed, c)
		}
	}
}

// TestMerger_RestartFromMarksGivesTheSameOrder: a new owner that resumes
// from the committed state (marks and the lowest offset still held) and
// reads again from there gives back exactly the lines the old one had
// not, in the same order.
func TestMerger_RestartFromMarksGivesTheSameOrder(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 11))
		srcs, want := genSources(r, 2+r.IntN(5), 50+r.IntN(150))
		in := arrivals(r, srcs)
		cut := r.IntN(len(in))
		m := NewMerger(fsm.ByClient{}, int32(len(srcs)))
		var got []Key
		for i := 0; i < cut; i++ {
			_ = m.Add(int64(i), int64(i)*1000, in[i], nil, nil)
			drain(m, &got)
		}
		// Commit: marks, and the offset to read again from.
		bc := fsm.ByClient{Marks: make([]fsm.SourceMark, len(srcs)), MaxTS: m.MaxTS()}
		for s := range bc.Marks {
			bc.Marks[s].Watermark = NoWatermark
		}
		for _, u := range m.TakeMarks() {
			bc.Marks[u.Source] = u.Mark
		}
		from := int64(cut)
		if low, ok := m.Low(); ok {
			from = low
		}
		m2 := NewMerger(bc, int32(len(srcs)))
		for i := from; i < int64(len(in)); i++ {
			_ = m2.Add(i, i*1000, in[i], nil, nil)
			drain(m2, &got)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d (cut %d of %d, read again from %d): got %d lines, want %d; first difference at %d",
				seed, cut, len(in), from, len(got), len(want), firstDiff(got, want))
		}
	}
}

// TestMerger_SilentSourceHoldsBackUntilIdle: a source never heard of holds
// every line back; its idle marker lets them through; a line from a source
// that was idle and comes back older is given back at once and counted.
func TestMerger_SilentSourceHoldsBackUntilIdle(t *testing.T) {
	m := NewMerger(fsm.ByClient{}, 2)
	_ = m.Add(0, 0, Origin{Kind: KindLine, Source: 0, Offset: 0, Watermark: 100}, nil, nil)
	if _, ok := m.Next(); ok {
		t.Fatal("a line went before source 1 was heard of")
	}
	_ = m.Add(1, 100, Origin{Kind: KindIdle, Source: 1, Offset: 0, Watermark: NoWatermark}, nil, nil)
	if _, ok := m.Next(); ok {
		t.Fatal("a line passed an idle source before IdleHold")
	}
	// Any later record of the partition tells the time.
	_ = m.Add(2, IdleHold, Origin{Kind: KindIdle, Source: 1, Offset: 0, Watermark: NoWatermark}, nil, nil)
	if _, ok := m.Next(); !ok {
		t.Fatal("an idle source still holds the line back after IdleHold")
	}
	_ = m.Add(3, IdleHold+1, Origin{Kind: KindLine, Source: 1, Offset: 0, Watermark: 50}, nil, nil)
	if _, ok := m.Next(); !ok {
		t.Fatal("the late source's line is held")
	}
	if c := m.TakeCounts(); c.OutOfOrder != 1 {
		t.Fatalf("out of order %d, want 1", c.OutOfOrder)
	}
	// Source 1 is active again: source 0's next line waits for it.
	_ = m.Add(4, 10*IdleHold, Origin{Kind: KindLine, Source: 0, Offset: 1, Watermark: 200}, nil, nil)
	if _, ok := m.Next(); ok {
		t.Fatal("source 1 came back but does not hold source 0 back")
	}
	// Older generation, newer generation, bad origin.
	m2 := NewMerger(fsm.ByClient{Gen: 2}, 1)
	_ = m2.Add(0, 0, Origin{Kind: KindLine, Gen: 1}, nil, nil)
	if err := m2.Add(1, 0, Origin{Kind: KindLine, Gen: 3}, nil, nil); err != ErrNewerGeneration {
		t.Fatalf("newer generation: %v", err)
	}
	_ = m2.Add(2, 0, Origin{}, nil, ErrBadOrigin)
	if c := m2.TakeCounts(); c.Dropped != 1 || c.Bad != 1 || m2.Held() != 0 {
		t.Fatalf("counts %+v, held %d", c, m2.Held())
	}
}

func TestOrigin_RoundTripAndHostileBytes(t *testing.T) {
	o := Origin{Kind: KindProgress, Gen: 3, Source: 11, Offset: 1 << 40, Watermark: -5}
	got, err := ParseOrigin(AppendOrigin(nil, o))
	if err != nil || got != o {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	good := AppendOrigin(nil, o)
	for i := range good {
		if _, err := ParseOrigin(good[:i]); err == nil {
			t.Fatalf("prefix of %d bytes parsed", i)
		}
	}
	for _, b := range [][]byte{nil, {2, 0}, {1, 9}, append(good, 0)} {
		if _, err := ParseOrigin(b); err == nil {
			t.Fatalf("%x parsed", b)
		}
	}
	longest := Origin{Kind: 255, Gen: math.MaxUint64, Source: -1, Offset: math.MinInt64, Watermark: math.MinInt64}
	if n := len(AppendOrigin(nil, longest)); n > MaxOriginBytes {
		t.Fatalf("an origin of %d bytes, more than MaxOriginBytes (%d)", n, MaxOriginBytes)
	}
}

// packOf packs lines at offsets offs with watermarks wms.
func packOf(o Origin, offs, wms []int64, lines [][]byte) (Origin, []byte) {
	o.Kind, o.Offset, o.Watermark = KindPack, offs[0], wms[0]
	var body []byte
	prevO, prevW := offs[0], wms[0]
	for i := range lines {
		body = AppendPacked(body, prevO, prevW, offs[i], wms[i], lines[i])
		prevO, prevW = offs[i], wms[i]
	}
	return o, body
}

func TestPack_RoundTripAndHostileBodies(t *testing.T) {
	offs := []int64{7, 8, 20, 1 << 40}
	wms := []int64{100, 90, math.MaxInt64, NoWatermark}
	lines := [][]byte{[]byte("a"), nil, []byte("third line"), []byte("x\x00y")}
	o, body := packOf(Origin{Gen: 2, Source: 5}, offs, wms, lines)
	hdr, err := ParseOrigin(AppendOrigin(nil, o))
	if err != nil || hdr != o {
		t.Fatalf("header: %+v %v", hdr, err)
	}
	got, err := Unpack(hdr, body, nil)
	if err != nil || len(got) != len(lines) {
		t.Fatalf("%d lines, %v", len(got), err)
	}
	for i, l := range got {
		want := Origin{Kind: KindLine, Gen: 2, Source: 5, Offset: offs[i], Watermark: wms[i]}
		if l.Origin != want || string(l.Value) != string(lines[i]) || cap(l.Value) != len(l.Value) {
			t.Fatalf("line %d: %+v %q (cap %d), want %+v %q", i, l.Origin, l.Value, cap(l.Value), want, lines[i])
		}
	}
	// A Pack builds the same record, and reports full at MaxPackLines.
	var pk Pack
	for i := range lines {
		if pk.Add(offs[i], wms[i], lines[i]) {
			t.Fatalf("full after %d lines", i+1)
		}
	}
	if po, pb := pk.Close(2, 5); po != o || string(pb) != string(body) || pk.Len() != 0 {
		t.Fatalf("Pack: origin %+v body %x, want %+v %x; %d lines left", po, pb, o, body, pk.Len())
	}
	for i := range MaxPackLines {
		if full := pk.Add(int64(i), 0, nil); full != (i == MaxPackLines-1) {
			t.Fatalf("line %d: full %v", i+1, full)
		}
	}
	// Lines gives a record of one line or marker as it is.
	if ls, err := Lines(Origin{Kind: KindProgress, Offset: 9}, nil, nil); err != nil || len(ls) != 1 || ls[0].Offset != 9 {
		t.Fatalf("a marker's lines: %+v %v", ls, err)
	}
	// Every strict prefix, and the pack with a byte more, is refused whole.
	for i := 1; i < len(body); i++ {
		if out, err := Unpack(hdr, body[:i], got[:1]); err == nil && i < len(body) {
			// A prefix can end at a line's end: then it is a shorter,
			// valid pack.
			if len(out) < 2 {
				t.Fatalf("prefix %d: %d lines", i, len(out))
			}
		} else if len(out) != 1 {
			t.Fatalf("prefix %d refused, but out changed to %d lines", i, len(out))
		}
	}
	for name, c := range map[string]struct {
		o    Origin
		body []byte
	}{
		"empty":                            {hdr, nil},
		"not a pack":                       {Origin{Kind: KindLine}, body},
		"first line not at the origin":     {Origin{Kind: KindPack, Offset: 3}, AppendPacked(nil, 2, 0, 3, 0, lines[0])},
		"first watermark not the origin's": {Origin{Kind: KindPack, Offset: 3, Watermark: 8}, AppendPacked(nil, 3, 8, 3, 9, lines[0])},
		"offsets not growing": func() (c struct {
			o    Origin
			body []byte
		}) {
			c.o, c.body = packOf(Origin{}, []int64{3, 3}, []int64{0, 0}, lines[:2])
			return
		}(),
		"a line past the body": {hdr, append(AppendPacked(nil, 7, 100, 7, 100, []byte("abc"))[:4:4], 'a')},
		"offset overflow":      {Origin{Kind: KindPack, Offset: math.MaxInt64 - 1}, AppendPacked(AppendPacked(nil, 0, 0, 0, 0, nil), 0, 0, 5, 0, nil)},
		"more than MaxPackLines": func() (c struct {
			o    Origin
			body []byte
		}) {
			n := MaxPackLines + 1
			offs, wms, ls := make([]int64, n), make([]int64, n), make([][]byte, n)
			for i := range n {
				offs[i] = int64(i)
			}
			c.o, c.body = packOf(Origin{}, offs, wms, ls)
			return
		}(),
	} {
		if out, err := Unpack(c.o, c.body, nil); err == nil || len(out) != 0 {
			t.Errorf("%s: %d lines, %v", name, len(out), err)
		}
	}
}

// TestPack_ParsedLinesComeBackWithTheirParse: a pack of parsed lines
// (AddParsed) unpacks to the same lines, each with a layout that reads
// back the Entry the first stage parsed; a layout cut short or past the
// body refuses the pack whole, and a pack holds lines of one kind.
func TestPack_ParsedLinesComeBackWithTheirParse(t *testing.T) {
	format, err := accesslog.Lookup("combined")
	if err != nil {
		t.Fatal(err)
	}
	lines := [][]byte{
		[]byte(`192.0.2.1 - - [17/May/2015:10:05:03 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "-" "ua/1"`),
		[]byte(`2001:db8::0:1 - bob [17/May/2015:10:05:04 +0000] "POST /login HTTP/1.1" 403 - "http://r/" "ua/2"`),
	}
	var pk Pack
	entries := make([]accesslog.Entry, len(lines))
	wms := []int64{0, 0}
	for i, l := range lines {
		if err := format.Parse(l, &entries[i]); err != nil {
			t.Fatal(err)
		}
		wms[i] = entries[i].Time + int64(i)
		pk.AddParsed(int64(10+i), wms[i], l, &entries[i])
	}
	o, body := pk.Close(3, 1)
	if o.Kind != KindParsed {
		t.Fatalf("kind %d, want KindParsed", o.Kind)
	}
	hdr, err := ParseOrigin(AppendOrigin(nil, o))
	if err != nil || hdr != o {
		t.Fatalf("header: %+v %v", hdr, err)
	}
	got, err := Lines(hdr, body, nil)
	if err != nil || len(got) != len(lines) {
		t.Fatalf("%d lines, %v", len(got), err)
	}
	for i, l := range got {
		var e accesslog.Entry
		if string(l.Value) != string(lines[i]) || l.Offset != int64(10+i) || l.Watermark != wms[i] {
			t.Fatalf("line %d: %+v %q", i, l.Origin, l.Value)
		}
		if err := e.ReadLayout(l.Layout, l.Value, l.Watermark); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if string(e.Client) != string(entries[i].Client) || string(e.Path) != string(entries[i].Path) || e.Time != entries[i].Time ||
			e.Status != entries[i].Status || string(e.UserAgent) != string(entries[i].UserAgent) || string(e.User) != string(entries[i].User) {
			t.Fatalf("line %d read back as %+v, parsed as %+v", i, e, entries[i])
		}
	}
	// The last line's layout, cut short, of no bytes, or said longer
	// than the body holds (its length is one byte: under 128).
	lay := got[1].Layout
	before := bytes.Clone(body[:bytes.LastIndex(body, lay)-1])
	for name, b := range map[string][]byte{
		"a layout cut short":    body[:len(body)-1],
		"a layout of no bytes":  append(bytes.Clone(before), 0),
		"a layout past the end": append(append(bytes.Clone(before), byte(len(lay)+1)), lay...),
	} {
		if out, err := Unpack(hdr, b, nil); err == nil || len(out) != 0 {
			t.Errorf("%s: %d lines, %v", name, len(out), err)
		}
	}
	// A pack without layouts is still read, as before them.
	if o, body := packOf(Origin{}, []int64{1}, []int64{0}, lines[:1]); true {
		if out, err := Unpack(o, body, nil); err != nil || len(out) != 1 || out[0].Layout != nil {
			t.Fatalf("a pack of lines: %+v %v", out, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a line without its parse went into a pack of parsed lines")
		}
	}()
	pk.AddParsed(1, 0, lines[0], &entries[0])
	pk.Add(2, 0, lines[1])
}

// FuzzUnpack: any pack body either unpacks to lines whose offsets grow
// from the origin's, at most MaxPackLines, that pack back to the same
// bytes, or is refused; nothing panics.
func FuzzUnpack(f *testing.F) {
	o, body := packOf(Origin{Source: 1}, []int64{5, 6, 9}, []int64{10, 8, 12}, [][]byte{[]byte("l1"), nil, []byte("l3")})
	f.Add(o.Offset, o.Watermark, body)
	f.Add(int64(0), int64(NoWatermark), []byte{0, 0, 0})
	if format, err := accesslog.Lookup("combined"); err == nil {
		var pk Pack
		var e accesslog.Entry
		line := []byte(`192.0.2.1 - - [17/May/2015:10:05:03 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "-" "ua/1"`)
		if format.Parse(line, &e) == nil {
			pk.AddParsed(4, e.Time, line, &e)
			o, body := pk.Close(0, 0)
			f.Add(o.Offset, o.Watermark, body)
		}
	}
	f.Fuzz(func(t *testing.T, off, wm int64, body []byte) {
		if off < 0 {
			return // ParseOrigin refuses a negative offset
		}
		// The same body read as a pack of parsed lines: refused, or lines
		// whose layouts lie within the body, and none empty.
		if got, err := Unpack(Origin{Kind: KindParsed, Offset: off, Watermark: wm}, body, nil); err == nil {
			for i, l := range got {
				if len(l.Layout) == 0 || !bytes.Contains(body, l.Layout) {
					t.Fatalf("parsed line %d: layout %q not in the body", i, l.Layout)
				}
				var e accesslog.Entry
				_ = e.ReadLayout(l.Layout, l.Value, l.Watermark) // must not panic
			}
		} else if len(got) != 0 {
			t.Fatalf("a parsed pack refused with %d lines", len(got))
		}
		o := Origin{Kind: KindPack, Offset: off, Watermark: wm}
		got, err := Unpack(o, body, nil)
		if err != nil {
			if len(got) != 0 {
				t.Fatalf("refused with %d lines", len(got))
			}
			return
		}
		if len(got) == 0 || len(got) > MaxPackLines || got[0].Offset != off || got[0].Watermark != wm {
			t.Fatalf("accepted %d lines from %+v", len(got), o)
		}
		var again []byte
		prevO, prevW := off, wm
		for i, l := range got {
			if i > 0 && l.Offset <= got[i-1].Offset || l.Kind != KindLine {
				t.Fatalf("line %d: %+v", i, l.Origin)
			}
			again = AppendPacked(again, prevO, prevW, l.Offset, l.Watermark, l.Value)
			prevO, prevW = l.Offset, l.Watermark
		}
		// Varints have one shortest form: a body that unpacks but packs to
		// other bytes took a padded varint, which is harmless (the lines
		// are the same); the lines must unpack the same from the new form.
		back, err := Unpack(o, again, nil)
		if err != nil || len(back) != len(got) {
			t.Fatalf("re-packed: %d lines, %v", len(back), err)
		}
		for i := range back {
			if back[i].Origin != got[i].Origin || string(back[i].Value) != string(got[i].Value) {
				t.Fatalf("line %d re-packed: %+v, was %+v", i, back[i].Origin, got[i].Origin)
			}
		}
	})
}

func firstDiff(a, b []Key) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// FuzzParseOrigin: any header value either parses to an origin that
// encodes back to the same bytes, or is refused; nothing panics.
func FuzzParseOrigin(f *testing.F) {
	f.Add(AppendOrigin(nil, Origin{Kind: KindLine, Gen: 1, Source: 3, Offset: 99, Watermark: 1e18}))
	f.Add(AppendOrigin(nil, Origin{Kind: KindIdle, Source: 0, Offset: 0, Watermark: NoWatermark}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOrigin(b)
		if err != nil {
			return
		}
		if o.Offset < 0 || o.Source < 0 || o.Kind > KindParsed {
			t.Fatalf("accepted %+v", o)
		}
		// Varints have one shortest form; ParseOrigin takes only whole
		// values, so a parsed origin re-encodes to a value that parses
		// the same.
		again, err := ParseOrigin(AppendOrigin(nil, o))
		if err != nil || again != o {
			t.Fatalf("%+v re-encodes to %+v, %v", o, again, err)
		}
	})
}

func TestSealer_TamperingIsRefused(t *testing.T) {
	s := NewSealer([]byte("k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1"))
	hdr := AppendOrigin(nil, Origin{Kind: KindLine, Source: 1, Offset: 5, Watermark: 7})
	key, value := []byte("192.0.2.0/24"), []byte("line")
	mac := s.Seal(hdr, key, value)
	if !s.Check(mac, hdr, key, value) {
		t.Fatal("a sealed record does not check")
	}
	other := AppendOrigin(nil, Origin{Kind: KindLine, Source: 1, Offset: 1 << 40, Watermark: 7})
	for name, ok := range map[string]bool{
		"another origin":   s.Check(mac, other, key, value),
		"another value":    s.Check(mac, hdr, key, []byte("lime")),
		"another key":      s.Check(mac, hdr, []byte("192.0.3.0/24"), value),
		"no MAC":           s.Check(nil, hdr, key, value),
		"another key's":    NewSealer([]byte("k2k2k2k2k2k2k2k2k2k2k2k2k2k2k2k2")).Check(mac, hdr, key, value),
		"parts run across": s.Check(s.Seal(hdr, append(key, 'l'), []byte("ine")), hdr, key, value),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
	var none *Sealer
	if none.Seal(hdr, key, value) != nil || !none.Check(nil, hdr, key, value) {
		t.Fatal("without a key, records are neither sealed nor refused")
	}
}

// TestQueue_PoppedItemsKeepNoLines checks that a queue gives its lines
// back in order and keeps none it gave back, in its blocks either: a line
// aliases the fetch it came in, which a kept line would keep from the
// collector.
func TestQueue_PoppedItemsKeepNoLines(t *testing.T) {
	var q queue
	pushed, popped := 0, 0
	// Lengths across block bounds, emptied whole and not.
	for _, step := range []struct{ push, pop int }{{5000, 3000}, {1, 2001}, {queueBlock, queueBlock}, {3*queueBlock + 7, 2 * queueBlock}, {10, queueBlock + 17}} {
		for range step.push {
			q.push(Item{Origin: Origin{Offset: int64(pushed)}, Value: []byte(fmt.Sprint("line ", pushed))})
			pushed++
		}
		if q.tail().Offset != int64(pushed-1) {
			t.Fatalf("tail %d, want %d", q.tail().Offset, pushed-1)
		}
		for range step.pop {
			if it := q.pop(); it.Offset != int64(popped) || string(it.Value) != fmt.Sprint("line ", popped) {
				t.Fatalf("popped %d %q, want %d", it.Offset, it.Value, popped)
			}
			popped++
		}
		if q.len() != pushed-popped {
			t.Fatalf("%d items left, want %d", q.len(), pushed-popped)
		}
		if q.len() > 0 && q.head().Offset != int64(popped) {
			t.Fatalf("head %d, want %d", q.head().Offset, popped)
		}
		if want := (q.pos + q.len() + queueBlock - 1) / queueBlock; q.len() > 0 && len(q.blocks) != want {
			t.Fatalf("%d blocks for %d items from %d, want %d", len(q.blocks), q.len(), q.pos, want)
		}
		held := 0
		for i, b := range q.blocks {
			for j, it := range b {
				at := i*queueBlock + j
				if at >= q.pos && at < q.pos+q.len() {
					held++
					continue
				}
				if it.Value != nil {
					t.Fatalf("block %d slot %d (%d held from %d) still holds %q", i, j, q.len(), q.pos, it.Value)
				}
			}
		}
		if q.spare != nil {
			for _, it := range q.spare {
				if it.Value != nil {
					t.Fatalf("the spare block still holds %q", it.Value)
				}
			}
		}
		if held != q.len() {
			t.Fatalf("%d items in the blocks, want %d", held, q.len())
		}
	}
}

// BenchmarkMerger: the second stage's merge of 12 sources' lines (a
// drain's interleaving, retries included), per line added and given back.
func BenchmarkMerger(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	srcs, want := genSources(r, 12, 20_000)
	in := arrivals(r, srcs)
	b.ResetTimer()
	for b.Loop() {
		m := NewMerger(fsm.ByClient{}, int32(len(srcs)))
		n := 0
		for i, o := range in {
			if err := m.Add(int64(i), int64(i)*1000, o, nil, nil); err != nil {
				b.Fatal(err)
			}
			for {
				if _, ok := m.Next(); !ok {
					break
				}
				n++
			}
			if i%512 == 0 {
				m.TakeMarks()
			}
		}
		if n != len(want) {
			b.Fatalf("%d lines given back, want %d", n, len(want))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(want)), "ns/line")
}
