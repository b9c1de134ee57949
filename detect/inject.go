package detect

import (
	"bytes"
	"html"
	"regexp"
	"strings"

	"github.com/corazawaf/libinjection-go"
)

// Per-request injection analysis: does this one request carry SQL
// injection, cross-site scripting or a Log4Shell lookup? Substring lists
// miss what attackers send once they obfuscate (inline comments inside
// keywords, mixed case, double encoding, event handlers nobody listed), so
// each input a server would hand to its code (every query parameter, the
// path, the user agent, the referer's parameters) is normalised and given
// to libinjection, the tokenizer ModSecurity and Coraza use.
//
// Cost: most requests never reach libinjection. A value is analysed only
// if it holds a byte an injection needs (a quote, a parenthesis, '<', ...);
// ordinary paths, slugs, numbers and words are skipped after one scan.

// Finding says where an injection was found and why.
type Finding struct {
	Kind  string // "sqli", "xss" or "log4shell"
	Where string // "query parameter id", "path", "user agent", "referer"
	// Why is libinjection's SQL fingerprint, or the rule that matched.
	Why string
	// Value is the decoded input that holds it.
	Value string
}

// sqliBytes are the bytes an SQL injection in a value needs at least one
// of; a value of letters, digits, spaces and '.', '_', ':' is natural text
// or an identifier, and libinjection is not asked (it takes "best union
// select" for SQL, as it should for a value that is meant to be code).
var sqliBytes = byteSet(`'"` + "`" + `;()=#*,|&-@\/!<>^~%`)

// pathSQLiBytes are those for a path, where '-', ',', '/' and '.' are
// everyday characters.
var pathSQLiBytes = byteSet(`'"` + "`" + `;()=#*|@\`)

// headerSQLiBytes are those for a user agent, whose parentheses and
// semicolons are everyday characters: only quotes and comments there.
var headerSQLiBytes = byteSet(`'"` + "`" + `#`)

// xssBytes are those a script injection needs: a tag or a quote to break
// out of an attribute.
var xssBytes = byteSet(`<>"'` + "`")

func byteSet(s string) (t [256]bool) {
	for i := 0; i < len(s); i++ {
		t[s[i]] = true
	}
	return t
}

func hasAny(s string, set *[256]bool) bool {
	for i := 0; i < len(s); i++ {
		if set[s[i]] {
			return true
		}
	}
	return false
}

// normalise decodes v until it stops changing: URL escapes (with plus, '+'
// as a space) and HTML entities, at most four rounds, so double encodings
// and entities inside escapes are seen through.
func normalise(v string, plus bool) string {
	for round := 0; round < 4; round++ {
		d := v
		if strings.IndexByte(d, '%') >= 0 || plus && strings.IndexByte(d, '+') >= 0 {
			d = unescape(d, plus)
		}
		if strings.IndexByte(d, '&') >= 0 {
			d = html.UnescapeString(d)
		}
		if d == v {
			break
		}
		v = d
	}
	return v
}

// stripComments removes SQL block comments, keeping the body of MySQL's
// executable comments (/*!50000UNION*/ is UNION to MySQL): "UN/**/ION"
// is how a filter that looks for UNION is passed.
func stripComments(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "/*")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		s = s[i+2:]
		exec := strings.HasPrefix(s, "!")
		if exec {
			s = strings.TrimLeft(s[1:], "0123456789")
		}
		j := strings.Index(s, "*/")
		if j < 0 {
			if exec {
				b.WriteString(s)
			}
			return b.String()
		}
		if exec {
			b.WriteString(s[:j])
		}
		s = s[j+2:]
	}
}

// sqlSignatures catch what libinjection lets through on purpose (stacked
// queries starting with a keyword) and the time- and error-based probes
// scanners send, on the normalised, comment-free, lower-case text.
var sqlSignatures = regexp.MustCompile(`waitfor\s+(delay|time)\s+['"]\d|` +
	`\b(extractvalue|updatexml)\s*\(|\bpg_sleep\s*\(|\bdbms_pipe\.receive_message\s*\(|` +
	`\bbenchmark\s*\(\s*\d{4,}|(\band\b|\bor\b|\|\||&&|;|['")])\s*sleep\s*\(\s*\d|` +
	`\bunion(\s+(all|distinct))?\s+select\s+(null|\d|0x|@@|concat|char|group_concat|\*)|` +
	`;\s*(drop|truncate|shutdown|exec|declare)\b`)

// isSQLi reports whether value is an SQL injection, with libinjection's
// fingerprint or the signature that matched.
func isSQLi(value string) (bool, string) {
	low := strings.ToLower(value)
	if ok, fp := libinjection.IsSQLi(value); ok && !prose(low) {
		return true, "libinjection fingerprint " + fp
	}
	if strings.Contains(low, "/*") {
		low = stripComments(low)
		if ok, fp := libinjection.IsSQLi(low); ok && !prose(low) {
			return true, "libinjection fingerprint " + fp + " (comments removed)"
		}
	}
	// \' is how a quote gets past an escaping that is done twice, or not
	// undone before the query is built.
	if strings.Contains(low, `\'`) || strings.Contains(low, `\"`) {
		u := strings.NewReplacer(`\'`, `'`, `\"`, `"`).Replace(low)
		if ok, fp := libinjection.IsSQLi(u); ok && !prose(u) {
			return true, "libinjection fingerprint " + fp + " (quote escapes removed)"
		}
	}
	if mayBeSignature(low) {
		if m := sqlSignatures.FindString(low); m != "" {
			return true, "signature " + strings.Join(strings.Fields(m), " ")
		}
	}
	return false, ""
}

// signatureWords holds, for each alternative of sqlSignatures, a literal
// it cannot match without ("sleep" stands for pg_sleep too): a value with
// none of them is not run through the expression, which would cost more
// than the rest of the analysis.
var signatureWords = []string{"waitfor", "extractvalue", "updatexml", "sleep", "dbms_pipe", "benchmark", "union"}

// mayBeSignature reports whether the lower-case value low holds ';' or one
// of signatureWords.
func mayBeSignature(low string) bool {
	if strings.IndexByte(low, ';') >= 0 {
		return true
	}
	for _, w := range signatureWords {
		if strings.Contains(low, w) {
			return true
		}
	}
	return false
}

// prose reports whether a lower-case value libinjection takes for SQL reads
// as words someone typed: two or more words of three letters or more that
// are not SQL, and none of the syntax an injection cannot do without (a
// comment, a ';', an '=', a call, @@, 0x). libinjection reads "case (black)
// for grinder" as CASE (n) n and "is 'or' better than 'and'" as a string
// tautology; a search box gets such text all day.
func prose(low string) bool {
	if strings.Contains(low, "--") || strings.ContainsAny(low, "#;=") || strings.Contains(low, "/*") ||
		strings.Contains(low, "@@") || strings.Contains(low, "0x") {
		return false
	}
	words := 0
	for i := 0; i < len(low); {
		c := low[i]
		if c < 'a' || c > 'z' {
			if c == '(' && i > 0 && (low[i-1] >= 'a' && low[i-1] <= 'z' || low[i-1] >= '0' && low[i-1] <= '9' || low[i-1] == '_') {
				return false // a call: name(
			}
			i++
			continue
		}
		j := i
		for j < len(low) && (low[j] >= 'a' && low[j] <= 'z' || low[j] >= '0' && low[j] <= '9' || low[j] == '_') {
			j++
		}
		w := low[i:j]
		if len(w) >= 3 && !sqlWords[w] && strings.IndexFunc(w, func(r rune) bool { return r < 'a' || r > 'z' }) < 0 {
			words++
		}
		i = j
	}
	return words >= 2
}

// sqlWords are the SQL keywords and functions injections are made of.
var sqlWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`select union from where and not null order group having limit offset insert update
		delete drop table tables into values like rlike regexp case when then else end exec execute sleep benchmark waitfor
		delay version concat char chr substring substr ascii all distinct true false cast convert load_file outfile dumpfile
		information_schema schema database user current_user system_user column columns declare varchar nvarchar count
		extractvalue updatexml elt ord mid hex unhex xor div mod procedure analyse pg_sleep dbms_pipe receive_message`) {
		m[w] = true
	}
	return m
}()

// xssExec are the bytes of script that runs: a call, an assignment, a
// template literal. A tag alone ("how to write <script> tags" in a search
// box) is text about HTML, not an attack.
var xssExec = byteSet("(=`")

// scriptScheme finds a javascript: or vbscript: URL once control
// characters and spaces (which browsers drop inside a scheme) are gone.
var scriptScheme = regexp.MustCompile(`(?i)^(javascript|vbscript|livescript):.*[(=` + "`" + `]|^data:text/html`)

// isXSS reports whether value is a script injection.
func isXSS(value string) (bool, string) {
	if hasAny(value, &xssBytes) && hasAny(value, &xssExec) {
		v := value
		if strings.IndexByte(v, 0) >= 0 {
			v = strings.ReplaceAll(v, "\x00", "")
		}
		if libinjection.IsXSS(v) {
			return true, "libinjection"
		}
	}
	if i := strings.IndexByte(value, ':'); i > 0 && i < 40 {
		t := strings.Map(func(r rune) rune {
			if r <= ' ' {
				return -1
			}
			return r
		}, value)
		if scriptScheme.MatchString(t) {
			return true, "script URL"
		}
	}
	return false, ""
}

// params calls fn with the name and value of each parameter of a raw query
// string (an escaped '&' inside a value stays in the value); it stops when
// fn returns true.
func params(raw []byte, fn func(name, value []byte) bool) {
	for len(raw) > 0 {
		part := raw
		if i := bytes.IndexByte(raw, '&'); i >= 0 {
			part, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(part) == 0 {
			continue
		}
		name, value := part, []byte(nil)
		if i := bytes.IndexByte(part, '='); i >= 0 {
			name, value = part[:i], part[i+1:]
		}
		if fn(name, value) {
			return
		}
	}
}

// worthAsking reports whether a raw value may hold an injection once
// decoded: it holds an escape, a '+', or a byte of set (or, for a script
// URL, a ':').
func worthAsking(raw []byte, set *[256]bool, colon bool) bool {
	for _, c := range raw {
		if set[c] || c == '%' || c == '+' || colon && c == ':' {
			return true
		}
	}
	return false
}

// inject runs both analyses on the request, each input decoded once, and
// keeps the first finding of each.
func (r *request) inject() {
	if r.done&doneInject != 0 {
		return
	}
	r.done |= doneInject
	e := r.e
	if r.memo != nil && len(e.Query) > 0 {
		r.memo.injectQuery(r)
	} else {
		r.injectQuery("query", e.Query)
	}
	if r.sqliOK && r.xssOK {
		return
	}
	seen := r.pathClasses()
	if seen&(clPathSQLi|clXSS|clEsc) != 0 {
		r.checkValue(strings.TrimLeft(r.injPath(), "/"), place{where: "path"}, &pathSQLiBytes)
	}
	if r.sqliOK && r.xssOK {
		return
	}
	seen = r.uaClasses()
	if seen&(clHdrSQLi|clXSS|clEsc) != 0 || seen&clComment != 0 &&
		(bytes.Contains(e.UserAgent, []byte("--")) || bytes.Contains(e.UserAgent, []byte("/*"))) {
		ua := r.injUA()
		if !r.sqliOK && (hasAny(ua, &headerSQLiBytes) || strings.Contains(ua, "--") || strings.Contains(ua, "/*")) {
			if ok, why := isSQLi(ua); ok {
				r.sqliF, r.sqliOK = Finding{Kind: "sqli", Where: "user agent", Why: why, Value: ua}, true
			}
		}
		if !r.xssOK {
			if ok, why := isXSS(ua); ok {
				r.xssF, r.xssOK = Finding{Kind: "xss", Where: "user agent", Why: why, Value: ua}, true
			}
		}
	}
	ref := e.Referer
	if len(ref) == 0 || len(ref) == 1 && ref[0] == '-' {
		return
	}
	if hasPrefixFoldBytes(ref, "http://") || hasPrefixFoldBytes(ref, "https://") {
		if q, ok := refererQuery(ref); ok {
			switch {
			case r.refKnown: // the referer's memo slot
				if r.ref != nil {
					r.fillFindings(r.ref[0], r.ref[1])
				}
			case r.memo != nil:
				r.memo.injectRefererQuery(r, q)
			default:
				r.injectQuery("referer", q)
			}
		}
		return
	}
	if worthAsking(ref, &sqliBytes, true) {
		r.checkValue(normalise(string(ref), true), place{where: "referer"}, &sqliBytes)
	}
}

// place is where in the request a value was read, named only when a
// finding needs it: most values of most queries find nothing, and their
// names would be strings made for nothing.
type place struct {
	where         string // "path", "referer", "query", ...
	param         []byte // a query's parameter, when the value is one
	inQuery, name bool   // the value is a parameter's (name: its name)
}

func (p place) String() string {
	switch {
	case !p.inQuery:
		return p.where
	case p.name:
		return p.where + " parameter name"
	}
	return p.where + " parameter " + clip(string(p.param), 40)
}

// checkValue runs the analyses still without a finding on one decoded
// value (SQL only if it holds a byte of sqlSet).
func (r *request) checkValue(v string, at place, sqlSet *[256]bool) {
	if !r.sqliOK && hasAny(v, sqlSet) {
		if ok, why := isSQLi(v); ok {
			r.sqliF, r.sqliOK = Finding{Kind: "sqli", Where: at.String(), Why: why, Value: v}, true
		}
	}
	if !r.xssOK && (hasAny(v, &xssBytes) || strings.IndexByte(v, ':') >= 0) {
		if ok, why := isXSS(v); ok {
			r.xssF, r.xssOK = Finding{Kind: "xss", Where: at.String(), Why: why, Value: v}, true
		}
	}
}

// injectQuery checks each parameter (value and name) of a raw query.
func (r *request) injectQuery(where string, raw []byte) {
	params(raw, func(name, value []byte) bool {
		for k, t := range [2][]byte{value, name} {
			if len(t) == 0 || !worthAsking(t, &sqliBytes, true) {
				continue
			}
			r.checkValue(normalise(string(t), true), place{where: where, param: name, inQuery: true, name: k == 1}, &sqliBytes)
		}
		return r.sqliOK && r.xssOK
	})
}

// headerClass sorts bytes, so that one pass over a path or a user agent
// (which every request has) says which analyses it may need.
var headerClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if sqliBytes[c] {
			t[c] |= clSQLi
		}
		if headerSQLiBytes[c] {
			t[c] |= clHdrSQLi
		}
		if pathSQLiBytes[c] {
			t[c] |= clPathSQLi
		}
		if xssBytes[c] {
			t[c] |= clXSS
		}
	}
	t['%'] |= clEsc | clPercent
	t['&'] |= clEsc
	t['-'] |= clComment
	t['*'] |= clComment
	t['$'] |= clDollar
	return t
}()

// classesOf is the union of headerClass over b, read in four interleaved
// runs so that the lookups do not wait on one another.
func classesOf(b []byte) uint8 {
	var c0, c1, c2, c3 uint8
	i := 0
	for ; i+4 <= len(b); i += 4 {
		c0 |= headerClass[b[i]]
		c1 |= headerClass[b[i+1]]
		c2 |= headerClass[b[i+2]]
		c3 |= headerClass[b[i+3]]
	}
	for ; i < len(b); i++ {
		c0 |= headerClass[b[i]]
	}
	return c0 | c1 | c2 | c3
}

// pathClasses and uaClasses are classesOf the raw path and user agent,
// computed once for the request.
func (r *request) pathClasses() uint8 {
	if r.have&hClPath == 0 {
		r.clPath, r.have = classesOf(r.e.Path), r.have|hClPath
	}
	return r.clPath
}

func (r *request) uaClasses() uint8 {
	if r.have&hClUA == 0 {
		r.clUA, r.have = classesOf(r.e.UserAgent), r.have|hClUA
	}
	return r.clUA
}

const (
	clSQLi = 1 << iota
	clHdrSQLi
	clPathSQLi
	clXSS
	clEsc
	clComment
	clPercent // '%', also in clEsc
	clDollar  // '$', which starts a Log4j lookup
)

func hasPrefixFoldBytes(b []byte, p string) bool {
	if len(b) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if lowerByte(b[i]) != p[i] {
			return false
		}
	}
	return true
}

// injPath is the path normalised for injection analysis (URL escapes and
// entities until stable).
func (r *request) injPath() string {
	if r.have&hInjPath == 0 {
		r.injP, r.have = r.Path(), r.have|hInjPath
		if strings.IndexByte(r.injP, '&') >= 0 {
			r.injP = normalise(r.injP, false)
		}
	}
	return r.injP
}

// injUA is the user agent normalised for injection analysis.
func (r *request) injUA() string {
	if r.have&hInjUA == 0 {
		r.injU, r.have = r.UA(), r.have|hInjUA
		if strings.IndexByte(r.injU, '&') >= 0 {
			r.injU = normalise(r.injU, false)
		}
	}
	return r.injU
}

// sqli and xss cache the request's analysis, which several scenarios may
// ask for.
func (r *request) sqli() (Finding, bool) {
	r.inject()
	return r.sqliF, r.sqliOK
}

func (r *request) xss() (Finding, bool) {
	r.inject()
	return r.xssF, r.xssOK
}

func (r *request) log4shell() (Finding, bool) {
	if r.done&doneLog4j == 0 {
		r.done |= doneLog4j
		// A field is looked into if its raw text may hide a lookup
		// (mayHoldLookup), unless its memo slot did so and found none.
		for i := 0; i < 3 && !r.log4jOK; i++ {
			if r.jndiKnown&(1<<i) != 0 && r.jndiFound&(1<<i) == 0 || !r.mayHoldLookup(i) {
				continue
			}
			where, text := r.jndiText(i)
			if why, ok := jndiLookup(text); ok {
				r.log4jF, r.log4jOK = Finding{Kind: "log4shell", Where: where, Why: why, Value: text}, true
			}
		}
	}
	return r.log4jF, r.log4jOK
}

// The fields looked into for a Log4j lookup, in order (jndiField maps a
// scan's text to them).
const (
	jndiURI = iota
	jndiUA
	jndiReferer
)

func jndiField(t int) int {
	switch t {
	case fieldUA:
		return jndiUA
	case fieldReferer:
		return jndiReferer
	}
	return jndiURI
}

// mayHoldLookup reports whether field i's raw text has a '$' or an
// escape that may hide one: a text with neither decodes to itself,
// without a lookup.
func (r *request) mayHoldLookup(i int) bool {
	switch i {
	case jndiURI:
		return r.pathClasses()&(clDollar|clPercent) != 0 || maybeLookup(r.e.Query)
	case jndiUA:
		return r.uaClasses()&(clDollar|clPercent) != 0
	}
	return maybeLookup(r.e.Referer)
}

// jndiText is field i's decoded text and its name in a finding.
func (r *request) jndiText(i int) (where, text string) {
	switch i {
	case jndiURI:
		return "request line", r.URI()
	case jndiUA:
		return "user agent", r.UA()
	}
	return "referer", r.Referer()
}

// jndiIn reports whether field i's decoded text holds a Log4j lookup.
func (r *request) jndiIn(i int) bool {
	if !r.mayHoldLookup(i) {
		return false
	}
	_, text := r.jndiText(i)
	_, ok := jndiLookup(text)
	return ok
}

func maybeLookup(b []byte) bool {
	return bytes.IndexByte(b, '$') >= 0 || bytes.IndexByte(b, '%') >= 0
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// maxLookups bounds the lookups resolved in one text: a line of nested
// "${" costs at most this many passes.
const maxLookups = 64

// jndiLookup reports whether text, once Log4j's lookups are resolved as
// Log4j would resolve them, holds a JNDI lookup: ${jndi:...} however it is
// spelt (${${lower:j}ndi:...}, ${${::-j}${::-n}${::-d}${::-i}:...},
// ${${env:NONE:-j}ndi:...}). Innermost lookups are replaced by their value:
// the default after ":-", the argument of lower and upper, and nothing for
// any other lookup (its value is the server's, unknown here).
func jndiLookup(text string) (string, bool) {
	i := strings.Index(text, "${")
	if i < 0 {
		return "", false
	}
	s := []byte(text[i:])
	for n := 0; n < maxLookups; n++ {
		// The innermost lookup: the last "${" before the first "}" after it.
		open := -1
		end := -1
		for k := 0; k+1 < len(s); k++ {
			if s[k] == '$' && s[k+1] == '{' {
				open = k
				k++
				continue
			}
			if s[k] == '}' && open >= 0 {
				end = k
				break
			}
		}
		if open < 0 {
			break
		}
		if end < 0 {
			// Unclosed: what is left still counts if it spells the lookup.
			if hasPrefixFold(string(s[open+2:]), "jndi:") {
				return "unclosed ${jndi:", true
			}
			break
		}
		body := string(s[open+2 : end])
		if hasPrefixFold(body, "jndi:") {
			if n == 0 {
				return "${jndi:", true
			}
			return "${jndi: after resolving nested lookups", true
		}
		val := ""
		lb := strings.ToLower(body)
		switch {
		case strings.Contains(body, ":-"):
			val = body[strings.Index(body, ":-")+2:]
		case strings.HasPrefix(lb, "lower:"), strings.HasPrefix(lb, "upper:"):
			val = body[6:]
		case strings.HasPrefix(lb, "date:"):
			val = strings.Trim(body[5:], `'"`)
		}
		s = append(s[:open], append([]byte(val), s[end+1:]...)...)
	}
	return "", false
}
