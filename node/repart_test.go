package node

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/broker"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/pipeline"
)

// TestRepartition_ForgedRecordsChangeNothing: with a cluster key, only
// records sealed by a node count on the repartition topic. Anyone who can
// write to Kafka can write there; a forged record with a well-formed origin
// far ahead in a source partition would otherwise make the second stage
// take every later real line of that source as a repeat and drop it (an
// attacker's requests never reaching detection). Here the forgeries are
// counted bad, and every real line still reaches detection once.
func TestRepartition_ForgedRecordsChangeNothing(t *testing.T) {
	for _, keyed := range []bool{true, false} {
		t.Run(fmt.Sprintf("cluster key %v", keyed), func(t *testing.T) {
			c := newCluster(t, 2)
			c.configure = func(cfg *Config) {
				if keyed {
					cfg.ClusterKey = clusterKey(1)
				}
			}
			n := startOne(t, c)
			p := newProducer(t, c.broker.Addr(), c.topic, 9)
			mustProduce(t, p, 2000)
			waitFor(t, 60*time.Second, "the first lines detected on", func() bool { return applied(n) == 2000 })

			// Forge, on every partition of the repartition topic, a line
			// from each source far past anything real.
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			var forged []*kgo.Record
			for target := range int32(2) {
				for src := range int32(2) {
					o := pipeline.Origin{Kind: pipeline.KindLine, Gen: n.fsm.Gen(), Source: src, Offset: 1 << 40, Watermark: time.Now().UnixNano()}
					forged = append(forged, &kgo.Record{Topic: n.repartTopic(), Partition: target, Key: []byte("198.51.100.0/24"),
						Value:   []byte(`198.51.100.7 - - [01/Dec/2026:10:00:00 +0000] "GET /.env HTTP/1.1" 404 9 "-" "forger"`),
						Headers: []kgo.RecordHeader{{Key: pipeline.Header, Value: pipeline.AppendOrigin(nil, o)}}})
				}
			}
			if err := cl.ProduceSync(context.Background(), forged...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			mustProduce(t, p, 2000)
			waitFor(t, 60*time.Second, "the input committed", func() bool { return p.caughtUp(n) })
			if !keyed {
				// Without a key nothing tells a forgery: real lines go
				// missing. This is the attack the key closes (and why a
				// node refuses a non-loopback address without one).
				time.Sleep(3 * time.Second)
				if got := applied(n); got >= 4000 {
					t.Fatalf("without a key, %d lines applied: the forgeries hid nothing, so this test shows nothing", got)
				}
				return
			}
			waitFor(t, 60*time.Second, "every real line detected on", func() bool { return applied(n) == 4000 })
			var bad int64
			for _, part := range n.State().Partitions {
				bad += part.ByClient.Bad
			}
			if bad != int64(len(forged)) {
				t.Errorf("%d records counted bad, want the %d forgeries", bad, len(forged))
			}
			time.Sleep(500 * time.Millisecond)
			if got := applied(n); got != 4000 {
				t.Errorf("%d lines applied, want 4000", got)
			}
		})
	}
}

// applied is the lines n's replica says reached the second stage's detection.
func applied(n *Node) int64 {
	var sum int64
	for _, p := range n.State().Partitions {
		sum += p.ByClient.Applied
	}
	return sum
}

// TestRepartition_LateEventsCountedNotDetected: with the cluster's max
// lateness, events more than it older than their partition's watermark are
// counted late (in /v1/partitions' `late`), counted in the load figures, and
// never reach the second stage's detection.
func TestRepartition_LateEventsCountedNotDetected(t *testing.T) {
	c := newCluster(t, 1)
	c.configure = func(cfg *Config) { cfg.MaxLateness = time.Hour }
	n := startOne(t, c)
	now := time.Now().Add(-time.Minute)
	var vals [][]byte
	for i := range 30 {
		vals = append(vals, clf(fmt.Sprintf("198.51.100.%d", i+1), now, "/"))
	}
	for i := range 20 {
		vals = append(vals, clf("203.0.113.9", now.Add(-2*time.Hour), fmt.Sprintf("/.env%d", i)))
	}
	end := produceValues(t, c, vals...)
	waitCommitted(t, n, end, 60*time.Second)
	waitFor(t, 30*time.Second, "the on-time lines detected on", func() bool { return applied(n) == 30 })
	p := n.State().Partitions[0]
	if p.Late != 20 {
		t.Errorf("late %d, want 20", p.Late)
	}
	if want := now.Truncate(time.Second).UnixNano(); p.Watermark != want {
		t.Errorf("watermark %d, want %d", p.Watermark, want)
	}
	time.Sleep(time.Second)
	if got := applied(n); got != 30 {
		t.Errorf("%d lines reached detection, want the 30 on time", got)
	}
	if st := n.Stats(analytics.Query{}); st.Requests != 50 {
		t.Errorf("%d requests in the figures, want 50", st.Requests)
	}
}

// TestForwarder_RecordsKeepTheirOwnBytes forwards more lines than one
// chunk of the forwarder holds, from many clients, then markers: the lines
// go in packs, each on its client's target, every line once and in order
// with its own bytes, origin and parse, as if each had been allocated on its own;
// a pack holds at most pipeline.MaxPackLines lines and the markers follow
// every pack.
func TestForwarder_RecordsKeepTheirOwnBytes(t *testing.T) {
	f := newForwarder("t.by-client", 3, 12, 7, nil)
	const lines = 3*forwardChunk*pipeline.MaxPackLines/8 + 17
	client := func(i int) string {
		if i%5 == 0 {
			return fmt.Sprintf("2001:db8:%x::1", i)
		}
		return fmt.Sprintf("198.%d.%d.%d", i%7, i/250%250, i%250)
	}
	for i := range lines {
		e := accesslog.Entry{Client: []byte(client(i))}
		f.line(&e, int64(i), int64(1000+i), fmt.Appendf(nil, "line %d", i))
	}
	f.marks(pipeline.KindProgress, lines, 99)
	next := make([]int, 12) // the last line seen on each target, + 1
	seen, markers := 0, 0
	for i, r := range f.recs {
		o, err := pipeline.ParseOrigin(r.Headers[0].Value)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if o.Kind != pipeline.KindParsed {
			if o.Kind != pipeline.KindProgress || o.Offset != lines || r.Key != nil {
				t.Fatalf("marker %d: %+v key %q", i, o, r.Key)
			}
			markers++
			continue
		}
		if markers > 0 {
			t.Fatalf("record %d: a pack after a marker", i)
		}
		ls, err := recordLines(r, nil, nil)
		if err != nil || len(ls) == 0 || len(ls) > pipeline.MaxPackLines {
			t.Fatalf("record %d: %d lines, %v", i, len(ls), err)
		}
		for _, l := range ls {
			j := int(l.Offset)
			if string(l.Value) != fmt.Sprint("line ", j) || l.Kind != pipeline.KindLine || l.Watermark != int64(1000+j) ||
				l.Source != 3 || l.Gen != 7 || r.Partition != pipeline.Target([]byte(detect.PartitionKey(client(j))), 12) {
				t.Fatalf("record %d: line %q origin %+v on partition %d; want line %d of %s", i, l.Value, l.Origin, r.Partition, j, client(j))
			}
			var e accesslog.Entry
			if err := e.ReadLayout(l.Layout, l.Value, l.Watermark); err != nil || string(e.Client) != client(j) {
				t.Fatalf("record %d: line %d's parse read back as client %q, %v; want %s", i, j, e.Client, err, client(j))
			}
			if j < next[r.Partition] {
				t.Fatalf("record %d: line %d after line %d on partition %d", i, j, next[r.Partition]-1, r.Partition)
			}
			next[r.Partition] = j + 1
			seen++
		}
	}
	if seen != lines || markers != 12 {
		t.Fatalf("%d lines and %d markers in %d records, want %d and 12", seen, markers, len(f.recs), lines)
	}
	if len(f.recs) > lines/4 {
		t.Errorf("%d records for %d lines: the lines are not packed", len(f.recs), lines)
	}
}

// TestForwarders_AStoppedWorkerLeavesNoHole: a first-stage worker stopped
// in the middle of a flush (its commit failed, or it lost its partition)
// leaves on a repartition partition a prefix of its lines, in order, and
// another worker's flush there does not fail for it. The second stage
// relies on both: it drops a line below one it already holds from the same
// source as a repeat, so a hole with later lines after it would be lost for
// good when the successor's forwarding fills it in behind them.
func TestForwarders_AStoppedWorkerLeavesNoHole(t *testing.T) {
	const rounds, lines = 6, 20_000
	var topics []string
	for r := range rounds {
		topics = append(topics, fmt.Sprintf("fwd-%d", r))
	}
	bc := broker.DefaultConfig()
	bc.Listen, bc.DataDir, bc.Topics, bc.Partitions = "127.0.0.1:0", filepath.Join(t.TempDir(), "broker"), topics, 1
	b, err := broker.Start(t.Context(), bc)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := &Node{cfg: Config{Brokers: []string{b.Addr()}}}

	stopped := 0
	for r, topic := range topics {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for src := range int32(2) {
			prod := &ownProducer{n: n} // as each worker has
			defer prod.close()
			f := newForwarder(topic, src, 1, 0, nil)
			for i := range lines {
				e := accesslog.Entry{Client: fmt.Appendf(nil, "10.%d.%d.%d", src, i/250%250, i%250)}
				f.line(&e, int64(i), 0, fmt.Appendf(nil, "line %d", i))
			}
			f.marks(pipeline.KindProgress, lines, 1) // a later watermark: the marker goes
			ctx := t.Context()
			if src == 0 { // stopped a few milliseconds into its flush
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(time.Duration(2+3*r)*time.Millisecond, cancel)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[src] = f.flush(ctx, prod)
			}()
		}
		wg.Wait()
		if errs[1] != nil {
			t.Fatalf("round %d: the worker left running could not forward: %v", r, errs[1])
		}
		if errs[0] != nil {
			stopped++
		}

		// Each source's lines, in the order the partition holds them.
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
		if err != nil {
			t.Fatal(err)
		}
		ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), topic)
		if err != nil {
			t.Fatal(err)
		}
		end, _ := ends.Lookup(topic, 0)
		next := []int64{0, 0}
		marked := []bool{false, false}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		for read := int64(0); read < end.Offset && ctx.Err() == nil; {
			cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
				read++
				ls, err := recordLines(rec, nil, nil)
				if err != nil {
					t.Fatalf("round %d, record %d: %v", r, rec.Offset, err)
				}
				for _, o := range ls {
					if o.Kind != pipeline.KindLine {
						marked[o.Source] = true
						continue
					}
					if o.Offset != next[o.Source] || marked[o.Source] {
						t.Fatalf("round %d: source %d's line %d at offset %d, where its line %d was next: a hole in what it forwarded",
							r, o.Source, o.Offset, rec.Offset, next[o.Source])
					}
					next[o.Source]++
				}
			})
		}
		cancel()
		cl.Close()
		if next[1] != lines || !marked[1] {
			t.Fatalf("round %d: the worker left running forwarded %d of %d lines (marker: %v)", r, next[1], lines, marked[1])
		}
	}
	if stopped == 0 {
		t.Fatal("no flush was stopped before its end: the test tested nothing")
	}
}

// TestReadForwarded_TakesTheFirstStagesParse: the second stage reads a
// forwarded line's Entry from its layout, not by parsing the line again
// (a layout that says another client than the text shows it), and parses
// the line when the layout does not read or there is none.
func TestReadForwarded_TakesTheFirstStagesParse(t *testing.T) {
	format, err := accesslog.Lookup("combined")
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(`192.0.2.1 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 12 "-" "ua/1"`)
	var first accesslog.Entry
	if err := format.Parse(line, &first); err != nil {
		t.Fatal(err)
	}
	first.Client = []byte("198.51.100.9") // what the first stage read, as far as the layout tells
	lay := accesslog.AppendLayout(nil, line, &first, first.Time)
	var e accesslog.Entry
	it := pipeline.Item{Origin: pipeline.Origin{Watermark: first.Time}, Value: line, Layout: lay}
	if err := readForwarded(format, &it, &e); err != nil || string(e.Client) != "198.51.100.9" || string(e.Path) != "/a" {
		t.Fatalf("from the layout: client %q path %q, %v", e.Client, e.Path, err)
	}
	for name, l := range map[string][]byte{"no layout": nil, "a layout that does not read": lay[:len(lay)-1]} {
		it.Layout = l
		if err := readForwarded(format, &it, &e); err != nil || string(e.Client) != "192.0.2.1" {
			t.Fatalf("%s: client %q, %v; want the line parsed", name, e.Client, err)
		}
	}
}
