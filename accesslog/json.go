package accesslog

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// jfield is an Entry field a JSON key maps to.
type jfield uint8

const (
	fNone jfield = iota
	fClient
	fTime
	fRequest
	fMethod
	fPath
	fQuery
	fProtocol
	fStatus
	fBytes
	fReferer
	fUserAgent
	fVHost
	fDuration   // seconds, fractional (nginx $request_time)
	fDurationMs // milliseconds
	fDurationUs // microseconds
	numFields
)

var jfieldNames = [numFields]string{"", "client", "time", "request", "method", "path", "query", "protocol", "status", "bytes", "referer", "user_agent", "vhost", "duration", "duration_ms", "duration_us"}

// defaultJSONKeys are the keys tried for each field, first match wins: the
// names nginx's and Apache's JSON log recipes, Caddy-like and ECS-flat logs use.
var defaultJSONKeys = [numFields][]string{
	fClient:     {"remote_addr", "client_ip", "clientip", "remote_ip", "ip", "client", "c-ip"},
	fTime:       {"time_local", "time_iso8601", "@timestamp", "timestamp", "time", "ts", "msec"},
	fRequest:    {"request"},
	fMethod:     {"request_method", "method", "verb"},
	fPath:       {"request_uri", "uri", "path", "url"},
	fQuery:      {"query_string", "args", "query"},
	fProtocol:   {"server_protocol", "protocol"},
	fStatus:     {"status", "status_code", "response", "response_code"},
	fBytes:      {"body_bytes_sent", "bytes_sent", "bytes", "size", "response_bytes"},
	fReferer:    {"http_referer", "referer", "referrer"},
	fUserAgent:  {"http_user_agent", "user_agent", "useragent", "agent"},
	fVHost:      {"host", "server_name", "vhost", "http_host"},
	fDuration:   {"request_time", "duration"},
	fDurationMs: {"duration_ms", "request_time_ms"},
	fDurationUs: {"duration_us", "request_time_us"},
}

// jsonMapping says which JSON key feeds which field.
type jsonMapping struct {
	fields [numFields][]string
	keys   map[string]jkey
}

type jkey struct {
	field jfield
	rank  int8 // position in the field's key list: lower wins
}

// parseJSONMapping reads "client=ip,time=ts,...": fields not named keep
// their default keys.
func parseJSONMapping(spec string) (*jsonMapping, error) {
	m := &jsonMapping{fields: defaultJSONKeys}
	if spec != "" {
		for _, pair := range strings.Split(spec, ",") {
			name, key, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || key == "" {
				return nil, fmt.Errorf("json field mapping %q: want FIELD=KEY, as in client=remote_addr", pair)
			}
			f := fNone
			for i, n := range jfieldNames {
				if n != "" && n == name {
					f = jfield(i)
				}
			}
			if f == fNone {
				names := append([]string(nil), jfieldNames[1:]...)
				sort.Strings(names)
				return nil, fmt.Errorf("json field mapping: unknown field %q (fields: %s)", name, strings.Join(names, ", "))
			}
			m.fields[f] = []string{key}
		}
	}
	m.keys = make(map[string]jkey)
	for f, keys := range m.fields {
		for r, k := range keys {
			if _, dup := m.keys[k]; !dup {
				m.keys[k] = jkey{jfield(f), int8(r)}
			}
		}
	}
	return m, nil
}

// parseJSON reads one JSON object per line.
func (f *Format) parseJSON(line []byte, e *Entry) error {
	if cap(e.scratch) < len(line) {
		e.scratch = make([]byte, 0, 2*len(line))
	}
	e.scratch = e.scratch[:0]
	var rank [numFields]int8
	for i := range rank {
		rank[i] = 127
	}
	var vals [numFields][]byte
	var isStr [numFields]bool

	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return ErrBadJSON
	}
	i = skipWS(line, i+1)
	if i < len(line) && line[i] == '}' {
		return ErrNoTime
	}
	for {
		if i >= len(line) || line[i] != '"' {
			return ErrBadJSON
		}
		ks, ke, next, esc, ok := scanString(line, i)
		if !ok {
			return ErrBadJSON
		}
		key := line[ks:ke]
		if esc {
			key = e.unescape(key)
		}
		i = skipWS(line, next)
		if i >= len(line) || line[i] != ':' {
			return ErrBadJSON
		}
		i = skipWS(line, i+1)
		if i >= len(line) {
			return ErrTruncated
		}
		var val []byte
		str := false
		switch c := line[i]; {
		case c == '"':
			vs, ve, n, esc, ok := scanString(line, i)
			if !ok {
				return ErrBadJSON
			}
			val, str, i = line[vs:ve], true, n
			if esc {
				val = e.unescape(val)
			}
		case c == '{' || c == '[':
			n, ok := skipNested(line, i)
			if !ok {
				return ErrBadJSON
			}
			i = n
		default:
			j := i
			for j < len(line) && line[j] != ',' && line[j] != '}' && line[j] != ' ' && line[j] != '\t' {
				j++
			}
			val, i = line[i:j], j
			if string(val) == "null" || string(val) == "true" || string(val) == "false" {
				val = nil
			} else if !isJSONNumber(val) {
				return ErrBadJSON
			}
		}
		if val != nil {
			if k, ok := f.json.keys[string(key)]; ok && k.rank < rank[k.field] {
				rank[k.field], vals[k.field], isStr[k.field] = k.rank, val, str
			}
		}
		i = skipWS(line, i)
		if i >= len(line) {
			return ErrTruncated
		}
		if line[i] == '}' {
			if skipWS(line, i+1) != len(line) {
				return ErrTrailing
			}
			break
		}
		if line[i] != ',' {
			return ErrBadJSON
		}
		i = skipWS(line, i+1)
	}
	return fillJSON(e, &vals)
}

func fillJSON(e *Entry, vals *[numFields][]byte) error {
	t := vals[fTime]
	if t == nil {
		return ErrNoTime
	}
	switch {
	case len(t) >= 10 && t[4] == '-':
		ns, ok := parseISO(t)
		if !ok {
			return ErrBadTime
		}
		e.Time = ns
	case len(t) >= 3 && t[2] == '/':
		n, ns, err := clfBody(t, &e.date)
		if err != nil || n != len(t) {
			return ErrBadTime
		}
		e.Time = ns
	case len(t) >= 3 && t[0] == '[':
		n, ns, err := parseCLF(t, &e.date)
		if err != nil || n != len(t) {
			return ErrBadTime
		}
		e.Time = ns
	default:
		ns, ok := parseEpoch(t)
		if !ok {
			return ErrBadTime
		}
		e.Time = ns
	}
	if err := e.setClient(vals[fClient]); err != nil {
		return err
	}
	if r := vals[fRequest]; r != nil {
		e.Request = r
		splitRequest(r, e)
	}
	if v := dash(vals[fMethod]); v != nil {
		e.Method = v
	}
	if v := vals[fPath]; v != nil {
		if q := indexByte(v, '?'); q >= 0 {
			e.Path, e.Query = v[:q], v[q+1:]
		} else {
			e.Path = v
		}
	}
	if v := dash(vals[fQuery]); v != nil {
		e.Query = v
	}
	if v := dash(vals[fProtocol]); v != nil {
		e.Protocol = v
	}
	if v := vals[fStatus]; v != nil {
		s, ok := status(v)
		if !ok {
			return ErrBadStatus
		}
		e.Status = s
	}
	if v := vals[fBytes]; v != nil {
		n, ok := number(v)
		if !ok {
			return ErrBadNumber
		}
		e.Bytes = n
	}
	e.Referer = dash(vals[fReferer])
	e.UserAgent = dash(vals[fUserAgent])
	e.VHost = dash(vals[fVHost])
	for _, d := range [...]struct {
		f    jfield
		unit int64
	}{{fDuration, 1e6}, {fDurationMs, 1e3}, {fDurationUs, 1}} {
		if v := vals[d.f]; v != nil {
			n, ok := decimal(v, d.unit)
			if !ok {
				return ErrBadNumber
			}
			e.Duration = n
		}
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// scanString reads the JSON string starting at b[i] == '"'.
func scanString(b []byte, i int) (start, end, next int, escaped, ok bool) {
	start = i + 1
	for j := start; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return start, j, j + 1, escaped, true
		}
	}
	return 0, 0, 0, false, false
}

// skipNested skips an object or array starting at b[i].
func skipNested(b []byte, i int) (int, bool) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			_, _, n, _, ok := scanString(b, j)
			if !ok {
				return 0, false
			}
			j = n - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, true
			}
		}
	}
	return 0, false
}

func isJSONNumber(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

func hexVal(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10
	}
	return -1
}

func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		v := hexVal(c)
		if v < 0 {
			return -1
		}
		r = r<<4 | v
	}
	return r
}

// unescape decodes a JSON string body into e's scratch buffer. The buffer was
// sized to the line, and a decoded string is never longer than its source,
// so appending never moves earlier values.
func (e *Entry) unescape(s []byte) []byte {
	start := len(e.scratch)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			e.scratch = append(e.scratch, c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			e.scratch = append(e.scratch, '\n')
		case 't':
			e.scratch = append(e.scratch, '\t')
		case 'r':
			e.scratch = append(e.scratch, '\r')
		case 'b':
			e.scratch = append(e.scratch, '\b')
		case 'f':
			e.scratch = append(e.scratch, '\f')
		case 'u':
			r := hex4(s[i+1:])
			if r < 0 {
				e.scratch = append(e.scratch, '\\', 'u')
				continue
			}
			i += 4
			if r >= 0xd800 && r < 0xdc00 && i+6 < len(s)+0 && s[i+1] == '\\' && s[i+2] == 'u' {
				if lo := hex4(s[i+3:]); lo >= 0xdc00 && lo < 0xe000 {
					r = (r-0xd800)<<10 | (lo - 0xdc00) + 0x10000
					i += 6
				}
			}
			if r >= 0xd800 && r < 0xe000 {
				r = utf8.RuneError
			}
			e.scratch = utf8.AppendRune(e.scratch, r)
		default:
			e.scratch = append(e.scratch, s[i])
		}
	}
	return e.scratch[start:len(e.scratch):len(e.scratch)]
}
