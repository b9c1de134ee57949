package analytics

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
)

var base = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// entries makes n varied requests spread over minutes minutes.
func entries(seed uint64, n, minutes int) []accesslog.Entry {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]accesslog.Entry, n)
	methods := []string{"GET", "GET", "GET", "POST", "HEAD", "BREW", ""}
	statuses := []int{200, 200, 200, 301, 404, 404, 500, 503}
	for i := range out {
		e := &out[i]
		e.Time = base.Add(time.Duration(r.IntN(minutes*60_000)) * time.Millisecond).UnixNano()
		e.Client = []byte(fmt.Sprintf("10.0.%d.%d", r.IntN(4), r.IntN(250)))
		e.Method = []byte(methods[r.IntN(len(methods))])
		e.Path = []byte(fmt.Sprintf("/p/%d", r.IntN(40)))
		e.Status = statuses[r.IntN(len(statuses))]
		e.Bytes = int64(r.IntN(100000))
		e.UserAgent = []byte(fmt.Sprintf("agent-%d", r.IntN(7)))
		if r.IntN(3) == 0 {
			e.Referer = []byte(fmt.Sprintf("https://ref%d.example/", r.IntN(5)))
		}
		if h := r.IntN(3); h > 0 {
			e.VHost = []byte(fmt.Sprintf("site%d.example", h))
		}
		e.Duration = -1
		if r.IntN(10) > 0 {
			e.Duration = int64(r.ExpFloat64() * 20000)
		}
	}
	return out
}

func statsJSON(t *testing.T, s *Store, q Query) string {
	t.Helper()
	b, err := json.Marshal(s.Stats(q))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMergeIsDeterministic(t *testing.T) {
	es := entries(1, 20000, 30)
	whole := NewAggregate()
	for i := range es {
		whole.Add(&es[i])
	}
	whole.AddMalformed()
	ref := NewStore(DefaultConfig())
	if err := ref.Merge(whole); err != nil {
		t.Fatal(err)
	}
	want := statsJSON(t, ref, Query{Top: -1})

	for trial := 0; trial < 5; trial++ {
		r := rand.New(rand.NewPCG(uint64(trial), 9))
		// Cut into batches of random sizes, encode each as a Raft delta
		// would be, and merge them in a shuffled order.
		var deltas [][]byte
		for i := 0; i < len(es); {
			n := 1 + r.IntN(3000)
			a := NewAggregate()
			for j := i; j < min(i+n, len(es)); j++ {
				a.Add(&es[j])
			}
			if i == 0 {
				a.AddMalformed()
			}
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			deltas = append(deltas, b)
			i += n
		}
		r.Shuffle(len(deltas), func(i, j int) { deltas[i], deltas[j] = deltas[j], deltas[i] })
		s := NewStore(DefaultConfig())
		for _, d := range deltas {
			var a Aggregate
			if err := json.Unmarshal(d, &a); err != nil {
				t.Fatal(err)
			}
			if err := s.Merge(&a); err != nil {
				t.Fatal(err)
			}
		}
		// And through a snapshot.
		snap, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var restored Store
		if err := json.Unmarshal(snap, &restored); err != nil {
			t.Fatal(err)
		}
		for name, st := range map[string]*Store{"merged": s, "restored": &restored} {
			if got := statsJSON(t, st, Query{Top: -1}); got != want {
				t.Fatalf("trial %d %s: stats differ from one in-order pass", trial, name)
			}
		}
	}
}

func TestStatsFigures(t *testing.T) {
	s := NewStore(DefaultConfig())
	a := NewAggregate()
	add := func(sec int, ip, method, path string, status int, bytes, durUs int64) {
		e := accesslog.Entry{Time: base.Add(time.Duration(sec) * time.Second).UnixNano(), Client: []byte(ip),
			Method: []byte(method), Path: []byte(path), Status: status, Bytes: bytes, Duration: durUs, UserAgent: []byte("ua")}
		a.Add(&e)
	}
	add(0, "1.1.1.1", "GET", "/", 200, 100, 1000)
	add(10, "1.1.1.1", "GET", "/a", 404, 10, 2000)
	add(70, "2.2.2.2", "POST", "/a", 404, 10, 3000)
	add(75, "3.3.3.3", "PROPFIND", "/", 500, 0, 100000)
	add(130, "3.3.3.3", "FOO", "/", 302, 5, 4000)
	a.AddMalformed()
	if err := s.Merge(a); err != nil {
		t.Fatal(err)
	}
	st := s.Stats(Query{})
	if st.Requests != 5 || st.Bytes != 125 || st.Malformed != 1 || st.UniqueIPs != 3 {
		t.Errorf("requests %d bytes %d malformed %d unique %d", st.Requests, st.Bytes, st.Malformed, st.UniqueIPs)
	}
	if st.Status["404"] != 2 || st.StatusClass["4xx"] != 2 || st.StatusClass["5xx"] != 1 || st.Methods["OTHER"] != 1 || st.Methods["PROPFIND"] != 1 {
		t.Errorf("status %v classes %v methods %v", st.Status, st.StatusClass, st.Methods)
	}
	if len(st.Top404Paths) != 1 || st.Top404Paths[0] != (KeyCount{"/a", 2}) {
		t.Errorf("top 404 %v", st.Top404Paths)
	}
	if st.TopPaths[0] != (KeyCount{"/", 3}) || st.TopIPs[0].Count != 2 || st.TopIPs[0].Key != "1.1.1.1" {
		t.Errorf("top paths %v ips %v", st.TopPaths, st.TopIPs)
	}
	if st.LatencyMs == nil || st.LatencyMs.Max != 100 || st.LatencyMs.P50 < 2.9 || st.LatencyMs.P50 > 3.1 {
		t.Errorf("latency %+v", st.LatencyMs)
	}
	if len(st.Series) != 3 || st.Series[1].Requests != 2 || st.From != "2026-11-27T10:00:00Z" || st.To != "2026-11-27T10:03:00Z" {
		t.Errorf("series %+v from %s to %s", st.Series, st.From, st.To)
	}
	one := s.Stats(Query{From: base.Add(time.Minute), To: base.Add(2 * time.Minute)})
	if one.Requests != 2 || one.UniqueIPs != 2 {
		t.Errorf("range: requests %d unique %d", one.Requests, one.UniqueIPs)
	}
	r := s.LastMinute()
	if r.RequestsPerS != 2.0/60 || r.ErrorFraction != 0.5 {
		t.Errorf("last minute %+v", r)
	}
}

func TestRetention(t *testing.T) {
	s := NewStore(Config{Retention: 10 * time.Minute})
	es := entries(2, 5000, 60)
	a := NewAggregate()
	for i := range es {
		a.Add(&es[i])
	}
	if err := s.Merge(a); err != nil {
		t.Fatal(err)
	}
	if s.Windows() > 10 {
		t.Errorf("%d windows kept, retention allows 10", s.Windows())
	}
	st := s.Stats(Query{})
	if st.Requests+st.ExpiredRequests != 5000 || st.ExpiredRequests == 0 {
		t.Errorf("retained %d + expired %d != 5000", st.Requests, st.ExpiredRequests)
	}
	// A late record, older than the horizon, is counted as expired.
	late := accesslog.Entry{Time: base.UnixNano(), Status: 200, Duration: -1}
	b := NewAggregate()
	b.Add(&late)
	if err := s.Merge(b); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats(Query{}).ExpiredRequests; got != st.ExpiredRequests+1 {
		t.Errorf("late record: expired %d, want %d", got, st.ExpiredRequests+1)
	}
}

func TestLongKeysAreCut(t *testing.T) {
	a := NewAggregate()
	long := make([]byte, 0, 1000)
	for len(long) < 1000 {
		long = append(long, "é"...)
	}
	e := accesslog.Entry{Time: base.UnixNano(), Path: long, Status: 200, Duration: -1}
	a.Add(&e)
	s := NewStore(DefaultConfig())
	_ = s.Merge(a)
	p := s.Stats(Query{}).TopPaths[0].Key
	if len(p) > MaxKeyBytes || len(p) < MaxKeyBytes-1 {
		t.Errorf("key of %d bytes", len(p))
	}
}

func BenchmarkAggregateAdd(b *testing.B) {
	es := entries(3, 10000, 60)
	a := NewAggregate()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a.Add(&es[i%len(es)])
		i++
	}
}
