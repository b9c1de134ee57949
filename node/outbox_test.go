package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// 20,000 alerts raised while the alerts topic refuses writes are all kept
// (past the 10,000 the API shows) and published exactly once when it
// takes writes again.
func TestOutbox_AlertsRaisedWhileTheTopicIsDownArePublishedOnce(t *testing.T) {
	const alerts = 20000
	c := newCluster(t, 2)
	var down atomic.Bool
	down.Store(true)
	c.broker.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.broker.Cluster().KeepControl()
		if !down.Load() {
			return nil, nil, false
		}
		// Only the alerts publisher produces in transactions (and newer
		// produce requests name topics by id, not by name).
		if req.(*kmsg.ProduceRequest).TransactionID != nil {
			return nil, errors.New("alerts topic down"), true
		}
		return nil, nil, false
	})
	n := c.startEdit("n1", 0, func(cfg *Config) { cfg.AlertsTopic = "logs.alerts"; cfg.MaxBatchRecords = 5000 })

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker.Addr()), kgo.DefaultProduceTopic(c.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ts := time.Now().UTC().Add(-time.Hour)
	var recs []*kgo.Record
	for i := 0; i < alerts; i++ {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		line := fmt.Sprintf(`%s - - [%s] "GET /hnap1 HTTP/1.1" 404 10 "-" "probe"`, ip, ts.Add(time.Duration(i)*time.Millisecond).Format("02/Jan/2006:15:04:05 -0700"))
		recs = append(recs, &kgo.Record{Key: []byte(ip), Value: []byte(line)})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "20,000 alerts raised", func() bool { return n.fsm.AlertCount() >= alerts })
	time.Sleep(time.Second) // the publisher keeps failing meanwhile
	if waiting, dropped := n.fsm.UnpublishedAlerts(); waiting != alerts || dropped != 0 {
		t.Fatalf("while the topic is down: %d waiting, %d dropped; want %d and 0", waiting, dropped, alerts)
	}
	if got := len(n.Alerts(time.Time{})); got != 10000 {
		t.Errorf("/v1/alerts shows %d, want the latest 10,000", got)
	}

	down.Store(false)
	waitFor(t, 60*time.Second, "every alert published", func() bool { w, _ := n.fsm.UnpublishedAlerts(); return w == 0 })
	got := map[string]int{}
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.broker.Addr()), kgo.ConsumeTopics("logs.alerts"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	total := 0
	deadline := time.Now().Add(30 * time.Second)
	for total < alerts && time.Now().Before(deadline) {
		ctx, cancel := contextWithTimeout(2 * time.Second)
		fs := rd.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == AlertSeqHeader {
					got[string(h.Value)]++
					total++
				}
			}
		})
	}
	if len(got) != alerts || total != alerts {
		t.Fatalf("the alerts topic holds %d records of %d distinct alerts; want %d once each", total, len(got), alerts)
	}
	if len(n.Alerts(time.Time{})) != 10000 {
		t.Errorf("after publishing, the book keeps %d for the API, want 10,000", len(n.Alerts(time.Time{})))
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
