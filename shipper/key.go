package shipper

import (
	"fmt"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/detect"
)

// Keyer gives each line its record key: the network of the client address
// of the parsed line (accesslog's Entry.Client; detect.PartitionKey: its
// /24 or /64, or the address itself for private ones), so that one client's
// requests, and one network's, meet in one partition in the order they were
// logged, whatever the format: JSON lines, syslog-framed lines and
// vhost_combined alike. Detection keeps per-address and per-network state
// per partition; keying by network is what makes the cluster's range alerts
// those of `warden analyze`. A line that does not parse,
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
	return []byte(detect.PartitionKey(string(k.entry.Client)))
}
