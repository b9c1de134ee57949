package shipper

import (
	"context"
	"fmt"
	"github.com/wardenhq/warden/detect"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const topic = "logs"

// testKafka is an in-process kfake broker with the topic.
func testKafka(t *testing.T, partitions int32) []kgo.Opt {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
}

func producer(t *testing.T, opts []kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(1000))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// running is a Follower in its goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func startFollower(t *testing.T, cfg FollowConfig, cl Producer) *running {
	t.Helper()
	f, err := NewFollower(cfg, cl)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("follower: %v", err)
		}
		r.done <- nil
	case <-time.After(30 * time.Second):
		t.Error("follower did not stop")
	}
}

func followConfig(t *testing.T, opts []kgo.Opt, patterns ...string) FollowConfig {
	cfg := DefaultFollowConfig()
	cfg.Patterns, cfg.Topic, cfg.ShipID, cfg.ClientOpts = patterns, topic, "test", opts
	cfg.PollInterval, cfg.Settle, cfg.PartialTimeout = 20*time.Millisecond, 0, 300*time.Millisecond
	cfg.Logger = testLogger(t)
	return cfg
}

// readAll reads every record of the topic.
func readAll(t *testing.T, opts []kgo.Opt) []*kgo.Record {
	t.Helper()
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []*kgo.Record
	ends.Each(func(o kadm.ListedOffset) {
		rs, err := fetchRange(context.Background(), opts, topic, o.Partition, 0, o.Offset)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rs...)
	})
	return out
}

func values(rs []*kgo.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Value))
	}
	sort.Strings(out)
	return out
}

// waitValues waits until the topic holds exactly want (as a multiset).
func waitValues(t *testing.T, opts []kgo.Opt, want []string) {
	t.Helper()
	want = append([]string(nil), want...)
	sort.Strings(want)
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got = values(readAll(t, opts))
		if len(got) >= len(want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	got = values(readAll(t, opts))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("topic holds %d lines, want exactly %d:\n%s", len(got), len(want), diff(got, want))
	}
}

func diff(got, want []string) string {
	count := map[string]int{}
	for _, g := range got {
		count[g]++
	}
	for _, w := range want {
		count[w]--
	}
	var b strings.Builder
	for k, n := range count {
		switch {
		case n > 0:
			fmt.Fprintf(&b, "  %d extra: %s\n", n, k)
		case n < 0:
			fmt.Fprintf(&b, "  %d missing: %s\n", -n, k)
		}
	}
	return b.String()
}

// writer appends numbered access-log lines to a file.
type writer struct {
	t     *testing.T
	path  string
	f     *os.File
	n     int
	lines []string
	tag   string
}

func newWriter(t *testing.T, path, tag string) *writer {
	w := &writer{t: t, path: path, tag: tag}
	w.reopen()
	return w
}

func (w *writer) reopen() {
	if w.f != nil {
		w.f.Close()
	}
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func (w *writer) line() string {
	w.n++
	return fmt.Sprintf(`10.0.%d.%d - - [02/Nov/2026:10:00:00 +0000] "GET /%s/%d HTTP/1.1" 200 5 "-" "test"`, w.n%7, w.n%250, w.tag, w.n)
}

func (w *writer) write(n int) {
	var b strings.Builder
	for i := 0; i < n; i++ {
		l := w.line()
		w.lines = append(w.lines, l)
		b.WriteString(l + "\n")
	}
	if _, err := w.f.WriteString(b.String()); err != nil {
		w.t.Fatal(err)
	}
}

func TestFollow_LinesOnceWithHeaders(t *testing.T) {
	opts := testKafka(t, 3)
	dir := t.TempDir()
	w := newWriter(t, filepath.Join(dir, "access.log"), "a")
	w.write(50)
	r := startFollower(t, followConfig(t, opts, filepath.Join(dir, "*.log")), producer(t, opts))
	w.write(50)
	waitValues(t, opts, w.lines)
	for _, rec := range readAll(t, opts) {
		s, ours, err := parseShipped(rec, "test")
		if !ours || err != nil {
			t.Fatalf("record without our headers: %v %v", ours, err)
		}
		if client, _, _ := strings.Cut(string(rec.Value), " "); string(rec.Key) != detect.PartitionKey(client) {
			t.Fatalf("key %q for %q", rec.Key, rec.Value)
		}
		if s.Next-s.Start != int64(len(rec.Value))+1 {
			t.Fatalf("offsets %d..%d for a line of %d bytes", s.Start, s.Next, len(rec.Value))
		}
	}
	r.stop(t)

	// A restart ships only what was written meanwhile.
	w.write(30)
	startFollower(t, followConfig(t, opts, filepath.Join(dir, "*.log")), producer(t, opts))
	waitValues(t, opts, w.lines)
}

func TestFollow_RotationRenameAndCopytruncate(t *testing.T) {
	opts := testKafka(t, 4)
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	w := newWriter(t, log, "r")
	w.write(20)
	pattern := filepath.Join(dir, "access.log*")
	r := startFollower(t, followConfig(t, opts, pattern), producer(t, opts))
	waitValues(t, opts, w.lines)

	// Rename and create, the server writing to the old file a little longer.
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	w.write(10)
	w.reopen()
	w.write(10)
	waitValues(t, opts, w.lines)

	// copytruncate: the copy holds lines the follower may not have read.
	w.write(25)
	copyTruncate(t, log, log+".2")
	w.write(15)
	waitValues(t, opts, w.lines)

	// Both again while the follower is stopped.
	r.stop(t)
	w.write(5)
	if err := os.Rename(log+".2", log+".3"); err != nil {
		t.Fatal(err)
	}
	copyTruncate(t, log, log+".2")
	w.write(7)
	if err := os.Rename(log, log+".4"); err != nil {
		t.Fatal(err)
	}
	w.write(3)
	w.reopen()
	w.write(9)
	startFollower(t, followConfig(t, opts, pattern), producer(t, opts))
	waitValues(t, opts, w.lines)
}

func copyTruncate(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(from, 0); err != nil {
		t.Fatal(err)
	}
}

func TestFollow_PartialLineHeldThenFlushed(t *testing.T) {
	opts := testKafka(t, 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := followConfig(t, opts, path)
	cfg.PartialTimeout = 2 * time.Second
	startFollower(t, cfg, producer(t, opts))
	full := `192.0.2.1 - - [02/Nov/2026:10:00:00 +0000] "GET /one HTTP/1.1" 200 5 "-" "x"`
	f.WriteString(full[:30])
	time.Sleep(500 * time.Millisecond)
	f.WriteString(full[30:] + "\n" + "192.0.2.2 - - [02/Nov")
	waitValues(t, opts, []string{full})
	// The cut line goes after --partial-timeout; what follows is a line of its own.
	time.Sleep(2500 * time.Millisecond)
	f.WriteString(`/2026:10:00:00 +0000] "GET /two HTTP/1.1" 200 5 "-" "x"` + "\n")
	waitValues(t, opts, []string{full, "192.0.2.2 - - [02/Nov", `/2026:10:00:00 +0000] "GET /two HTTP/1.1" 200 5 "-" "x"`})
}

func TestFollow_FilesAppearingLaterAndGlobs(t *testing.T) {
	opts := testKafka(t, 2)
	dir := t.TempDir()
	startFollower(t, followConfig(t, opts, filepath.Join(dir, "*.log"), filepath.Join(dir, "later.txt")), producer(t, opts))
	time.Sleep(100 * time.Millisecond)
	a := newWriter(t, filepath.Join(dir, "a.log"), "a")
	b := newWriter(t, filepath.Join(dir, "later.txt"), "b")
	a.write(10)
	b.write(10)
	os.WriteFile(filepath.Join(dir, "old.log.gz"), []byte{0x1f, 0x8b, 8, 0, 0}, 0o644)
	waitValues(t, opts, append(append([]string(nil), a.lines...), b.lines...))
}

// lossy forwards records to a real client until crash, then plays a
// process that dies with records in flight: each later record is lost,
// or reaches Kafka without its acknowledgement reaching the shipper.
type lossy struct {
	cl      *kgo.Client
	mu      sync.Mutex
	crashed bool
	rnd     *rand.Rand
	// after this many records, the "crash" begins
	budget int
	// fate, if set, is every record's after the crash (1: in Kafka, the
	// acknowledgement lost)
	fate int
}

func (l *lossy) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	l.mu.Lock()
	l.budget--
	if l.budget <= 0 {
		l.crashed = true
	}
	crashed := l.crashed
	fate := l.rnd.IntN(3)
	if l.fate != 0 {
		fate = l.fate
	}
	l.mu.Unlock()
	switch {
	case !crashed:
		l.cl.Produce(ctx, r, promise)
	case fate == 0: // lost on the way
	case fate == 1: // in Kafka, the acknowledgement lost
		l.cl.Produce(context.Background(), r, nil)
	default: // acknowledged just before the crash
		l.cl.Produce(ctx, r, promise)
	}
}

func (l *lossy) Flush(ctx context.Context) error { return l.cl.Flush(ctx) }
func (l *lossy) BufferedProduceRecords() int64   { return l.cl.BufferedProduceRecords() }

// TestFollow_CrashesWithRecordsInFlightAreExactlyOnce plays many crashes
// in which the last records sent are lost, or arrive without their
// acknowledgement, while the file rotates; each restart must send exactly
// the lines Kafka does not hold.
func TestFollow_CrashesWithRecordsInFlightAreExactlyOnce(t *testing.T) {
	opts := testKafka(t, 5)
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	w := newWriter(t, log, "c")
	other := newWriter(t, filepath.Join(dir, "other.log"), "o")
	pattern := filepath.Join(dir, "*.log*")
	rnd := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 12; round++ {
		w.write(40 + rnd.IntN(80))
		other.write(rnd.IntN(30))
		switch round % 4 {
		case 1:
			os.Rename(log, fmt.Sprintf("%s.%d", log, round))
			w.write(5)
			w.reopen()
		case 3:
			copyTruncate(t, log, fmt.Sprintf("%s.%d", log, round))
		}
		w.write(rnd.IntN(40))
		l := &lossy{cl: producer(t, opts), rnd: rand.New(rand.NewPCG(uint64(round), 9)), budget: 30 + rnd.IntN(150)}
		cfg := followConfig(t, opts, pattern)
		cfg.StateFile = filepath.Join(dir, "state") // a bound that must never hide a record that matters
		f, err := NewFollower(cfg, l)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = f.Run(ctx); close(done) }()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			l.mu.Lock()
			c := l.crashed
			l.mu.Unlock()
			if c {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rnd.IntN(100)) * time.Millisecond)
		cancel()
		<-done
		l.cl.Flush(context.Background())
	}
	cfg := followConfig(t, opts, pattern)
	cfg.StateFile = filepath.Join(dir, "state")
	startFollower(t, cfg, producer(t, opts))
	waitValues(t, opts, append(append([]string(nil), w.lines...), other.lines...))
}

// TestFollow_TwoShipIDsAndOtherWritersShareATopic: each ship reads back
// only its own records, among another ship's and a plain producer's.
func TestFollow_TwoShipIDsAndOtherWritersShareATopic(t *testing.T) {
	opts := testKafka(t, 3)
	dir := t.TempDir()
	a := newWriter(t, filepath.Join(dir, "a.log"), "a")
	b := newWriter(t, filepath.Join(dir, "b.log"), "b")
	cfgA := followConfig(t, opts, filepath.Join(dir, "a.log"))
	cfgB := followConfig(t, opts, filepath.Join(dir, "b.log"))
	cfgA.ShipID, cfgB.ShipID = "host-a", "host-b"
	plain := producer(t, opts)
	var others []string
	for round := 0; round < 3; round++ {
		a.write(40)
		b.write(25)
		ra := startFollower(t, cfgA, producer(t, opts))
		rb := startFollower(t, cfgB, producer(t, opts))
		for i := 0; i < 20; i++ {
			v := fmt.Sprintf("other writer %d-%d", round, i)
			others = append(others, v)
			if err := plain.ProduceSync(context.Background(), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		waitValues(t, opts, append(append(append([]string(nil), a.lines...), b.lines...), others...))
		ra.stop(t)
		rb.stop(t)
	}
}

func TestHeaders_RoundTrip(t *testing.T) {
	id := Identity{Dev: 2049, Ino: 1234567, Len: 1024, Hash: 0xdeadbeef}
	if got, err := ParseIdentity(id.String()); err != nil || got != id {
		t.Fatalf("identity round trip: %v %v", got, err)
	}
	ms := []fileMark{{id, 4096}, {Identity{Dev: 1, Ino: 2, Len: 10, Hash: 3}, 0}}
	got, err := decodeMarks(encodeMarks(ms))
	if err != nil || len(got) != 2 || got[0] != ms[0] || got[1] != ms[1] {
		t.Fatalf("marks round trip: %v %v", got, err)
	}
	fl := map[int32]int64{0: -1, 3: 77}
	if g, err := decodeFloors(encodeFloors(fl)); err != nil || len(g) != 2 || g[3] != 77 || g[0] != -1 {
		t.Fatalf("floors round trip: %v %v", g, err)
	}
	for _, bad := range []string{"", "1:2:3", "a:b:c:d", "1:2:9999:ff", "1:2:3:zz"} {
		if _, err := ParseIdentity(bad); err == nil {
			t.Errorf("ParseIdentity(%q) accepted", bad)
		}
	}
}

func FuzzParseShipped(f *testing.F) {
	f.Add("test", "3", "1", "1:2:10:ff", "0", "10", "1:2:10:ff@5", "0:-1 1:4")
	f.Add("test", "x", "", "", "", "", "@", "::")
	f.Fuzz(func(t *testing.T, id, seq, acked, file, off, next, marks, floors string) {
		r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderShipID, Value: []byte(id)}, {Key: HeaderSeq, Value: []byte(seq)},
			{Key: HeaderAcked, Value: []byte(acked)}, {Key: HeaderFile, Value: []byte(file)}, {Key: HeaderOffset, Value: []byte(off)},
			{Key: HeaderNext, Value: []byte(next)}, {Key: HeaderFiles, Value: []byte(marks)}, {Key: HeaderFloors, Value: []byte(floors)}}}
		s, ours, err := parseShipped(r, "test")
		if ours && err == nil && (s.Next <= s.Start || s.Acked >= s.Seq) {
			t.Fatalf("accepted inconsistent headers: %+v", s)
		}
	})
}

// TestFollow_StateFileBoundsTheReadBack: on a topic full of other writers'
// records, the state file keeps the read-back short; the position still
// comes from Kafka (a state file from another topic is ignored).
func TestFollow_StateFileBoundsTheReadBack(t *testing.T) {
	opts := testKafka(t, 2)
	dir := t.TempDir()
	plain := producer(t, opts)
	others := func(n int) []string {
		var out []string
		for i := 0; i < n; i++ {
			v := fmt.Sprintf("other %d", i)
			out = append(out, v)
			plain.Produce(context.Background(), &kgo.Record{Value: []byte(v)}, nil)
		}
		if err := plain.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		return out
	}
	var all []string
	all = append(all, others(3000)...)
	w := newWriter(t, filepath.Join(dir, "access.log"), "s")
	w.write(20)
	cfg := followConfig(t, opts, filepath.Join(dir, "access.log"))
	cfg.StateFile = filepath.Join(dir, "ship.state")
	r := startFollower(t, cfg, producer(t, opts))
	waitValues(t, opts, append(append([]string(nil), all...), w.lines...))
	r.stop(t)
	h, err := loadHint(cfg.StateFile)
	if err != nil || h == nil || h.ShipID != "test" || len(h.Floors) != 2 {
		t.Fatalf("state file: %+v %v", h, err)
	}
	all = append(all, others(3000)...)
	w.write(10)
	rec, err := readBack(context.Background(), opts, topic, "test", h)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.hinted || rec.scanned > 3100 {
		t.Fatalf("read back %d records (bounded: %v), want about the 3000 written since", rec.scanned, rec.hinted)
	}
	full, err := readBack(context.Background(), opts, topic, "test", &hint{ShipID: "test", Topic: topic, TopicID: "another", Floors: h.Floors})
	if err != nil || full.hinted || full.acked != rec.acked || len(full.lines) != len(rec.lines) {
		t.Fatalf("a foreign state file changed the read-back: %+v %v", full, err)
	}
	startFollower(t, cfg, producer(t, opts))
	waitValues(t, opts, append(append([]string(nil), all...), w.lines...))
}

// TestFollow_CopytruncateAfterLinesWrittenPastTheCopy: the server writes
// lines after logrotate's copy and before its truncation, and the follower
// reads them from the original: the copy is shorter than what was read,
// and nothing may be shipped twice, now or after a restart.
func TestFollow_CopytruncateAfterLinesWrittenPastTheCopy(t *testing.T) {
	opts := testKafka(t, 3)
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	w := newWriter(t, log, "p")
	pattern := filepath.Join(dir, "access.log*")
	r := startFollower(t, followConfig(t, opts, pattern), producer(t, opts))
	w.write(5) // under FingerprintBytes: the file is all its own fingerprint
	waitValues(t, opts, w.lines)
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log+".1", b, 0o644); err != nil {
		t.Fatal(err)
	}
	w.write(3) // after the copy, before the truncation
	waitValues(t, opts, w.lines)
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	w.write(7)
	waitValues(t, opts, w.lines)
	r.stop(t)
	w.write(3)
	startFollower(t, followConfig(t, opts, pattern), producer(t, opts))
	waitValues(t, opts, w.lines)
}

// TestFollow_EarlierRunCutLinesElsewhere: lines an earlier run sent in
// pieces (a smaller --max-line), in Kafka without their acknowledgement,
// are recognised by a run that cuts lines differently: nothing twice.
func TestFollow_EarlierRunCutLinesElsewhere(t *testing.T) {
	opts := testKafka(t, 2)
	dir := t.TempDir()
	w := newWriter(t, filepath.Join(dir, "access.log"), "m")
	w.write(30)
	cfg := followConfig(t, opts, filepath.Join(dir, "access.log"))
	cfg.MaxLine = 50
	l := &lossy{cl: producer(t, opts), rnd: rand.New(rand.NewPCG(3, 3)), budget: 10, fate: 1}
	f, err := NewFollower(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.Run(ctx); close(done) }()
	var want []string
	for _, line := range w.lines {
		want = append(want, line[:50], line[50:])
	}
	waitValues(t, opts, want)
	cancel()
	<-done
	w.write(10)
	want = append(want, w.lines[30:]...)
	startFollower(t, followConfig(t, opts, filepath.Join(dir, "access.log")), producer(t, opts))
	waitValues(t, opts, want)
}
