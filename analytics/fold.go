package analytics

import (
	"time"

	"github.com/wardenhq/warden/accesslog"
)

// DefaultMaxSkew is how far past its clock a Folder accepts a line's time.
const DefaultMaxSkew = time.Hour

// Folder parses lines with one format and folds them into an Aggregate. It
// is the one path from a raw line to figures, shared by the cluster's
// workers and `warden analyze`, which is why they agree. A Folder is not safe
// for concurrent use; use one per goroutine. With the auto format, the
// Folder's Entry remembers which format read the last line and tries it
// first (accesslog's parseAuto), so a partition's worker, with its own
// Folder, pays one parse per line of a stream of one format.
type Folder struct {
	format *accesslog.Format
	entry  accesslog.Entry
	// MaxSkew is how far ahead of Now a line's time may be; a line dated
	// later is malformed (accesslog.ErrFutureTime). Event time only moves
	// forward, so one such line (a forged one, or a server with a wrong
	// clock) would otherwise make every load window expire, drop the
	// detector's buckets and end every decision. Zero or negative turns the
	// check off. NewFolder sets DefaultMaxSkew.
	MaxSkew time.Duration
	// Now is the clock MaxSkew counts from (nil: time.Now). It is read
	// again only for a line past the horizon it last gave, so it costs
	// nothing per line; a clock that steps back keeps the later horizon
	// until a line passes it.
	Now     func() time.Time
	horizon int64 // Unix ns: Now()+MaxSkew when Now was last read
}

// NewFolder returns a Folder for format that refuses lines dated more than
// DefaultMaxSkew past the wall clock.
func NewFolder(format *accesslog.Format) *Folder {
	return &Folder{format: format, MaxSkew: DefaultMaxSkew}
}

// Fold parses line into a and reports whether it was a request (then
// Entry holds it). A line that does not parse, or is dated more than
// MaxSkew past Now, is counted as malformed in a, and its error is returned.
// A blank line is neither a request nor malformed: it is skipped.
func (f *Folder) Fold(a *Aggregate, line []byte) (bool, error) {
	if blank(line) {
		return false, nil
	}
	if err := f.format.Parse(line, &f.entry); err != nil {
		a.AddMalformed()
		return false, err
	}
	if f.future(f.entry.Time) {
		a.AddMalformed()
		return false, accesslog.ErrFutureTime
	}
	a.Add(&f.entry)
	return true, nil
}

// Parse reads line as Fold does, folding nothing: the entry (valid until
// the next Fold or Parse), or nil for a line Fold would not fold.
func (f *Folder) Parse(line []byte) *accesslog.Entry {
	if blank(line) || f.format.Parse(line, &f.entry) != nil || f.future(f.entry.Time) {
		return nil
	}
	return &f.entry
}

// future reports whether t (Unix ns) is more than MaxSkew past Now.
func (f *Folder) future(t int64) bool {
	if f.MaxSkew <= 0 || t <= f.horizon {
		return false
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	f.horizon = now().Add(f.MaxSkew).UnixNano()
	return t > f.horizon
}

// Entry is the last line parsed (valid until the next Fold).
func (f *Folder) Entry() *accesslog.Entry { return &f.entry }

func blank(line []byte) bool {
	for _, c := range line {
		if c != '\n' && c != '\r' && c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}
