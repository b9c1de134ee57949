package node

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Backpressure under a slowed commit path: the partition's rate falls while
// commits are slow, the time from cut to commit stays bounded (it does not
// grow over the slow spell), and the rate recovers afterwards.
func TestBackpressure_SlowCommitsLowerTheRateAndRecover(t *testing.T) {
	// slow is the lowest rate seen while commits are slow, recovered the
	// rate 5 s after they are fast again.
	run := func(backpressure bool) (fast, slow, recovered float64, early, late time.Duration) {
		c := newCluster(t, 1)
		n := c.startEdit("n1", 0, func(cfg *Config) {
			cfg.Backpressure, cfg.BatchInterval, cfg.MaxBatchRecords = backpressure, 100*time.Millisecond, 40000
			// One stage: what is measured is the estimator against the
			// commit time, not a second stage's share of the CPU.
			cfg.InputKeyedByClient = true
		})
		waitFor(t, 15*time.Second, "partition owned", func() bool {
			s := n.State()
			return len(s.Partitions) == 1 && s.Partitions[0].Owner == "n1"
		})
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker.Addr()), kgo.DefaultProduceTopic(c.topic), kgo.ProducerLinger(5*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		stop := make(chan struct{})
		go func() {
			ts := time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700")
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				for j := 0; j < 600; j++ { // about 30,000 lines/s
					line := fmt.Sprintf(`10.0.%d.%d - - [%s] "GET /p/%d HTTP/1.1" 200 10 "-" "ua"`, j>>8&255, j&255, ts, i)
					cl.Produce(t.Context(), &kgo.Record{Value: []byte(line)}, nil)
				}
			}
		}()
		defer close(stop)
		// sample waits d and returns the rate then, the lowest rate seen
		// meanwhile (read every 50 ms), and the last cut to commit.
		sample := func(d time.Duration) (rate, low float64, proc time.Duration) {
			low = math.Inf(1)
			for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				low = min(low, n.rateOf(0))
			}
			if v, ok := n.lastProcessing.Load(int32(0)); ok {
				proc = v.(time.Duration)
			}
			rate = n.rateOf(0)
			return rate, min(low, rate), proc
		}
		fast, _, _ = sample(3 * time.Second)
		n.commitDelay.Store(int64(400 * time.Millisecond)) // each commit round 0.4 s slower: a slow disk
		_, low1, early := sample(2 * time.Second)
		_, low2, late := sample(4 * time.Second)
		slow = min(low1, low2)
		n.commitDelay.Store(0)
		recovered, _, _ = sample(5 * time.Second)
		return fast, slow, recovered, early, late
	}
	fast, slow, recovered, early, late := run(true)
	t.Logf("backpressure: rate %.0f/s fast, %.0f/s at the lowest with slow commits, %.0f/s after; cut to commit %s after 2 s of slow commits, %s after 6 s",
		fast, slow, recovered, early, late)
	if !(slow < fast/2) || slow < 100 {
		t.Errorf("the rate did not fall under slow commits: %.0f then %.0f (floor 100)", fast, slow)
	}
	// Recovered: at least half of what the slow spell took is back. (Not
	// "twice the slow rate": the producer offers about 30,000 lines/s, so
	// on a slow machine, where the slow rate stays above half of that, no
	// recovery could pass.)
	if !(recovered > slow+(fast-slow)/2) {
		t.Errorf("the rate did not recover: %.0f fast, %.0f while slow, %.0f after (want over %.0f)", fast, slow, recovered, slow+(fast-slow)/2)
	}
	if late > 2*early+200*time.Millisecond {
		t.Errorf("cut to commit grew over the slow spell: %s, then %s", early, late)
	}
}
