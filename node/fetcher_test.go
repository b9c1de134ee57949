package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A node's shared fetcher hands each subscription its partition's records
// from its own offset, in order and without a gap: a successor that starts
// behind its predecessor's position sees nothing of that position, and a
// partition paused for a slow reader loses nothing when it resumes.
func TestFetcher_SubscriptionsReadFromTheirOwnOffset(t *testing.T) {
	c := newCluster(t, 1)
	n := c.start("n1", 0)
	const total = 3000
	produceLines(t, c, total)
	f := newFetcher(n, c.topic, []kgo.Opt{kgo.SeedBrokers(c.broker.Addr()), kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxWait(50 * time.Millisecond)})
	f.pauseAt, f.resumeAt = 200, 50 // a slow reader's partition pauses and resumes many times

	// read takes records from s until it has until-from of them, checking
	// that they are from, from+1, ... in order.
	read := func(s *subscription, from, until int64, slow bool) {
		t.Helper()
		next := from
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		for next < until {
			if slow {
				time.Sleep(20 * time.Millisecond) // let the queue pass pauseAt
			}
			got, errs := s.poll(ctx, nil, 100)
			if len(errs) > 0 {
				t.Fatalf("fetch errors: %v", errs)
			}
			if ctx.Err() != nil {
				t.Fatalf("only up to offset %d of [%d, %d) came", next, from, until)
			}
			for _, r := range got {
				if r.Partition != 0 || r.Offset != next || string(r.Value) != fmt.Sprintf("line %d", next) {
					t.Fatalf("record %d:%d %q where offset %d was next", r.Partition, r.Offset, r.Value, next)
				}
				next++
				if next == until {
					return
				}
			}
		}
	}
	s1, err := f.subscribe(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	read(s1, 0, 2000, false) // s1 is ahead: its fetches hold records past 2,000
	s1.close()
	s2, err := f.subscribe(0, 700)
	if err != nil {
		t.Fatal(err)
	}
	read(s2, 700, total, true)
	s2.close()
	// A successor asking before its predecessor closed takes the
	// partition over from its own offset.
	s3, _ := f.subscribe(0, 10)
	read(s3, 10, 500, false)
	s4, _ := f.subscribe(0, 250)
	read(s4, 250, total, true)
	s3.close()
	s4.close()
}

// A reader that takes its records as fast as they come never loses its
// partition to a pause: the fetcher pauses a partition and the reader
// resumes it from two goroutines, and a resume that ran between the
// fetcher's decision to pause and its call would leave the partition
// paused for good, the reader waiting on nothing. Each round is some
// 3,000 pauses and resumes. It is a race, which the test can miss: with
// the pause called outside the subscription's lock, rounds of 20,000
// stalled in one run of two.
func TestFetcher_FastReaderIsNeverLeftPaused(t *testing.T) {
	c := newCluster(t, 1)
	n := c.start("n1", 0)
	const perRound = 3000
	produceLines(t, c, perRound, kgo.ProducerBatchMaxBytes(16<<10)) // small batches: many fetches
	f := newFetcher(n, c.topic, []kgo.Opt{kgo.SeedBrokers(c.broker.Addr()), kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxWait(50 * time.Millisecond), kgo.FetchMaxPartitionBytes(16 << 10)})
	f.pauseAt, f.resumeAt = 2, 1 // nearly every fetch pauses, nearly every poll resumes
	for round := range 3 {
		s, err := f.subscribe(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		next := int64(0)
		for next < perRound {
			// A stall is no record for seconds while records wait in
			// Kafka; a slow machine only makes each one slower.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			got, _ := s.poll(ctx, nil, 1)
			cancel()
			if len(got) == 0 {
				t.Fatalf("round %d: the reader got %d of %d records, then none for 5 s: its partition stayed paused", round, next, perRound)
			}
			next += int64(len(got))
		}
		s.close()
	}
}

// produceLines writes "line 0", "line 1", ... to partition 0 of c's topic.
func produceLines(t *testing.T, c *cluster, total int, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.broker.Addr()), kgo.DefaultProduceTopic(c.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, total)
	for i := range recs {
		recs[i] = &kgo.Record{Partition: 0, Value: fmt.Appendf(nil, "line %d", i)}
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
