package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Stream serves the event stream, GET /v1/events: Server-Sent Events, one
// Event (event type "update", its JSON on one data line) at once and then
// every Interval, for the filter in the query string. Viewers with the
// same filter share each built event, and one event is built at a time,
// so many viewers cost little more than one.
type Stream struct {
	Source Source
	// Interval between events; 0 means a second.
	Interval time.Duration
	// Max is the most streams open at once (0: DefaultMaxStreams); more
	// get 503.
	Max int
	// Login is copied into every event: the node asks for a token.
	Login bool
	// Done closes every stream (the node stops).
	Done <-chan struct{}

	open  atomic.Int64
	mu    sync.Mutex // held while building: one build at a time
	cache map[string]built
	// took is how long the last build took: an event is rebuilt no sooner
	// than three times that, so a large state slows the updates down
	// rather than keep a core busy.
	took time.Duration
}

// DefaultMaxStreams bounds the streams a node serves at once.
const DefaultMaxStreams = 32

// writeTimeout is how long one event may take to reach a viewer.
const writeTimeout = 10 * time.Second

type built struct {
	at   time.Time
	data []byte
}

// Open is the number of streams open now.
func (s *Stream) Open() int64 { return s.open.Load() }

func (s *Stream) interval() time.Duration {
	if s.Interval > 0 {
		return s.Interval
	}
	return time.Second
}

// event returns the JSON of f's event, built at most half an interval ago
// (or three builds' time, when building takes longer).
func (s *Stream) event(f Filter) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	k := f.key()
	if b, ok := s.cache[k]; ok && now.Sub(b.at) < max(s.interval()/2, 3*s.took) {
		return b.data, nil
	}
	start := time.Now()
	ev := Build(s.Source, f, now)
	s.took = time.Since(start)
	ev.Login = s.Login
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if s.cache == nil {
		s.cache = map[string]built{}
	}
	for key, b := range s.cache {
		if now.Sub(b.at) > 10*s.interval() {
			delete(s.cache, key)
		}
	}
	s.cache[k] = built{at: now, data: data}
	return data, nil
}

// ServeHTTP streams events until the viewer goes or Done closes.
func (s *Stream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	max := s.Max
	if max <= 0 {
		max = DefaultMaxStreams
	}
	if s.open.Add(1) > int64(max) {
		s.open.Add(-1)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%d dashboard streams are open on this node, the most it serves; close one or use another node", max))
		return
	}
	defer s.open.Add(-1)
	// A stream outlives the server's write timeout: each event gets its
	// own write deadline instead.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not hold events back
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	send := func(chunk []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// A viewer whose connection drops reconnects after a second.
	if !send([]byte("retry: 1000\n\n")) {
		return
	}
	t := time.NewTicker(s.interval())
	defer t.Stop()
	for {
		data, err := s.event(f)
		if err != nil {
			return
		}
		msg := make([]byte, 0, len(data)+24)
		msg = append(msg, "event: update\ndata: "...)
		msg = append(append(msg, data...), "\n\n"...)
		if !send(msg) {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.Done:
			return
		case <-t.C:
		}
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
