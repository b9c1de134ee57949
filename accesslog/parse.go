package accesslog

import (
	"bytes"
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// Parse parses one line into e. It never panics and, once e's scratch buffer
// has grown to the longest JSON line seen, never allocates. On error, e holds
// whatever was read before the error and the error wraps ErrMalformed.
func (f *Format) Parse(line []byte, e *Entry) error {
	_, err := f.parse(line, e)
	return err
}

// parse also reports how many bytes followed the last field (separated by a
// space), which auto-detection uses to prefer the format that reads the most.
func (f *Format) parse(line []byte, e *Entry) (int, error) {
	if f.auto != nil {
		return f.parseAuto(line, e)
	}
	e.Reset()
	line, err := f.admit(line)
	if err != nil {
		return 0, err
	}
	return f.parseAdmitted(line, e)
}

// admit checks what holds of the line as a whole, whatever the format: it
// is not empty (once the line end is cut), not too long, and clean.
func (f *Format) admit(line []byte) ([]byte, error) {
	line = trimEOL(line)
	if len(line) == 0 {
		return nil, ErrEmpty
	}
	if max := f.MaxLine; max > 0 && len(line) > max {
		return nil, ErrTooLong
	}
	if !clean(line) {
		return nil, ErrBadEncoding
	}
	return line, nil
}

// parseAdmitted parses a line admit accepted into e, which was Reset.
func (f *Format) parseAdmitted(line []byte, e *Entry) (int, error) {
	if f.syslog {
		var ok bool
		if line, ok = stripSyslog(line); !ok {
			return 0, ErrNoSyslog
		}
	}
	if f.json != nil {
		return 0, f.parseJSON(line, e)
	}
	if f.shape != 0 {
		if n, ok := readCombined(line, e, f.shape == 1); ok {
			return n, nil
		}
		e.Reset() // the loop reads it from the start
	}
	var tp timeParts
	gotCLF, gotFmt := false, false
	pos := 0
	for i := 0; i < len(f.items); i++ {
		it := &f.items[i]
		switch it.kind {
		case kLiteral:
			if pos == len(line) && i == len(f.items)-1 && string(it.lit) == `"` {
				// A last quoted field cut short by the writer: every field
				// was read, so the request counts (as GoAccess counts it).
				continue
			}
			if !bytes.HasPrefix(line[pos:], it.lit) {
				if len(line)-pos < len(it.lit) && bytes.HasPrefix(it.lit, line[pos:]) {
					return 0, ErrTruncated
				}
				return 0, ErrLiteral
			}
			pos += len(it.lit)
			continue
		case kTimeCLF:
			n, ns, err := parseCLF(line[pos:], &e.date)
			if err != nil {
				return 0, err
			}
			e.Time, gotCLF = ns, true
			pos += n
			continue
		case kTimeFmt:
			n, err := parseStrftime(line[pos:], it.tfmt, &tp)
			if err != nil {
				return 0, err
			}
			gotFmt = true
			pos += n
			continue
		}
		if it.kind == kPath && i+1 < len(f.items) && f.items[i+1].kind == kQuery {
			// %U%q: the query, if any, starts at '?'.
			end, err := f.fieldEnd(line, pos, i+1)
			if err != nil {
				return 0, err
			}
			v := line[pos:end]
			if q := bytes.IndexByte(v, '?'); q >= 0 {
				e.Path, e.Query = v[:q], v[q+1:]
			} else {
				e.Path = v
			}
			i++
			pos, i = f.pastLiteral(line, end, i)
			continue
		}
		end, err := f.fieldEnd(line, pos, i)
		if err != nil {
			return 0, err
		}
		if err := f.set(e, it, line[pos:end]); err != nil {
			return 0, err
		}
		pos, i = f.pastLiteral(line, end, i)
	}
	if gotFmt {
		if tp.hasDate && !tp.hasEpoch && !validDate(&tp) && !(tp.mon == 1 && tp.day <= 366) {
			return 0, ErrBadTime
		}
		ns, err := tp.unixNano()
		if err != nil {
			return 0, err
		}
		e.Time = ns
	} else if !gotCLF {
		return 0, ErrNoTime
	}
	rest := line[pos:]
	if len(rest) > 0 && rest[0] != ' ' {
		return 0, ErrTrailing
	}
	return len(rest), nil
}

// fieldEnd finds where the field of item i, starting at pos, ends.
func (f *Format) fieldEnd(line []byte, pos, i int) (int, error) {
	if i+1 >= len(f.items) {
		if j := bytes.IndexByte(line[pos:], ' '); j >= 0 {
			return pos + j, nil
		}
		return len(line), nil
	}
	next := f.items[i+1].lit
	if f.items[i].quoted {
		for j := pos; j < len(line); {
			q := bytes.IndexByte(line[j:], '"')
			if q < 0 {
				break
			}
			j += q
			if escapedAt(line, pos, j) || !bytes.HasPrefix(line[j:], next) {
				j++
				continue
			}
			return j, nil
		}
		if i+2 == len(f.items) && string(next) == `"` {
			return len(line), nil // cut short: see parse
		}
		return 0, ErrTruncated
	}
	if len(next) > 0 && next[0] == ' ' {
		// Most fields end at their first space: then none lies within.
		if j := indexSpace(line[pos:]); j >= 0 && bytes.HasPrefix(line[pos+j:], next) {
			return pos + j, nil
		}
	}
	var j int
	if len(next) == 1 {
		j = bytes.IndexByte(line[pos:], next[0])
	} else {
		j = bytes.Index(line[pos:], next)
	}
	if j < 0 {
		return 0, ErrTruncated
	}
	// A field outside quotes holds no space (only the request line, the
	// user agent and the referer may, written unquoted by odd formats).
	if k := f.items[i].kind; k != kRequest && k != kUserAgent && k != kReferer && k != kSkip {
		if bytes.IndexByte(line[pos:pos+j], ' ') >= 0 {
			return 0, ErrLiteral
		}
	}
	return pos + j, nil
}

// pastLiteral moves past the literal that follows field item i, which
// ends at end: fieldEnd found that literal there, unless the line ends
// there (a last quoted field cut short), which the literal's own case
// judges.
func (f *Format) pastLiteral(line []byte, end, i int) (pos, item int) {
	if n := i + 1; n < len(f.items) && f.items[n].kind == kLiteral && end < len(line) {
		return end + len(f.items[n].lit), n
	}
	return end, i
}

// indexSpace is bytes.IndexByte(b, ' ') for fields that are mostly short
// (a status, a size, "-"): their first bytes are looked at in place.
func indexSpace(b []byte) int {
	n := min(len(b), 16)
	for i := 0; i < n; i++ {
		if b[i] == ' ' {
			return i
		}
	}
	if len(b) > n {
		if j := bytes.IndexByte(b[n:], ' '); j >= 0 {
			return n + j
		}
	}
	return -1
}

// escapedAt reports whether line[j] is preceded by an odd number of
// backslashes (after start), so that it is an escaped character.
func escapedAt(line []byte, start, j int) bool {
	n := 0
	for k := j - 1; k >= start && line[k] == '\\'; k-- {
		n++
	}
	return n%2 == 1
}

func dash(v []byte) []byte {
	if len(v) == 1 && v[0] == '-' {
		return nil
	}
	return v
}

func (f *Format) set(e *Entry, it *item, v []byte) error {
	switch it.kind {
	case kClientA:
		return e.setClient(v)
	case kClientH:
		if !f.hasA {
			return e.setClient(v)
		}
	case kIdent:
		e.Ident = dash(v)
	case kUser:
		e.User = dash(v)
	case kRequest:
		e.Request = v
		splitRequest(v, e)
	case kMethod:
		e.Method = dash(v)
	case kPath:
		e.Path = v
	case kQuery:
		if len(v) > 0 && v[0] == '?' {
			v = v[1:]
		}
		e.Query = v
	case kProtocol:
		e.Protocol = dash(v)
	case kStatus, kStatusFinal:
		if it.kind == kStatus && f.hasFinal {
			return nil
		}
		s, ok := status(v)
		if !ok {
			return ErrBadStatus
		}
		e.Status = s
	case kBytesCLF, kBytes, kBytesOut, kBytesIn, kPort, kDurationUs:
		n, ok := number(v)
		if !ok {
			return ErrBadNumber
		}
		switch it.kind {
		case kBytesOut:
			if !f.hasB {
				e.Bytes = n
			}
		case kBytesIn:
			e.BytesIn = n
		case kPort:
			e.Port = int(n)
		case kDurationUs:
			e.Duration = n
		default:
			e.Bytes = n
		}
	case kDurationT:
		n, ok := decimal(v, it.unit)
		if !ok {
			return ErrBadNumber
		}
		e.Duration = n
	case kVHost:
		e.VHost = dash(v)
	case kHostHeader:
		if !f.hasVHost {
			e.VHost = dash(v)
		}
	case kReferer:
		e.Referer = dash(v)
	case kUserAgent:
		e.UserAgent = dash(v)
	}
	return nil
}

// splitRequest splits "GET /path?query HTTP/1.1". A request line that is not
// of that shape ("-", or junk a scanner sent) is kept whole as the path: the
// request still happened and has a status.
func splitRequest(r []byte, e *Entry) {
	sp := bytes.IndexByte(r, ' ')
	if sp < 0 {
		e.Path = r
		return
	}
	e.Method = r[:sp]
	rest := r[sp+1:]
	if last := bytes.LastIndexByte(rest, ' '); last >= 0 && bytes.HasPrefix(rest[last+1:], []byte("HTTP/")) {
		e.Protocol = rest[last+1:]
		rest = rest[:last]
	}
	if q := bytes.IndexByte(rest, '?'); q >= 0 {
		e.Path, e.Query = rest[:q], rest[q+1:]
	} else {
		e.Path = rest
	}
}

func status(v []byte) (int, bool) {
	if len(v) != 3 {
		return 0, false
	}
	s, ok := digits(v, 3)
	return s, ok && s >= 100
}

// number reads a non-negative decimal; "-" is zero.
func number(v []byte) (int64, bool) {
	if len(v) == 1 && v[0] == '-' {
		return 0, true
	}
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// decimal reads "12" or "0.123" in units of unit microseconds (or
// nanoseconds) each; a value that would overflow int64 is refused.
func decimal(v []byte, unit int64) (int64, bool) {
	if len(v) == 1 && v[0] == '-' {
		return -1, true
	}
	dot := bytes.IndexByte(v, '.')
	if dot < 0 {
		n, ok := number(v)
		if !ok || n > math.MaxInt64/unit {
			return 0, false
		}
		return n * unit, true
	}
	whole, ok := number(v[:dot])
	if !ok || dot == 0 || whole > (math.MaxInt64-unit)/unit {
		return 0, false
	}
	frac := v[dot+1:]
	var f, scale int64 = 0, 1
	for i, c := range frac {
		if c < '0' || c > '9' {
			return 0, false
		}
		if i < 9 {
			f, scale = f*10+int64(c-'0'), scale*10
		}
	}
	return whole*unit + f*unit/scale, true
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// clean rejects control bytes (other than tab) and invalid UTF-8. It looks
// at eight bytes at a time, four words at a time while they are plain, and
// falls back to a byte loop only for words that hold a byte below 0x20,
// DEL or a non-ASCII byte.
func clean(b []byte) bool {
	high := false
	i := 0
	for ; i+32 <= len(b); i += 32 {
		if odd(binary.LittleEndian.Uint64(b[i:]))|odd(binary.LittleEndian.Uint64(b[i+8:]))|
			odd(binary.LittleEndian.Uint64(b[i+16:]))|odd(binary.LittleEndian.Uint64(b[i+24:])) != 0 {
			break
		}
	}
	for ; i+8 <= len(b); i += 8 {
		if odd(binary.LittleEndian.Uint64(b[i:])) == 0 {
			continue
		}
		for _, c := range b[i : i+8] {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return false
			}
			if c >= 0x80 {
				high = true
			}
		}
	}
	for _, c := range b[i:] {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
		if c >= 0x80 {
			high = true
		}
	}
	return !high || utf8.Valid(b)
}

// odd has the high bit set of each byte of w that is below 0x20, DEL or
// not ASCII (and maybe of others, never of none when one is). With the
// high bits cleared, adding 0x60 to a byte sets its high bit if and only if
// it is at least 0x20, adding 1 if and only if it is DEL, and neither
// carries into the next byte.
func odd(w uint64) uint64 {
	const highs, lows = 0x8080808080808080, 0x7f7f7f7f7f7f7f7f
	h := w & lows
	return (w | ^(h + 0x6060606060606060) | (h + 0x0101010101010101)) & highs
}

// stripSyslog removes an RFC 3164 ("<13>Nov 27 11:00:00 host tag[1]: "),
// RFC 5424 ("<13>1 2026-11-27T11:00:00Z host app 1 - - ") or ISO-timestamp
// ("2026-11-27T11:00:00+00:00 host tag: ") syslog prefix.
func stripSyslog(b []byte) ([]byte, bool) {
	i := 0
	if len(b) > 0 && b[0] == '<' {
		j := bytes.IndexByte(b, '>')
		if j < 2 || j > 4 {
			return nil, false
		}
		if _, ok := digits(b[1:], j-1); !ok {
			return nil, false
		}
		i = j + 1
		if len(b) > i+1 && b[i] >= '1' && b[i] <= '9' && b[i+1] == ' ' { // RFC 5424
			i += 2
			for k := 0; k < 5; k++ { // timestamp host app procid msgid
				sp := bytes.IndexByte(b[i:], ' ')
				if sp <= 0 {
					return nil, false
				}
				i += sp + 1
			}
			if i < len(b) && b[i] == '-' {
				i++
			} else {
				for i < len(b) && b[i] == '[' {
					j := bytes.IndexByte(b[i:], ']')
					if j < 0 {
						return nil, false
					}
					i += j + 1
				}
			}
			if i >= len(b) || b[i] != ' ' {
				return nil, false
			}
			rest := b[i+1:]
			rest = bytes.TrimPrefix(rest, []byte("\xef\xbb\xbf"))
			return rest, len(rest) > 0
		}
	}
	// Timestamp: "Mmm dd hh:mm:ss" or an ISO token.
	if len(b)-i >= 16 && month3(b[i:]) != 0 && b[i+3] == ' ' && b[i+9] == ':' && b[i+12] == ':' && b[i+15] == ' ' {
		i += 16
	} else if _, ok := digits(b[i:], 4); ok && len(b)-i > 5 && b[i+4] == '-' {
		sp := bytes.IndexByte(b[i:], ' ')
		if sp < 0 {
			return nil, false
		}
		i += sp + 1
	} else {
		return nil, false
	}
	// Host, then a tag ending in ':'.
	sp := bytes.IndexByte(b[i:], ' ')
	if sp <= 0 {
		return nil, false
	}
	i += sp + 1
	sp = bytes.IndexByte(b[i:], ' ')
	if sp <= 1 || b[i+sp-1] != ':' {
		return nil, false
	}
	rest := b[i+sp+1:]
	return rest, len(rest) > 0
}

// parseAuto reads line with the first candidate of f.auto that reads it
// whole, else with the first that reads it with text left after the last
// field; failing both, it returns the first candidate's error (a later
// one's if the first only lacked a syslog prefix). The checks of the whole
// line are made once, since they are the same for every candidate.
//
// A stream is mostly of one format, so e remembers the candidate that last
// read a line whole (e.auto) and tries it first, with only the candidates
// before it that could also read whole a line it reads whole (f.autoCheck):
// if none does and it does, it is the one the full scan would choose.
// Otherwise the full scan decides. Which candidate e remembers only changes
// how many are tried, never the result.
func (f *Format) parseAuto(line []byte, e *Entry) (int, error) {
	e.Reset()
	line, err := f.admit(line)
	if err != nil {
		return 0, err
	}
	if p := int(e.auto) - 1; p >= 0 && p < len(f.auto) && f.pinnedWins(p, line, e) {
		return 0, nil
	}
	var firstErr error
	fallback := -1
	for i, c := range f.auto {
		e.Reset()
		n, err := c.parseAdmitted(line, e)
		if err == nil {
			if n == 0 {
				e.auto = uint8(i + 1)
				return 0, nil
			}
			if fallback < 0 {
				fallback = i
			}
			continue
		}
		if firstErr == nil || firstErr == ErrNoSyslog {
			firstErr = err
		}
	}
	if fallback >= 0 {
		// No candidate can be pinned for such lines: each one tries all.
		e.Reset()
		e.auto = 0
		return f.auto[fallback].parseAdmitted(line, e)
	}
	return 0, firstErr
}

// pinnedWins reports whether candidate p reads line whole while none
// before it that could does; then e holds p's reading.
func (f *Format) pinnedWins(p int, line []byte, e *Entry) bool {
	for _, q := range f.autoCheck[p] {
		e.Reset()
		if n, err := f.auto[q].parseAdmitted(line, e); err == nil && n == 0 {
			return false
		}
	}
	e.Reset()
	n, err := f.auto[p].parseAdmitted(line, e)
	return err == nil && n == 0
}
