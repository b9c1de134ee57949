package accesslog

import (
	"net/netip"
	"unsafe"
)

// maxClientField bounds a logged client that can still be an address: an
// IPv6 address with an IPv4 tail in brackets is 47 bytes, and a zone
// (dropped) an interface name or number.
const maxClientField = 80

// setClient sets e.Client from the logged client v, which must be an IP
// address: IPv4, or IPv6 with optional [brackets] and %zone. The zone is
// dropped, an IPv4-mapped IPv6 address becomes IPv4, and IPv6 is written in
// its canonical form (RFC 5952), so one client has one spelling everywhere
// downstream: load figures, detector buckets, decisions and blocklists.
// "-" or nothing means the line names no client. Anything else, a hostname
// (Apache's %h with HostnameLookups on) included, is ErrBadClient: it cannot
// be banned, and as a decision it would be a directive ("deny all;").
func (e *Entry) setClient(v []byte) error {
	v = dash(v)
	if len(v) == 0 {
		e.Client = nil
		return nil
	}
	if len(v) > maxClientField {
		return ErrBadClient
	}
	s := v
	if s[0] == '[' {
		if len(s) < 3 || s[len(s)-1] != ']' {
			return ErrBadClient
		}
		s = s[1 : len(s)-1]
	}
	if dottedQuad(s) {
		e.Client = s // the only spelling of an IPv4 address netip accepts
		return nil
	}
	// Only the characters of an address pass, so that words (the common
	// case of a bad client) are refused before ParseAddr, whose error
	// would cost an allocation.
	v6 := false
scan:
	for i, c := range s {
		switch {
		case c == ':':
			v6 = true
		case c == '%' && v6:
			if !zoneName(s[i+1:]) {
				return ErrBadClient
			}
			s = s[:i]
			break scan
		case c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
		default:
			return ErrBadClient
		}
	}
	if len(s) == 0 {
		return ErrBadClient
	}
	// ParseAddr takes a string, and its error keeps it, so string(s) would
	// be copied to the heap for every line. The string only lives for the
	// call (the error is dropped, and s holds no zone that netip would
	// keep), while s is not modified: reading s's bytes in place is safe.
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(s), len(s)))
	if err != nil {
		return ErrBadClient
	}
	if !a.Is6() {
		return ErrBadClient // a dotted quad netip takes would have passed above
	}
	e.Client = a.Unmap().AppendTo(e.client[:0])
	return nil
}

// zoneName reports whether z can be an IPv6 zone: an interface name or
// index (at most 15 bytes on Linux, IFNAMSIZ-1) of letters, digits, '-',
// '_' and '.'. Dropped as it is, it is still checked, so that a line cannot
// pass any text it likes behind a '%'.
func zoneName(z []byte) bool {
	if len(z) == 0 || len(z) > 15 {
		return false
	}
	for _, c := range z {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// dottedQuad reports whether s is an IPv4 address as netip.ParseAddr reads
// one: four decimal fields of 0-255, without leading zeros. It is the fast
// path of setClient, as most clients are IPv4.
func dottedQuad(s []byte) bool {
	dots, val, digits := 0, 0, 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			if digits == 1 && val == 0 {
				return false // leading zero
			}
			val, digits = val*10+int(c-'0'), digits+1
			if val > 255 {
				return false
			}
			continue
		}
		if c != '.' || digits == 0 || dots == 3 {
			return false
		}
		dots, val, digits = dots+1, 0, 0
	}
	return dots == 3 && digits > 0
}
