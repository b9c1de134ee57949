package detect

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/workload"
)

// sameHits wants the automata's verdict for every substring filter of
// rules on e to be each scenario's own scan's (matcher), the per-scenario
// path rules past maxMulti scenarios take.
func sameHits(t *testing.T, rules *Rules, e *accesslog.Entry) {
	t.Helper()
	var req request
	req.reset(e, rules)
	for _, s := range rules.Scenarios {
		for f, m := range s.substrings() {
			if m == nil {
				continue
			}
			if got, want := req.hit(f, s), m.match(req.text(f)); got != want {
				t.Fatalf("%s, %s: automaton %v, own scan %v, on %s %q", s.Name, fieldNames[f], got, want, fieldNames[f], req.text(f))
			}
		}
	}
	// And whole verdicts: with the automata and without, and with the
	// automata but every scenario's filter run (nothing pruned).
	own := *rules
	own.multi = nil
	all := *rules
	all.prune = nil
	var a, b, c Event
	rules.Evaluate(e, nil, 0, &a)
	own.Evaluate(e, nil, 0, &b)
	all.Evaluate(e, nil, 0, &c)
	if fmt.Sprint(a.Matches) != fmt.Sprint(b.Matches) {
		t.Fatalf("verdicts differ on %q %q %q: automaton %v, own scans %v", e.Path, e.Query, e.UserAgent, a.Matches, b.Matches)
	}
	if fmt.Sprint(a.Matches) != fmt.Sprint(c.Matches) {
		t.Fatalf("verdicts differ on %q %q %q: pruned %v, every filter run %v", e.Path, e.Query, e.UserAgent, a.Matches, c.Matches)
	}
}

// corpusAndWorkload is the lines of the corpora and 20,000 of the
// benchmark's workload.
func corpusAndWorkload(t *testing.T) []string {
	var lines []string
	files, _ := filepath.Glob("testdata/*/*.log")
	for _, p := range files {
		lines = append(lines, readLog(t, p)...)
	}
	g := workload.New(1, 5000, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	for range 20_000 {
		l, _ := g.Line()
		lines = append(lines, l)
	}
	return lines
}

// TestMultiMatchesOwnScans: on the corpora and the benchmark's workload,
// the built-in rules' automata find what each scenario's own scan finds.
func TestMultiMatchesOwnScans(t *testing.T) {
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	if rules.multi == nil {
		t.Fatal("built-in rules are not indexed together")
	}
	f := accesslog.Auto()
	lines := corpusAndWorkload(t)
	n := 0
	for _, l := range lines {
		var e accesslog.Entry
		if f.Parse([]byte(l), &e) != nil {
			continue
		}
		sameHits(t, rules, &e)
		n++
	}
	if n < 20_000 {
		t.Fatalf("%d lines parsed", n)
	}
}

// TestMultiMatchesOwnScansRandom: random pattern lists (one byte, upper
// case, non-ASCII, overlapping, longer than a chunk) over random texts
// made of their pieces.
func TestMultiMatchesOwnScansRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "ab", "abc", "b", "bc", "/", "/.", "../", "%2e", "É", "é", "K", "k", "\u212a", "<sc", "<script", "SELECT", "select ", "'", "\xff", " "}
	word := func(maxLen int) string {
		var b strings.Builder
		for b.Len() < 1+r.IntN(maxLen) {
			p := pieces[r.IntN(len(pieces))]
			if r.IntN(3) == 0 {
				p = strings.ToUpper(p)
			}
			b.WriteString(p)
		}
		return b.String()
	}
	list := func() string {
		var ps []string
		for range 1 + r.IntN(6) {
			w := word(8)
			if r.IntN(40) == 0 {
				w = strings.Repeat(w, 300/len(w)+1) // past half a chunk
			}
			ps = append(ps, fmt.Sprintf("%q", w))
		}
		return "[" + strings.Join(ps, ", ") + "]"
	}
	keys := []string{"path_contains", "uri_contains", "raw_uri_contains", "query_contains", "ua_contains", "referer_contains", "any_contains"}
	for round := range 40 {
		var y strings.Builder
		y.WriteString("scenarios:\n")
		for i := range 1 + r.IntN(12) {
			fmt.Fprintf(&y, "  - name: s%d\n    trigger: match\n    filter:\n", i)
			for _, k := range keys {
				if r.IntN(3) == 0 {
					fmt.Fprintf(&y, "      %s: %s\n", k, list())
				}
			}
		}
		rules, err := Parse([]byte(y.String()), nil)
		if err != nil {
			if strings.Contains(err.Error(), "no scenario") {
				continue
			}
			t.Fatalf("round %d: %v\n%s", round, err, y.String())
		}
		for range 200 {
			path, query, ua, ref := "/"+word(30), word(20), word(60), word(20)
			if r.IntN(10) == 0 {
				ua = strings.Repeat(ua, 1200/len(ua)+1) // several chunks
			}
			e := accesslog.Entry{Client: []byte("192.0.2.1"), Path: []byte(path), Query: []byte(query), UserAgent: []byte(ua), Referer: []byte(ref), Status: 200, Method: []byte("GET")}
			sameHits(t, rules, &e)
		}
	}
}

// TestMultiChunkBoundaries: a pattern is found at every offset of a text
// scanned in several chunks, the longest pattern included.
func TestMultiChunkBoundaries(t *testing.T) {
	for _, long := range []int{40, 300} {
		p := "q" + strings.Repeat("w", long-2) + "q"
		rules, err := Parse([]byte(fmt.Sprintf("scenarios:\n  - name: s\n    trigger: match\n    filter:\n      ua_contains: [%q, ab]\n", p)), nil)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < 3*scanChunk; off++ {
			ua := strings.Repeat("x", off) + strings.ToUpper(p) + strings.Repeat("y", 3*scanChunk-off)
			e := accesslog.Entry{Client: []byte("192.0.2.1"), Path: []byte("/"), UserAgent: []byte(ua)}
			var req request
			req.reset(&e, rules)
			if !req.hit(fieldUA, rules.Scenarios[0]) {
				t.Fatalf("pattern of %d bytes at offset %d not found", long, off)
			}
		}
	}
}

// TestLowerInto: every byte, in every place of a word, lowers as
// lowerByte lowers it.
func TestLowerInto(t *testing.T) {
	src := make([]byte, 0, 256+7)
	for c := range 256 {
		src = append(src, byte(c))
	}
	for shift := range 8 {
		s := string(src[:256-shift])
		got := make([]byte, len(s))
		lowerInto(got, s)
		for i := range got {
			if got[i] != lowerByte(s[i]) {
				t.Fatalf("byte %#x at %d: %#x", s[i], i, got[i])
			}
		}
		src = append([]byte{'Q'}, src...)
	}
}

// TestScanMemo_SameVerdictsAsFreshScans: an event reused over many lines
// (whose memo answers repeated user agents and referers, and whose slots
// are taken over by others) gives every line the verdict a fresh event
// gives it, on the corpora, the workload and user agents that differ from
// each other in one byte or in case.
func TestScanMemo_SameVerdictsAsFreshScans(t *testing.T) {
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	f := accesslog.Auto()
	lines := corpusAndWorkload(t)
	// The same user agent with and without an attack in it, and in other
	// case: a memo keyed loosely would hand one the other's verdict.
	// User agents and paths carrying injections, which the memo's slots
	// also answer which analyses they need (classesOf) for.
	for _, ua := range []string{"sqlmap/1.7", "SQLMAP/1.7", "sqlmap/1.8", "Mozilla/5.0", "nikto", "Nikto", "() { :; }; /bin/bash", "() { :; }; /bin/bas",
		"Mozilla/5.0' or 1=1--", "Mozilla/5.0 <script>alert(1)</script>", "Mozilla/5.0 ${jndi:ldap://x/a}", "Mozilla/5.0 %24%7Bjndi:ldap://x/a%7D"} {
		for range 3 {
			lines = append(lines, fmt.Sprintf(`192.0.2.7 - - [01/Nov/2026:00:00:00 +0000] "GET /index.html HTTP/1.1" 200 5 "http://x/" %q`, ua))
		}
	}
	for _, path := range []string{"/p/1'%20union%20select%20null--", "/p/%3Cscript%3Ealert(1)%3C/script%3E", "/x/${jndi:ldap://y/a}", "/x/%24%7Bjndi:ldap://y/a%7D"} {
		for range 3 {
			lines = append(lines, fmt.Sprintf(`192.0.2.12 - - [01/Nov/2026:00:00:00 +0000] "GET %s HTTP/1.1" 200 5 "http://x/" "agent"`, path))
		}
	}
	// Referers with a lookup, as logged and escaped, and near misses, on
	// requests whose path and agent may hold one too or not.
	for i, ref := range []string{"http://r/${jndi:ldap://x/a}", "http://r/%24%7Bjndi:ldap://x/a%7D", "http://r/%24%7Bjndi", "http://r/?q=%24%7Benv:HOME%7D", "${jndi:ldap://x/a}"} {
		for k := range 6 {
			path, ua := "/", "agent"
			if k%2 == 1 {
				path = "/%41"
			}
			if k%3 == 2 {
				ua = fmt.Sprintf("agent ${jndi:ldap://u/%d}", i)
			}
			lines = append(lines, fmt.Sprintf(`192.0.2.13 - - [01/Nov/2026:00:00:00 +0000] "GET %s HTTP/1.1" 200 5 %q %q`, path, ref, ua))
		}
	}
	// Many distinct agents, some of them scanners', so that slots are
	// taken over by texts with other verdicts.
	for i := range 4000 {
		ua := fmt.Sprintf("agent-%d", i)
		if i%5 == 0 {
			ua = fmt.Sprintf("sqlmap/%d", i)
		}
		lines = append(lines, fmt.Sprintf(`192.0.2.8 - - [01/Nov/2026:00:00:00 +0000] "GET /a HTTP/1.1" 200 5 "-" %q`, ua))
		// And queries, some of them injections, repeated and not.
		q := fmt.Sprintf("id=%d", i%700)
		switch i % 7 {
		case 0:
			q = fmt.Sprintf("id=%d%%27%%20union%%20select%%20null,null--", i%300)
		case 1:
			q = fmt.Sprintf("q=%%3Cscript%%3Ealert(%d)%%3C/script%%3E", i%300)
		}
		lines = append(lines, fmt.Sprintf(`192.0.2.9 - - [01/Nov/2026:00:00:00 +0000] "GET /s?%s HTTP/1.1" 200 5 "-" "agent"`, q))
		// Referers with queries (more distinct than the memo's slots),
		// some of them injections of either kind, on requests whose own
		// query finds the same kind, the other or nothing: the request's
		// own finding must come first, the referer's fill what is left.
		benign := fmt.Sprintf("q=page+%d&lang=en", i%3500)
		rq := []string{fmt.Sprintf("ref=%d&q=1%%27%%20or%%201%%3D1--", i%400), // SQL
			fmt.Sprintf("q=%%3Cscript%%3Ealert(%d)%%3C/script%%3E&id=1'%%20union%%20select%%201--", i%400), // both
			fmt.Sprintf("q=%%3Cimg%%20src=x%%20onerror=alert(%d)%%3E", i%400),                              // script
			benign, benign}[i%5]
		// Queries the cache-busting and file-inclusion expressions pass
		// and nearly pass, more distinct than the memo's slots.
		reQ := []string{fmt.Sprintf("%d", 1000000+i%600), fmt.Sprintf("%d", i%600), fmt.Sprintf("cb=%x", 0xabc000+i%500),
			fmt.Sprintf("cb=%xz", 0xabc000+i%500), fmt.Sprintf("f=php://input%d", i%300), fmt.Sprintf("u=http://x/%d?", i%300),
			fmt.Sprintf("u=http://x/%d?a", i%300)}[i%7]
		lines = append(lines, fmt.Sprintf(`192.0.2.11 - - [01/Nov/2026:00:00:00 +0000] "GET /c?%s HTTP/1.1" 200 5 "-" "agent"`, reQ))
		own := []string{"id=3", "id=1%27%20union%20select%20null--", "q=%3Cscript%3Ealert(1)%3C/script%3E"}[i%3]
		lines = append(lines, fmt.Sprintf(`192.0.2.10 - - [01/Nov/2026:00:00:00 +0000] "GET /r?%s HTTP/1.1" 200 5 "https://search.example/s?%s" "agent"`, own, rq))
	}
	mm := sameVerdictsReused(t, rules, f, lines)
	// Each table must have been filled (and so written over): the test
	// exercised every kind of slot. The referers' queries are answered by
	// the referers' own slots, whose scan the built-in rules need.
	refSlots := 0
	for i := range mm.slots {
		if sl := &mm.slots[i]; sl.flags&slotRefKnown != 0 && sl.ref != nil {
			refSlots++
		}
	}
	if refSlots < 100 {
		t.Errorf("%d referer slots with their query's findings: the memo was not exercised", refSlots)
	}
	for _, tb := range []struct {
		name       string
		used, size int
	}{
		{"agent and referer", slotsUsed(mm.slots[:], func(sl *memoSlot) string { return sl.text }), memoSlots},
		{"query", slotsUsed(mm.queries[:], func(sl *queryMemoSlot) string { return sl.text }), queryMemoSlots},
		{"query expression", slotsUsed(mm.queryRes[:], func(sl *queryReSlot) string { return sl.text }), queryMemoSlots},
	} {
		if tb.used < tb.size*3/4 {
			t.Errorf("%d of %d %s memo slots used: the memo was not exercised", tb.used, tb.size, tb.name)
		}
	}
	// Rules that scan no referer: their queries' findings come from the
	// memo's table of referer queries.
	noReferer, err := Parse([]byte(`scenarios:
  - {name: sqli, trigger: match, filter: {sqli: true}}
  - {name: xss, trigger: match, filter: {xss: true}}
  - {name: jndi, trigger: match, filter: {log4shell: true}}
  - {name: ua, trigger: match, filter: {ua_contains: [sqlmap, nikto]}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	mm = sameVerdictsReused(t, noReferer, f, lines)
	if used := slotsUsed(mm.refQueries[:], func(sl *queryMemoSlot) string { return sl.text }); used < refQueryMemoSlots*3/4 {
		t.Errorf("%d of %d referer query memo slots used: the memo was not exercised", used, refQueryMemoSlots)
	}
}

// sameVerdictsReused evaluates lines with one event reused and with a
// fresh event each, fails on any difference, and returns the reused
// event's memo.
func sameVerdictsReused(t *testing.T, rules *Rules, f *accesslog.Format, lines []string) *scanMemo {
	t.Helper()
	var reused Event
	hitsSeen, n := 0, 0
	for _, l := range lines {
		var e accesslog.Entry
		if f.Parse([]byte(l), &e) != nil {
			continue
		}
		var fresh Event
		rules.Evaluate(&e, nil, 0, &fresh)
		rules.Evaluate(&e, nil, 0, &reused)
		if got, want := fmt.Sprint(reused.Matches), fmt.Sprint(fresh.Matches); got != want {
			t.Fatalf("line %q: reused event %s, fresh %s", l, got, want)
		}
		hitsSeen += len(fresh.Matches)
		n++
		if n < memoAfter && reused.memo != nil {
			t.Fatalf("a memo after %d lines: a quiet partition's event should hold none", n)
		}
	}
	if n < 20_000 || hitsSeen == 0 {
		t.Fatalf("%d lines, %d matches: the test saw too little", n, hitsSeen)
	}
	return reused.memo
}

// slotsUsed counts the slots of a memo table that hold a text.
func slotsUsed[S any](table []S, text func(*S) string) int {
	n := 0
	for i := range table {
		if text(&table[i]) != "" {
			n++
		}
	}
	return n
}

// TestProtocolIn_AsUpperCaseLookup checks the byte-wise protocol check
// against the upper-cased lookup it replaces, non-ASCII protocols (whose
// upper case can be ASCII: "ſ" is "S") and near misses among them.
func TestProtocolIn_AsUpperCaseLookup(t *testing.T) {
	sets := [][]string{
		{"HTTP/0.9", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/2.0", "HTTP/3", "HTTP/3.0"},
		{"HTTPS/1.1", "RTSP/1.0"},
		{"HTTP/1.1", "ÜBER/1"},
	}
	protocols := []string{"HTTP/1.1", "http/1.1", "Http/1.1", "HTTP/1.2", "HTTP/1.", "HTTP/1.11", "HTTP/2", "HTTP/20",
		"httpſ/1.1", "HTTPſ/1.1", "ſ", "über/1", "ÜBER/1", "ubER/1", "HTTP/1\x00", "hTTp/3.0", "x", "HTTP/1.1 ", "RTSP/1.0", "rtsp/1.0"}
	n := 0
	for _, set := range sets {
		upper := map[string]bool{}
		var list []string
		for _, p := range set {
			upper[strings.ToUpper(p)] = true
			list = append(list, strings.ToUpper(p))
		}
		for _, p := range protocols {
			want := upper[strings.ToUpper(p)]
			if got := protocolIn([]byte(p), list); got != want {
				t.Fatalf("protocol %q in %v: %v, the upper-cased lookup says %v", p, set, got, want)
			}
			if want {
				n++
			}
		}
	}
	if n < 8 {
		t.Fatalf("only %d protocols were in a set: the test checks too little", n)
	}
}

// TestRegexFilters_EmptyTextAsTheExpressions checks that a scenario's
// regular expressions on an empty text (a request without a query) give
// what running them gives: one that matches the empty text passes it.
func TestRegexFilters_EmptyTextAsTheExpressions(t *testing.T) {
	rules, err := Parse(BuiltinYAML(), []byte(`
scenarios:
  - {name: digits-or-nothing, filter: {query_regex: ['^[0-9]*$']}, trigger: match}
  - {name: six-digits, filter: {query_regex: ['^[0-9]{6,}$']}, trigger: match}
  - {name: x-or-nothing, filter: {path_prefix: [/p], query_regex: ['x', '^$']}, trigger: match}
`))
	if err != nil {
		t.Fatal(err)
	}
	f := accesslog.Auto()
	for _, c := range []struct {
		uri  string
		want []string
	}{
		{"/a", []string{"digits-or-nothing"}},
		{"/a?", []string{"digits-or-nothing"}},
		{"/a?1234567", []string{"digits-or-nothing", "six-digits"}},
		{"/a?12", []string{"digits-or-nothing"}},
		{"/a?q", nil},
		{"/p", []string{"digits-or-nothing", "x-or-nothing"}},
		{"/p?y", nil},
		{"/p?x", []string{"x-or-nothing"}},
	} {
		var e accesslog.Entry
		line := fmt.Sprintf(`192.0.2.7 - - [01/Nov/2026:00:00:00 +0000] "GET %s HTTP/1.1" 200 5 "-" "agent"`, c.uri)
		if err := f.Parse([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		var ev Event
		rules.Evaluate(&e, nil, 0, &ev)
		var got []string
		for _, m := range ev.Matches {
			if n := rules.Scenarios[m.Scenario].Name; n == "digits-or-nothing" || n == "six-digits" || n == "x-or-nothing" {
				got = append(got, n)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: passed %v, want %v", c.uri, got, c.want)
		}
	}
}
