package detect

import (
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
	if ok, fp := libinjection.IsSQLi(value); ok {
		return true, "libinjection fingerprint " + fp
	}
	low := strings.ToLower(value)
	if strings.Contains(low, "/*") {
		low = stripComments(low)
		if ok, fp := libinjection.IsSQLi(low); ok {
			return true, "libinjection fingerprint " + fp + " (comments removed)"
		}
	}
	if m := sqlSignatures.FindString(low); m != "" {
		return true, "signature " + strings.Join(strings.Fields(m), " ")
	}
	return false, ""
}

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
// string, each normalised on its own (an escaped '&' inside a value stays
// in the value); it stops when fn returns true.
func params(raw string, fn func(name, value string) bool) {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		if fn(name, value) {
			return
		}
	}
}

// injection runs the analysis of kind ("sqli" or "xss") on the request and
// returns the first finding.
func (r *request) injection(kind string) (Finding, bool) {
	e := r.e
	check := isSQLi
	valueBytes, pathBytes, headerBytes := &sqliBytes, &pathSQLiBytes, &headerSQLiBytes
	if kind == "xss" {
		check, valueBytes, pathBytes, headerBytes = isXSS, &xssBytes, &xssBytes, &xssBytes
	}
	var f Finding
	found := false
	inQuery := func(where string, raw string) {
		params(raw, func(name, value string) bool {
			for _, t := range [2]struct{ where, raw string }{{"parameter " + name, value}, {"parameter name", name}} {
				if t.raw == "" {
					continue
				}
				v := normalise(t.raw, true)
				if !hasAny(v, valueBytes) && !(kind == "xss" && strings.IndexByte(v, ':') >= 0) {
					continue
				}
				if ok, why := check(v); ok {
					f, found = Finding{Kind: kind, Where: where + " " + clip(t.where, 40), Why: why}, true
					return true
				}
			}
			return false
		})
	}
	if len(e.Query) > 0 {
		inQuery("query", string(e.Query))
		if found {
			return f, true
		}
	}
	if p := r.injPath(); hasAny(p, pathBytes) {
		if ok, why := check(strings.TrimLeft(p, "/")); ok {
			return Finding{Kind: kind, Where: "path", Why: why}, true
		}
	}
	if ua := r.injUA(); hasAny(ua, headerBytes) || kind == "sqli" && (strings.Contains(ua, "--") || strings.Contains(ua, "/*")) {
		if ok, why := check(ua); ok {
			return Finding{Kind: kind, Where: "user agent", Why: why}, true
		}
	}
	if ref := string(e.Referer); ref != "" && ref != "-" {
		if hasPrefixFold(ref, "http://") || hasPrefixFold(ref, "https://") {
			if _, q, ok := strings.Cut(ref, "?"); ok {
				inQuery("referer", q)
			}
		} else if v := normalise(ref, true); hasAny(v, headerBytes) || hasAny(v, valueBytes) {
			if ok, why := check(v); ok {
				f, found = Finding{Kind: kind, Where: "referer", Why: why}, true
			}
		}
	}
	return f, found
}

// injPath is the path normalised for injection analysis (URL escapes and
// entities until stable).
func (r *request) injPath() string {
	if r.have&hInjPath == 0 {
		r.injP, r.have = normalise(string(r.e.Path), false), r.have|hInjPath
	}
	return r.injP
}

// injUA is the user agent normalised for injection analysis.
func (r *request) injUA() string {
	if r.have&hInjUA == 0 {
		r.injU, r.have = normalise(string(r.e.UserAgent), false), r.have|hInjUA
	}
	return r.injU
}

// sqli and xss cache the request's analysis, which several scenarios may
// ask for.
func (r *request) sqli() (Finding, bool) {
	if r.done&doneSQLi == 0 {
		r.sqliF, r.sqliOK = r.injection("sqli")
		r.done |= doneSQLi
	}
	return r.sqliF, r.sqliOK
}

func (r *request) xss() (Finding, bool) {
	if r.done&doneXSS == 0 {
		r.xssF, r.xssOK = r.injection("xss")
		r.done |= doneXSS
	}
	return r.xssF, r.xssOK
}

func (r *request) log4shell() (Finding, bool) {
	if r.done&doneLog4j == 0 {
		r.done |= doneLog4j
		for _, t := range [3]struct {
			where string
			text  func() string
		}{{"request line", r.URI}, {"user agent", r.UA}, {"referer", r.Referer}} {
			if why, ok := jndiLookup(t.text()); ok {
				r.log4jF, r.log4jOK = Finding{Kind: "log4shell", Where: t.where, Why: why}, true
				break
			}
		}
	}
	return r.log4jF, r.log4jOK
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
