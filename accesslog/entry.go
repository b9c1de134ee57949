// Package accesslog parses web-server access-log lines: Apache LogFormat strings
// with their % directives, the usual presets (common, combined, vhost_combined,
// nginx combined), JSON lines with a field mapping, and any of these behind a
// syslog prefix.
//
// A Format is compiled once and then parses lines into a caller-owned Entry
// without allocating: the Entry's byte fields point into the line (or into the
// Entry's own scratch buffer for unescaped JSON strings) and are valid until the
// next Parse with the same Entry.
package accesslog

import "errors"

// ErrMalformed is wrapped by every parse error, so callers can count bad lines
// with errors.Is whatever the reason.
var ErrMalformed = errors.New("malformed line")

// Parse errors. Each names the reason a line was rejected; all wrap ErrMalformed.
// They are preallocated so that a rejected line costs no allocation either.
var (
	ErrEmpty       = malformed("empty line")
	ErrTooLong     = malformed("line too long")
	ErrBadEncoding = malformed("invalid UTF-8 or control bytes")
	ErrTruncated   = malformed("line ends early")
	ErrLiteral     = malformed("text does not match the format")
	ErrBadTime     = malformed("bad timestamp")
	ErrBadStatus   = malformed("bad status code")
	ErrBadNumber   = malformed("bad number")
	ErrBadRequest  = malformed("bad request line")
	ErrNoTime      = malformed("no timestamp")
	ErrBadJSON     = malformed("bad JSON")
	ErrTrailing    = malformed("unexpected text after the last field")
	ErrNoSyslog    = malformed("no syslog prefix")
	ErrBadClient   = malformed("bad client")
	// ErrFutureTime is not returned by Parse, which has no clock: it is the
	// reason analytics.Folder gives a line dated too far past its clock.
	ErrFutureTime = malformed("future time")
)

type malformedError struct{ reason string }

func malformed(reason string) error            { return &malformedError{reason} }
func (e *malformedError) Error() string        { return "malformed line: " + e.reason }
func (e *malformedError) Unwrap() error        { return ErrMalformed }
func (e *malformedError) Is(target error) bool { return target == ErrMalformed }

// Reason returns the short reason of a parse error ("bad timestamp"), or the
// error text for errors that are not parse errors.
func Reason(err error) string {
	var m *malformedError
	if errors.As(err, &m) {
		return m.reason
	}
	return err.Error()
}

// MaxLineBytes is the default limit on one line; longer lines are malformed.
const MaxLineBytes = 64 << 10

// Entry is one parsed request. Byte fields alias the parsed line and are empty
// when the format does not log them ("-" is reported as empty too, except for
// a request line, which keeps "-").
type Entry struct {
	Client    []byte // %h or %a: the client address, canonical (see setClient)
	Ident     []byte // %l
	User      []byte // %u
	Time      int64  // request time, Unix nanoseconds (UTC)
	Request   []byte // %r: the whole request line
	Method    []byte
	Path      []byte // without the query string
	Query     []byte // without the leading '?'
	Protocol  []byte
	Status    int   // final status (%>s, or %s)
	Bytes     int64 // response bytes (%b, %B, or %O when neither is logged)
	BytesIn   int64 // %I
	Duration  int64 // microseconds to serve the request; -1 when not logged
	VHost     []byte
	Port      int
	Referer   []byte
	UserAgent []byte

	scratch []byte   // unescaped JSON strings
	client  [45]byte // Client when it is not spelled as logged (IPv6)
	// auto is the candidate of the auto format that last read a line
	// whole, plus one: the one it tries first (see parseAuto).
	auto uint8
	// date is the CLF date read last (see clfBody).
	date clfDate
}

// Reset clears e for reuse, keeping its scratch buffer, which format the
// auto format tries first and the date it read last.
func (e *Entry) Reset() {
	s := e.scratch[:0]
	*e = Entry{Duration: -1, scratch: s, auto: e.auto, date: e.date}
}

// StatusClass returns "1xx".."5xx" for e.Status, or "" outside 100..599.
func StatusClass(status int) string {
	switch status / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	}
	return ""
}
