package accesslog

import (
	"errors"
	"net/netip"
	"testing"
)

// fuzzFormat checks that no input panics, that every error is a
// malformed-line error, and that an accepted line has a sane status and a
// client that is an address in canonical form (or none).
func fuzzFormat(f *testing.F, spec string) {
	format := mustLookup(f, spec)
	f.Add([]byte(benchLines[spec]))
	f.Add([]byte(""))
	f.Add([]byte("\x00\xff\"[]{}"))
	f.Add([]byte(`1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /\" HTTP/1.1" 200 - "-" "\\"`))
	f.Add([]byte(`{"time":"2015-05-17T10:05:03Z","status":200,"request":"\ud83d\ude00 \u00"}`))
	f.Add([]byte(`all - - [01/Jan/2999:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`))
	f.Add([]byte(`{"remote_addr":"1.2.3.4;\ndeny all","time":"2999-12-31T23:59:59Z","status":200}`))
	f.Add([]byte(`[fe80::1%eth0] - - [11/Apr/2262:23:47:17 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var e Entry
		err := format.Parse(line, &e)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if e.Status != 0 && (e.Status < 100 || e.Status > 999) {
			t.Fatalf("status %d accepted", e.Status)
		}
		if e.Bytes < 0 {
			t.Fatalf("negative bytes %d", e.Bytes)
		}
		if len(e.Client) > 0 {
			a, err := netip.ParseAddr(string(e.Client))
			if err != nil || a.Zone() != "" || a.Is4In6() || a.String() != string(e.Client) {
				t.Fatalf("client %q accepted: not a canonical address (%v)", e.Client, err)
			}
		}
	})
}

func FuzzCommon(f *testing.F)         { fuzzFormat(f, "common") }
func FuzzCombined(f *testing.F)       { fuzzFormat(f, "combined") }
func FuzzVhostCombined(f *testing.F)  { fuzzFormat(f, "vhost_combined") }
func FuzzNginxCombined(f *testing.F)  { fuzzFormat(f, "nginx_combined") }
func FuzzJSON(f *testing.F)           { fuzzFormat(f, "json") }
func FuzzSyslogCombined(f *testing.F) { fuzzFormat(f, "syslog+combined") }
func FuzzCustom(f *testing.F) {
	fuzzFormat(f, `%a %{%Y-%m-%dT%H:%M:%S}t%{%z}t "%r" %>s %B %D "%{User-agent}i"`)
}

// FuzzDetect checks that detection never panics on any sample.
func FuzzDetect(f *testing.F) {
	f.Add([]byte(benchLines["combined"]), []byte(benchLines["json"]))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d, err := Detect([][]byte{a, b})
		if err == nil && d.Matched == 0 {
			t.Fatal("detected a format that parsed nothing")
		}
	})
}

func FuzzAuto(f *testing.F) { fuzzFormat(f, "auto") }
