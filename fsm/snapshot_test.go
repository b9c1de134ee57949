package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// shape describes a state to build through the apply path.
type shape struct {
	clients    int // distinct client addresses, one request each
	minutes    int // spread over this many windows
	sources    int // clients with detector buckets (every clients/sources-th)
	batches    int
	partitions int32
}

// clientIP is the i-th distinct address.
func clientIP(i int) []byte {
	b := strconv.AppendInt([]byte("10."), int64(i>>16&255), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i>>8&255), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i&255), 10)
	if i >= 1<<24 {
		b = strconv.AppendInt(append(b, '-'), int64(i>>24), 10)
	}
	return b
}

// entries are the log entries of fg's records, encoded as the leader
// writes them: members, assignment, configuration, then a commit per batch
// with its load figures, detector buckets for the sources (two scenarios
// each, a tenth with window slots or samples; each batch also overwrites a
// bucket of the partition's previous batch) and a few alerts (decisions in
// the book), then a manual decision, a published mark and a bouncer's pull.
func entries(tb testing.TB, fg shape) [][]byte {
	tb.Helper()
	var out [][]byte
	add := func(c Command) {
		data, err := Encode(c)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, data)
	}
	add(Command{Kind: KindSetMembers, Members: []Member{{ID: "n1", RaftAddr: "127.0.0.1:1", Status: StatusAlive, Voter: true}}})
	a := Assign{Partitions: fg.partitions}
	for p := range fg.partitions {
		a.Moves = append(a.Moves, Move{Partition: p, Owner: "n1"})
	}
	add(Command{Kind: KindAssign, Assign: &a})
	add(Command{Kind: KindConfigure, Config: &Config{Version: 1, LogFormat: "combined", Retention: "24h"}})
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).UnixNano()
	every := max(1, fg.clients/max(fg.sources, 1))
	from := make([]int64, fg.partitions)
	per := (fg.clients + fg.batches - 1) / fg.batches
	for bi := 0; bi < fg.batches; bi++ {
		p := int32(bi) % fg.partitions
		agg := analytics.NewAggregate()
		d := &detect.Delta{Partition: p, Buckets: map[string]*detect.Bucket{}}
		lo, hi := bi*per, min((bi+1)*per, fg.clients)
		if prev := bi - int(fg.partitions); prev >= 0 && fg.sources > 0 {
			d.Buckets["http-probing|"+string(clientIP(prev*per))] = &detect.Bucket{Level: bi, LastT: int64(bi)}
		}
		for i := lo; i < hi; i++ {
			ip := clientIP(i)
			at := t0 + int64(i%fg.minutes)*60e9 + int64(i%60)*1e9
			e := accesslog.Entry{Time: at, Client: ip, Method: []byte("GET"), Path: []byte("/p/" + strconv.Itoa(i%500)),
				Status: []int{200, 200, 200, 404, 301, 500}[i%6], Bytes: int64(i % 9000), UserAgent: []byte("agent-" + strconv.Itoa(i%40)),
				Duration: int64(i%20000) + 1}
			if i%3 == 0 {
				e.Referer = []byte("https://ref.example/" + strconv.Itoa(i%30))
			}
			if i%4 == 0 {
				e.VHost = []byte("site" + strconv.Itoa(i%3) + ".example")
			}
			agg.Add(&e)
			if fg.sources > 0 && i%every == 0 {
				for s, sc := range []string{"http-crawl-non_statics", "http-probing"} {
					bk := &detect.Bucket{Level: 1 + i%5 + s, LastLeak: at, FirstT: at - 1e9, FirstOff: from[p] + int64(i-lo), LastT: at}
					if i%(10*every) == 0 {
						bk.Keys, bk.Extra = []uint64{uint64(i), uint64(i) << 7, uint64(s)}, &detect.Extra{Samples: []string{"GET /p/" + strconv.Itoa(i) + " HTTP/1.1"}}
					}
					d.Buckets[sc+"|"+string(ip)] = bk
				}
			}
			d.Watermark = max(d.Watermark, at)
		}
		for k := 0; k < 4; k++ {
			ip := string(clientIP(lo + k))
			d.Alerts = append(d.Alerts, detect.Alert{ID: fmt.Sprintf("%d-%d", bi, k), Scenario: "http-probing", CrowdSec: "crowdsecurity/http-probing",
				SourceIP: ip, Events: 11, Partition: p, Offsets: [2]int64{from[p], from[p] + 10}, Time: d.Watermark, FirstSeen: "2026-11-27T10:00:00Z",
				LastSeen: "2026-11-27T10:00:10Z", Samples: []string{"GET /admin HTTP/1.1"}})
		}
		n := int64(hi - lo)
		add(Command{Kind: KindCommit, Commit: []Batch{{Node: "n1", Partition: p, Epoch: 1, From: from[p], Until: from[p] + n,
			Digest: Digest{Records: n, Bytes: n * 120, Sum: uint64(bi) * 7919}, Analytics: agg, Detect: d,
			Malformed: []BadRecord{{Partition: p, Offset: from[p], Reason: "bad status", Line: "junk " + strconv.Itoa(bi)}}}}})
		from[p] += n
	}
	add(Command{Kind: KindDecisionAdd, Decision: &ManualDecision{Value: "192.0.2.0/24", Type: "ban", Reason: "test", Now: t0, Duration: "1h"}})
	add(Command{Kind: KindMarkPublished, Seq: 3})
	add(Command{Kind: KindBouncerPull, Bouncer: &BouncerPull{Instance: "b1", At: detect.Position{Seq: 1, Time: t0}, Now: t0, UserAgent: "cs-firewall-bouncer"}})
	return out
}

// applyEntries applies entries to f as Raft does, each one accepted.
func applyEntries(tb testing.TB, f *FSM, entries [][]byte) {
	for _, data := range entries {
		idx := f.AppliedIndex() + 1
		if r := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(Result); r.Err != "" || r.BatchErr(0) != nil {
			tb.Errorf("entry %d: %s %v", idx, r.Err, r.BatchErr(0))
			return
		}
	}
}

// build is an FSM that applied fg's entries.
func build(tb testing.TB, fg shape) *FSM {
	tb.Helper()
	f := New("t")
	applyEntries(tb, f, entries(tb, fg))
	return f
}

// snapshotBytes is what f's snapshot persists.
func snapshotBytes(tb testing.TB, f *FSM) []byte {
	tb.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		tb.Fatal(err)
	}
	snap.Release()
	return sink.Bytes()
}

// served is what f serves that a snapshot must keep: the load figures
// (several queries) and everything else of the state, as JSON.
func served(tb testing.TB, s *State) string {
	tb.Helper()
	var out []byte
	for _, q := range []analytics.Query{{}, {Top: -1}, {VHost: "site1.example"}, {Search: "10.0.0"}} {
		b, err := json.Marshal(s.Analytics.Stats(q))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b...)
	}
	b, err := json.Marshal(s) // analytics in insertion order, detector by key
	if err != nil {
		tb.Fatal(err)
	}
	return string(append(out, b...))
}

func small() shape {
	return shape{clients: 3000, minutes: 7, sources: 300, batches: 9, partitions: 4}
}

func TestSnapshot_BinaryRoundTrip(t *testing.T) {
	f := build(t, small())
	data := snapshotBytes(t, f)
	if !bytes.HasPrefix(data, snapshotMagic) {
		t.Fatalf("snapshot starts %q", data[:8])
	}
	g := New("other")
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	want, got := served(t, f.state), served(t, g.state)
	if want != got {
		t.Fatalf("restored state serves other figures (%d vs %d bytes)", len(want), len(got))
	}
	if !bytes.Equal(snapshotBytes(t, g), data) {
		t.Fatal("a restored state snapshots to other bytes")
	}
	if st := g.Stats(analytics.Query{}); st.Requests != 3000 || st.Malformed != 0 {
		t.Fatalf("restored figures: %d requests", st.Requests)
	}
	if n, want := len(g.state.Detect[1].State().Buckets), len(f.state.Detect[1].State().Buckets); n != want || n < 100 {
		t.Fatalf("partition 1 has %d buckets, want %d", n, want)
	}
	if len(g.state.Book.Alerts) != 36 || len(g.state.Book.Decisions) == 0 || len(g.state.Bouncers) != 1 {
		t.Fatalf("book or bouncers lost: %d alerts, %d decisions, %d bouncers", len(g.state.Book.Alerts), len(g.state.Book.Decisions), len(g.state.Bouncers))
	}
	// The restored FSM applies on as the original does.
	for _, s := range []*FSM{f, g} {
		data, _ := Encode(Command{Kind: KindDecisionAdd, Decision: &ManualDecision{Value: "198.51.100.7", Reason: "later", Now: 1, Duration: "1h"}})
		s.Apply(&raft.Log{Type: raft.LogCommand, Data: data})
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, g)) {
		t.Fatal("restored FSM diverged after a command")
	}
}

// The JSON snapshots of earlier releases still restore (testdata holds one
// written by the release before binary snapshots), and give the same state
// as restoring their binary form.
func TestSnapshot_ReadsJSONOfEarlierReleases(t *testing.T) {
	fixture := filepath.Join("testdata", "snapshot-json.json")
	if os.Getenv("WARDEN_WRITE_FIXTURES") != "" {
		f := build(t, shape{clients: 200, minutes: 2, sources: 20, batches: 2, partitions: 2})
		b, err := json.Marshal(f.state) // what Snapshot wrote before the binary form
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fixture, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ReadSnapshot(bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Analytics.Stats(analytics.Query{}); st.Requests != 200 || len(s.Detect) != 2 || len(s.Book.Alerts) != 8 || s.Config.Version != 1 {
		t.Fatalf("JSON snapshot restored %d requests, %d detector states, %d alerts", st.Requests, len(s.Detect), len(s.Book.Alerts))
	}
	var bin bytes.Buffer
	if err := WriteSnapshot(&bin, s); err != nil {
		t.Fatal(err)
	}
	s2, err := ReadSnapshot(bytes.NewReader(bin.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := served(t, s), served(t, s2); a != b {
		t.Fatal("the binary form of a JSON snapshot serves other figures")
	}
	// Leading whitespace is JSON too.
	if _, err := ReadSnapshot(bytes.NewReader(append([]byte(" \n"), old...))); err != nil {
		t.Fatal(err)
	}
}

// Truncated or corrupt snapshots are refused with an error, never a panic
// and never half a state.
func TestSnapshot_CorruptRefused(t *testing.T) {
	data := snapshotBytes(t, build(t, shape{clients: 300, minutes: 3, sources: 30, batches: 3, partitions: 2}))
	step := max(1, len(data)/400)
	for n := 0; n < len(data); n += step {
		if _, err := ReadSnapshot(bytes.NewReader(data[:n])); err == nil {
			t.Fatalf("snapshot truncated to %d of %d bytes restored", n, len(data))
		}
	}
	if _, err := ReadSnapshot(bytes.NewReader(append(bytes.Clone(data), 0))); err == nil {
		t.Fatal("snapshot with a byte left over restored")
	}
	newer := bytes.Clone(data)
	newer[len(snapshotMagic)-1]++
	if _, err := ReadSnapshot(bytes.NewReader(newer)); err == nil {
		t.Fatal("snapshot of an unknown format version restored")
	}
	for i := 0; i < len(data); i += step {
		c := bytes.Clone(data)
		c[i] ^= 0x5a
		_, _ = ReadSnapshot(bytes.NewReader(c)) // an error or a state, no panic
	}
}

func FuzzReadSnapshot(f *testing.F) {
	// Small seeds (a window's distinct-client sketch alone is 16 KiB):
	// the fuzzer minimises every input it finds interesting.
	f.Add(snapshotBytes(f, build(f, shape{clients: 6, minutes: 1, sources: 3, batches: 1, partitions: 1})))
	f.Add(snapshotBytes(f, New("t")))
	f.Add([]byte(`{"topic":"t","detect":{"0":{"buckets":{"s|1":{"l":1}}}},"bouncers":{"b":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadSnapshot(bytes.NewReader(data))
		if err != nil {
			return
		}
		// What restores snapshots again, and restores again.
		var b bytes.Buffer
		if err := WriteSnapshot(&b, s); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadSnapshot(bytes.NewReader(b.Bytes())); err != nil {
			t.Fatalf("a restored snapshot's own snapshot is refused: %v", err)
		}
	})
}

// halfApplied is an FSM that applied the first half of the batches of
// small() made twice as long, and the entries left for applies meanwhile.
func halfApplied(t *testing.T) (*FSM, [][]byte) {
	fg := small()
	fg.batches *= 2
	es := entries(t, fg)
	half := 3 + fg.batches/2
	f := New("t")
	applyEntries(t, f, es[:half])
	return f, es[half:]
}

// A snapshot is the state at Snapshot, whatever applies do while Persist
// writes it (run under -race: the frozen copy shares what applies never
// change).
func TestSnapshot_PersistWhileApplying(t *testing.T) {
	f, rest := halfApplied(t)
	want := snapshotBytes(t, f)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// New clients into the same windows, buckets overwritten and added,
	// alerts, from another goroutine while Persist runs.
	done := make(chan struct{})
	go func() {
		defer close(done)
		applyEntries(t, f, rest)
	}()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	<-done
	snap.Release()
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatal("applies during Persist changed the snapshot")
	}
	if bytes.Equal(snapshotBytes(t, f), want) {
		t.Fatal("the applies changed nothing: the test tests nothing")
	}
}

// WorkerStart decodes the detector state it froze under the lock after
// letting the lock go: the state is the partition's as it was read with
// its record, whatever applies do before or while it is decoded (run under
// -race: the frozen state shares bytes that applies never change).
func TestWorkerStart_StateAsFrozenWhileApplying(t *testing.T) {
	f, rest := halfApplied(t)
	_, want, ok := f.WorkerStart(1)
	if !ok || want == nil || len(want.Buckets) < 50 {
		t.Fatalf("partition 1's state before: %v", want)
	}
	wantJSON, _ := json.Marshal(want)
	f.mu.RLock()
	_, frozen, _ := f.workerStart(1)
	f.mu.RUnlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		applyEntries(t, f, rest)
	}()
	for range 3 { // decoded while the applies run, and after
		if got, _ := json.Marshal(frozen.State()); !bytes.Equal(got, wantJSON) {
			t.Fatal("applies after the freeze reached the state decoded")
		}
	}
	<-done
	if got, _ := json.Marshal(frozen.State()); !bytes.Equal(got, wantJSON) {
		t.Fatal("applies after the freeze reached the state decoded")
	}
	if _, now, _ := f.WorkerStart(1); now == nil || bytes.Equal(must(json.Marshal(now)), wantJSON) {
		t.Fatal("the applies changed partition 1's detector state not at all: the test tests nothing")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
