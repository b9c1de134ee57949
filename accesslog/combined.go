package accesslog

import "bytes"

// The combined layout (%h %l %u %t "%r" %>s %b "%{Referer}i"
// "%{User-agent}i", and common, the same without its last two fields) is
// most logs', and readCombined reads it in one pass of plain code instead
// of the items' loop. It reads only what the loop reads the same way: a
// line it does not take whole (a field's end not where the loop's first
// try finds it, an escaped quote, a cut line, any error) goes to the loop,
// from a reset entry, which also gives the error. TestReadCombined_AsTheLoop
// and FuzzReadCombined hold the two to the same result.

// combinedKinds and combinedLits are the combined layout's items; common
// is its first 13.
var (
	combinedKinds = []kind{kClientH, kLiteral, kIdent, kLiteral, kUser, kLiteral, kTimeCLF, kLiteral, kRequest, kLiteral,
		kStatusFinal, kLiteral, kBytesCLF, kLiteral, kReferer, kLiteral, kUserAgent, kLiteral}
	combinedLits = []string{"", " ", "", " ", "", " ", "", ` "`, "", `" `, "", " ", "", ` "`, "", `" "`, "", `"`}
)

// combinedShape says whether items are the combined layout (2) or the
// common one (1), or neither (0).
func combinedShape(items []item) int {
	n := len(items)
	if n != len(combinedKinds) && n != 13 {
		return 0
	}
	for i, it := range items {
		if it.kind != combinedKinds[i] || string(it.lit) != combinedLits[i] || it.quoted != (it.kind == kRequest || it.kind == kReferer || it.kind == kUserAgent) {
			return 0
		}
	}
	if n == 13 {
		return 1
	}
	return 2
}

// readCombined reads an admitted line of the combined (or, with common,
// the common) layout into e, which was Reset, and reports how many bytes
// followed the last field, as parseAdmitted does; ok false says the loop
// must read it.
func readCombined(line []byte, e *Entry, common bool) (rest int, ok bool) {
	// %h, %l and %u, each up to a space.
	sp := indexSpace(line)
	if sp < 0 || e.setClient(line[:sp]) != nil {
		return 0, false
	}
	pos := sp + 1
	if sp = indexSpace(line[pos:]); sp < 0 {
		return 0, false
	}
	e.Ident = dash(line[pos : pos+sp])
	pos += sp + 1
	if sp = indexSpace(line[pos:]); sp < 0 {
		return 0, false
	}
	e.User = dash(line[pos : pos+sp])
	pos += sp + 1
	// %t, then ` "`.
	n, ns, err := parseCLF(line[pos:], &e.date)
	if err != nil {
		return 0, false
	}
	e.Time = ns
	pos += n
	if !bytes.HasPrefix(line[pos:], []byte(` "`)) {
		return 0, false
	}
	pos += 2
	// "%r" up to its first quote, which must be followed by a space.
	end := quoteEnd(line, pos, `" `)
	if end < 0 {
		return 0, false
	}
	e.Request = line[pos:end]
	splitRequest(e.Request, e)
	pos = end + 2
	// %>s up to a space.
	if sp = indexSpace(line[pos:]); sp < 0 {
		return 0, false
	}
	s, ok := status(line[pos : pos+sp])
	if !ok {
		return 0, false
	}
	e.Status = s
	pos += sp + 1
	// %b, up to the end (common) or to ` "`.
	sp = indexSpace(line[pos:])
	if common {
		if sp < 0 {
			sp = len(line) - pos
		}
	} else if sp < 0 || !bytes.HasPrefix(line[pos+sp:], []byte(` "`)) {
		return 0, false
	}
	b, ok := number(line[pos : pos+sp])
	if !ok {
		return 0, false
	}
	e.Bytes = b
	pos += sp
	if common {
		return len(line) - pos, true
	}
	pos += 2
	// "%{Referer}i" up to `" "`, "%{User-agent}i" up to its first quote.
	if end = quoteEnd(line, pos, `" "`); end < 0 {
		return 0, false
	}
	e.Referer = dash(line[pos:end])
	pos = end + 3
	if end = quoteEnd(line, pos, `"`); end < 0 {
		return 0, false
	}
	e.UserAgent = dash(line[pos:end])
	pos = end + 1
	if pos < len(line) && line[pos] != ' ' {
		return 0, false
	}
	return len(line) - pos, true
}

// quoteEnd is where a quoted field that starts at pos ends, if its first
// quote is not escaped and next follows it; else -1 (the loop looks
// further).
func quoteEnd(line []byte, pos int, next string) int {
	q := bytes.IndexByte(line[pos:], '"')
	if q < 0 {
		return -1
	}
	j := pos + q
	if escapedAt(line, pos, j) || !bytes.HasPrefix(line[j:], []byte(next)) {
		return -1
	}
	return j
}
