package e2e

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logWriter plays a web server and logrotate: it appends unique lines to
// access.log and rotates it, alternately by rename-and-create (writing to
// the renamed file a little longer, as a server does until it reopens its
// logs) and by copytruncate. Each file's lines carry its generation, so the
// order of one file's lines can be checked in the topic.
type logWriter struct {
	t    *testing.T
	dir  string
	mu   sync.Mutex
	f    *os.File
	gen  int
	seq  int
	all  []string
	rnd  *rand.Rand
	rots int
}

func newLogWriter(t *testing.T, dir string, seed uint64) *logWriter {
	w := &logWriter{t: t, dir: dir, gen: 1, rnd: rand.New(rand.NewPCG(seed, 7))}
	w.open()
	return w
}

func (w *logWriter) path() string { return filepath.Join(w.dir, "access.log") }

func (w *logWriter) open() {
	f, err := os.OpenFile(w.path(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

// write appends n lines to the current file.
func (w *logWriter) write(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for i := 0; i < n; i++ {
		w.seq++
		l := fmt.Sprintf(`198.51.%d.%d - - [02/Nov/2026:10:%02d:%02d +0000] "GET /g%d/s%d HTTP/1.1" 200 %d "-" "writer"`,
			w.seq%3, w.seq%97, (w.seq/60)%60, w.seq%60, w.gen, w.seq, w.seq%5000)
		w.all = append(w.all, l)
		b.WriteString(l + "\n")
	}
	if _, err := w.f.WriteString(b.String()); err != nil {
		w.t.Error(err)
	}
}

// rotate rotates access.log, by rename-and-create or by copytruncate.
func (w *logWriter) rotate() {
	w.rots++
	old := filepath.Join(w.dir, fmt.Sprintf("access.log.%d", w.gen))
	if w.rots%2 == 1 {
		if err := os.Rename(w.path(), old); err != nil {
			w.t.Error(err)
		}
		w.write(1 + w.rnd.IntN(20)) // still to the renamed file
		w.mu.Lock()
		w.f.Close()
		w.gen++
		w.open()
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	b, err := os.ReadFile(w.path())
	if err == nil {
		err = os.WriteFile(old, b, 0o644)
	}
	if err == nil {
		err = w.f.Truncate(0)
	}
	if err != nil {
		w.t.Error(err)
	}
	w.gen++
}

var genSeq = regexp.MustCompile(`"GET /g(\d+)/s(\d+) `)

// TestProcesses_ShipFollow_SIGKILLedRepeatedlyWhileFilesRotate: `ship
// --follow` is SIGKILLed five times while a writer appends and rotates the
// log (rename-and-create and copytruncate, also while ship is down); at
// the end the topic holds every line exactly once (the same set, the same
// count), and in each partition the lines of each file are in the order
// they were written.
func TestProcesses_ShipFollow_SIGKILLedRepeatedlyWhileFilesRotate(t *testing.T) {
	c := newProcClusterIdle(t, 0, 4, nil)
	logs := filepath.Join(c.dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	w := newLogWriter(t, logs, 1)
	w.write(500)
	args := []string{"ship", "--follow", filepath.Join(logs, "access.log*"), "--brokers", c.broker, "--topic", c.topic,
		"--ship-id", "kill-test", "--poll-interval", "50ms", "--restart-settle", "500ms", "--buffer-lines", "2000"}
	ship := startProc(t, c.dir, "ship", args...)
	defer func() {
		if ship.alive() {
			ship.kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(c.dir, "ship.log"))
			t.Logf("---- ship.log (tail) ----\n%s", tail(b, 6000))
		}
	}()

	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			w.write(5 + w.rnd.IntN(15))
			if time.Since(last) > 700*time.Millisecond {
				w.rotate()
				last = time.Now()
			}
		}
	}()
	rnd := rand.New(rand.NewPCG(5, 5))
	const kills = 5
	for i := 0; i < kills; i++ {
		time.Sleep(time.Duration(900+rnd.IntN(900)) * time.Millisecond)
		ship.kill()
		if rnd.IntN(2) == 0 {
			time.Sleep(time.Duration(rnd.IntN(800)) * time.Millisecond) // rotations happen while it is down
		}
		ship = startProc(t, c.dir, "ship", args...)
	}
	time.Sleep(time.Second)
	close(stop)
	<-writerDone
	w.write(100)
	want := len(w.all)

	waitFor(t, 60*time.Second, fmt.Sprintf("the topic holding the %d lines written", want), func() bool {
		return topicCount(t, c.broker, c.topic) >= int64(want)
	})
	time.Sleep(2 * time.Second) // anything more would be a duplicate
	_ = ship.cmd.Process.Signal(syscall.SIGTERM)
	<-ship.done

	recs := readTopic(t, c.broker, c.topic)
	count := map[string]int{}
	total := 0
	for p, rs := range recs {
		last := map[int]int{} // generation -> last sequence seen in this partition
		for _, r := range rs {
			v := string(r.Value)
			count[v]++
			total++
			m := genSeq.FindStringSubmatch(v)
			if m == nil {
				t.Fatalf("unexpected record %q", v)
			}
			gen, _ := strconv.Atoi(m[1])
			seq, _ := strconv.Atoi(m[2])
			if seq <= last[gen] {
				t.Errorf("partition %d: line s%d of file g%d after s%d: out of order", p, seq, gen, last[gen])
			}
			last[gen] = seq
		}
	}
	var missing, dup []string
	for _, l := range w.all {
		switch count[l] {
		case 0:
			missing = append(missing, l)
		case 1:
		default:
			dup = append(dup, l)
		}
		delete(count, l)
	}
	if len(missing) > 0 || len(dup) > 0 || len(count) > 0 || total != want {
		sort.Strings(missing)
		t.Fatalf("topic holds %d records for %d lines written: %d missing (first %q), %d duplicated (first %q), %d unknown",
			total, want, len(missing), first(missing), len(dup), first(dup), len(count))
	}
	log, _ := os.ReadFile(filepath.Join(c.dir, "ship.log"))
	known := 0
	for _, m := range regexp.MustCompile(`known_in_kafka_beyond=(\d+)`).FindAllStringSubmatch(string(log), -1) {
		n, _ := strconv.Atoi(m[1])
		known += n
	}
	t.Logf("%d lines written over %d rotations and %d SIGKILLs, each once in the topic; %d starts resumed from Kafka, finding %d lines beyond the files' watermarks already there",
		want, w.rots, kills, strings.Count(string(log), "position read back from Kafka"), known)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// topicCount is the number of records in topic.
func topicCount(t *testing.T, broker, topic string) int64 {
	t.Helper()
	var n int64
	for _, rs := range readTopic(t, broker, topic) {
		n += int64(len(rs))
	}
	return n
}

// metric reads one sample of a Prometheus text page.
func metric(url, name string) (float64, bool) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	return findMetric(resp.Body, name)
}

func findMetric(r io.Reader, name string) (float64, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestProcesses_ShipFollow_BackpressureWhileKafkaIsDown: with the broker
// stopped, ship --follow fills its buffer of unacknowledged lines, then
// stops reading (never dropping) and reports the lag in bytes of the file;
// SIGTERM still stops it within --timeout; restarted once the broker is
// back, it ships every line exactly once.
func TestProcesses_ShipFollow_BackpressureWhileKafkaIsDown(t *testing.T) {
	c := newProcClusterIdle(t, 0, 2, nil)
	logs := filepath.Join(c.dir, "logs")
	os.MkdirAll(logs, 0o755)
	w := newLogWriter(t, logs, 2)
	w.write(100)
	metrics := freeAddr(t)
	args := []string{"ship", "--follow", filepath.Join(logs, "access.log"), "--brokers", c.broker, "--topic", c.topic,
		"--ship-id", "bp", "--poll-interval", "50ms", "--buffer-lines", "200", "--metrics-addr", metrics, "--timeout", "2s"}
	ship := startProc(t, c.dir, "ship", args...)
	defer func() {
		if ship.alive() {
			ship.kill()
		}
	}()
	waitFor(t, 20*time.Second, "the first lines shipped", func() bool { return topicCount(t, c.broker, c.topic) == 100 })

	// The broker goes away (a clean stop keeps its data); lines keep coming.
	_ = c.bproc.cmd.Process.Signal(syscall.SIGTERM)
	<-c.bproc.done
	for i := 0; i < 30; i++ {
		w.write(100)
	}
	url := "http://" + metrics + "/metrics"
	waitFor(t, 20*time.Second, "backpressure reported with the file's lag", func() bool {
		bp, _ := metric(url, "warden_ship_backpressure")
		lag, _ := metric(url, "warden_ship_lag_bytes")
		buffered, _ := metric(url, "warden_ship_buffered_records")
		return bp == 1 && lag > 0 && buffered <= 201 // franz-go takes one record past its limit
	})
	lag, _ := metric(url, "warden_ship_lag_bytes")
	if fi, _ := os.Stat(w.path()); lag <= 0 || lag > float64(fi.Size()) {
		t.Fatalf("lag %v bytes for a file of %d", lag, fi.Size())
	}
	if !ship.alive() {
		t.Fatal("ship exited while Kafka was down")
	}
	resp, err := httpClient.Get("http://" + metrics + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()

	// A stop while reading waits for Kafka ends within --timeout; the
	// lines not acknowledged are left to the next start.
	_ = ship.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ship.done:
	case <-time.After(15 * time.Second):
		t.Fatal("ship did not stop on SIGTERM while Kafka was down")
	}
	if code := ship.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("ship exited %d on SIGTERM", code)
	}
	w.write(100)

	c.startBroker() // on the same address and data dir, once it listens
	ship = startProc(t, c.dir, "ship", args...)
	want := int64(len(w.all))
	waitFor(t, 60*time.Second, "every line shipped once Kafka is back", func() bool { return topicCount(t, c.broker, c.topic) >= want })
	time.Sleep(time.Second)
	if n := topicCount(t, c.broker, c.topic); n != want {
		t.Fatalf("topic holds %d records, want %d", n, want)
	}
	waitFor(t, 10*time.Second, "lag back to zero", func() bool {
		lag, ok := metric(url, "warden_ship_lag_bytes")
		bp, _ := metric(url, "warden_ship_backpressure")
		return ok && lag == 0 && bp == 0
	})
}
