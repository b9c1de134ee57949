package accesslog

import (
	"fmt"
	"math"
	"strings"
)

// timeTok is one step of a compiled strftime format (%{format}t).
type timeTok struct {
	op  byte // 'L' literal, or the strftime letter; 'E', 'Q', 'U' epoch s, ms, us; 'f'/'F' ms/us fraction
	lit byte
}

// compileTime compiles the argument of %{...}t: a strftime format or one of
// Apache's sec, msec, usec, msec_frac, usec_frac, each optionally prefixed
// with begin: or end:.
func compileTime(arg string) ([]timeTok, error) {
	arg = strings.TrimPrefix(strings.TrimPrefix(arg, "begin:"), "end:")
	switch arg {
	case "sec":
		return []timeTok{{op: 'E'}}, nil
	case "msec":
		return []timeTok{{op: 'Q'}}, nil
	case "usec":
		return []timeTok{{op: 'U'}}, nil
	case "msec_frac":
		return []timeTok{{op: 'f'}}, nil
	case "usec_frac":
		return []timeTok{{op: 'F'}}, nil
	}
	var toks []timeTok
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		if c != '%' {
			toks = append(toks, timeTok{op: 'L', lit: c})
			continue
		}
		i++
		if i >= len(arg) {
			return nil, fmt.Errorf("time format ends with %%")
		}
		switch l := arg[i]; l {
		case 'd', 'e', 'm', 'b', 'h', 'B', 'Y', 'y', 'H', 'I', 'M', 'S', 'z', 'Z', 's', 'a', 'A', 'p', 'j':
			toks = append(toks, timeTok{op: l})
		case 'T':
			toks = append(toks, timeTok{op: 'H'}, timeTok{op: 'L', lit: ':'}, timeTok{op: 'M'}, timeTok{op: 'L', lit: ':'}, timeTok{op: 'S'})
		case 'R':
			toks = append(toks, timeTok{op: 'H'}, timeTok{op: 'L', lit: ':'}, timeTok{op: 'M'})
		case 'F':
			toks = append(toks, timeTok{op: 'Y'}, timeTok{op: 'L', lit: '-'}, timeTok{op: 'm'}, timeTok{op: 'L', lit: '-'}, timeTok{op: 'd'})
		case 'D':
			toks = append(toks, timeTok{op: 'm'}, timeTok{op: 'L', lit: '/'}, timeTok{op: 'd'}, timeTok{op: 'L', lit: '/'}, timeTok{op: 'y'})
		case '%':
			toks = append(toks, timeTok{op: 'L', lit: '%'})
		default:
			return nil, fmt.Errorf("unsupported time conversion %%%c", l)
		}
	}
	return toks, nil
}

// timeParts collects the pieces of one request time; several %{..}t
// directives of a format may each fill some of them.
type timeParts struct {
	year, mon, day, hour, min, sec, nsec, off int
	epochNs                                   int64
	hasEpoch, hasDate, hasZone                bool
	pm                                        int8 // 0 unknown, 1 am, 2 pm
}

// unixNano returns the time p describes, ErrNoTime if it names no date,
// or ErrBadTime if it does not fit in int64 nanoseconds (past 2262).
func (p *timeParts) unixNano() (int64, error) {
	if p.hasEpoch {
		if p.epochNs > math.MaxInt64-int64(p.nsec) {
			return 0, ErrBadTime
		}
		return p.epochNs + int64(p.nsec), nil
	}
	if !p.hasDate {
		return 0, ErrNoTime
	}
	h := p.hour
	if p.pm == 2 && h < 12 {
		h += 12
	} else if p.pm == 1 && h == 12 {
		h = 0
	}
	secs := daysFromCivil(p.year, p.mon, p.day)*86400 + int64(h*3600+p.min*60+p.sec) - int64(p.off)
	return nanos(secs, int64(p.nsec))
}

// nanos returns secs seconds and nsec nanoseconds after 1970 in
// nanoseconds, or ErrBadTime when that overflows int64 (after 2262-04-11):
// a wrapped time would land anywhere, far past or far future.
func nanos(secs, nsec int64) (int64, error) {
	if secs > (math.MaxInt64-nsec)/1e9 || secs < math.MinInt64/int64(1e9) {
		return 0, ErrBadTime
	}
	return secs*1e9 + nsec, nil
}

// epochNanos returns an epoch count of k digits v in units of unit
// nanoseconds, or false when it does not fit in int64 nanoseconds.
func epochNanos(v, k int, unit int64) (int64, bool) {
	if k > 18 || int64(v) > math.MaxInt64/unit {
		return 0, false
	}
	return int64(v) * unit, true
}

// daysFromCivil returns days since 1970-01-01 of a proleptic Gregorian date.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

var monthNames = [12]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
var fullMonths = [12]string{"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// month3 reads a three-letter month name.
func month3(b []byte) int {
	if len(b) < 3 {
		return 0
	}
	a, c, d := lower(b[0]), lower(b[1]), lower(b[2])
	for i, n := range monthNames {
		if n[0] == a && n[1] == c && n[2] == d {
			return i + 1
		}
	}
	return 0
}

// digits reads exactly n digits.
func digits(b []byte, n int) (int, bool) {
	if len(b) < n {
		return 0, false
	}
	v := 0
	for i := 0; i < n; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// upTo reads 1..n digits, returning the value and how many were read.
func upTo(b []byte, n int) (int, int) {
	v, i := 0, 0
	for i < n && i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int(b[i]-'0')
		i++
	}
	return v, i
}

// zone reads +hhmm, +hh:mm, or Z, returning seconds east of UTC.
func zone(b []byte) (int, int, bool) {
	if len(b) >= 1 && (b[0] == 'Z' || b[0] == 'z') {
		return 0, 1, true
	}
	if len(b) < 5 || (b[0] != '+' && b[0] != '-') {
		return 0, 0, false
	}
	h, ok := digits(b[1:], 2)
	if !ok {
		return 0, 0, false
	}
	n := 3
	if b[3] == ':' {
		n++
	}
	m, ok := digits(b[n:], 2)
	if !ok || h > 23 || m > 59 {
		return 0, 0, false
	}
	off := h*3600 + m*60
	if b[0] == '-' {
		off = -off
	}
	return off, n + 2, true
}

// parseCLF reads Apache's default %t: [10/Oct/2000:13:55:36 -0700], with an
// optional fraction of a second after the seconds.
func parseCLF(b []byte, d *clfDate) (n int, ns int64, err error) {
	if len(b) < 28 {
		return 0, 0, ErrTruncated
	}
	if b[0] != '[' {
		return 0, 0, ErrBadTime
	}
	n, ns, err = clfBody(b[1:], d)
	if err != nil {
		return 0, 0, err
	}
	if 1+n >= len(b) || b[1+n] != ']' {
		return 0, 0, ErrBadTime
	}
	return n + 2, ns, nil
}

// clfDate is the date of the last CLF time an entry read ("10/Oct/2000")
// and its days since 1970, when it was a valid one: a log's lines share
// their dates, which are then read once.
type clfDate struct {
	text [11]byte
	days int64
	ok   bool
}

// clfBody reads 10/Oct/2000:13:55:36 -0700 (no brackets). d, if not nil,
// remembers the date read last.
func clfBody(b []byte, d *clfDate) (n int, ns int64, err error) {
	if len(b) < 26 {
		return 0, 0, ErrBadTime
	}
	var p timeParts
	var ok bool
	var days int64
	if d != nil && d.ok && string(b[:11]) == string(d.text[:]) {
		days = d.days
	} else {
		if p.day, ok = digits(b, 2); !ok || b[2] != '/' {
			return 0, 0, ErrBadTime
		}
		if p.mon = month3(b[3:]); p.mon == 0 || b[6] != '/' {
			return 0, 0, ErrBadTime
		}
		if p.year, ok = digits(b[7:], 4); !ok {
			return 0, 0, ErrBadTime
		}
		if p.mon < 1 || p.mon > 12 || p.day < 1 || p.day > 31 || p.year < 1970 || p.year >= 3000 {
			return 0, 0, ErrBadTime // the date part of validDate
		}
		days = daysFromCivil(p.year, p.mon, p.day)
		if d != nil {
			copy(d.text[:], b[:11])
			d.days, d.ok = days, true
		}
	}
	if b[11] != ':' {
		return 0, 0, ErrBadTime
	}
	if p.hour, ok = digits(b[12:], 2); !ok || b[14] != ':' {
		return 0, 0, ErrBadTime
	}
	if p.min, ok = digits(b[15:], 2); !ok || b[17] != ':' {
		return 0, 0, ErrBadTime
	}
	if p.sec, ok = digits(b[18:], 2); !ok {
		return 0, 0, ErrBadTime
	}
	i := 20
	if b[i] == '.' || b[i] == ',' {
		v, k := upTo(b[i+1:], 9)
		if k == 0 {
			return 0, 0, ErrBadTime
		}
		for j := k; j < 9; j++ {
			v *= 10
		}
		p.nsec = v
		i += 1 + k
	}
	if i >= len(b) || b[i] != ' ' {
		return 0, 0, ErrBadTime
	}
	off, k, ok := zone(b[i+1:])
	if !ok {
		return 0, 0, ErrBadTime
	}
	i += 1 + k
	if p.hour > 24 || p.min > 59 || p.sec > 60 {
		return 0, 0, ErrBadTime // the time part of validDate
	}
	t, err := nanos(days*86400+int64(p.hour*3600+p.min*60+p.sec)-int64(off), int64(p.nsec))
	if err != nil {
		return 0, 0, err
	}
	return i, t, nil
}

// parseISO reads 2026-11-27T11:00:00[.fff][Z|+hh:mm] (a space may stand for
// the T); without a zone the time is UTC.
func parseISO(b []byte) (int64, bool) {
	var p timeParts
	var ok bool
	if len(b) < 19 {
		return 0, false
	}
	if p.year, ok = digits(b, 4); !ok || b[4] != '-' {
		return 0, false
	}
	if p.mon, ok = digits(b[5:], 2); !ok || b[7] != '-' {
		return 0, false
	}
	if p.day, ok = digits(b[8:], 2); !ok || (b[10] != 'T' && b[10] != ' ') {
		return 0, false
	}
	if p.hour, ok = digits(b[11:], 2); !ok || b[13] != ':' {
		return 0, false
	}
	if p.min, ok = digits(b[14:], 2); !ok || b[16] != ':' {
		return 0, false
	}
	if p.sec, ok = digits(b[17:], 2); !ok {
		return 0, false
	}
	i := 19
	if i < len(b) && (b[i] == '.' || b[i] == ',') {
		v, k := upTo(b[i+1:], 9)
		if k == 0 {
			return 0, false
		}
		for j := k; j < 9; j++ {
			v *= 10
		}
		p.nsec = v
		i += 1 + k
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) {
		off, k, ok := zone(b[i:])
		if !ok || i+k != len(b) {
			return 0, false
		}
		p.off = off
	}
	if !validDate(&p) {
		return 0, false
	}
	p.hasDate = true
	t, err := p.unixNano()
	return t, err == nil
}

// parseEpoch reads seconds since 1970 with an optional fraction
// ("1432000000.123"); values too large to be seconds are taken as milliseconds.
func parseEpoch(b []byte) (int64, bool) {
	whole := b
	if dot := indexByte(b, '.'); dot >= 0 {
		whole = b[:dot]
	}
	n, ok := number(whole)
	if !ok || len(whole) == 0 || whole[0] == '-' {
		return 0, false
	}
	unit := int64(1e9) // decimal's unit: nanoseconds per logged unit
	if n > 1e11 {
		unit = 1e6
	}
	return decimal(b, unit)
}

func validDate(p *timeParts) bool {
	return p.mon >= 1 && p.mon <= 12 && p.day >= 1 && p.day <= 31 && p.hour <= 24 && p.min <= 59 && p.sec <= 60 && p.year >= 1970 && p.year < 3000
}

// parseStrftime reads b according to toks into p and returns the bytes read.
func parseStrftime(b []byte, toks []timeTok, p *timeParts) (int, error) {
	i := 0
	for _, t := range toks {
		switch t.op {
		case 'L':
			if i >= len(b) || b[i] != t.lit {
				return 0, ErrBadTime
			}
			i++
			continue
		case 'E', 'Q', 'U':
			v, k := upTo(b[i:], 19)
			if k == 0 {
				return 0, ErrBadTime
			}
			i += k
			unit := int64(1e9)
			switch t.op {
			case 'Q':
				unit = 1e6
			case 'U':
				unit = 1e3
			}
			ns, ok := epochNanos(v, k, unit)
			if !ok {
				return 0, ErrBadTime
			}
			p.epochNs, p.hasEpoch = ns, true
			continue
		case 'f', 'F':
			n := 3
			if t.op == 'F' {
				n = 6
			}
			v, ok := digits(b[i:], n)
			if !ok {
				return 0, ErrBadTime
			}
			for j := n; j < 9; j++ {
				v *= 10
			}
			p.nsec = v
			i += n
			continue
		}
		var v, k int
		switch t.op {
		case 'd', 'H', 'I', 'M', 'S', 'm', 'y':
			v, k = upTo(b[i:], 2)
		case 'e':
			if i < len(b) && b[i] == ' ' {
				i++
			}
			v, k = upTo(b[i:], 2)
		case 'Y':
			v, k = upTo(b[i:], 4)
			if k != 4 {
				k = 0
			}
		case 'j':
			v, k = upTo(b[i:], 3)
		case 's':
			v, k = upTo(b[i:], 19)
		case 'b', 'h':
			if v = month3(b[i:]); v != 0 {
				k = 3
			}
		case 'B':
			for mi, name := range fullMonths {
				if len(b)-i >= len(name) && strings.EqualFold(string(b[i:i+len(name)]), name) {
					v, k = mi+1, len(name)
					break
				}
			}
		case 'a', 'A', 'Z':
			for i+k < len(b) && (lower(b[i+k]) >= 'a' && lower(b[i+k]) <= 'z') {
				k++
			}
			if t.op == 'Z' && k > 0 {
				name := b[i : i+k]
				if !(len(name) == 3 && (lower(name[0]) == 'u' && lower(name[1]) == 't' && lower(name[2]) == 'c' ||
					lower(name[0]) == 'g' && lower(name[1]) == 'm' && lower(name[2]) == 't')) {
					return 0, ErrBadTime // only UTC/GMT are unambiguous
				}
				p.hasZone = true
			}
		case 'p':
			if len(b)-i >= 2 {
				switch lower(b[i]) {
				case 'a':
					p.pm, k = 1, 2
				case 'p':
					p.pm, k = 2, 2
				}
			}
		case 'z':
			off, n, ok := zone(b[i:])
			if !ok {
				return 0, ErrBadTime
			}
			p.off, p.hasZone, k = off, true, n
		}
		if k == 0 {
			return 0, ErrBadTime
		}
		i += k
		switch t.op {
		case 'd', 'e':
			p.day, p.hasDate = v, true
		case 'm', 'b', 'h', 'B':
			p.mon = v
		case 'Y':
			p.year = v
		case 'y':
			p.year = 2000 + v
			if v >= 69 {
				p.year = 1900 + v
			}
		case 'H', 'I':
			p.hour = v
		case 'M':
			p.min = v
		case 'S':
			p.sec = v
		case 's':
			ns, ok := epochNanos(v, k, 1e9)
			if !ok {
				return 0, ErrBadTime
			}
			p.epochNs, p.hasEpoch = ns, true
		case 'j':
			p.mon, p.day, p.hasDate = 1, v, true
		}
	}
	if p.hasDate && !p.hasEpoch && p.mon == 0 {
		return 0, ErrBadTime
	}
	return i, nil
}
