package detect

import (
	"net/netip"
	"strings"
)

// Range scopes: a scenario with `scope: range` counts per network (a /24
// of IPv4, a /64 of IPv6) what its requests show, so a scan spread over
// many addresses of one network, each sending a few probes, adds up. Its
// bucket is keyed by the network's CIDR ("scenario|192.0.2.0/24"), in the
// partition like any other, and its alert's source is the CIDR with scope
// "range"; the Book turns it into a decision of scope Range, which
// CrowdSec's bouncers apply to the whole network.
//
// A range's requests meet in one partition only if the input is keyed by
// range (PartitionKey); keyed by address, each partition sees its share of
// the network's addresses and counts those alone.

// RangeOf returns the network of client (a /24 for IPv4, IPv4-mapped IPv6
// included, a /64 for IPv6) as a CIDR, or "" if client is not a public
// address. Private, loopback, link-local and carrier-grade NAT addresses
// have no range: behind them are a site's own proxies and networks, or a
// carrier's customers by the thousand, never one party to ban whole.
func RangeOf(client string) string {
	p, ok := rangeOf(client)
	if !ok {
		return ""
	}
	return p.String()
}

// rangeOf is RangeOf's network, and whether client has one.
func rangeOf(client string) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(client)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	return rangeOfAddr(a)
}

// rangeOfAddr is rangeOf of a parsed address without a zone.
func rangeOfAddr(a netip.Addr) (netip.Prefix, bool) {
	a = a.Unmap()
	if a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() || cgnat.Contains(a) {
		return netip.Prefix{}, false
	}
	bits := RangeBitsV6
	if a.Is4() {
		bits = RangeBitsV4
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// PartitionKey is the Kafka record key that keeps a client's network in
// one partition: the client's range (RangeOf), or the client itself if it
// has none. Keying by it keeps every address in one partition too,
// which per-address detection needs, and lets range scopes see all of a
// network's requests.
func PartitionKey(client string) string {
	if r := RangeOf(client); r != "" {
		return r
	}
	return client
}

// AppendPartitionKey appends PartitionKey(client) to dst, without
// allocating (the repartition stage keys every line with it).
func AppendPartitionKey(dst, client []byte) []byte {
	var p netip.Prefix
	ok := false
	if a, is4 := parseIPv4(client); is4 {
		p, ok = rangeOfAddr(a)
	} else {
		p, ok = rangeOf(string(client)) // IPv6: the parser keeps a zone, so this copies
	}
	if ok {
		return p.AppendTo(dst)
	}
	return append(dst, client...)
}

// parseIPv4 parses dotted-decimal IPv4 as netip.ParseAddr does (four
// fields of 0 to 255, no leading zero), without copying b; anything else
// is not IPv4 here (the caller asks netip).
func parseIPv4(b []byte) (netip.Addr, bool) {
	var out [4]byte
	field, i := 0, 0
	for field < 4 {
		start, v := i, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			v = v*10 + int(b[i]-'0')
			i++
			if i-start > 3 || v > 255 {
				return netip.Addr{}, false
			}
		}
		if i == start || i-start > 1 && b[start] == '0' {
			return netip.Addr{}, false
		}
		out[field] = byte(v)
		field++
		if field < 4 {
			if i >= len(b) || b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(out), true
}

// scopeOf is the scope of an alert from its source: a CIDR is a range.
func scopeOf(source string) string {
	if strings.IndexByte(source, '/') >= 0 {
		return ScopeRange
	}
	return ScopeIP
}

// allowedRange reports whether the range cidr overlaps the allow-list: a
// network that holds an allowed address or range is never banned whole.
func (b *Book) allowedRange(cidr string) bool {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return true // not a range: nothing to decide
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr()))
	for _, a := range b.allow {
		if a.Overlaps(p) {
			return true
		}
	}
	return false
}

// unmapBits is how many of an IPv4-mapped address's prefix bits the
// mapping takes (96), 0 for others.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}
