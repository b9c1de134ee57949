package dashboard

import (
	"fmt"
	"net/url"
	"time"
)

// Filter is what a viewer selects, from the page's query string (so a view
// can be shared as a link): a time range, a virtual host and a search.
type Filter struct {
	// Range is "5m", "1h" or "24h": that much event time back from the end
	// of the newest minute with requests. "" means From and To, or, with
	// neither, everything retained.
	Range    string
	From, To time.Time // [From, To); zero means open
	VHost    string
	Search   string
}

// Ranges are the relative ranges a Filter may name.
var Ranges = map[string]time.Duration{"5m": 5 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour}

// maxFilterBytes bounds a host name or search string.
const maxFilterBytes = 256

// ParseFilter reads range, from, to (RFC 3339), vhost and q.
func ParseFilter(v url.Values) (Filter, error) {
	f := Filter{Range: v.Get("range"), VHost: v.Get("vhost"), Search: v.Get("q")}
	if f.Range == "all" {
		f.Range = ""
	}
	if _, ok := Ranges[f.Range]; f.Range != "" && !ok {
		return f, fmt.Errorf("range=%q: want 5m, 1h, 24h or all", f.Range)
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		if f.Range != "" {
			return f, fmt.Errorf("%s: give either range or from and to", p.name)
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return f, fmt.Errorf("%s=%q: want an RFC 3339 time such as 2026-11-27T10:00:00Z", p.name, s)
		}
		*p.t = t
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		return f, fmt.Errorf("to is not after from")
	}
	if len(f.VHost) > maxFilterBytes || len(f.Search) > maxFilterBytes {
		return f, fmt.Errorf("vhost and q are at most %d bytes", maxFilterBytes)
	}
	return f, nil
}

// bounds resolves the filter's range against newest, the start of the
// newest minute with requests (zero when there is none).
func (f Filter) bounds(newest time.Time) (from, to time.Time) {
	d, ok := Ranges[f.Range]
	if !ok {
		return f.From, f.To
	}
	if newest.IsZero() {
		return time.Time{}, time.Time{}
	}
	to = newest.Add(time.Minute)
	return to.Add(-d), to
}

// key is the filter in a canonical form, for sharing built events.
func (f Filter) key() string {
	return fmt.Sprintf("%s|%d|%d|%s|%s", f.Range, f.From.Unix(), f.To.Unix(), f.VHost, f.Search)
}
