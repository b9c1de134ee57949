package accesslog

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wardenhq/warden/internal/testenv"
)

func mustLookup(t testing.TB, spec string) *Format {
	t.Helper()
	f, err := Lookup(spec)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", spec, err)
	}
	return f
}

func ts(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixNano()
}

func TestParseFormats(t *testing.T) {
	cases := []struct {
		name, format, line string
		want               Entry
	}{
		{"common", "common", `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
			Entry{Client: b("127.0.0.1"), User: b("frank"), Time: ts("2000-10-10T20:55:36Z"), Request: b("GET /apache_pb.gif HTTP/1.0"), Method: b("GET"), Path: b("/apache_pb.gif"), Protocol: b("HTTP/1.0"), Status: 200, Bytes: 2326, Duration: -1}},
		{"combined", "combined", `83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a/b.png?x=1&y=2 HTTP/1.1" 304 - "http://semicomplete.com/" "Mozilla/5.0 (X11)"`,
			Entry{Client: b("83.149.9.216"), Time: ts("2015-05-17T10:05:03Z"), Request: b("GET /a/b.png?x=1&y=2 HTTP/1.1"), Method: b("GET"), Path: b("/a/b.png"), Query: b("x=1&y=2"), Protocol: b("HTTP/1.1"), Status: 304, Referer: b("http://semicomplete.com/"), UserAgent: b("Mozilla/5.0 (X11)"), Duration: -1}},
		{"escaped quotes", "combined", `::1 - - [17/May/2015:10:05:03 +0200] "GET /q?a=\"x\" HTTP/1.1" 200 5 "-" "curl \"7\" \\"`,
			Entry{Client: b("::1"), Time: ts("2015-05-17T08:05:03Z"), Request: b(`GET /q?a=\"x\" HTTP/1.1`), Method: b("GET"), Path: b("/q"), Query: b(`a=\"x\"`), Protocol: b("HTTP/1.1"), Status: 200, Bytes: 5, UserAgent: b(`curl \"7\" \\`), Duration: -1}},
		{"ipv6", "combined", `2001:db8::7 - - [01/Jan/2024:00:00:00 +0000] "HEAD / HTTP/2.0" 404 0 "-" "-"`,
			Entry{Client: b("2001:db8::7"), Time: ts("2024-01-01T00:00:00Z"), Request: b("HEAD / HTTP/2.0"), Method: b("HEAD"), Path: b("/"), Protocol: b("HTTP/2.0"), Status: 404, Duration: -1}},
		{"request dash", "common", `10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "-" 408 -`,
			Entry{Client: b("10.0.0.1"), Time: ts("2024-01-01T00:00:00Z"), Request: b("-"), Path: b("-"), Status: 408, Duration: -1}},
		{"vhost_combined", "vhost_combined", `www.example.com:443 10.0.0.2 - - [01/Jan/2024:00:00:01 +0000] "POST /login HTTP/1.1" 401 512 "-" "ua"`,
			Entry{VHost: b("www.example.com"), Port: 443, Client: b("10.0.0.2"), Time: ts("2024-01-01T00:00:01Z"), Request: b("POST /login HTTP/1.1"), Method: b("POST"), Path: b("/login"), Protocol: b("HTTP/1.1"), Status: 401, Bytes: 512, UserAgent: b("ua"), Duration: -1}},
		{"nginx vhost", "nginx_vhost_combined", `example.org 10.0.0.3 - - [01/Jan/2024:00:00:02 +0000] "GET / HTTP/1.1" 200 10 "-" "ua"`,
			Entry{VHost: b("example.org"), Client: b("10.0.0.3"), Time: ts("2024-01-01T00:00:02Z"), Request: b("GET / HTTP/1.1"), Method: b("GET"), Path: b("/"), Protocol: b("HTTP/1.1"), Status: 200, Bytes: 10, UserAgent: b("ua"), Duration: -1}},
		{"custom with %D and strftime", `%a %{%Y-%m-%dT%H:%M:%S}t.%{msec_frac}t%{%z}t %m %U%q %H %>s %B %D "%{User-agent}i"`,
			`10.0.0.4 2024-02-29T23:59:59.250+0100 GET /x?y=1 HTTP/1.1 500 42 1500 "ua"`,
			Entry{Client: b("10.0.0.4"), Time: ts("2024-02-29T22:59:59.25Z"), Method: b("GET"), Path: b("/x"), Query: b("y=1"), Protocol: b("HTTP/1.1"), Status: 500, Bytes: 42, Duration: 1500, UserAgent: b("ua")}},
		{"httpd.conf line with %T ms", `LogFormat "%h %l %u %t \"%r\" %>s %b %{ms}T" timed`,
			`10.0.0.5 - - [01/Jan/2024:00:00:03 +0000] "GET / HTTP/1.1" 200 1 37`,
			Entry{Client: b("10.0.0.5"), Time: ts("2024-01-01T00:00:03Z"), Request: b("GET / HTTP/1.1"), Method: b("GET"), Path: b("/"), Protocol: b("HTTP/1.1"), Status: 200, Bytes: 1, Duration: 37000}},
		{"epoch seconds and %O", `%h %{sec}t "%r" %s %>s %O %I %k %{X-Forwarded-For}i`,
			`10.0.0.6 1700000000 "GET / HTTP/1.1" 302 200 99 12 0 -`,
			Entry{Client: b("10.0.0.6"), Time: 1700000000e9, Request: b("GET / HTTP/1.1"), Method: b("GET"), Path: b("/"), Protocol: b("HTTP/1.1"), Status: 200, Bytes: 99, BytesIn: 12, Duration: -1}},
		{"json nginx", "json", `{"time_local":"17/May/2015:10:05:03 +0000","remote_addr":"10.0.0.7","request":"GET /j?q=1 HTTP/1.1","status":"200","body_bytes_sent":"12","http_referer":"-","http_user_agent":"a \"b\" \u00e9","request_time":"0.123"}`,
			Entry{Client: b("10.0.0.7"), Time: ts("2015-05-17T10:05:03Z"), Request: b("GET /j?q=1 HTTP/1.1"), Method: b("GET"), Path: b("/j"), Query: b("q=1"), Protocol: b("HTTP/1.1"), Status: 200, Bytes: 12, UserAgent: b(`a "b" é`), Duration: 123000}},
		{"json mapped", "json:client=ip,time=ts,status=code,path=p,duration_ms=ms", `{"ts":1700000000.5,"ip":"10.0.0.8","code":503,"p":"/z","nested":{"a":[1,{"b":"}"}]},"ms":7,"ok":true,"n":null}`,
			Entry{Client: b("10.0.0.8"), Time: 1700000000.5e9, Path: b("/z"), Status: 503, Duration: 7000}},
		{"syslog 3164", "syslog+combined", `<134>Nov 27 11:00:00 web1 nginx[42]: 10.0.0.9 - - [27/Nov/2026:11:00:00 +0000] "GET / HTTP/1.1" 200 3 "-" "ua"`,
			Entry{Client: b("10.0.0.9"), Time: ts("2026-11-27T11:00:00Z"), Request: b("GET / HTTP/1.1"), Method: b("GET"), Path: b("/"), Protocol: b("HTTP/1.1"), Status: 200, Bytes: 3, UserAgent: b("ua"), Duration: -1}},
		{"syslog 5424", "syslog+common", `<134>1 2026-11-27T11:00:00Z web1 httpd 42 - - 10.0.0.10 - - [27/Nov/2026:11:00:00 +0000] "GET / HTTP/1.1" 200 3`,
			Entry{Client: b("10.0.0.10"), Time: ts("2026-11-27T11:00:00Z"), Request: b("GET / HTTP/1.1"), Method: b("GET"), Path: b("/"), Protocol: b("HTTP/1.1"), Status: 200, Bytes: 3, Duration: -1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := mustLookup(t, c.format)
			var e Entry
			if err := f.Parse([]byte(c.line), &e); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			e.scratch = nil
			if got, want := dump(&e), dump(&c.want); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func b(s string) []byte { return []byte(s) }

func dump(e *Entry) string {
	return strings.Join([]string{
		"client=" + string(e.Client), "ident=" + string(e.Ident), "user=" + string(e.User),
		"time=" + time.Unix(0, e.Time).UTC().Format(time.RFC3339Nano), "req=" + string(e.Request),
		"method=" + string(e.Method), "path=" + string(e.Path), "query=" + string(e.Query), "proto=" + string(e.Protocol),
		"status=" + itoa(int64(e.Status)), "bytes=" + itoa(e.Bytes), "in=" + itoa(e.BytesIn), "dur=" + itoa(e.Duration),
		"vhost=" + string(e.VHost), "port=" + itoa(int64(e.Port)), "ref=" + string(e.Referer), "ua=" + string(e.UserAgent),
	}, " ")
}

func itoa(n int64) string { return time.Duration(n).String() }

func TestMalformed(t *testing.T) {
	f := mustLookup(t, "combined")
	good := `1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`
	cases := []struct {
		name, line string
		want       error
	}{
		{"empty", "", ErrEmpty},
		{"truncated in request", good[:50], ErrTruncated},
		{"truncated in time", good[:20], ErrTruncated},
		{"truncated after status", good[:len(good)-12], ErrTruncated},
		{"bad month", strings.Replace(good, "May", "Mey", 1), ErrBadTime},
		{"bad day", strings.Replace(good, "17/", "47/", 1), ErrBadTime},
		{"bad zone", strings.Replace(good, "+0000", "+00x0", 1), ErrBadTime},
		{"bad status", strings.Replace(good, " 200 ", " 2x0 ", 1), ErrBadStatus},
		{"bad bytes", strings.Replace(good, " 1 ", " 1k ", 1), ErrBadNumber},
		{"invalid utf-8", strings.Replace(good, "ua", "u\xff\xfe", 1), ErrBadEncoding},
		{"binary junk", "\x00\x01\x02\x16\x03\x01junk", ErrBadEncoding},
		{"not a log line", "hello world", ErrBadClient},
		{"cut after the client", "1.2.3.4 world", ErrTruncated},
		{"garbage after", good + `x`, ErrTrailing},
		{"too long", good + " " + strings.Repeat("a", MaxLineBytes), ErrTooLong},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e Entry
			err := f.Parse([]byte(c.line), &e)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want a malformed-line error", err)
			}
			if err != c.want {
				t.Errorf("err = %v, want %v", err, c.want)
			}
		})
	}
	// Extra fields after a space (nginx's "$http_x_forwarded_for") are allowed.
	var e Entry
	if err := f.Parse([]byte(good+` "10.9.9.9"`), &e); err != nil {
		t.Errorf("trailing field: %v", err)
	}
	j := mustLookup(t, "json")
	for _, l := range []string{`{"time":"x"}`, `{"time_local":"17/May/2015:10:05:03 +0000"`, `[1,2]`, `{"a":1}`, `{"time":1700000000,"status":"20"}`, `{"time":1700000000,}`} {
		if err := j.Parse([]byte(l), &e); !errors.Is(err, ErrMalformed) {
			t.Errorf("json %q: err = %v, want malformed", l, err)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	cases := map[string]string{
		`%h %l %Z %t`:       "unknown directive %Z",
		`%h %{Foo}y %t`:     "unknown directive %{Foo}y",
		`%h %t %{Referer`:   "unclosed",
		`%h%u %t`:           "%h and %u must be separated",
		`%h %l %u "%r" %>s`: "no time directive",
		`%h %{%Q}t`:         "unsupported time conversion %Q",
		`%h %t %{min}T`:     "unit must be s, ms or us",
		`%h %t %i`:          "needs a header name",
		`combinedd`:         "unknown log format",
		`json:colour=x`:     `unknown field "colour"`,
	}
	for spec, want := range cases {
		_, err := Lookup(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
}

func TestDetect(t *testing.T) {
	cases := map[string][]string{
		"combined":             {`1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`, `garbage`},
		"common":               {`1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1`},
		"vhost_combined":       {`a.example:80 1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`},
		"nginx_vhost_combined": {`a.example 1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`},
		"json":                 {`{"remote_addr":"1.2.3.4","time_iso8601":"2015-05-17T10:05:03+00:00","request":"GET / HTTP/1.1","status":200}`},
		"syslog+combined":      {`May 17 10:05:03 web nginx: 1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`},
		"syslog+json":          {`<13>May 17 10:05:03 web app[1]: {"ip":"1.2.3.4","time":"2015-05-17T10:05:03Z","status":200}`},
	}
	for want, lines := range cases {
		var sample [][]byte
		for _, l := range lines {
			sample = append(sample, []byte(l))
		}
		d, err := Detect(sample)
		if err != nil {
			t.Errorf("%s: %v", want, err)
			continue
		}
		if d.Format.Name() != want {
			t.Errorf("Detect(%s sample) = %s", want, d)
		}
	}
	if _, err := Detect([][]byte{[]byte("hello"), []byte("world")}); !errors.Is(err, ErrUndetected) {
		t.Errorf("Detect(junk) err = %v", err)
	}
}

func readLines(t testing.TB, path string) [][]byte {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var lines [][]byte
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	return lines
}

func TestElasticSample(t *testing.T) {
	lines := readLines(t, testenv.Data(t, "elastic-apache/apache_logs"))
	d, err := Detect(lines[:100])
	if err != nil || d.Format.Name() != "combined" {
		t.Fatalf("Detect = %v, %v; want combined", d, err)
	}
	var e Entry
	var bytes int64
	for i, l := range lines {
		if err := d.Format.Parse(l, &e); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		bytes += e.Bytes
	}
	if len(lines) != 10000 || bytes != 2747282740 {
		t.Errorf("lines %d bytes %d; want 10000 lines, 2747282740 bytes", len(lines), bytes)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	for spec, line := range benchLines {
		f := mustLookup(t, spec)
		var e Entry
		l := []byte(line)
		if err := f.Parse(l, &e); err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if n := testing.AllocsPerRun(100, func() { _ = f.Parse(l, &e) }); n != 0 {
			t.Errorf("%s: %.1f allocations per line, want 0", spec, n)
		}
	}
}

func TestAuto(t *testing.T) {
	f := mustLookup(t, "auto")
	lines := map[string]int{
		`a.example:80 1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`: 80,
		`1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" 10 20`:        0,
		`{"remote_addr":"1.2.3.4","time":"2015-05-17T10:05:03Z","status":200}`:                  0,
	}
	for l, port := range lines {
		var e Entry
		if err := f.Parse([]byte(l), &e); err != nil || string(e.Client) != "1.2.3.4" || e.Port != port {
			t.Errorf("auto %q: err %v client %q port %d", l, err, e.Client, e.Port)
		}
	}
	var e Entry
	if err := f.Parse([]byte(`1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" 10 20`), &e); err != nil || e.BytesIn != 10 {
		t.Errorf("combinedio line: err %v bytes in %d", err, e.BytesIn)
	}
	if err := f.Parse([]byte("nonsense"), &e); !errors.Is(err, ErrMalformed) {
		t.Errorf("auto nonsense: %v", err)
	}
}

// TestClean_SameAsByteLoop: the word-wise check of a line agrees with a
// byte loop, whatever byte lies wherever in lines of every length.
func TestClean_SameAsByteLoop(t *testing.T) {
	naive := func(b []byte) bool {
		for _, c := range b {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return false
			}
		}
		return utf8.Valid(b)
	}
	r := rand.New(rand.NewPCG(7, 8))
	odd := []byte{0, 0x09, 0x0a, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xc3, 0xa9, 0xe2, 0xff}
	for range 50_000 {
		b := make([]byte, r.IntN(100))
		for i := range b {
			b[i] = byte('a' + r.IntN(26))
		}
		for range r.IntN(3) {
			if len(b) > 0 {
				b[r.IntN(len(b))] = odd[r.IntN(len(odd))]
			}
		}
		if r.IntN(4) == 0 && len(b) > 2 {
			i := r.IntN(len(b) - 1)
			copy(b[i:], "é")
		}
		if got, want := clean(b), naive(b); got != want {
			t.Fatalf("clean(%q) = %v, a byte loop says %v", b, got, want)
		}
	}
}

// TestCLFDate_ReusedEntryReadsAsFresh: an entry that remembers the date it
// read last gives every line the time (or the error) a fresh entry gives,
// over dates repeated, changed, invalid, and valid after invalid ones.
func TestCLFDate_ReusedEntryReadsAsFresh(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	dates := []string{"17/May/2015", "18/May/2015", "31/Feb/2020", "29/Feb/2021", "01/Jan/1970", "31/Dec/2999",
		"32/Jan/2020", "00/Jan/2020", "17/Mai/2015", "17/may/2015", "17/May/1969", "17/May/3000", "1/May/2015", "17/May/20x5"}
	times := []string{"10:05:03 +0000", "23:59:60 -1200", "24:00:00 +1400", "25:00:00 +0000", "10:60:00 +0000", "10:05:03.123 +0530", "10:05:03 +00:00", "10:05:03 Z"}
	for _, spec := range []string{"combined", "auto", `%h %{%d/%b/%Y:%H:%M:%S %z}t "%r" %>s %b`, "json"} {
		f := mustLookup(t, spec)
		var reused Entry
		for range 5_000 {
			when := dates[r.IntN(len(dates))] + ":" + times[r.IntN(len(times))]
			line := fmt.Sprintf(`192.0.2.1 - - [%s] "GET / HTTP/1.1" 200 5 "-" "ua"`, when)
			if spec == "json" {
				line = fmt.Sprintf(`{"remote_addr":"192.0.2.1","time_local":%q,"request":"GET / HTTP/1.1","status":"200"}`, when)
			}
			var fresh Entry
			errF, errR := f.Parse([]byte(line), &fresh), f.Parse([]byte(line), &reused)
			if errF != errR || fresh.Time != reused.Time {
				t.Fatalf("%s: %q: fresh %d %v, reused %d %v", spec, line, fresh.Time, errF, reused.Time, errR)
			}
		}
	}
}
