package accesslog

import (
	"errors"
	"fmt"
)

// detectOrder lists the candidates auto-detection tries, most specific first:
// on a tie in lines read, the earlier one wins.
var detectOrder = []string{"vhost_combined", "nginx_vhost_combined", "combinedio", "combined", "common", "json"}

// Detection says which format auto-detection chose and how well it fit.
type Detection struct {
	Format  *Format
	Matched int // sample lines the format parsed
	Sample  int // non-empty sample lines
}

func (d Detection) String() string {
	return fmt.Sprintf("log format %s (detected: %d of %d sample lines parse)", d.Format.Name(), d.Matched, d.Sample)
}

// ErrUndetected means no candidate format parsed the sample lines.
var ErrUndetected = errors.New("could not detect the log format")

// Detect picks the format that parses the most of the sample lines, trying
// common, combined, vhost_combined, nginx combined with and without a leading
// virtual host, JSON, and each of these behind a syslog prefix. Among formats
// that parse equally many lines it prefers the one leaving the least text
// unread, then the more specific.
func Detect(sample [][]byte) (Detection, error) {
	var best Detection
	bestTrail := -1
	nonEmpty := 0
	for _, l := range sample {
		if len(trimEOL(l)) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty == 0 {
		return Detection{}, fmt.Errorf("%w: no lines to look at", ErrUndetected)
	}
	var e Entry
	for _, syslog := range []bool{false, true} {
		for _, name := range detectOrder {
			spec := name
			if syslog {
				spec = "syslog+" + name
			}
			f, err := Lookup(spec)
			if err != nil {
				return Detection{}, err
			}
			matched, trail := 0, 0
			for _, l := range sample {
				n, err := f.parse(l, &e)
				if err == nil {
					matched++
					trail += n
				}
			}
			if matched > best.Matched || matched == best.Matched && matched > 0 && trail < bestTrail {
				best, bestTrail = Detection{Format: f, Matched: matched, Sample: nonEmpty}, trail
			}
		}
	}
	if best.Matched == 0 {
		return Detection{}, fmt.Errorf("%w from the first %d lines: pass --log-format with a preset (common, combined, vhost_combined, nginx_combined, json) or the LogFormat string from your server's configuration", ErrUndetected, nonEmpty)
	}
	return best, nil
}
