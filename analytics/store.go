package analytics

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/axiomhq/hyperloglog"
)

// Config tunes a Store.
type Config struct {
	// Retention is how much event time, back from the newest window, is
	// kept. Requests older than that are counted as expired, not dropped
	// silently. It bounds the Store's memory. Zero keeps everything.
	Retention time.Duration
}

// DefaultConfig keeps 24 hours.
func DefaultConfig() Config { return Config{Retention: 24 * time.Hour} }

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Retention != 0 && c.Retention < WindowSeconds*time.Second {
		return fmt.Errorf("retention %v is shorter than one window (1m); 0 keeps everything", c.Retention)
	}
	return nil
}

// Store holds the retained windows: the load figures of a cluster (inside
// its FSM) or of one `warden analyze` run.
type Store struct {
	cfg       Config
	windows   map[int64]*Window
	newest    int64 // start of the newest window ever seen
	malformed int64
	// Requests and bytes of windows that fell out of retention, or that
	// arrived already older than it.
	expiredRequests, expiredBytes int64
	// merges counts Merge and MergeChecked calls; a window records the
	// count at the last that changed it (Window.touched).
	merges uint64
	// sketchMu serializes the windows' catchUp among readers: a query's
	// distinct count, Freeze and MarshalJSON fill the sketches they read,
	// and the FSM runs them under its read lock, several at once. Writers
	// (merges) hold the FSM's write lock and so never meet a reader.
	sketchMu sync.Mutex
}

// NewStore returns an empty Store.
func NewStore(cfg Config) *Store {
	return &Store{cfg: cfg, windows: make(map[int64]*Window), newest: math.MinInt64}
}

// SetRetention changes the retention; windows now outside it expire at the
// next Merge.
func (s *Store) SetRetention(d time.Duration) { s.cfg.Retention = d }

// Retention is the configured retention.
func (s *Store) Retention() time.Duration { return s.cfg.Retention }

// Malformed is the number of lines that did not parse, in all time.
func (s *Store) Malformed() int64 { return s.malformed }

// Windows is the number of retained windows.
func (s *Store) Windows() int { return len(s.windows) }

func (s *Store) horizon() int64 {
	if s.newest == math.MinInt64 || s.cfg.Retention <= 0 {
		return math.MinInt64
	}
	return s.newest - int64(s.cfg.Retention/time.Second) + WindowSeconds
}

// Merge folds an Aggregate into the Store; the Store takes ownership of a's
// windows. Merging the same records in any grouping and order gives the same
// figures, as long as they fall inside the retention (which is measured from
// the newest window seen so far, the one thing that depends on order).
func (s *Store) Merge(a *Aggregate) error {
	s.merges++
	s.malformed += a.Malformed
	for start := range a.Windows {
		s.newest = max(s.newest, start)
	}
	h := s.horizon()
	starts := make([]int64, 0, len(a.Windows))
	for start := range a.Windows {
		starts = append(starts, start)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	for _, start := range starts {
		ow := a.Windows[start]
		if start < h {
			s.expiredRequests += ow.Requests
			s.expiredBytes += ow.Bytes
			continue
		}
		w := s.windows[start]
		if w == nil {
			ow.track()
			ow.touched = s.merges
			s.windows[start] = ow
			continue
		}
		w.touched = s.merges
		if err := w.merge(ow); err != nil {
			return err
		}
	}
	s.expire(h)
	a.Windows, a.last = nil, nil
	return nil
}

// A window at least idleAge older than the newest one, and untouched for
// idleMerges merges, has its counts' indexes dropped: past the minutes
// still filling and the late lines that trail them, a window is read (by
// scanning) and no longer written, and at 1,000,000 clients in the
// retained hour the indexes are a third of the counts' memory. A late line
// into it builds them again, at most once per idle spell.
const (
	idleMerges = 64
	idleAge    = 2 * WindowSeconds
)

// expire drops the windows that start before h, counting them as expired,
// and the indexes of idle windows.
func (s *Store) expire(h int64) {
	for start, w := range s.windows {
		switch {
		case start < h:
			s.expiredRequests += w.Requests
			s.expiredBytes += w.Bytes
			delete(s.windows, start)
		case s.merges-w.touched >= idleMerges && start <= s.newest-idleAge:
			w.dropIndexes()
		}
	}
}

// Rates are the figures of the last complete minute: the minute before the
// newest one seen, which is still filling.
type Rates struct {
	Minute        time.Time
	RequestsPerS  float64
	BytesPerS     float64
	ErrorsPerS    float64 // 5xx responses per second
	ErrorFraction float64 // 5xx share of the requests
}

// LastMinute returns the Rates of the last complete minute.
func (s *Store) LastMinute() Rates {
	if s.newest == math.MinInt64 {
		return Rates{}
	}
	start := s.newest - WindowSeconds
	r := Rates{Minute: time.Unix(start, 0).UTC()}
	w := s.windows[start]
	if w == nil {
		return r
	}
	var errs int64
	w.Status.Each(func(k string, n int64) {
		if k[0] == '5' {
			errs += n
		}
	})
	r.RequestsPerS = float64(w.Requests) / WindowSeconds
	r.BytesPerS = float64(w.Bytes) / WindowSeconds
	r.ErrorsPerS = float64(errs) / WindowSeconds
	if w.Requests > 0 {
		r.ErrorFraction = float64(errs) / float64(w.Requests)
	}
	return r
}

type wireStore struct {
	Retention       string    `json:"retention"`
	Windows         []*Window `json:"windows"`
	Newest          int64     `json:"newest"`
	Malformed       int64     `json:"malformed"`
	ExpiredRequests int64     `json:"expired_requests"`
	ExpiredBytes    int64     `json:"expired_bytes"`
}

// MarshalJSON encodes the whole Store (for FSM snapshots).
func (s *Store) MarshalJSON() ([]byte, error) {
	s.sketchMu.Lock()
	defer s.sketchMu.Unlock()
	for _, w := range s.windows {
		w.catchUp()
	}
	ws := wireStore{Retention: s.cfg.Retention.String(), Newest: s.newest, Malformed: s.malformed,
		ExpiredRequests: s.expiredRequests, ExpiredBytes: s.expiredBytes}
	for _, w := range s.windows {
		ws.Windows = append(ws.Windows, w)
	}
	sort.Slice(ws.Windows, func(i, j int) bool { return ws.Windows[i].Start < ws.Windows[j].Start })
	return json.Marshal(ws)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (s *Store) UnmarshalJSON(data []byte) error {
	var ws wireStore
	if err := json.Unmarshal(data, &ws); err != nil {
		return err
	}
	ret, err := time.ParseDuration(ws.Retention)
	if err != nil {
		return fmt.Errorf("analytics snapshot: retention: %w", err)
	}
	s.cfg, s.windows = Config{Retention: ret}, make(map[int64]*Window, len(ws.Windows))
	s.newest, s.malformed = ws.Newest, ws.Malformed
	s.expiredRequests, s.expiredBytes = ws.ExpiredRequests, ws.ExpiredBytes
	for _, w := range ws.Windows {
		if w == nil {
			return fmt.Errorf("analytics snapshot: null window")
		}
		w.track()
		s.windows[w.Start] = w
	}
	return nil
}

// distinct merges the sketches of ws, windows of s, each brought up to its
// clients first; yield, if not nil, runs after each (see StatsYielding).
func (s *Store) distinct(ws []*Window, yield func()) uint64 {
	if len(ws) == 0 {
		return 0
	}
	h := hyperloglog.NewNoSparse()
	for _, w := range ws {
		s.sketchMu.Lock()
		w.catchUp()
		_ = h.Merge(w.ips)
		s.sketchMu.Unlock()
		if yield != nil {
			yield()
		}
	}
	return h.Estimate()
}
