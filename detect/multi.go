package detect

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/coregx/ahocorasick"
)

// Substring filters of all scenarios are matched together: for each text a
// filter looks at, one Aho-Corasick automaton holds every scenario's
// patterns for it, so one pass over the text yields every pattern present,
// and each pattern says which scenarios (by field) it serves. Rules with
// more than maxMulti scenarios keep the per-scenario scans (matcher).
const maxMulti = 256

// scenarioSet is a set of scenario indexes.
type scenarioSet [maxMulti / 64]uint64

func (s *scenarioSet) add(i int)         { s[i>>6] |= 1 << (i & 63) }
func (s *scenarioSet) has(i int) bool    { return s[i>>6]&(1<<(i&63)) != 0 }
func (s *scenarioSet) or(o *scenarioSet) { s[0] |= o[0]; s[1] |= o[1]; s[2] |= o[2]; s[3] |= o[3] }

// The fields substring filters look at.
const (
	fieldPath = iota
	fieldURI
	fieldRawURI
	fieldQuery
	fieldUA
	fieldReferer
	fieldAny // URI, user agent and referer
	numFields
)

// anyTexts are the texts fieldAny looks at.
var anyTexts = []int{fieldURI, fieldUA, fieldReferer}

// scanChunk is how much of a text is lowered at a time, in the request's
// buffer: the automaton matches bytes as they are, so a text is matched in
// ASCII lower case, as the patterns are stored.
const scanChunk = 512

// multi finds, in one pass over a text, the scenarios with a pattern in it,
// for each field the text serves.
type multi struct {
	patterns []string                 // lower case, by pattern id
	sets     [][numFields]scenarioSet // by pattern id: who asked for it
	ac       *ahocorasick.Automaton
	maxLen   int
}

func (m *multi) add(pattern string, field, scenario int) {
	// Lowered as matcher lowers it: a pattern byte is compared with the
	// text's byte in ASCII lower case.
	p := strings.ToLower(pattern)
	if p == "" {
		return
	}
	for i, q := range m.patterns {
		if q == p {
			m.sets[i][field].add(scenario)
			return
		}
	}
	var sets [numFields]scenarioSet
	sets[field].add(scenario)
	m.patterns = append(m.patterns, p)
	m.sets = append(m.sets, sets)
	m.maxLen = max(m.maxLen, len(p))
}

// build compiles the automaton once every pattern is added.
func (m *multi) build() error {
	var used [256]bool
	distinct := 0
	for _, p := range m.patterns {
		for i := 0; i < len(p); i++ {
			if !used[p[i]] {
				used[p[i]], distinct = true, distinct+1
			}
		}
	}
	// The library numbers byte classes in a byte: past 254 bytes in use
	// the numbering would wrap, so such patterns get one class per byte.
	ac, err := ahocorasick.NewBuilder().AddStrings(m.patterns).SetByteClasses(distinct < 255).Build()
	if err != nil {
		return err
	}
	m.ac = ac
	return nil
}

// scan adds to out the scenarios with a pattern in text, by field,
// ignoring ASCII case. buf is scratch of scanChunk bytes: the text is
// lowered into it a chunk at a time, consecutive chunks overlapping by one
// byte less than the longest pattern, so every occurrence lies whole in
// some chunk (one found twice adds nothing).
//
// split is where the text's path ends, for the URI text, which also serves
// the path's and the query's patterns (path + "?" + query): a pattern of
// the path counts only wholly before split, one of the query only wholly
// after the '?'; for other texts split is -1. The URI text holds the raw
// URI's patterns too, which count only when raw says the raw URI is the
// same text (nothing in it was escaped).
func (m *multi) scan(text string, split int, raw bool, out *[numFields]scenarioSet, buf []byte) {
	if len(buf) < 2*m.maxLen {
		buf = make([]byte, 2*m.maxLen) // patterns this long are rare
	}
	step := len(buf) - (m.maxLen - 1)
	for start := 0; start < len(text); start += step {
		end := min(start+len(buf), len(text))
		b := buf[:end-start]
		lowerInto(b, text[start:end])
		for _, x := range m.ac.FindAllOverlapping(b) {
			sets := &m.sets[x.PatternID]
			if split < 0 {
				orAll(out, sets)
				continue
			}
			for f := range out {
				switch {
				case f == fieldPath && start+x.End > split, f == fieldQuery && start+x.Start <= split, f == fieldRawURI && !raw:
					continue
				}
				out[f].or(&sets[f])
			}
		}
		if end == len(text) {
			break
		}
	}
}

// lowerInto writes src into dst (as long) in ASCII lower case, eight
// bytes at a time: a byte of a word is upper case if it is ASCII, at least
// 'A' and not past 'Z', each tested in its high bit.
func lowerInto(dst []byte, src string) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	copy(dst, src)
	i := 0
	for ; i+8 <= len(dst); i += 8 {
		w := binary.LittleEndian.Uint64(dst[i:])
		h := w &^ highs
		upper := (h + (0x80-'A')*ones) &^ (h + (0x80-'Z'-1)*ones) &^ w & highs
		binary.LittleEndian.PutUint64(dst[i:], w|upper>>2)
	}
	for ; i < len(dst); i++ {
		dst[i] = lowerByte(dst[i])
	}
}

func orAll(out, in *[numFields]scenarioSet) {
	for f := range out {
		out[f].or(&in[f])
	}
}

// buildMulti indexes the substring filters of rs's scenarios by the text
// they look at.
func (rs *Rules) buildMulti() {
	if len(rs.Scenarios) > maxMulti {
		return
	}
	var ms [numFields]*multi
	for i, s := range rs.Scenarios {
		s.index = i
		for f, m := range s.substrings() {
			if m == nil {
				continue
			}
			texts := []int{scanText(f)}
			if f == fieldRawURI {
				texts = append(texts, fieldURI)
			}
			if f == fieldAny {
				if strings.Contains(strings.Join(m.all, ""), "\n") {
					return // matched against the joined text only
				}
				texts = anyTexts
			}
			for _, t := range texts {
				if ms[t] == nil {
					ms[t] = &multi{}
				}
				for _, p := range m.all {
					ms[t].add(p, f, i)
				}
			}
		}
	}
	for i, m := range ms {
		if m == nil {
			continue
		}
		if len(m.patterns) == 0 {
			ms[i] = nil // only empty patterns, which match nothing
			continue
		}
		if m.build() != nil {
			return // cannot happen with non-empty patterns; scan per scenario
		}
	}
	rs.multi = ms[:]
}

// substrings lists s's matchers by field.
func (s *Scenario) substrings() [numFields]*matcher {
	return [numFields]*matcher{s.path, s.uri, s.rawURI, s.query, s.ua, s.referer, s.anyM}
}

// hit reports whether the request's text for field f holds one of
// scenario s's patterns for it. The texts are scanned for all scenarios at
// once, each at most once per request.
func (r *request) hit(f int, s *Scenario) bool {
	if r.multi == nil {
		return s.substrings()[f].match(r.text(f))
	}
	r.scanFor(f)
	return r.hits[f].has(s.index)
}

// scanFor scans, if not yet done, the texts that serve field f's patterns,
// so that r.hits[f] holds every scenario with a pattern in its text.
func (r *request) scanFor(f int) {
	one := [1]int{scanText(f)}
	if f == fieldRawURI && r.rawIsURI() {
		one[0] = fieldURI
	}
	ts := one[:]
	if f == fieldAny {
		ts = anyTexts
	}
	for _, t := range ts {
		if r.scanned&(1<<t) == 0 {
			r.scanned |= 1 << t
			if m := r.multi[t]; m != nil {
				if r.memo != nil && (t == fieldUA || t == fieldReferer || t == fieldURI) {
					r.memo.scan(r, m, t)
					continue
				}
				r.scan(m, t, &r.hits)
			}
		}
	}
}

// scan adds to out what m finds in the request's text t, the URI's split
// at its path and serving the raw URI when that is the same text.
func (r *request) scan(m *multi, t int, out *[numFields]scenarioSet) {
	split, raw := -1, false
	if t == fieldURI {
		split, raw = len(r.Path()), r.rawIsURI()
	}
	m.scan(r.text(t), split, raw, out, r.lower[:])
}

// scanText is the text whose scan serves field f: the path's and the
// query's patterns are looked for in one pass over the URI (the path, '?'
// and the query), which the URI's own patterns need anyway.
func scanText(f int) int {
	if f == fieldPath || f == fieldQuery {
		return fieldURI
	}
	return f
}

// rawIsURI reports whether the raw URI is the decoded one, so that the
// URI's scan serves the raw URI's patterns as well: nothing in the path or
// the query can have been escaped (no '%', and no '+' in the query, which
// decodes as a space). It looks at the raw bytes only, so a memo keyed by
// them holds; a text with a '%' that decodes to itself is scanned twice,
// never wrongly.
func (r *request) rawIsURI() bool {
	return bytes.IndexByte(r.e.Path, '%') < 0 && bytes.IndexByte(r.e.Query, '%') < 0 && bytes.IndexByte(r.e.Query, '+') < 0
}

// text is the request's text for field f.
func (r *request) text(f int) string {
	switch f {
	case fieldPath:
		return r.Path()
	case fieldURI:
		return r.URI()
	case fieldRawURI:
		return r.RawURI()
	case fieldQuery:
		return r.Query()
	case fieldUA:
		return r.UA()
	case fieldReferer:
		return r.Referer()
	}
	return r.All()
}

// Real traffic repeats its user agents and referers: a few hundred
// browsers' strings and a site's own pages make most of them. A scanMemo
// keeps, for the latest texts seen in each of its tables' sets of two
// slots (by hash of the text as logged, see lookup2), the scenarios the
// scan found in it, so a repeated text costs a hash and a comparison
// instead of decoding, lowering and a pass of the automaton. The text is
// compared whole, so a collision costs a scan, never a wrong verdict.
// Sizes: the elastic sample (10,000 lines) has 559 distinct user agents,
// 628 referers and 1,498 URIs; over it repeated, 1.6-1.8% of user agents
// and referers and 2.4% of URIs miss (with one slot per hash and tables
// a quarter this size, 6-19%). The memo is about 400 KB.
const memoSlots = 2048

type scanMemo struct {
	rules   *Rules                 // whose automata the results are of
	slots   [memoSlots]memoSlot    // user agents and referers
	uris    [uriMemoSlots]memoSlot // paths and queries
	queries [queryMemoSlots]queryMemoSlot
	// The queries of referers, analysed as the request's own are: a
	// search engine's referer carries a dozen escaped parameters, the
	// costliest analysis a benign request gets, and a site's few
	// hundred of them come back again and again.
	refQueries [refQueryMemoSlots]queryMemoSlot
	// The verdicts of the scenarios' regular expressions on raw queries
	// (a cache-busting or a file-inclusion expression runs on every
	// query otherwise).
	queryRes [queryMemoSlots]queryReSlot
}

// queryReSlot is a raw query and, for each scenario with expressions on
// the query, whether they were run on it (done) and passed it (hit).
type queryReSlot struct {
	hash      uint64
	text      string
	done, hit scenarioSet
}

// queryRegexSlot returns the slot of raw query q, emptied of another
// query's verdicts if it held one. The caller keeps it for the request
// only: another lookup may move it.
func (mm *scanMemo) queryRegexSlot(q []byte) *queryReSlot {
	h := xxhash.Sum64(q)
	sl, hit := lookup2(mm.queryRes[:], h, func(sl *queryReSlot) bool { return sl.hash == h && sl.text == string(q) })
	if !hit {
		*sl = queryReSlot{hash: h, text: string(q)}
	}
	return sl
}

// refQueryMemoSlots is how many referers' query strings the memo keeps
// the injection analysis of (the elastic sample: 297 distinct in 535 of
// its 10,000 lines).
const refQueryMemoSlots = 1024

// uriMemoSlots is how many URIs the memo keeps, apart from the user
// agents and referers: a site has more distinct paths than browsers, and
// in one table they would push each other out.
const uriMemoSlots = 4096

// queryMemoSlots is how many raw query strings the memo keeps the
// injection analysis of: a site's queries repeat too (a search, a page
// number, a feed's flavour), and their analysis is the costliest one a
// benign request gets.
const queryMemoSlots = 256

// queryMemoSlot is a query string's findings, nil for none (most have
// none: 40 bytes a slot).
type queryMemoSlot struct {
	hash      uint64
	text      string
	sqli, xss *Finding
}

// keptFindings is what a slot keeps of r's findings.
func keptFindings(r *request) (sqli, xss *Finding) {
	if r.sqliOK {
		f := r.sqliF
		sqli = &f
	}
	if r.xssOK {
		f := r.xssF
		xss = &f
	}
	return sqli, xss
}

// injectQuery does r.injectQuery("query", r.e.Query) for a request none
// of whose analyses has run yet, from the memo when the same raw query
// was analysed last in its slot: the findings depend on nothing else.
func (mm *scanMemo) injectQuery(r *request) {
	q := r.e.Query
	h := xxhash.Sum64(q)
	sl, hit := lookup2(mm.queries[:], h, func(sl *queryMemoSlot) bool { return sl.hash == h && sl.text == string(q) })
	if !hit {
		r.injectQuery("query", q)
		*sl = queryMemoSlot{hash: h, text: string(q)}
		sl.sqli, sl.xss = keptFindings(r)
		return
	}
	r.sqliOK, r.xssOK, r.sqliF, r.xssF = sl.sqli != nil, sl.xss != nil, Finding{}, Finding{}
	if sl.sqli != nil {
		r.sqliF = *sl.sqli
	}
	if sl.xss != nil {
		r.xssF = *sl.xss
	}
}

// injectRefererQuery does r.injectQuery("referer", q) for a referer's
// raw query q, from the memo when the same query was analysed last in its
// slot. The findings depend on q alone: the analysis looks for a first
// SQL and a first XSS finding among q's parameters, each on its own, so a
// finding the request had before q replaces the memo's of its kind.
func (mm *scanMemo) injectRefererQuery(r *request, q []byte) {
	r.fillFindings(mm.refererQuery(q))
}

// refererQuery is refererQueryFindings(q) from the memo's table of
// referers' queries when the same query was analysed last in its slot (a
// search engine's referers differ in more than their query).
func (mm *scanMemo) refererQuery(q []byte) (sqli, xss *Finding) {
	h := xxhash.Sum64(q)
	sl, hit := lookup2(mm.refQueries[:], h, func(sl *queryMemoSlot) bool { return sl.hash == h && sl.text == string(q) })
	if !hit {
		*sl = queryMemoSlot{hash: h, text: string(q)}
		sl.sqli, sl.xss = refererQueryFindings(q)
	}
	return sl.sqli, sl.xss
}

// refererQueryFindings is the injection analysis of a referer's raw query
// q on its own.
func refererQueryFindings(q []byte) (sqli, xss *Finding) {
	var fresh request
	fresh.injectQuery("referer", q)
	return keptFindings(&fresh)
}

// fillFindings gives r the findings of a referer's query for the kinds r
// has none of yet.
func (r *request) fillFindings(sqli, xss *Finding) {
	if !r.sqliOK && sqli != nil {
		r.sqliF, r.sqliOK = *sqli, true
	}
	if !r.xssOK && xss != nil {
		r.xssF, r.xssOK = *xss, true
	}
}

// refererQuery is the raw query of a referer that is an http(s) URL with
// one, as the injection analysis reads it.
func refererQuery(ref []byte) ([]byte, bool) {
	if hasPrefixFoldBytes(ref, "http://") || hasPrefixFoldBytes(ref, "https://") {
		if i := bytes.IndexByte(ref, '?'); i >= 0 {
			return ref[i+1:], true
		}
	}
	return nil, false
}

// lookup2 finds the slot of hash h in table, whose slots go in sets of
// two: same says whether a slot holds the text looked for. A hit is moved
// to its set's first slot; on a miss, the first slot's text moves to the
// second (the older one leaves) and the first is returned for the caller
// to fill. Two texts of one set, used in turn, both stay.
func lookup2[S any](table []S, h uint64, same func(*S) bool) (*S, bool) {
	i := int(h%uint64(len(table)/2)) * 2
	a, b := &table[i], &table[i+1]
	if same(a) {
		return a, true
	}
	if same(b) {
		*a, *b = *b, *a
		return a, true
	}
	*b = *a
	return a, false
}

type memoSlot struct {
	hash  uint64
	field uint8
	// classes is classesOf the text, for a user agent or a path.
	classes uint8
	// flags says what else the slot knows of its text: whether it was
	// looked into for a Log4j lookup and holds one, and whether ref
	// holds the injection findings of a referer's query.
	flags uint8
	ref   *[2]*Finding // SQL, script; nil for none
	text  string       // as logged: the user agent, the referer or the path
	query string       // the URI's query, as logged
	// found is what the scan found, nil for nothing (most texts): a
	// slot is 64 bytes, not 288.
	found *[numFields]scenarioSet
}

// scan adds to r.hits what m's scan of r's text t (the URI, the user agent
// or the referer) finds, from the memo when the same text was scanned last
// in its slot. The URI's scan is a function of the path and the query as
// logged: its text, its split and whether it serves the raw URI too.
func (mm *scanMemo) scan(r *request, m *multi, t int) {
	var logged, query []byte
	switch t {
	case fieldUA:
		logged = r.e.UserAgent
	case fieldReferer:
		logged = r.e.Referer
	default:
		logged, query = r.e.Path, r.e.Query
	}
	h := xxhash.Sum64(logged) ^ bits.RotateLeft64(xxhash.Sum64(query), 29) ^ uint64(t)
	table := mm.slots[:]
	if t == fieldURI {
		table = mm.uris[:]
	}
	sl, hit := lookup2(table, h, func(sl *memoSlot) bool {
		return sl.hash == h && int(sl.field) == t && sl.text == string(logged) && sl.query == string(query)
	})
	if !hit {
		sl.hash, sl.field, sl.text, sl.query = h, uint8(t), string(logged), string(query)
		sl.classes = 0
		if t != fieldReferer {
			sl.classes = classesOf(logged)
		}
		var found [numFields]scenarioSet
		r.scan(m, t, &found)
		sl.found = nil
		if found != ([numFields]scenarioSet{}) {
			sl.found = &found
		}
		sl.flags, sl.ref = 0, nil
		if mm.rules.hasLog4shell {
			sl.flags |= slotJNDIKnown
			if r.jndiIn(jndiField(t)) {
				sl.flags |= slotJNDI
			}
		}
		if t == fieldReferer && mm.rules.hasInject {
			if q, ok := refererQuery(logged); ok {
				sl.flags |= slotRefKnown
				if sqli, xss := mm.refererQuery(q); sqli != nil || xss != nil {
					sl.ref = &[2]*Finding{sqli, xss}
				}
			}
		}
	}
	if sl.found != nil {
		orAll(&r.hits, sl.found)
	}
	switch t {
	case fieldUA:
		r.clUA, r.have = sl.classes, r.have|hClUA
	case fieldURI:
		r.clPath, r.have = sl.classes, r.have|hClPath
	}
	if sl.flags&slotJNDIKnown != 0 {
		bit := uint8(1) << jndiField(t)
		r.jndiKnown |= bit
		if sl.flags&slotJNDI != 0 {
			r.jndiFound |= bit
		}
	}
	if sl.flags&slotRefKnown != 0 {
		r.refKnown, r.ref = true, sl.ref
	}
}

// What a memo slot knows of its text besides its scan (memoSlot.flags).
const (
	slotJNDIKnown = 1 << iota // looked into for a Log4j lookup
	slotJNDI                  // and holds one
	slotRefKnown              // ref holds a referer query's findings
)
