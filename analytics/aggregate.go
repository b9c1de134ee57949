package analytics

import (
	"encoding/json"
	"sort"

	"github.com/wardenhq/warden/accesslog"
)

// Aggregate is the figures of some records: a worker's batch (the delta it
// commits through Raft) or a share of a file in `warden analyze`.
type Aggregate struct {
	Windows   map[int64]*Window
	Malformed int64
	last      *Window
	// spare holds windows emptied by Reset, for Add to use again.
	spare []*Window
}

// NewAggregate returns an empty Aggregate.
func NewAggregate() *Aggregate { return &Aggregate{Windows: make(map[int64]*Window)} }

// windowStart is the start of the window holding t (Unix nanoseconds).
func windowStart(t int64) int64 {
	s := t / 1e9
	if t < 0 && t%1e9 != 0 {
		s--
	}
	m := s % WindowSeconds
	if m < 0 {
		m += WindowSeconds
	}
	return s - m
}

// Add counts one parsed request.
func (a *Aggregate) Add(e *accesslog.Entry) {
	start := windowStart(e.Time)
	w := a.last
	if w == nil || w.Start != start {
		w = a.Windows[start]
		if w == nil {
			if n := len(a.spare); n > 0 {
				w, a.spare = a.spare[n-1], a.spare[:n-1]
				w.Start = start
			} else {
				w = newWindow(start)
			}
			a.Windows[start] = w
		}
		a.last = w
	}
	w.add(e)
}

// maxSpareWindows bounds the windows Reset keeps for reuse: a batch spans
// a minute or two of event time, rarely more.
const maxSpareWindows = 4

// Reset empties a for the figures of more records, keeping the memory its
// windows' counts grew (a worker folds batch after batch into one
// Aggregate, encoding each before the next). The keys of a's counts are
// written over: nothing read from a before (a string from Each or Top, a
// window merged elsewhere) may be used after.
func (a *Aggregate) Reset() {
	for start, w := range a.Windows {
		if len(a.spare) < maxSpareWindows {
			w.reset()
			a.spare = append(a.spare, w)
		}
		delete(a.Windows, start)
	}
	a.Malformed, a.last = 0, nil
}

// AddMalformed counts one line that did not parse.
func (a *Aggregate) AddMalformed() { a.Malformed++ }

// Requests is the number of requests counted.
func (a *Aggregate) Requests() int64 {
	var n int64
	for _, w := range a.Windows {
		n += w.Requests
	}
	return n
}

// Merge adds o into a (for combining shares of a file before a Store).
func (a *Aggregate) Merge(o *Aggregate) error {
	a.Malformed += o.Malformed
	for start, ow := range o.Windows {
		w := a.Windows[start]
		if w == nil {
			a.Windows[start] = ow
			continue
		}
		if err := w.merge(ow); err != nil {
			return err
		}
	}
	a.last = nil
	return nil
}

type wireAggregate struct {
	Windows   []*Window `json:"w"`
	Malformed int64     `json:"bad,omitempty"`
}

// MarshalJSON encodes the windows in time order.
func (a *Aggregate) MarshalJSON() ([]byte, error) {
	wa := wireAggregate{Malformed: a.Malformed}
	for _, w := range a.Windows {
		wa.Windows = append(wa.Windows, w)
	}
	sort.Slice(wa.Windows, func(i, j int) bool { return wa.Windows[i].Start < wa.Windows[j].Start })
	return json.Marshal(wa)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (a *Aggregate) UnmarshalJSON(data []byte) error {
	var wa wireAggregate
	if err := json.Unmarshal(data, &wa); err != nil {
		return err
	}
	*a = Aggregate{Windows: make(map[int64]*Window, len(wa.Windows)), Malformed: wa.Malformed}
	for _, w := range wa.Windows {
		a.Windows[w.Start] = w
	}
	return nil
}
