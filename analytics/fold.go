package analytics

import "github.com/wardenhq/warden/accesslog"

// Folder parses lines with one format and folds them into an Aggregate. It
// is the one path from a raw line to figures, shared by the cluster's
// workers and `warden analyze`, which is why they agree. A Folder is not safe
// for concurrent use; use one per goroutine.
type Folder struct {
	format *accesslog.Format
	entry  accesslog.Entry
}

// NewFolder returns a Folder for format.
func NewFolder(format *accesslog.Format) *Folder { return &Folder{format: format} }

// Fold parses line into a and reports whether it was a request (then
// Entry holds it). A line that does not parse is counted as malformed in a,
// and its parse error is returned. A blank line is neither a request nor
// malformed: it is skipped.
func (f *Folder) Fold(a *Aggregate, line []byte) (bool, error) {
	if blank(line) {
		return false, nil
	}
	if err := f.format.Parse(line, &f.entry); err != nil {
		a.AddMalformed()
		return false, err
	}
	a.Add(&f.entry)
	return true, nil
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
