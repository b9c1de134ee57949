package dashboard

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// t0 is the start of the fake traffic.
var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// fakeSource is a Source over a real analytics.Store, with alerts,
// decisions and a cluster set by the test.
type fakeSource struct {
	mu        sync.Mutex
	store     *analytics.Store
	alerts    []detect.Alert
	decisions []detect.Decision
	cluster   Cluster
}

func (f *fakeSource) Stats(q analytics.Query) *analytics.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.store.Stats(q)
}

func (f *fakeSource) LastMinute() analytics.Rates {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.store.LastMinute()
}

func (f *fakeSource) Alerts(since time.Time) []detect.Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []detect.Alert
	for _, a := range f.alerts {
		if since.IsZero() || a.Time >= since.UnixNano() {
			out = append(out, a)
		}
	}
	return out
}

func (f *fakeSource) Decisions(now time.Time) []detect.Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []detect.Decision
	for _, d := range f.decisions {
		if d.Active(now) {
			out = append(out, d)
		}
	}
	return out
}

func (f *fakeSource) Cluster(time.Time) Cluster {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cluster
	c.Members = append([]Member(nil), c.Members...)
	return c
}

// add counts n requests spread over the given minutes from t0, varied by
// i: clients, paths, statuses, hosts and durations.
func (f *fakeSource) add(t testing.TB, n, minutes int) {
	t.Helper()
	a := analytics.NewAggregate()
	paths := []string{"/", "/shop", "/shop/cart", "/blog/post-1", "/wp-login.php", "/static/app.css", "/missing"}
	for i := 0; i < n; i++ {
		status := []int{200, 200, 200, 200, 304, 404, 500, 200, 301, 200}[i%10]
		path := paths[i%len(paths)]
		if path == "/missing" {
			status = 404
		}
		e := accesslog.Entry{
			Time:      t0.Add(time.Duration(i*minutes*60/n)*time.Second + time.Duration(i%7)*time.Second).UnixNano(),
			Client:    []byte(fmt.Sprintf("198.51.100.%d", (i*7)%23)),
			Method:    []byte([]string{"GET", "GET", "POST", "HEAD"}[i%4]),
			Path:      []byte(path),
			Status:    status,
			Bytes:     int64(500 + (i*37)%20000),
			Duration:  int64(2000 + (i*131)%90000),
			UserAgent: []byte([]string{"Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0", "curl/8.5.0", "Googlebot/2.1"}[i%3]),
			Referer:   []byte([]string{"https://example.com/", "", "https://search.example/?q=warden"}[i%3]),
			VHost:     []byte([]string{"www.example.com", "api.example.com"}[i%2]),
		}
		a.Add(&e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.store.Merge(a); err != nil {
		t.Fatal(err)
	}
}

func newFakeSource(t testing.TB) *fakeSource {
	f := &fakeSource{store: analytics.NewStore(analytics.Config{}),
		cluster: Cluster{Node: "n2", Leader: "n1", Term: 3, AppliedIndex: 1234, Ready: true, ReadyReason: "ready", LagRecords: 0,
			Members: []Member{{ID: "n1", State: StateAlive, Voter: true, Leader: true, HTTPAddr: "127.0.0.1:8081"},
				{ID: "n2", State: StateAlive, Voter: true, Self: true, HTTPAddr: "127.0.0.1:8082"},
				{ID: "n3", State: StateAlive, Voter: true, HTTPAddr: "127.0.0.1:8083"}},
			Partitions: []Partition{{Partition: 0, Owner: "n1", Epoch: 2, Committed: 500, LogEnd: 500}, {Partition: 1, Owner: "n2", Epoch: 2, Committed: 480, LogEnd: 490, Lag: 10}}}}
	f.add(t, 3000, 90)
	at := t0.Add(80 * time.Minute)
	for i, sc := range []string{"http-probing", "http-log4shell", "http-probing", "http-sensitive-files"} {
		f.alerts = append(f.alerts, detect.Alert{ID: fmt.Sprintf("a%d", i), Seq: uint64(i + 1), Scenario: sc, SourceIP: fmt.Sprintf("203.0.113.%d", 1+i%3),
			Events: 5 + i, Time: at.Add(time.Duration(i) * time.Minute).UnixNano(), Samples: []string{`203.0.113.1 - - "GET /.env HTTP/1.1" 404 0`}})
	}
	f.decisions = []detect.Decision{{ID: 1, Origin: "warden", Type: "ban", Scope: "Ip", Value: "203.0.113.1", Scenario: "http-probing",
		Until: time.Now().Add(3 * time.Hour).UnixNano()}}
	return f
}

func analyticsQueryTop() analytics.Query { return analytics.Query{Top: 10} }
