package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// assigned returns a state with partitions 0..n-1 owned round-robin by owners.
func assigned(n int32, owners ...string) *State {
	s := NewState("t")
	a := Assign{Partitions: n}
	for p := int32(0); p < n; p++ {
		a.Moves = append(a.Moves, Move{Partition: p, Owner: owners[int(p)%len(owners)]})
	}
	Apply(s, Command{Kind: KindAssign, Assign: &a})
	return s
}

// logged is cmd as every replica applies it: encoded for the log, then
// decoded.
func logged(cmd Command) Command {
	data, err := Encode(cmd)
	if err != nil {
		panic(err)
	}
	dec, err := Decode(data)
	if err != nil {
		panic(err)
	}
	return dec
}

func commit(s *State, b Batch) error {
	return Apply(s, logged(Command{Kind: KindCommit, Commit: []Batch{b}})).BatchErr(0)
}

func TestApply_CommitRules(t *testing.T) {
	delta := Digest{Records: 10, Bytes: 100, Sum: 42}
	tests := []struct {
		name  string
		batch Batch
		want  error
	}{
		{"applies", Batch{Node: "a", Partition: 0, Epoch: 1, From: 0, Until: 10, Digest: delta}, nil},
		{"old epoch is fenced", Batch{Node: "a", Partition: 0, Epoch: 0, From: 0, Until: 10}, ErrFenced},
		{"future epoch is fenced", Batch{Node: "a", Partition: 0, Epoch: 2, From: 0, Until: 10}, ErrFenced},
		{"other node", Batch{Node: "b", Partition: 0, Epoch: 1, From: 0, Until: 10}, ErrNotOwner},
		{"from mismatch", Batch{Node: "a", Partition: 0, Epoch: 1, From: 5, Until: 10}, ErrOffsetMismatch},
		{"unknown partition", Batch{Node: "a", Partition: 9, Epoch: 1, From: 0, Until: 10}, ErrUnknownPartition},
		{"negative partition", Batch{Node: "a", Partition: -1, Epoch: 1}, ErrUnknownPartition},
		{"backwards range", Batch{Node: "a", Partition: 0, Epoch: 1, From: 0, Until: -1}, ErrBadRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := assigned(2, "a", "b")
			err := commit(s, tt.batch)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			p := s.Partitions[0]
			if tt.want == nil {
				if p.Committed != 10 || p.Digest != delta || p.Commits != 1 {
					t.Fatalf("not applied: %+v", p)
				}
			} else if p.Committed != 0 || p.Digest != (Digest{}) || p.Commits != 0 {
				t.Fatalf("rejected batch changed state: %+v", p)
			}
		})
	}
}

func TestApply_DuplicateCommitRejected(t *testing.T) {
	s := assigned(1, "a")
	b := Batch{Node: "a", Partition: 0, Epoch: 1, From: 0, Until: 10, Digest: Digest{Records: 10, Sum: 7}}
	if err := commit(s, b); err != nil {
		t.Fatal(err)
	}
	if err := commit(s, b); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("duplicate: got %v", err)
	}
	if got := s.Partitions[0].Digest.Records; got != 10 {
		t.Fatalf("records = %d after a duplicate, want 10", got)
	}
}

func TestApply_MoveBumpsEpochAndFencesOldOwner(t *testing.T) {
	s := assigned(1, "a")
	Apply(s, Command{Kind: KindAssign, Assign: &Assign{Partitions: 1, Moves: []Move{{0, "b"}}}})
	// Back to a: a's old worker (epoch 1) must stay fenced.
	Apply(s, Command{Kind: KindAssign, Assign: &Assign{Partitions: 1, Moves: []Move{{0, "a"}}}})
	if s.Partitions[0].Epoch != 3 {
		t.Fatalf("epoch = %d, want 3", s.Partitions[0].Epoch)
	}
	if err := commit(s, Batch{Node: "a", Partition: 0, Epoch: 1, Until: 1}); !errors.Is(err, ErrFenced) {
		t.Fatalf("zombie commit: got %v", err)
	}
	if err := commit(s, Batch{Node: "a", Partition: 0, Epoch: 3, Until: 1}); err != nil {
		t.Fatalf("current owner: %v", err)
	}
	// A move to the same owner is not a change.
	Apply(s, Command{Kind: KindAssign, Assign: &Assign{Partitions: 1, Moves: []Move{{0, "a"}}}})
	if s.Partitions[0].Epoch != 3 {
		t.Fatalf("no-op move bumped the epoch to %d", s.Partitions[0].Epoch)
	}
}

func TestApply_GroupCommitChecksEachBatch(t *testing.T) {
	s := assigned(3, "a", "b", "c")
	res := Apply(s, logged(Command{Kind: KindCommit, Commit: []Batch{
		{Node: "a", Partition: 0, Epoch: 1, From: 0, Until: 5},
		{Node: "a", Partition: 1, Epoch: 1, From: 0, Until: 5}, // b owns 1
		{Node: "c", Partition: 2, Epoch: 1, From: 0, Until: 7},
	}}))
	want := []string{"", "not_owner", ""}
	if !reflect.DeepEqual(res.Rejected, want) {
		t.Fatalf("rejected = %q, want %q", res.Rejected, want)
	}
	if s.Partitions[0].Committed != 5 || s.Partitions[1].Committed != 0 || s.Partitions[2].Committed != 7 {
		t.Fatalf("offsets: %+v", s.Partitions)
	}
}

func TestApply_AssignGrowsNeverShrinks(t *testing.T) {
	s := assigned(4, "a")
	Apply(s, Command{Kind: KindAssign, Assign: &Assign{Partitions: 2}})
	if len(s.Partitions) != 4 {
		t.Fatalf("shrunk to %d", len(s.Partitions))
	}
	Apply(s, Command{Kind: KindAssign, Assign: &Assign{Partitions: 6, Moves: []Move{{5, "a"}}}})
	if len(s.Partitions) != 6 || s.Partitions[5].Owner != "a" || s.Partitions[4].Owner != "" {
		t.Fatalf("grow: %+v", s.Partitions)
	}
	res := Apply(s, Command{Kind: KindAssign, Assign: &Assign{Partitions: 6, Moves: []Move{{0, "b"}, {9, "b"}}}})
	if res.Err == "" || s.Partitions[0].Owner != "a" {
		t.Fatalf("a move of an unknown partition must reject the whole assign: %+v", res)
	}
}

func TestApply_ResetFencesAndMovesOffset(t *testing.T) {
	s := assigned(1, "a")
	if err := commit(s, Batch{Node: "a", Partition: 0, Epoch: 1, Until: 100}); err != nil {
		t.Fatal(err)
	}
	Apply(s, Command{Kind: KindReset, Reset: &ResetBatch{Partition: 0, Offset: 40}})
	if p := s.Partitions[0]; p.Committed != 40 || p.Epoch != 2 {
		t.Fatalf("after reset: %+v", p)
	}
	if err := commit(s, Batch{Node: "a", Partition: 0, Epoch: 1, From: 100, Until: 110}); !errors.Is(err, ErrFenced) {
		t.Fatalf("old worker after reset: %v", err)
	}
}

func TestApply_UnknownKind(t *testing.T) {
	s := assigned(1, "a")
	before := s.Clone()
	if res := Apply(s, Command{Kind: "nope"}); res.Err == "" {
		t.Fatal("unknown kind accepted")
	}
	if !reflect.DeepEqual(s.Clone(), before) {
		t.Fatal("unknown kind changed state")
	}
}

func TestDigest_OrderIndependent(t *testing.T) {
	var a, b Digest
	vals := [][]byte{[]byte("x"), []byte("yy"), []byte("zzz"), nil}
	for i, v := range vals {
		a.AddRecord(3, int64(i), v)
	}
	for i := len(vals) - 1; i >= 0; i-- {
		b.AddRecord(3, int64(i), vals[i])
	}
	if a != b {
		t.Fatalf("order changed the digest: %+v vs %+v", a, b)
	}
	var c Digest
	c.Add(a)
	c.AddRecord(3, 0, vals[0]) // a duplicate
	if c == a {
		t.Fatal("a duplicate record left the digest unchanged")
	}
	if RecordHash(0, 1, []byte("v")) == RecordHash(1, 0, []byte("v")) {
		t.Fatal("partition and offset must both enter the hash")
	}
}

// randomLog makes a command log like a cluster would: assignments and
// commits, some of them stale or duplicated.
func randomLog(r *rand.Rand, n int) []Command {
	nodes := []string{"a", "b", "c"}
	committed := map[int32]int64{}
	var cmds []Command
	cmds = append(cmds, Command{Kind: KindSetMembers, Members: []Member{{ID: "a", Status: StatusAlive, Voter: true}}})
	cmds = append(cmds, Command{Kind: KindAssign, Assign: &Assign{Partitions: 4, Moves: []Move{{0, "a"}, {1, "b"}, {2, "c"}, {3, "a"}}}})
	epochs := map[int32]uint64{0: 1, 1: 1, 2: 1, 3: 1}
	owners := map[int32]string{0: "a", 1: "b", 2: "c", 3: "a"}
	for i := 0; i < n; i++ {
		p := int32(r.IntN(4))
		switch r.IntN(10) {
		case 0:
			o := nodes[r.IntN(3)]
			if o != owners[p] {
				epochs[p]++
				owners[p] = o
			}
			cmds = append(cmds, Command{Kind: KindAssign, Assign: &Assign{Partitions: 4, Moves: []Move{{p, o}}}})
		default:
			from := committed[p]
			if r.IntN(4) == 0 {
				from -= int64(r.IntN(3)) // stale or duplicate
			}
			k := int64(1 + r.IntN(50))
			b := Batch{Node: owners[p], Partition: p, Epoch: epochs[p], From: from, Until: from + k,
				Digest: Digest{Records: k, Bytes: 3 * k, Sum: r.Uint64()}}
			if from == committed[p] {
				committed[p] += k
			}
			cmds = append(cmds, logged(Command{Kind: KindCommit, Commit: []Batch{b}}))
		}
	}
	return cmds
}

func TestReplay_RecordedLogGivesSameState(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cmds := randomLog(r, 2000)

	// Through the Raft adapter, entry by entry, as a node applies them.
	f := New("t")
	for i, c := range cmds {
		data, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
	}
	live, applied := f.View()
	if applied != uint64(len(cmds)) {
		t.Fatalf("applied index %d", applied)
	}
	replayed := Replay("t", cmds)
	if !reflect.DeepEqual(live, replayed.Clone()) {
		t.Fatalf("replay differs from live state")
	}
	var total int64
	for _, p := range replayed.Partitions {
		total += p.Committed
		if p.Digest.Records != p.Committed {
			t.Fatalf("partition %d: %d records under committed offset %d", p.Partition, p.Digest.Records, p.Committed)
		}
	}
	if total == 0 {
		t.Fatal("no batch applied; the log generator is broken")
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }
func (m *memSink) Close() error  { return nil }

func TestSnapshotRestore_RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cmds := randomLog(r, 500)
	f := New("t")
	for i, c := range cmds {
		data, _ := Encode(c)
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := New("other")
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	want, _ := f.View()
	got, _ := g.View()
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("restored state differs:\n%+v\n%+v", want, got)
	}
	select {
	case <-g.Changed():
	default:
		t.Fatal("restore did not signal a change")
	}
	// The restored FSM keeps applying exactly like the original.
	more := randomLog(rand.New(rand.NewPCG(5, 6)), 100)[2:]
	for _, c := range more {
		Apply(want, c)
		data, _ := Encode(c)
		g.Apply(&raft.Log{Type: raft.LogCommand, Data: data})
	}
	got, _ = g.View()
	if !reflect.DeepEqual(want, got) {
		t.Fatal("restored FSM diverged after more commands")
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte("{not json")))); err == nil {
		t.Fatal("corrupt snapshot accepted")
	}
}

func TestFSM_UndecodableEntryChangesNothing(t *testing.T) {
	f := New("t")
	res := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: []byte("garbage")}).(Result)
	if res.Err == "" {
		t.Fatal("garbage entry accepted")
	}
	if f.AppliedIndex() != 7 {
		t.Fatalf("applied index %d", f.AppliedIndex())
	}
}

func TestCommit_AnalyticsOnlyWithAcceptedBatches(t *testing.T) {
	s := NewState("t")
	Apply(s, Command{Kind: KindConfigure, Config: &Config{LogFormat: "combined", Retention: "1h"}})
	Apply(s, Command{Kind: KindAssign, Assign: &Assign{Partitions: 1, Moves: []Move{{Partition: 0, Owner: "n1"}}}})
	delta := func(n int) *analytics.Aggregate {
		a := analytics.NewAggregate()
		for i := 0; i < n; i++ {
			e := accesslog.Entry{Time: int64(1_700_000_000+i) * 1e9, Client: []byte("10.0.0.1"), Path: []byte("/"), Status: 200, Bytes: 10, Duration: -1}
			a.Add(&e)
		}
		a.AddMalformed()
		return a
	}
	bad := []BadRecord{{Partition: 0, Offset: 3, Reason: "bad timestamp", Line: "x"}}
	res := Apply(s, logged(Command{Kind: KindCommit, Commit: []Batch{
		{Node: "n1", Partition: 0, Epoch: 1, From: 0, Until: 4, Analytics: delta(3), Malformed: bad},
		{Node: "n1", Partition: 0, Epoch: 1, From: 0, Until: 4, Analytics: delta(3), Malformed: bad}, // duplicate
		{Node: "n2", Partition: 0, Epoch: 1, From: 4, Until: 6, Analytics: delta(1)},                 // not owner
	}}))
	if res.Rejected[0] != "" || res.Rejected[1] != "offset_mismatch" || res.Rejected[2] != "not_owner" {
		t.Fatalf("rejections %v", res.Rejected)
	}
	st := s.Analytics.Stats(analytics.Query{})
	if st.Requests != 3 || st.Malformed != 1 || st.Bytes != 30 || len(s.Malformed) != 1 {
		t.Errorf("requests %d malformed %d bytes %d sample %d; want 3, 1, 30, 1", st.Requests, st.Malformed, st.Bytes, len(s.Malformed))
	}
	if s.Config == nil || s.Analytics.Retention() != time.Hour {
		t.Errorf("config %+v retention %v", s.Config, s.Analytics.Retention())
	}
	if r := Apply(s, Command{Kind: KindConfigure, Config: &Config{LogFormat: "combined", Retention: "1s"}}); r.Err == "" {
		t.Error("a retention under a minute was accepted")
	}
	// The figures survive a snapshot.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	restored, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := restored.Analytics.Stats(analytics.Query{}); !reflect.DeepEqual(got, st) {
		t.Errorf("stats after restore differ")
	}
}

// TestCommit_LegacyJSONEqualsBinary applies the same commits to two states,
// one from the JSON entries older releases wrote and one from the binary
// form: the snapshots are byte for byte the same, and both went through
// the same bytes.
func TestCommit_LegacyJSONEqualsBinary(t *testing.T) {
	mk := func() *State {
		s := assigned(2, "n1")
		Apply(s, Command{Kind: KindConfigure, Config: &Config{LogFormat: "combined", Retention: "0s"}})
		return s
	}
	legacy, bin := mk(), mk()
	r := rand.New(rand.NewPCG(8, 9))
	from := map[int32]int64{}
	for round := 0; round < 40; round++ {
		var cmd Command
		cmd.Kind = KindCommit
		for p := int32(0); p < 2; p++ {
			a := analytics.NewAggregate()
			n := 1 + r.IntN(200)
			for i := 0; i < n; i++ {
				e := accesslog.Entry{Time: int64(1_700_000_000+r.IntN(600)) * 1e9, Client: []byte(fmt.Sprintf("10.0.%d.%d", p, r.IntN(50))),
					Path: []byte(fmt.Sprintf("/p%d", r.IntN(20))), Method: []byte("GET"), Status: 200 + 100*r.IntN(3), Bytes: int64(r.IntN(999)), Duration: int64(r.IntN(5000))}
				a.Add(&e)
			}
			b := Batch{Node: "n1", Partition: p, Epoch: 1, From: from[p], Until: from[p] + int64(n),
				Digest: Digest{Records: int64(n), Bytes: int64(n * 10), Sum: r.Uint64()}, Analytics: a,
				Detect: &detect.Delta{Partition: p, Watermark: int64(round), Buckets: map[string]*detect.Bucket{
					fmt.Sprintf("s|10.0.%d.%d", p, r.IntN(50)): {Level: r.IntN(9), Keys: []uint64{r.Uint64()}, Extra: &detect.Extra{Samples: []string{"GET /x"}}},
					fmt.Sprintf("s|10.0.%d.%d", p, r.IntN(50)): nil}}}
			if r.IntN(5) == 0 {
				b.Malformed = []BadRecord{{Partition: p, Offset: from[p], Reason: "bad status", Line: "junk \u00e9"}}
			}
			if r.IntN(7) == 0 {
				b.Detect.Alerts = []detect.Alert{{ID: fmt.Sprintf("a%d", round), Scenario: "http-probing", SourceIP: "10.0.0.1", Partition: p, Time: int64(round) * 1e9}}
			}
			if r.IntN(6) == 0 {
				b.From-- // rejected: neither form may apply any of it
			} else {
				from[p] = b.Until
			}
			cmd.Commit = append(cmd.Commit, b)
		}
		if round%2 == 1 {
			cmd.Kind, cmd.Restart = KindResults, round == 1
		}
		data, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[Kind]byte{KindCommit: binaryCommit3, KindResults: binaryResults3}[cmd.Kind]; data[0] != want {
			t.Fatalf("%s encoded as %q", cmd.Kind, data[:1])
		}
		dec, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := Encode(dec); !bytes.Equal(again, data) {
			t.Fatalf("round %d: a decoded command encodes to other bytes", round)
		}
		old, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(old, []byte(`"delta":{`)) {
			t.Fatalf("the JSON of a batch lost the name older logs use for its digest: %.200s", old)
		}
		fromJSON, err := Decode(old)
		if err != nil {
			t.Fatal(err)
		}
		if fromJSON.Kind != cmd.Kind || fromJSON.Restart != cmd.Restart || fromJSON.Commit[0].Analytics != nil {
			t.Fatalf("round %d: a JSON entry decodes to %s, restart %v", round, fromJSON.Kind, fromJSON.Restart)
		}
		r1, r2 := Apply(legacy, fromJSON), Apply(bin, dec)
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("round %d: results %v vs %v", round, r1, r2)
		}
		if res := Apply(mk(), cmd); res.Rejected[0] != "bad_batch" {
			t.Fatalf("a batch built in memory, not decoded, was applied: %v", res.Rejected)
		}
		// Truncated entries are refused, never half-read.
		if _, err := Decode(data[:len(data)/2]); err == nil {
			t.Fatal("truncated commit decoded")
		}
	}
	// JSON counts come in key order, the binary form's in insertion order:
	// the same figures, stored in another order.
	withoutAnalytics := func(s *State) []byte {
		var m map[string]json.RawMessage
		b, _ := json.Marshal(s)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "analytics")
		b, _ = json.Marshal(m)
		return b
	}
	if a, b := withoutAnalytics(legacy), withoutAnalytics(bin); !bytes.Equal(a, b) {
		t.Fatalf("states differ (%d vs %d bytes)", len(a), len(b))
	}
	q := analytics.Query{Top: -1}
	if a, b := legacy.Analytics.Stats(q), bin.Analytics.Stats(q); !reflect.DeepEqual(a, b) {
		t.Fatal("load figures differ")
	}
	if legacy.Analytics.Stats(analytics.Query{}).Requests == 0 || legacy.Book.NextSeq == 1 {
		t.Fatal("test applied nothing")
	}
}

// A query of the load figures holds the state's lock for one window at a
// time: Raft's applies go on between windows instead of waiting for the
// whole merge.
func TestStats_ApplyProceedsDuringAQuery(t *testing.T) {
	format, err := accesslog.Lookup("combined")
	if err != nil {
		t.Fatal(err)
	}
	folder := analytics.NewFolder(format)
	delta := func(minutes int) *analytics.Aggregate {
		a := analytics.NewAggregate()
		for m := 0; m < minutes; m++ {
			line := fmt.Sprintf(`10.0.0.%d - - [27/Nov/2026:10:%02d:00 +0000] "GET /p%d HTTP/1.1" 200 10 "-" "ua"`, m, m, m)
			if _, err := folder.Fold(a, []byte(line)); err != nil {
				t.Fatal(err)
			}
		}
		return a
	}
	f := New("t")
	entries := []Command{
		{Kind: KindAssign, Assign: &Assign{Partitions: 1, Moves: []Move{{Partition: 0, Owner: "n1"}}}},
		{Kind: KindCommit, Commit: []Batch{{Node: "n1", Partition: 0, Epoch: 1, From: 0, Until: 5, Analytics: delta(5)}}},
		{Kind: KindCommit, Commit: []Batch{{Node: "n1", Partition: 0, Epoch: 1, From: 5, Until: 10, Analytics: delta(5)}}},
	}
	for i, c := range entries[:2] {
		data, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
	}
	before := f.Stats(analytics.Query{})
	if len(before.Series) != 5 || before.Requests != 5 {
		t.Fatalf("%d windows, %d requests; want 5 and 5", len(before.Series), before.Requests)
	}
	last, err := Encode(entries[2])
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{})
	pauses := 0
	statsPause = func() {
		pauses++
		if pauses == 1 {
			go func() {
				f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: last})
				close(applied)
			}()
			select {
			case <-applied:
			case <-time.After(10 * time.Second):
				t.Error("an Apply waited for the whole stats query")
			}
		}
	}
	defer func() { statsPause = nil }()
	_ = f.Stats(analytics.Query{})
	// Once after each window's sums, once after its distinct clients.
	if pauses != 2*len(before.Series) {
		t.Errorf("the query released the lock %d times over %d windows, want twice a window", pauses, len(before.Series))
	}
	if got := f.Stats(analytics.Query{}).Requests; got != 10 {
		t.Errorf("requests after the apply: %d, want 10", got)
	}
}

// The cluster's settings change only by a newer version: a leader that
// proposes its own flags again (version 0, or the cluster's own version)
// changes nothing.
func TestApply_ConfigureOnlyWithANewerVersion(t *testing.T) {
	s := NewState("t")
	first := Apply(s, Command{Kind: KindConfigure, Config: &Config{SetBy: "n1", LogFormat: "combined", Retention: "1h", Allow: []string{"192.0.2.0/24"}}})
	if first.Err != "" || s.Config.Version != 1 {
		t.Fatalf("bootstrap: %q, version %d", first.Err, s.Config.Version)
	}
	for _, v := range []uint64{0, 1} {
		res := Apply(s, Command{Kind: KindConfigure, Config: &Config{Version: v, SetBy: "n2", LogFormat: "auto", Retention: "24h"}})
		if !strings.Contains(res.Err, ErrStaleConfig.Error()) {
			t.Errorf("version %d: %q, want refused as stale", v, res.Err)
		}
	}
	if s.Config.SetBy != "n1" || len(s.Config.Allow) != 1 || len(s.Book.Config.Allow) != 1 {
		t.Fatalf("a stale configure changed the cluster's: %+v", s.Config)
	}
	res := Apply(s, Command{Kind: KindConfigure, Config: &Config{Version: 2, SetBy: "admin", LogFormat: "auto", Retention: "24h"}})
	if res.Err != "" || s.Config.Version != 2 || len(s.Config.Allow) != 0 {
		t.Errorf("version 2: %q, %+v", res.Err, s.Config)
	}
}

func TestApply_RefusesAbsurdCommands(t *testing.T) {
	s := assigned(2, "a")
	for _, wide := range []string{"0.0.0.0/0", "::/0", "10.0.0.0/7", "::ffff:0.0.0.0/96"} {
		res := Apply(s, Command{Kind: KindDecisionAdd, Decision: &ManualDecision{Value: wide, Type: "ban", Duration: "1h", Now: 1}})
		if res.Err == "" || res.DecisionID != 0 {
			t.Errorf("decision_add %s: %+v, want refused", wide, res)
		}
	}
	if n := len(s.Book.Decisions); n != 0 {
		t.Fatalf("%d decisions after refusals", n)
	}
	if res := Apply(s, Command{Kind: KindDecisionAdd, Decision: &ManualDecision{Value: "10.0.0.0/8", Type: "ban", Duration: "1h", Now: 1}}); res.Err != "" {
		t.Fatalf("a /8 ban: %s", res.Err)
	}
	// A forged assign of billions of partitions allocates nothing.
	res := Apply(s, Command{Kind: KindAssign, Assign: &Assign{Partitions: 2_000_000_000}})
	if res.Err == "" || len(s.Partitions) != 2 {
		t.Fatalf("huge assign: %+v, %d partitions", res, len(s.Partitions))
	}
}

// A view of the state is the reader's own: Apply, extending a partition's
// commit history in place, never writes what a view holds (run with -race).
func TestView_HistoryIsACopy(t *testing.T) {
	f := New("t")
	data, _ := Encode(Command{Kind: KindAssign, Assign: &Assign{Partitions: 1, Moves: []Move{{Partition: 0, Owner: "n1"}}}})
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(0); i < 2000; i++ {
			b, _ := Encode(Command{Kind: KindCommit, Commit: []Batch{{Node: "n1", Partition: 0, Epoch: 1, From: i, Until: i + 1, Digest: Digest{Records: 1}}}})
			f.Apply(&raft.Log{Index: uint64(i + 2), Type: raft.LogCommand, Data: b})
		}
	}()
	var last int64
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		s, _ := f.View()
		if h := s.Partitions[0].History; len(h) > 0 {
			last = h[len(h)-1].Until // read while Apply may extend the run
		}
	}
	s, _ := f.View()
	if h := s.Partitions[0].History; len(h) != 1 || h[0].Until != 2000 || last > 2000 {
		t.Errorf("history %+v", h)
	}
}

func TestApply_ResetOffsetsReplaySkipAndRefusal(t *testing.T) {
	s := assigned(2, "n1")
	a := analytics.NewAggregate()
	e := accesslog.Entry{Time: 1_700_000_000e9, Client: []byte("10.0.0.1"), Path: []byte("/"), Status: 200, Bytes: 10, Duration: -1}
	a.Add(&e)
	if err := commit(s, Batch{Node: "n1", Partition: 0, Epoch: 1, From: 0, Until: 10, Digest: Digest{Records: 10, Sum: 7}, Analytics: a}); err != nil {
		t.Fatal(err)
	}
	if err := commit(s, Batch{Node: "n1", Partition: 1, Epoch: 1, From: 0, Until: 5, Digest: Digest{Records: 5}}); err != nil {
		t.Fatal(err)
	}
	// Some partitions back: refused.
	res := Apply(s, Command{Kind: KindResetOffsets, ResetOffsets: &ResetOffsets{Resets: []ResetBatch{{Partition: 0, Offset: 0}}}})
	if !strings.Contains(res.Err, "counts their records twice") || s.Partitions[0].Committed != 10 {
		t.Fatalf("partial back: %q, committed %d", res.Err, s.Partitions[0].Committed)
	}
	// A skip forward: recorded, epoch bumped, figures kept.
	res = Apply(s, Command{Kind: KindResetOffsets, ResetOffsets: &ResetOffsets{Resets: []ResetBatch{{Partition: 1, Offset: 50}}, By: "op", At: 1}})
	if res.Err != "" || s.Partitions[1].Committed != 50 || s.Partitions[1].Epoch != 2 || len(s.Partitions[1].Skipped) != 1 ||
		s.Partitions[1].Skipped[0] != (OffsetRange{From: 5, Until: 50}) || s.Analytics.Stats(analytics.Query{}).Requests != 1 {
		t.Fatalf("skip: %q %+v", res.Err, s.Partitions[1])
	}
	// The whole topic back: a replay clears what the records made.
	res = Apply(s, Command{Kind: KindResetOffsets, ResetOffsets: &ResetOffsets{Replay: true, By: "op", At: 2,
		Resets: []ResetBatch{{Partition: 0, Offset: 0}, {Partition: 1, Offset: 0}}}})
	if res.Err != "" {
		t.Fatal(res.Err)
	}
	p0 := s.Partitions[0]
	if p0.Committed != 0 || p0.Epoch != 2 || p0.Digest != (Digest{}) || len(p0.Resets) != 1 || !p0.Resets[0].Replay ||
		s.Analytics.Stats(analytics.Query{}).Requests != 0 {
		t.Fatalf("replay: %+v, requests %d", p0, s.Analytics.Stats(analytics.Query{}).Requests)
	}
	// The old owner's epoch is fenced.
	if err := commit(s, Batch{Node: "n1", Partition: 0, Epoch: 1, From: 0, Until: 1, Digest: Digest{Records: 1}}); !errors.Is(err, ErrFenced) {
		t.Errorf("a commit under the old epoch: %v, want fenced", err)
	}
}

func TestApply_AtLeastAndAtMostOnce(t *testing.T) {
	// at-least-once: results run ahead of the offsets; a restart repeats.
	s := assigned(1, "n1")
	res := func(from, until int64, restart bool) string {
		r := Apply(s, logged(Command{Kind: KindResults, Restart: restart, Commit: []Batch{{Node: "n1", Partition: 0, Epoch: 1, From: from, Until: until, Digest: Digest{Records: until - from}}}}))
		return r.Rejected[0]
	}
	off := func(o int64, sem string) string {
		return Apply(s, Command{Kind: KindOffsetCommit, OffsetCommit: &OffsetCommit{Node: "n1", Partition: 0, Epoch: 1, Offset: o, Semantics: sem}}).Err
	}
	if r := res(0, 10, true); r != "" {
		t.Fatal(r)
	}
	if r := res(10, 20, false); r != "" {
		t.Fatal(r)
	}
	if e := off(25, AtLeastOnce); e == "" {
		t.Error("an at-least-once offset past the processed one was accepted")
	}
	if e := off(10, AtLeastOnce); e != "" {
		t.Fatal(e)
	}
	// A new worker resumes from 10: records 10-20 are applied again.
	if r := res(10, 20, true); r != "" {
		t.Fatal(r)
	}
	p := s.Partitions[0]
	if p.Committed != 10 || p.Processed != 20 || p.Digest.Records != 30 {
		t.Fatalf("at-least-once: %+v", p)
	}
	if e := off(5, AtLeastOnce); e == "" {
		t.Error("an offset moved back")
	}

	// at-most-once: offsets first; a restart loses what was not processed.
	s = assigned(1, "n1")
	if e := off(10, AtMostOnce); e != "" {
		t.Fatal(e)
	}
	if r := res(0, 10, true); r != "" {
		t.Fatal(r) // the results of the batch whose offsets went first
	}
	if e := off(20, AtMostOnce); e != "" {
		t.Fatal(e)
	}
	// The worker died after committing 20; its successor starts at 20.
	if r := res(20, 30, true); r != "" {
		t.Fatal(r)
	}
	p = s.Partitions[0]
	if p.Committed != 20 || p.Processed != 30 || p.Digest.Records != 20 {
		t.Fatalf("at-most-once: %+v", p)
	}
	if len(p.History) == 0 || p.History[len(p.History)-1].Until != 20 {
		t.Errorf("history follows the offset commits: %+v", p.History)
	}
}
