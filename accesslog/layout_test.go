package accesslog

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/wardenhq/warden/internal/testenv"
)

// sameEntry reports how a and b differ in their exported fields (nil and
// empty told apart), or "".
func sameEntry(a, b *Entry) string {
	fa, fb := layoutFields(a), layoutFields(b)
	for i := range fa {
		x, y := *fa[i], *fb[i]
		if !bytes.Equal(x, y) || (x == nil) != (y == nil) {
			return fmt.Sprintf("field %d: %q (nil %v) against %q (nil %v)", i, x, x == nil, y, y == nil)
		}
	}
	if a.Time != b.Time || a.Status != b.Status || a.Bytes != b.Bytes || a.BytesIn != b.BytesIn || a.Duration != b.Duration || a.Port != b.Port {
		return fmt.Sprintf("numbers: %d %d %d %d %d %d against %d %d %d %d %d %d", a.Time, a.Status, a.Bytes, a.BytesIn, a.Duration, a.Port,
			b.Time, b.Status, b.Bytes, b.BytesIn, b.Duration, b.Port)
	}
	return ""
}

// layoutLines are lines of every kind of field: each preset, a JSON line
// with escapes (bytes the parse makes), an IPv6 client (spelled anew), a
// host and port, a duration, a query string, "-" fields.
func layoutLines(t testing.TB) map[string][]string {
	out := map[string][]string{}
	for spec, l := range benchLines {
		out[spec] = append(out[spec], l)
	}
	out["json"] = append(out["json"],
		`{"time_local":"17/May/2015:10:05:03 +0000","remote_addr":"2001:DB8:0:0::1","request":"GET /a\u0020b?q=\"x\" HTTP/1.1","status":"404","body_bytes_sent":"-","http_user_agent":"curl\/8.0","request_time":"1.5"}`)
	out["combined"] = append(out["combined"],
		`::ffff:10.0.0.1 - bob [17/May/2015:10:05:03 +0200] "POST /login.php?user=admin&x=1 HTTP/1.0" 302 - "-" "-"`,
		`2001:db8::0:1 - - [17/May/2015:10:05:03 -0700] "-" 400 0 "-" "-"`)
	out["vhost_combined"] = append(out["vhost_combined"],
		`www.example.org:8443 192.0.2.7 - - [01/Jan/2026:00:00:00 +0000] "GET /?a HTTP/2.0" 200 12 "http://r/" "ua"`)
	src, err := os.ReadFile(testenv.Data(t, "elastic-apache/apache_logs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(src, []byte("\n"))[:2000] {
		if len(l) > 0 {
			out["auto"] = append(out["auto"], string(l))
		}
	}
	return out
}

// TestLayout_GivesBackTheParsedEntry: the Entry read from a line's layout
// is the Entry its parse gave, field for field, whatever the format, and
// its fields that lay in the line alias the line again.
func TestLayout_GivesBackTheParsedEntry(t *testing.T) {
	n := 0
	for spec, lines := range layoutLines(t) {
		f := mustLookup(t, spec)
		var parsed, read Entry
		for _, l := range lines {
			line := []byte(l)
			if err := f.Parse(line, &parsed); err != nil {
				t.Fatalf("%s: %q: %v", spec, l, err)
			}
			ref := parsed.Time + int64(n%3)*1e9 // the watermark, at or past the line's time
			lay := AppendLayout(nil, line, &parsed, ref)
			// A copy of the line, as a reader gets it from a record.
			again := bytes.Clone(line)
			if err := read.ReadLayout(lay, again, ref); err != nil {
				t.Fatalf("%s: %q: %v", spec, l, err)
			}
			if d := sameEntry(&parsed, &read); d != "" {
				t.Fatalf("%s: %q: %s", spec, l, d)
			}
			if _, was := within(line, parsed.Path); was {
				if _, ok := within(again, read.Path); !ok {
					t.Fatalf("%s: %q: the path does not alias the line", spec, l)
				}
			}
			n++
		}
	}
	if n < 2000 {
		t.Fatalf("only %d lines tried", n)
	}
}

// TestLayout_HostileBytesAreRefused: every cut of a layout, and a layout
// read over a shorter line, is refused, and leaves the Entry empty.
func TestLayout_HostileBytesAreRefused(t *testing.T) {
	f := mustLookup(t, "combined")
	line := []byte(benchLines["combined"])
	var e Entry
	if err := f.Parse(line, &e); err != nil {
		t.Fatal(err)
	}
	lay := AppendLayout(nil, line, &e, e.Time)
	var got Entry
	for i := range lay {
		if err := got.ReadLayout(lay[:i], line, e.Time); err == nil {
			t.Fatalf("a layout cut at %d of %d was read", i, len(lay))
		}
		if got.Path != nil || got.Status != 0 {
			t.Fatalf("a refused layout left fields set: %+v", got)
		}
	}
	if err := got.ReadLayout(append(bytes.Clone(lay), 0), line, e.Time); err == nil {
		t.Fatal("a layout with a byte past its end was read")
	}
	if err := got.ReadLayout(lay, line[:len(line)-10], e.Time); err == nil {
		t.Fatal("a layout read over a line shorter than the one it describes was read")
	}
	bad := bytes.Clone(lay)
	bad[0] = layoutVersion + 1
	if err := got.ReadLayout(bad, line, e.Time); err == nil {
		t.Fatal("a layout of an unknown version was read")
	}
}

// FuzzReadLayout: no layout, however made, panics, and one that is read
// gives fields that lie within the line or the layout.
func FuzzReadLayout(f *testing.F) {
	fm := mustLookup(f, "combined")
	for _, l := range []string{benchLines["combined"], `2001:db8::1 - - [17/May/2015:10:05:03 +0000] "GET /?q HTTP/1.1" 200 1 "-" "-"`} {
		var e Entry
		line := []byte(l)
		if err := fm.Parse(line, &e); err != nil {
			f.Fatal(err)
		}
		f.Add(AppendLayout(nil, line, &e, e.Time), line)
	}
	f.Fuzz(func(t *testing.T, lay, line []byte) {
		var e Entry
		if e.ReadLayout(lay, line, 1<<60) != nil {
			return
		}
		for i, fp := range layoutFields(&e) {
			fd := *fp
			if len(fd) == 0 {
				continue
			}
			_, inLine := within(line, fd)
			_, inLayout := within(lay, fd)
			if !inLine && !inLayout {
				t.Fatalf("field %d (%q) lies in neither the line nor the layout", i, fd)
			}
		}
		if e.Status < 0 || e.Port < 0 || e.Port > 65535 {
			t.Fatalf("numbers out of range: status %d port %d", e.Status, e.Port)
		}
	})
}

// BenchmarkReadLayout: reading the elastic sample's lines back from their
// layouts, against BenchmarkParseReal's parse of the same lines.
func BenchmarkReadLayout(b *testing.B) {
	src, err := os.ReadFile(testenv.Data(b, "elastic-apache/apache_logs"))
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(src, []byte("\n"))[:1000]
	f := mustLookup(b, "auto")
	var lays [][]byte
	var refs []int64
	var e Entry
	size := 0
	for _, l := range lines {
		if err := f.Parse(l, &e); err != nil {
			b.Fatal(err)
		}
		lays, refs = append(lays, AppendLayout(nil, l, &e, e.Time)), append(refs, e.Time)
		size += len(lays[len(lays)-1])
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if err := e.ReadLayout(lays[i], lines[i], refs[i]); err != nil {
			b.Fatal(err)
		}
		i = (i + 1) % len(lines)
	}
	b.ReportMetric(float64(size)/float64(len(lines)), "layout_bytes/line")
}
