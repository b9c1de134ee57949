package shipper

import (
	"fmt"

	"github.com/wardenhq/warden/accesslog"
)

// Keyer gives each line its record key: the client address of the parsed
// line (accesslog's Entry.Client), so that one client's requests meet in one
// partition in the order they were logged, whatever the format: JSON lines,
// syslog-framed lines and vhost_combined alike. A line that does not parse,
// or whose format logs no client, gets no key (franz-go then spreads such
// records; the cluster counts them as malformed anyway).
//
// A Keyer is not safe for concurrent use: each reader has its own.
type Keyer struct {
	format *accesslog.Format
	entry  accesslog.Entry
}

// NewKeyer compiles spec as accesslog.Lookup does ("auto" reads each line
// by the first format that reads it whole).
func NewKeyer(spec string) (*Keyer, error) {
	f, err := accesslog.Lookup(spec)
	if err != nil {
		return nil, fmt.Errorf("log format: %w", err)
	}
	return &Keyer{format: f}, nil
}

// Key returns the client of line as a new slice, or nil.
func (k *Keyer) Key(line []byte) []byte {
	if err := k.format.Parse(line, &k.entry); err != nil || len(k.entry.Client) == 0 {
		return nil
	}
	return append([]byte(nil), k.entry.Client...)
}
