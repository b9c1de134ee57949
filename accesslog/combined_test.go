package accesslog

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/wardenhq/warden/internal/testenv"
)

// sameAsLoop fails unless f (whose shape readCombined reads) reads line
// as its items' loop alone does: the same entry and the same error, and
// when readCombined takes the line, the same entry as the loop's.
func sameAsLoop(t testing.TB, f *Format, line []byte) (taken bool) {
	t.Helper()
	loop := *f
	loop.shape = 0
	var a, b Entry
	errA, errB := f.Parse(line, &a), loop.Parse(line, &b)
	if errA != errB || !reflect.DeepEqual(a, b) {
		t.Fatalf("%q: with readCombined %v %+v, the loop alone %v %+v", line, errA, a, errB, b)
	}
	var ok bool
	var n int
	admitted, err := f.admit(line)
	if err != nil {
		return false
	}
	if f.syslog {
		if admitted, ok = stripSyslog(admitted); !ok {
			return false
		}
	}
	var c Entry
	c.Reset()
	n, ok = readCombined(admitted, &c, f.shape == 1)
	if !ok {
		return false
	}
	var d Entry
	d.Reset()
	loop.syslog = false // stripped above
	m, err := loop.parseAdmitted(admitted, &d)
	if err != nil || n != m || !reflect.DeepEqual(c, d) {
		t.Fatalf("%q: readCombined took it (%d bytes after) as %+v, the loop says %v (%d after) %+v", line, n, c, err, m, d)
	}
	return true
}

// TestReadCombined_AsTheLoop: on the real sample, the corpora and lines
// cut, doubled and changed at random places (quotes, escapes, spaces,
// dashes, IPv6, bad bytes), combined and common read as the loop reads
// them, and readCombined takes most real lines.
func TestReadCombined_AsTheLoop(t *testing.T) {
	var lines [][]byte
	for _, p := range []string{testenv.Data(t, "elastic-apache/apache_logs")} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, bytes.Split(b, []byte("\n"))...)
	}
	more, _ := filepath.Glob(filepath.Join(filepath.Dir(testenv.Data(t, "elastic-apache/apache_logs")), "..", "crowdsec-hub", "*", "*", "*.log"))
	for _, p := range more {
		if b, err := os.ReadFile(p); err == nil {
			lines = append(lines, bytes.Split(b, []byte("\n"))...)
		}
	}
	r := rand.New(rand.NewPCG(21, 22))
	odd := []string{" ", `"`, `\`, `\"`, "-", "[", "]", "?", "\t", "\x7f", "é", "\xff", `" "`, "  ", "::1", "2001:db8::7", "%", "HTTP/1.1", "0", "999", "1.2.3.4"}
	base := len(lines)
	for i := range base {
		l := lines[i]
		for range 4 {
			m := append([]byte(nil), l...)
			at := r.IntN(len(m) + 1)
			switch r.IntN(4) {
			case 0:
				m = m[:at]
			case 1:
				m = append(m[:at], append([]byte(odd[r.IntN(len(odd))]), m[at:]...)...)
			case 2:
				if at < len(m) {
					m = append(m[:at], m[min(len(m), at+1+r.IntN(3)):]...)
				}
			default:
				m = append(m, []byte(" "+odd[r.IntN(len(odd))])...)
			}
			lines = append(lines, m)
		}
	}
	for _, spec := range []string{"combined", "common", "syslog+combined"} {
		f := mustLookup(t, spec)
		if f.shape == 0 {
			t.Fatalf("%s: not read by readCombined", spec)
		}
		taken := 0
		for _, l := range lines {
			if spec == "syslog+combined" {
				l = append([]byte("<134>May 17 10:05:03 web1 nginx[42]: "), l...)
			}
			if sameAsLoop(t, f, l) {
				taken++
			}
		}
		if taken < base/2 {
			t.Errorf("%s: readCombined took %d of %d lines", spec, taken, len(lines))
		}
	}
	for _, spec := range []string{"nginx_combined", "vhost_combined", "combinedio", `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D`} {
		if f := mustLookup(t, spec); f.shape != 0 {
			t.Errorf("%s: read by readCombined, which knows only combined and common", spec)
		}
	}
}

// FuzzReadCombined: whatever the line, combined and common read it as the
// loop alone does.
func FuzzReadCombined(f *testing.F) {
	f.Add([]byte(benchLines["combined"]))
	f.Add([]byte(benchLines["common"]))
	f.Add([]byte(`1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /\" HTTP/1.1" 200 - "-" "\\"`))
	f.Add([]byte(`::1 - u [17/May/2015:10:05:03.5 -0700] "-" 404 - "x\"y" "a" extra`))
	combined, common := mustLookup(f, "combined"), mustLookup(f, "common")
	f.Fuzz(func(t *testing.T, line []byte) {
		sameAsLoop(t, combined, line)
		sameAsLoop(t, common, line)
	})
}
