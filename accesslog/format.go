package accesslog

import (
	"fmt"
	"strings"
)

// kind is what one compiled item of a format does.
type kind uint8

const (
	kLiteral kind = iota
	kClientH
	kClientA
	kIdent
	kUser
	kTimeCLF
	kTimeFmt
	kRequest
	kMethod
	kPath
	kQuery
	kProtocol
	kStatus      // %s, %<s
	kStatusFinal // %>s
	kBytesCLF    // %b: '-' for zero
	kBytes       // %B
	kBytesOut    // %O
	kBytesIn     // %I
	kDurationUs  // %D
	kDurationT   // %T, %{UNIT}T
	kVHost       // %v, %V
	kPort        // %p
	kReferer
	kUserAgent
	kHostHeader
	kSkip // a valid directive whose value Warden does not use (%P, %k, %{X}e, ...)
)

// item is one step of a compiled format: a literal to match or a field to read.
type item struct {
	kind   kind
	lit    []byte
	quoted bool      // field sits between '"' literals: skip escaped quotes
	unit   int64     // %T: microseconds per logged unit
	tfmt   []timeTok // %{format}t
	name   string    // the directive as written, for messages
}

// Format is a compiled log format. It is safe for concurrent use: all
// per-line state lives in the caller's Entry.
type Format struct {
	name   string
	items  []item
	json   *jsonMapping // JSON lines instead of items
	syslog bool         // lines carry a syslog prefix to strip first
	// shape is combinedShape(items): 2 for combined, 1 for common, which
	// readCombined reads.
	shape uint8
	// precedence when a format logs a value twice
	hasA, hasFinal, hasB, hasVHost bool
	auto                           []*Format // "auto": each line by the first of these that reads it
	// autoCheck lists, for each candidate of auto, the candidates before
	// it that may read whole a line it reads whole (see autoExcludes).
	autoCheck [][]int
	// MaxLine is the longest line accepted; longer ones are malformed.
	MaxLine int
}

// Name is the preset name, "json", or the format string the Format came from,
// prefixed with "syslog+" when lines carry a syslog prefix.
func (f *Format) Name() string {
	if f.syslog {
		return "syslog+" + f.name
	}
	return f.name
}

// HasDuration reports whether lines carry the time taken to serve the request.
func (f *Format) HasDuration() bool {
	if f.json != nil {
		return len(f.json.fields[fDuration]) > 0
	}
	for _, it := range f.items {
		if it.kind == kDurationUs || it.kind == kDurationT {
			return true
		}
	}
	return false
}

// Presets maps each preset name to its Apache format string.
var Presets = map[string]string{
	"common":               `%h %l %u %t "%r" %>s %b`,
	"combined":             `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`,
	"combinedio":           `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %I %O`,
	"vhost_combined":       `%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"`,
	"nginx":                `%a - %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`,
	"nginx_combined":       `%a - %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`,
	"nginx_vhost_combined": `%v %a - %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`,
}

// Auto returns the format that reads each line by itself with the first
// candidate of auto-detection that reads the whole line (or, failing that,
// the first that reads it with extra fields after the last one). Unlike
// Detect, which fixes one format from a sample, it suits streams that mix
// formats, and it is still a pure function of the line.
func Auto() *Format {
	f := &Format{name: "auto", MaxLine: MaxLineBytes}
	for _, syslog := range []string{"", "syslog+"} {
		for _, n := range autoOrder {
			c, _ := Lookup(syslog + n)
			f.auto = append(f.auto, c)
		}
	}
	f.autoCheck = make([][]int, len(f.auto))
	for p := range f.auto {
		for q := range p {
			if !autoExcludes(f.auto[q], f.auto[p]) {
				f.autoCheck[p] = append(f.autoCheck[p], q)
			}
		}
	}
	return f
}

// clfFields is, for the presets auto tries, how many fields without a space
// come before the time: %v:%p %h %l %u, %v %a - %u, or %h %l %u.
var clfFields = map[string]int{"vhost_combined": 4, "nginx_vhost_combined": 4, "combined": 3, "combinedio": 3, "common": 3}

// autoExcludes reports whether candidate q, tried before p, cannot read a
// line whole when p reads it whole, so that a line p reads whole is p's.
// The reasons (TestAutoPinned tries every pin on lines of every kind):
//
//  1. Behind the same prefix (or none), a format with 4 fields before the
//     time never reads a line one with 3 reads: each field holds no space
//     and ends at the next one, so the 4-field format's time starts after
//     the 4th space, which is inside the other's time, before its zone
//     ("+0000", "Z"), where no time starts ('[').
//  2. Of combined, combinedio and common, an earlier one never reads whole
//     what a later one reads whole: their fields up to the status are the
//     same, so they read them alike; a whole combinedio line ends in a
//     number, not in the quote that ends combined; a common line has no
//     space after the status's field, where combined's %b needs ` "`.
//  3. A line behind a syslog prefix starts with '<', a month or a year
//     ("2026-"): not the '{' JSON needs, nor a client address, "-" or
//     nothing, which combined, combinedio and common need first.
//
// Any other pair may read the same line whole (a "host:80 1.2.3.4 - - ..."
// line is vhost_combined's and nginx_vhost_combined's), so q is tried.
func autoExcludes(q, p *Format) bool {
	kq, kp := clfFields[q.name], clfFields[p.name]
	if q.syslog == p.syslog {
		return kp == 3 && kq != 0 // reasons 1 and 2
	}
	return p.syslog && (q.name == "json" || kq == 3) // reason 3
}

// autoOrder puts the common case early: a failing candidate costs little
// when it fails in its first fields.
var autoOrder = []string{"vhost_combined", "nginx_vhost_combined", "combined", "combinedio", "common", "json"}

// PresetNames lists the presets in a stable order for help texts.
var PresetNames = []string{"common", "combined", "combinedio", "vhost_combined", "nginx_combined", "nginx_vhost_combined", "json"}

// Lookup returns the Format for a preset name ("combined"), "json" or
// "json:FIELD=KEY,...", an Apache format string as written in httpd.conf
// (with or without the surrounding quotes and the LogFormat keyword), any of
// these prefixed with "syslog+".
func Lookup(spec string) (*Format, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty log format")
	}
	if spec == "auto" {
		return Auto(), nil
	}
	if rest, ok := strings.CutPrefix(spec, "syslog+"); ok {
		f, err := Lookup(rest)
		if err != nil {
			return nil, err
		}
		f.syslog = true
		return f, nil
	}
	if spec == "json" || strings.HasPrefix(spec, "json:") {
		m, err := parseJSONMapping(strings.TrimPrefix(strings.TrimPrefix(spec, "json"), ":"))
		if err != nil {
			return nil, err
		}
		return &Format{name: spec, json: m, MaxLine: MaxLineBytes}, nil
	}
	if s, ok := Presets[spec]; ok {
		f, err := Compile(s)
		if err != nil {
			return nil, err
		}
		f.name = spec
		return f, nil
	}
	if !strings.Contains(spec, "%") {
		return nil, fmt.Errorf("unknown log format %q: use a preset (%s) or an Apache LogFormat string", spec, strings.Join(PresetNames, ", "))
	}
	return Compile(spec)
}

// Compile compiles an Apache LogFormat string. It accepts the string as pasted
// from httpd.conf: `LogFormat "%h ... \"%r\" ..." nickname` works as well as
// the bare `%h ... "%r" ...`.
func Compile(format string) (*Format, error) {
	src := unquoteConf(format)
	f := &Format{name: src, MaxLine: MaxLineBytes}
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			f.items = append(f.items, item{kind: kLiteral, lit: lit})
			lit = nil
		}
	}
	for i := 0; i < len(src); {
		c := src[i]
		if c != '%' {
			lit = append(lit, c)
			i++
			continue
		}
		start := i
		i++
		if i < len(src) && src[i] == '%' {
			lit = append(lit, '%')
			i++
			continue
		}
		// Conditions (%400,501{X}i, %!200h) and the original/final marks.
		for i < len(src) && (src[i] == '!' || src[i] == ',' || src[i] == '<' || src[i] == '>' || (src[i] >= '0' && src[i] <= '9')) {
			i++
		}
		final := strings.ContainsRune(src[start:i], '>')
		var arg string
		hasArg := false
		if i < len(src) && src[i] == '{' {
			end := strings.IndexByte(src[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("log format: unclosed %%{ at position %d", start+1)
			}
			arg, hasArg = src[i+1:i+end], true
			i += end + 1
		}
		if i >= len(src) {
			return nil, fmt.Errorf("log format: %q at position %d has no directive letter", src[start:], start+1)
		}
		letter := src[i]
		i++
		if letter == '^' { // %{X}^ti, %{X}^to: trailers
			if i+1 < len(src) && src[i] == 't' && (src[i+1] == 'i' || src[i+1] == 'o') {
				i += 2
				flush()
				f.items = append(f.items, item{kind: kSkip, name: src[start:i]})
				continue
			}
			return nil, fmt.Errorf("log format: unknown directive %q at position %d", src[start:min(i+2, len(src))], start+1)
		}
		it := item{name: src[start:i]}
		switch letter {
		case 'h':
			it.kind = kClientH
		case 'a':
			it.kind = kClientA
			f.hasA = true
		case 'l':
			it.kind = kIdent
		case 'u':
			it.kind = kUser
		case 't':
			if !hasArg {
				it.kind = kTimeCLF
				break
			}
			toks, err := compileTime(arg)
			if err != nil {
				return nil, fmt.Errorf("log format: %s at position %d: %v", it.name, start+1, err)
			}
			it.kind, it.tfmt = kTimeFmt, toks
		case 'r':
			it.kind = kRequest
		case 'm':
			it.kind = kMethod
		case 'U':
			it.kind = kPath
		case 'q':
			it.kind = kQuery
		case 'H':
			it.kind = kProtocol
		case 's':
			it.kind = kStatus
			if final {
				it.kind = kStatusFinal
				f.hasFinal = true
			}
		case 'b':
			it.kind = kBytesCLF
			f.hasB = true
		case 'B':
			it.kind = kBytes
			f.hasB = true
		case 'O':
			it.kind = kBytesOut
		case 'I':
			it.kind = kBytesIn
		case 'D':
			it.kind = kDurationUs
		case 'T':
			it.kind, it.unit = kDurationT, 1e6
			switch arg {
			case "", "s":
			case "ms":
				it.unit = 1e3
			case "us":
				it.unit = 1
			default:
				return nil, fmt.Errorf("log format: %s at position %d: unit must be s, ms or us", it.name, start+1)
			}
		case 'v', 'V':
			it.kind = kVHost
			f.hasVHost = true
		case 'p':
			it.kind = kPort
			if hasArg && arg != "canonical" && arg != "local" && arg != "remote" {
				return nil, fmt.Errorf("log format: %s at position %d: port format must be canonical, local or remote", it.name, start+1)
			}
		case 'i':
			if !hasArg {
				return nil, fmt.Errorf("log format: %%i at position %d needs a header name, as in %%{User-Agent}i", start+1)
			}
			switch strings.ToLower(arg) {
			case "referer", "referrer":
				it.kind = kReferer
			case "user-agent":
				it.kind = kUserAgent
			case "host":
				it.kind = kHostHeader
			default:
				it.kind = kSkip
			}
		case 'o', 'e', 'n', 'C', 'x':
			if !hasArg {
				return nil, fmt.Errorf("log format: %%%c at position %d needs a name in braces, as in %%{Name}%c", letter, start+1, letter)
			}
			it.kind = kSkip
		case 'A', 'f', 'k', 'L', 'P', 'R', 'X', 'S', 'M':
			it.kind = kSkip
		default:
			return nil, fmt.Errorf("log format: unknown directive %s at position %d", it.name, start+1)
		}
		flush()
		f.items = append(f.items, it)
	}
	flush()
	if len(f.items) == 0 {
		return nil, fmt.Errorf("log format %q has no directives", src)
	}
	hasTime := false
	for i := range f.items {
		it := &f.items[i]
		if it.kind == kTimeCLF || it.kind == kTimeFmt {
			hasTime = true
		}
		if it.kind == kLiteral {
			continue
		}
		if i+1 < len(f.items) && f.items[i+1].kind != kLiteral && it.kind != kTimeCLF && it.kind != kTimeFmt && !(it.kind == kPath && f.items[i+1].kind == kQuery) {
			return nil, fmt.Errorf("log format: %s and %s must be separated by text", it.name, f.items[i+1].name)
		}
		prevQuote := i > 0 && f.items[i-1].kind == kLiteral && f.items[i-1].lit[len(f.items[i-1].lit)-1] == '"'
		nextQuote := i+1 < len(f.items) && f.items[i+1].kind == kLiteral && f.items[i+1].lit[0] == '"'
		it.quoted = prevQuote && nextQuote
	}
	if !hasTime {
		return nil, fmt.Errorf("log format %q has no time directive (%%t or %%{...}t): Warden counts requests per minute of their time", src)
	}
	f.shape = uint8(combinedShape(f.items))
	return f, nil
}

// unquoteConf strips an httpd.conf LogFormat line down to the format string.
func unquoteConf(s string) string {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "LogFormat"); ok && len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		s = strings.TrimSpace(rest)
	}
	if len(s) == 0 || s[0] != '"' {
		if strings.Contains(s, `\"`) {
			return unescapeConf(s)
		}
		return s
	}
	// Up to the closing unescaped quote; a nickname may follow.
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return unescapeConf(s[1:i])
		}
	}
	return unescapeConf(s[1:])
}

func unescapeConf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
