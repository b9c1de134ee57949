package detect

import "github.com/wardenhq/warden/accesslog"

// Evaluating a request is kept apart from pouring it: Evaluate reads no
// detector state, so it can run on many lines at once, and Pour then takes
// the events in offset order.

// Match is one scenario an event passed, with the hash of its distinct
// value for a distinct trigger.
type Match struct {
	Scenario int
	Key      uint64
	Group    string // the value grouped on besides the client IP, if any
}

// Event is a request as the buckets see it: who, when, where, and which
// scenarios' filters it passed. Its byte slices alias the caller's line.
type Event struct {
	IP      []byte
	Time    int64
	Offset  int64
	Line    []byte
	Matches []Match

	// memo is Evaluate's memory of recent texts' scans, kept with the
	// event a caller reuses from line to line (so one per goroutine),
	// made once the event has seen memoAfter lines: a quiet partition's
	// event never holds one.
	memo  *scanMemo
	lines int
}

// memoAfter is how many lines an event evaluates before it keeps a memo
// (about 400 KB).
const memoAfter = 4096

// Evaluate runs every scenario's filter on e (the line at offset) and fills
// ev; it reports whether any scenario matched. It reads no detector state,
// so it may run concurrently on many lines, each goroutine with its own
// event (ev carries a memo of recent scans that changes no verdict); Pour
// must then see the events in order.
func (r *Rules) Evaluate(e *accesslog.Entry, line []byte, offset int64, ev *Event) bool {
	ev.Matches = ev.Matches[:0]
	if len(e.Client) == 0 {
		return false
	}
	var req request
	req.reset(e, r)
	if r.multi != nil {
		if ev.memo != nil && ev.memo.rules != r {
			ev.memo, ev.lines = nil, 0 // the rules changed
		}
		if ev.memo == nil && ev.lines >= memoAfter {
			ev.memo = &scanMemo{rules: r}
		}
		ev.lines++
		req.memo = ev.memo
	}
	r.match(&req, func(i int, s *Scenario) {
		m := Match{Scenario: i}
		if s.Distinct != "" {
			m.Key = req.distinctKey(s.Distinct)
		}
		switch {
		case s.Scope == ScopeRange:
			m.Group = req.Range()
		case s.GroupBy == "ip_vhost":
			m.Group = string(e.VHost)
		case s.GroupBy == "ip_path":
			m.Group = req.Path()
		case s.GroupBy == "ip_user_agent":
			m.Group = string(e.UserAgent)
		}
		ev.Matches = append(ev.Matches, m)
	})
	ev.IP, ev.Time, ev.Offset, ev.Line = e.Client, e.Time, offset, line
	return len(ev.Matches) > 0
}
