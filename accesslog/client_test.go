package accesslog

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// clientLine writes a line whose client is client in the given format.
func clientLine(format, client string) string {
	switch format {
	case "json":
		return `{"remote_addr":"` + client + `","time_local":"17/May/2015:10:05:03 +0000","request":"GET / HTTP/1.1","status":"200","body_bytes_sent":"1"}`
	case "syslog+combined":
		return `<134>May 17 10:05:03 web1 nginx[42]: ` + client + ` - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`
	case "vhost_combined":
		return `example.org:443 ` + client + ` - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`
	case customA:
		return client + ` 2015-05-17T10:05:03+0000 "GET / HTTP/1.1" 200 1 12 "ua"`
	}
	return client + ` - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`
}

// customA is a format with %a, as the common presets log %h.
const customA = `%a %{%Y-%m-%dT%H:%M:%S}t%{%z}t "%r" %>s %B %D "%{User-agent}i"`

var clientFormats = []string{"common", "combined", "vhost_combined", "nginx_combined", "json", "syslog+combined", "auto", customA}

func TestParseClient(t *testing.T) {
	good := map[string]string{
		"83.149.9.216":                "83.149.9.216",
		"2001:db8::7":                 "2001:db8::7",
		"2001:DB8:0:0:0:0:0:7":        "2001:db8::7",
		"[2001:db8::7]":               "2001:db8::7",
		"fe80::1%eth0":                "fe80::1",
		"[fe80::1%25]":                "fe80::1",
		"::ffff:192.0.2.1":            "192.0.2.1",
		"::FFFF:c000:201":             "192.0.2.1",
		"[192.0.2.1]":                 "192.0.2.1",
		"::1":                         "::1",
		"1::2:3:4:5:6:7":              "1:0:2:3:4:5:6:7",
		"0000:0000:0000:0000:0:0:0:1": "::1",
		"-":                           "",
	}
	bad := []string{
		"all", "localhost", "crawl-66-249-66-1.googlebot.com", "unix:", "1.2.3", "1.2.3.4.5", "01.2.3.4",
		"256.1.1.1", "1.2.3.4%eth0", "[1.2.3.4", "1.2.3.4]", "[]", ":::", "::1%", "::1%a;b", "::1%" + strings.Repeat("x", 16),
		"1.2.3.4:80", "[::1]:80", "abc", "deadbeef", strings.Repeat("1", maxClientField+1),
	}
	for _, spec := range clientFormats {
		f := mustLookup(t, spec)
		for in, want := range good {
			var e Entry
			if err := f.Parse([]byte(clientLine(spec, in)), &e); err != nil {
				t.Errorf("%s: client %q: %v", spec, in, err)
				continue
			}
			if string(e.Client) != want {
				t.Errorf("%s: client %q read as %q, want %q", spec, in, e.Client, want)
			}
		}
		for _, in := range bad {
			var e Entry
			if err := f.Parse([]byte(clientLine(spec, in)), &e); err == nil {
				t.Errorf("%s: client %q accepted as %q", spec, in, e.Client)
			} else if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: client %q: %v is not a malformed-line error", spec, in, err)
			}
		}
	}
	// The reason is "bad client" whenever the rest of the line is fine.
	for _, spec := range []string{"common", "json", customA} {
		var e Entry
		if err := mustLookup(t, spec).Parse([]byte(clientLine(spec, "all")), &e); err != ErrBadClient || Reason(err) != "bad client" {
			t.Errorf("%s: client all: %v, want %v", spec, err, ErrBadClient)
		}
	}
}

// TestParseClientJSONEscapes: escapes in JSON cannot make a client that is
// not an address, whatever they decode to.
func TestParseClientJSONEscapes(t *testing.T) {
	f := mustLookup(t, "json")
	for _, client := range []string{
		`\u0061ll`,               // "all"
		`1.2.3.4;\ndeny all`,     // a second directive after a newline
		`1.2.3.4\u003b deny all`, // "1.2.3.4; deny all"
		`::1%eth0;\nallow all`,   // behind a zone
		`192.0.2.1\u0000`,        // a NUL after an address
		`\"192.0.2.1`,            // a quote before it
	} {
		var e Entry
		if err := f.Parse([]byte(clientLine("json", client)), &e); err != ErrBadClient {
			t.Errorf("json client %s: err %v, client %q; want %v", client, err, e.Client, ErrBadClient)
		}
	}
	var e Entry
	if err := f.Parse([]byte(clientLine("json", `2001:DB8::\u0037`)), &e); err != nil || string(e.Client) != "2001:db8::7" {
		t.Errorf("escaped IPv6 client: %v %q", err, e.Client)
	}
}

// TestParseClientNotLogged: a format without a client, or a JSON line
// without its key, has no client and is still a request.
func TestParseClientNotLogged(t *testing.T) {
	var e Entry
	if err := mustLookup(t, `%t "%r" %>s %b`).Parse([]byte(`[17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1`), &e); err != nil || e.Client != nil {
		t.Errorf("no %%h: %v, client %q", err, e.Client)
	}
	if err := mustLookup(t, "json").Parse([]byte(`{"time":"2015-05-17T10:05:03Z","status":200}`), &e); err != nil || e.Client != nil {
		t.Errorf("json without a client: %v, client %q", err, e.Client)
	}
	// With %a and %h both logged, %a is the client and %h (maybe a
	// hostname) is not read as one.
	f := mustLookup(t, `%h %a %t "%r" %>s %b`)
	if err := f.Parse([]byte(`host.example 192.0.2.9 [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1`), &e); err != nil || string(e.Client) != "192.0.2.9" {
		t.Errorf("%%h and %%a: %v, client %q", err, e.Client)
	}
}

func TestParseClientDoesNotAllocate(t *testing.T) {
	f := mustLookup(t, "combined")
	for _, c := range []string{"192.0.2.1", "2001:DB8:0:0:0:0:0:7", "[fe80::1%eth0]", "::ffff:192.0.2.1", "all"} {
		l := []byte(clientLine("combined", c))
		var e Entry
		_ = f.Parse(l, &e)
		if n := testing.AllocsPerRun(100, func() { _ = f.Parse(l, &e) }); n != 0 {
			t.Errorf("client %s: %.1f allocations per line, want 0", c, n)
		}
	}
}

// FuzzClient checks setClient against net/netip: what it accepts is an
// address in netip's canonical form (IPv4-mapped addresses unmapped), and
// what netip reads without a zone it accepts.
func FuzzClient(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::1", "[::1]", "fe80::1%eth0", "::ffff:1.2.3.4", "all", "1::2:3:4:5:6:7", "01.1.1.1", "::1%a;b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var e Entry
		err := e.setClient([]byte(s))
		if err != nil {
			if err != ErrBadClient {
				t.Fatalf("setClient(%q) = %v", s, err)
			}
			if a, perr := netip.ParseAddr(s); perr == nil && a.Zone() == "" && len(s) <= maxClientField && s != "" {
				t.Fatalf("setClient refused %q, an address (%s)", s, a)
			}
			return
		}
		if s == "" || s == "-" {
			if e.Client != nil {
				t.Fatalf("setClient(%q) = %q, want none", s, e.Client)
			}
			return
		}
		a, perr := netip.ParseAddr(string(e.Client))
		if perr != nil || a.Zone() != "" || a.Is4In6() || a.String() != string(e.Client) {
			t.Fatalf("setClient(%q) = %q, not a canonical address (%v)", s, e.Client, perr)
		}
		in := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		if i := strings.IndexByte(in, '%'); i >= 0 {
			in = in[:i]
		}
		if want, perr := netip.ParseAddr(in); perr != nil || want.Unmap() != a {
			t.Fatalf("setClient(%q) = %q, netip reads %s (%v)", s, e.Client, want, perr)
		}
	})
}

func ExampleFormat_Parse_client() {
	f, _ := Lookup("combined")
	var e Entry
	for _, client := range []string{"2001:DB8:0:0::7", "all"} {
		err := f.Parse([]byte(client+` - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`), &e)
		fmt.Printf("%q %v\n", e.Client, err)
	}
	// Output:
	// "2001:db8::7" <nil>
	// "" malformed line: bad client
}

func BenchmarkClient(b *testing.B) {
	for _, c := range []string{"83.149.9.216", "2001:db8::7", "2001:DB8:0:0:0:0:0:7"} {
		b.Run(c, func(b *testing.B) {
			v := []byte(c)
			var e Entry
			b.ReportAllocs()
			for b.Loop() {
				if err := e.setClient(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
