package detect

import (
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"

	"github.com/wardenhq/warden/accesslog"
)

// request is one entry seen by the scenarios, with its decoded, lower-case
// fields computed at most once.
type request struct {
	e                                       *accesslog.Entry
	have                                    uint16
	path, query, uri, ua, referer, raw, all string
	injP, injU                              string
	// clPath, clUA: see pathClasses.
	clPath, clUA uint8
	// jndiKnown has bit i (jndiURI, ...) set for each field a memo slot
	// looked into for a Log4j lookup, jndiFound for each that holds one.
	jndiKnown, jndiFound uint8
	// refKnown says ref is the referer's query's findings, from its slot.
	refKnown bool
	ref      *[2]*Finding
	// done says which analyses (inject.go) have run; their results follow.
	done                   uint8
	sqliOK, xssOK, log4jOK bool
	sqliF, xssF, log4jF    Finding
	// rangeKey is the client's network, for range scopes.
	rangeKey string
	// multi is the rules' substring index; hits the scenarios found in
	// each field scanned so far (bit f of scanned).
	multi   []*multi
	scanned uint8
	hits    [numFields]scenarioSet // by field
	// lower is scratch for a text lowered for the scan (multi.scan).
	lower [scanChunk]byte
	// memo remembers the scans of recent user agents and referers
	// (nil: none kept).
	memo *scanMemo
	// reSlot is the memo's slot of the query's regular-expression
	// verdicts, once looked up for this request.
	reSlot *queryReSlot
}

const (
	hPath = 1 << iota
	hQuery
	hURI
	hUA
	hReferer
	hRaw
	hAll
	hInjPath
	hInjUA
	hRange
	hClPath
	hClUA
)

const (
	doneInject = 1 << iota
	doneLog4j
)

func (r *request) reset(e *accesslog.Entry, rs *Rules) {
	r.e, r.have, r.multi, r.scanned, r.done, r.memo, r.reSlot = e, 0, rs.multi, 0, 0, nil, nil
	r.jndiKnown, r.jndiFound, r.refKnown, r.ref = 0, 0, false, nil
	r.hits = [numFields]scenarioSet{}
}

func (r *request) Path() string {
	if r.have&hPath == 0 {
		r.path, r.have = decode(string(r.e.Path), false), r.have|hPath
	}
	return r.path
}

func (r *request) Query() string {
	if r.have&hQuery == 0 {
		r.query, r.have = decode(string(r.e.Query), true), r.have|hQuery
	}
	return r.query
}

func (r *request) URI() string {
	if r.have&hURI == 0 {
		if len(r.e.Query) > 0 {
			r.uri = r.Path() + "?" + r.Query()
		} else {
			r.uri = r.Path()
		}
		r.have |= hURI
	}
	return r.uri
}

func (r *request) RawURI() string {
	if r.have&hRaw == 0 {
		s := string(r.e.Path)
		if len(r.e.Query) > 0 {
			s += "?" + string(r.e.Query)
		}
		r.raw, r.have = s, r.have|hRaw
	}
	return r.raw
}

func (r *request) UA() string {
	if r.have&hUA == 0 {
		r.ua, r.have = decode(string(r.e.UserAgent), false), r.have|hUA
	}
	return r.ua
}

func (r *request) Referer() string {
	if r.have&hReferer == 0 {
		r.referer, r.have = decode(string(r.e.Referer), true), r.have|hReferer
	}
	return r.referer
}

// All is the URI, user agent and referer together.
func (r *request) All() string {
	if r.have&hAll == 0 {
		r.all, r.have = r.URI()+"\n"+r.UA()+"\n"+r.Referer(), r.have|hAll
	}
	return r.all
}

// distinctKey is the hash of the request's value of field, what a
// distinct trigger counts.
func (r *request) distinctKey(field string) uint64 {
	switch field {
	case "path":
		return xxhash.Sum64String(r.Path())
	case "uri":
		return xxhash.Sum64String(r.URI())
	case "ip":
		return xxhash.Sum64(r.e.Client)
	case "payload":
		return r.payloadKey()
	}
	return xxhash.Sum64(r.e.UserAgent)
}

// payloadKey identifies the injection the request carries (the first
// found of SQL, script, JNDI) with its path and where it is: a search
// repeated (its next page, a reload) is one payload, the same payload sent
// to two endpoints two.
func (r *request) payloadKey() uint64 {
	var f Finding
	for _, x := range [3]struct {
		f  Finding
		ok bool
	}{{r.sqliF, r.sqliOK}, {r.xssF, r.xssOK}, {r.log4jF, r.log4jOK}} {
		if x.ok {
			f = x.f
			break
		}
	}
	h := xxhash.New()
	_, _ = h.WriteString(r.Path())
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(f.Where)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(f.Value)
	return h.Sum64()
}

// Range is the client's network (RangeBitsV4, RangeBitsV6) as a CIDR, or
// "" for a client that is not an address.
func (r *request) Range() string {
	if r.have&hRange == 0 {
		r.rangeKey, r.have = RangeOf(string(r.e.Client)), r.have|hRange
	}
	return r.rangeKey
}

// regexps are a filter's regular expressions on one text, any of which
// passes it; empty says whether one matches the empty text, which most
// requests' queries are: the answer for it is known without running any.
type regexps struct {
	res   []*regexp.Regexp
	empty bool
}

// anyMatch reports whether no regexps are given or one of them matches
// the text get returns.
func anyMatch(rs *regexps, get func() string) bool {
	if len(rs.res) == 0 {
		return true
	}
	t := get()
	if t == "" {
		return rs.empty
	}
	for _, re := range rs.res {
		if re.MatchString(t) {
			return true
		}
	}
	return false
}

// queryMatches is anyMatch(&s.queryRe, r.Query), from the memo when the
// same raw query was judged by s's expressions last in its slot: the
// decoded query, and so the verdict, depend on the raw query alone.
func (r *request) queryMatches(s *Scenario) bool {
	if len(s.queryRe.res) == 0 {
		return true
	}
	if r.memo == nil || len(r.e.Query) == 0 || s.index >= maxMulti {
		return anyMatch(&s.queryRe, r.Query)
	}
	sl := r.reSlot
	if sl == nil {
		sl = r.memo.queryRegexSlot(r.e.Query)
		r.reSlot = sl
	}
	if !sl.done.has(s.index) {
		sl.done.add(s.index)
		if anyMatch(&s.queryRe, r.Query) {
			sl.hit.add(s.index)
		}
	}
	return sl.hit.has(s.index)
}

// protocolIn reports whether the request's protocol, in upper case, is
// one of set's (which are upper case): an ASCII protocol is compared
// byte by byte, without making its upper-case string.
func protocolIn(p []byte, set []string) bool {
	for _, c := range p {
		if c >= utf8.RuneSelf {
			return slices.Contains(set, strings.ToUpper(string(p)))
		}
	}
	for _, x := range set {
		if len(x) != len(p) {
			continue
		}
		i := 0
		for i < len(p) && upperByte(p[i]) == x[i] {
			i++
		}
		if i == len(p) {
			return true
		}
	}
	return false
}

func upperByte(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// decidedByPrune reports whether s's filter is only a status and
// substring filters, which prune decides for all scenarios at once: it
// names every condition matches has but those. A condition added to
// matches must be named here too (TestDecidedByPrune_NamesEveryCondition).
func (s *Scenario) decidedByPrune() bool {
	return len(s.methods) == 0 && s.protocolNot == nil && !s.uriAbsolute && !s.noReferer && !s.notStatic &&
		len(s.suffix) == 0 && len(s.prefix) == 0 &&
		len(s.pathRe.res)+len(s.uriRe.res)+len(s.queryRe.res)+len(s.anyRe.res) == 0 &&
		!s.log4shell && !s.sqli && !s.xss && s.Scope != ScopeRange && len(s.evidence) == 0
}

// matches reports whether r passes s's filter; cheap conditions first.
func (s *Scenario) matches(r *request) bool {
	e := r.e
	if s.hasStatus && (e.Status < 0 || e.Status >= 1024 || s.statusBits[e.Status>>6]&(1<<(e.Status&63)) == 0) {
		return false
	}
	if len(s.methods) > 0 {
		ok := false
		for _, m := range s.methods {
			ok = ok || string(e.Method) == m
		}
		if !ok {
			return false
		}
	}
	if s.protocolNot != nil && (len(e.Protocol) == 0 || protocolIn(e.Protocol, s.protocolNot)) {
		return false
	}
	if s.uriAbsolute {
		m := string(e.Method)
		p := e.Path
		abs := m == "CONNECT" || len(p) > 7 && (strings.EqualFold(string(p[:7]), "http://") || len(p) > 8 && strings.EqualFold(string(p[:8]), "https://"))
		if !abs {
			return false
		}
	}
	if s.noReferer && len(e.Referer) > 0 && !(len(e.Referer) == 1 && e.Referer[0] == '-') {
		return false
	}
	if s.notStatic && isStatic(r.Path()) {
		return false
	}
	if s.rawURI != nil && !r.hit(fieldRawURI, s) {
		return false
	}
	if s.path != nil && !r.hit(fieldPath, s) {
		return false
	}
	if len(s.suffix) > 0 {
		p, ok := r.Path(), false
		for _, x := range s.suffix {
			ok = ok || hasSuffixFold(p, x)
		}
		if !ok {
			return false
		}
	}
	if len(s.prefix) > 0 {
		p, ok := r.Path(), false
		for _, x := range s.prefix {
			ok = ok || hasPrefixFold(p, x)
		}
		if !ok {
			return false
		}
	}
	if s.query != nil && !r.hit(fieldQuery, s) {
		return false
	}
	if s.uri != nil && !r.hit(fieldURI, s) {
		return false
	}
	if s.ua != nil && !r.hit(fieldUA, s) {
		return false
	}
	if s.referer != nil && !r.hit(fieldReferer, s) {
		return false
	}
	if s.anyM != nil && !r.hit(fieldAny, s) {
		return false
	}
	if !anyMatch(&s.pathRe, r.Path) || !anyMatch(&s.uriRe, r.URI) || !r.queryMatches(s) || !anyMatch(&s.anyRe, r.All) {
		return false
	}
	if s.log4shell {
		if _, ok := r.log4shell(); !ok {
			return false
		}
	}
	if s.sqli {
		if _, ok := r.sqli(); !ok {
			return false
		}
	}
	if s.xss {
		if _, ok := r.xss(); !ok {
			return false
		}
	}
	if s.Scope == ScopeRange && r.Range() == "" {
		return false
	}
	return true
}
