package accesslog

import (
	"testing"
	"time"
)

// TestParseTimeOverflow: times past what int64 nanoseconds hold (after
// 2262-04-11T23:47:16Z) are bad times in every time syntax, not a wrapped
// value anywhere in the past or future; up to that instant they parse.
func TestParseTimeOverflow(t *testing.T) {
	const ua = ` "GET / HTTP/1.1" 200 1 "-" "ua"`
	cases := []struct {
		format, line string
		want         string // RFC 3339 time, or "" for ErrBadTime
	}{
		{"combined", `192.0.2.1 - - [01/Jan/2200:00:00:00 +0000]` + ua, "2200-01-01T00:00:00Z"},
		{"combined", `192.0.2.1 - - [11/Apr/2262:23:47:16 +0000]` + ua, "2262-04-11T23:47:16Z"},
		{"combined", `192.0.2.1 - - [11/Apr/2262:23:47:17 +0000]` + ua, ""},
		{"combined", `192.0.2.1 - - [11/Apr/2262:23:47:16.854775808 +0000]` + ua, ""},
		{"combined", `192.0.2.1 - - [01/Jan/2999:00:00:00 +0000]` + ua, ""},
		{"combined", `192.0.2.1 - - [31/Dec/2999:23:59:59 -2359]` + ua, ""},
		{"json", `{"time":"2999-12-31T23:59:59Z","remote_addr":"192.0.2.1","status":200}`, ""},
		{"json", `{"time":"2263-01-01T00:00:00+00:00","remote_addr":"192.0.2.1","status":200}`, ""},
		{"json", `{"time":"2200-01-01T00:00:00Z","remote_addr":"192.0.2.1","status":200}`, "2200-01-01T00:00:00Z"},
		{"json", `{"time":"01/Jan/2999:00:00:00 +0000","remote_addr":"192.0.2.1","status":200}`, ""},
		{"json", `{"time":99999999999,"remote_addr":"192.0.2.1","status":200}`, ""},        // seconds, year 5138
		{"json", `{"time":9999999999.5,"remote_addr":"192.0.2.1","status":200}`, ""},       // seconds, year 2286
		{"json", `{"time":999999999999999999,"remote_addr":"192.0.2.1","status":200}`, ""}, // milliseconds
		{"json", `{"time":7258118400,"remote_addr":"192.0.2.1","status":200}`, "2200-01-01T00:00:00Z"},
		{"json", `{"time":7258118400000,"remote_addr":"192.0.2.1","status":200}`, "2200-01-01T00:00:00Z"},
		{`%h %{%Y-%m-%d %T}t %>s`, `192.0.2.1 2999-01-01 00:00:00 200`, ""},
		{`%h %{%Y-%m-%d %T}t %>s`, `192.0.2.1 2200-01-01 00:00:00 200`, "2200-01-01T00:00:00Z"},
		{`%h %{sec}t %>s`, `192.0.2.1 99999999999 200`, ""},
		{`%h %{sec}t %>s`, `192.0.2.1 9999999999999999999 200`, ""},
		{`%h %{msec}t %>s`, `192.0.2.1 99999999999999 200`, ""},
		{`%h %{usec}t %>s`, `192.0.2.1 999999999999999999 200`, ""},
		{`%h %{usec}t %>s`, `192.0.2.1 7258118400000000 200`, "2200-01-01T00:00:00Z"},
		{`%h %{%s}t %>s`, `192.0.2.1 99999999999 200`, ""},
		{`%h %{sec}t.%{usec_frac}t %>s`, `192.0.2.1 9223372036.854776 200`, ""},
	}
	for _, c := range cases {
		var e Entry
		err := mustLookup(t, c.format).Parse([]byte(c.line), &e)
		if c.want == "" {
			if err != ErrBadTime {
				t.Errorf("%s: %s: err %v, time %s; want %v", c.format, c.line, err, time.Unix(0, e.Time).UTC(), ErrBadTime)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %s: %v", c.format, c.line, err)
			continue
		}
		if got := time.Unix(0, e.Time).UTC().Format(time.RFC3339); got != c.want {
			t.Errorf("%s: %s: time %s, want %s", c.format, c.line, got, c.want)
		}
	}
}

// TestDurationOverflow: a duration too large for int64 microseconds is a
// bad number, not a negative latency.
func TestDurationOverflow(t *testing.T) {
	var e Entry
	err := mustLookup(t, "json").Parse([]byte(`{"time":"2015-05-17T10:05:03Z","remote_addr":"192.0.2.1","status":200,"request_time":"999999999999999999.5"}`), &e)
	if err != ErrBadNumber {
		t.Errorf("err %v, duration %d; want %v", err, e.Duration, ErrBadNumber)
	}
}
