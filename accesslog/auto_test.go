package accesslog

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// autoReference is auto as it read lines before it remembered a candidate:
// every candidate in turn, each checking the whole line again.
func autoReference(f *Format, line []byte, e *Entry) (int, error) {
	var firstErr error
	fallback := -1
	for i, c := range f.auto {
		n, err := c.parse(line, e)
		if err == nil {
			if n == 0 {
				return 0, nil
			}
			if fallback < 0 {
				fallback = i
			}
			continue
		}
		if firstErr == nil || firstErr == ErrNoSyslog {
			firstErr = err
		}
		if err == ErrEmpty || err == ErrTooLong || err == ErrBadEncoding {
			return 0, err
		}
	}
	if fallback >= 0 {
		return f.auto[fallback].parse(line, e)
	}
	return 0, firstErr
}

// reading is what a parse gave, for comparison.
func reading(e *Entry, n int, err error) string {
	c := *e
	c.scratch, c.client, c.auto = nil, [45]byte{}, 0
	return fmt.Sprintf("%d %v %+v", n, err, c)
}

// autoLines are lines of every format auto tries, lines two formats read,
// lines with text after the last field, and lines nothing reads.
func autoLines() []string {
	req := `[17/May/2015:10:05:03 +0000] "GET /a?b=1 HTTP/1.1" 200 12`
	ls := []string{
		`a.example:80 1.2.3.4 - - ` + req + ` "-" "ua"`,  // vhost_combined and nginx_vhost_combined
		`a.example 1.2.3.4 - - ` + req + ` "-" "ua"`,     // nginx_vhost_combined
		`1.2.3.4 - - ` + req + ` "-" "ua"`,               // combined
		`1.2.3.4 - - ` + req + ` "-" "ua" 10 20`,         // combinedio, combined with text left
		`1.2.3.4 - - ` + req,                             // common
		`2001:db8::1 - - ` + req + ` "-" "ua"`,           // combined, an IPv6 client
		`2001:db8::1 - - ` + req + ` "-" "ua" "9.9.9.9"`, // nginx's x_forwarded_for: text left
		`1.2.3.4 - - ` + req + ` "ref" "u\"a" 1 2`,       // escaped quote
		`1.2.3.4 - - ` + req + ` "-" "u"a" 1 2`,          // a bare quote in the user agent
		`1.2.3.4 - - ` + req + ` "-" "cut short`,         // last quoted field cut
		`- - - ` + req + ` "-" "ua"`,                     // no client
		` - - ` + req + ` "-" "ua"`,                      // empty client
		`h:1 - - - ` + req + ` "-" "ua"`,                 // vhost_combined without a client
		`{"remote_addr":"1.2.3.4","time":"2015-05-17T10:05:03Z","status":200}`,
		`  {"remote_addr":"1.2.3.4","time":"2015-05-17T10:05:03Z","status":200}`,
		`{"remote_addr":"1.2.3.4","time_local":"17/May/2015:10:05:03 +0000","request":"GET / HTTP/1.1"}`,
		`<134>May 17 10:05:03 web1 nginx[42]: 1.2.3.4 - - ` + req + ` "-" "ua"`,
		`<134>May 17 10:05:03 web1 nginx[42]: a.example:80 1.2.3.4 - - ` + req + ` "-" "ua"`,
		`<13>1 2026-11-27T11:00:00Z host app 1 - - 1.2.3.4 - - ` + req,
		`2026-11-27T11:00:00+00:00 host nginx: 1.2.3.4 - - ` + req + ` "-" "ua" 1 2`,
		`2026-x:80 10.0.0.1 tag: 1.2.3.4 ` + req + ` ` + req + ` "-" "ua"`,
		`Dec 17 10:05:03 web1 nginx: {"remote_addr":"1.2.3.4","time":"2015-05-17T10:05:03Z","status":200}`,
		`Feb  7 10:05:03 web1 nginx: a.example 1.2.3.4 - - ` + req + ` "-" "ua"`,
		"", "\n", "nonsense", "1.2.3.4 \x01", strings.Repeat("x", MaxLineBytes+1),
	}
	for _, l := range benchLines {
		ls = append(ls, l)
	}
	return ls
}

// mutate changes a few bytes of l, from l's own bytes and a few that
// matter to the formats.
func mutate(r *rand.Rand, l string) string {
	b := []byte(l)
	const special = ` -:"[]{}<>/\%.0123456789aZ`
	for range 1 + r.IntN(3) {
		if len(b) == 0 {
			b = append(b, special[r.IntN(len(special))])
			continue
		}
		i := r.IntN(len(b))
		switch r.IntN(4) {
		case 0:
			b[i] = special[r.IntN(len(special))]
		case 1:
			b = append(b[:i], b[i+1:]...)
		case 2:
			b = append(b[:i], append([]byte{special[r.IntN(len(special))]}, b[i:]...)...)
		default:
			b[i] = b[r.IntN(len(b))]
		}
	}
	return string(b)
}

// checkPins parses line with each candidate remembered (and none), and
// wants every reading to be the reference's.
func checkPins(t *testing.T, f *Format, line string) {
	t.Helper()
	var ref Entry
	ref.Reset()
	n, err := autoReference(f, []byte(line), &ref)
	want := reading(&ref, n, err)
	for pin := 0; pin <= len(f.auto); pin++ {
		e := Entry{auto: uint8(pin)}
		n, err := f.parse([]byte(line), &e)
		if got := reading(&e, n, err); got != want {
			t.Fatalf("%q with candidate %d remembered:\n got %s\nwant %s", line, pin, got, want)
		}
	}
}

// TestAutoPinned: whatever candidate an Entry remembers, auto reads a
// line as it did before it remembered any (each candidate in turn).
func TestAutoPinned(t *testing.T) {
	f := mustLookup(t, "auto")
	r := rand.New(rand.NewPCG(1, 2))
	lines := autoLines()
	for _, l := range lines {
		checkPins(t, f, l)
		for range 300 {
			checkPins(t, f, mutate(r, l))
		}
	}
}

// TestAutoPinsOneFormat: a line read whole pins its candidate, which the
// next line of the stream tries first with only the candidates before it
// that could read it too; text after the last field pins nothing.
func TestAutoPinsOneFormat(t *testing.T) {
	f := mustLookup(t, "auto")
	want := map[string][]string{
		"vhost_combined":              nil,
		"nginx_vhost_combined":        {"vhost_combined"},
		"combined":                    nil,
		"combinedio":                  nil,
		"common":                      nil,
		"json":                        {"vhost_combined", "nginx_vhost_combined", "combined", "combinedio", "common"},
		"syslog+vhost_combined":       {"vhost_combined", "nginx_vhost_combined"},
		"syslog+nginx_vhost_combined": {"vhost_combined", "nginx_vhost_combined", "syslog+vhost_combined"},
		"syslog+combined":             {"vhost_combined", "nginx_vhost_combined"},
		"syslog+combinedio":           {"vhost_combined", "nginx_vhost_combined"},
		"syslog+common":               {"vhost_combined", "nginx_vhost_combined"},
		"syslog+json":                 {"vhost_combined", "nginx_vhost_combined", "syslog+vhost_combined", "syslog+nginx_vhost_combined", "syslog+combined", "syslog+combinedio", "syslog+common"},
	}
	for p, c := range f.auto {
		var got []string
		for _, q := range f.autoCheck[p] {
			got = append(got, f.auto[q].Name())
		}
		if fmt.Sprint(got) != fmt.Sprint(want[c.Name()]) {
			t.Errorf("%s tries first %v, want %v", c.Name(), got, want[c.Name()])
		}
	}
	var e Entry
	for _, l := range []string{benchLines["combined"], benchLines["combined"]} {
		if err := f.Parse([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		if got := f.auto[e.auto-1].Name(); got != "combined" {
			t.Errorf("pinned %s, want combined", got)
		}
	}
	if err := f.Parse([]byte(`1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "9.9.9.9"`), &e); err != nil || e.auto != 0 {
		t.Errorf("text after the last field: err %v, pinned %d", err, e.auto)
	}
	if err := f.Parse([]byte("nonsense"), &e); err == nil || e.auto != 0 {
		t.Errorf("nonsense: err %v, pinned %d", err, e.auto)
	}
}

// FuzzAutoPinned: no pin changes how auto reads a line.
func FuzzAutoPinned(f *testing.F) {
	for _, l := range autoLines() {
		f.Add([]byte(l))
	}
	format := mustLookup(f, "auto")
	f.Fuzz(func(t *testing.T, line []byte) { checkPins(t, format, string(line)) })
}
