package detect

import (
	"net/netip"
	"strings"
)

// AddrValue returns ip as a decision against one address holds it: in
// canonical form, an IPv4-mapped IPv6 address as IPv4. It is false for
// anything that is not an IP address, and for an address with a zone
// (netip takes any text after '%', which a blocklist would then carry).
func AddrValue(ip string) (string, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" {
		return "", false
	}
	return a.Unmap().String(), true
}

// DecisionValue returns value, an IP address or a CIDR range, in the
// canonical form decisions and blocklists hold (AddrValue for an address,
// the masked range for a range), with its scope: "Ip" or "Range". It is
// false for anything else: such a value never becomes a decision nor a
// line of a blocklist, where it could be a directive of its own.
func DecisionValue(value string) (canonical, scope string, ok bool) {
	if strings.Contains(value, "/") {
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return "", "", false
		}
		return p.Masked().String(), "Range", true
	}
	v, ok := AddrValue(value)
	if !ok {
		return "", "", false
	}
	return v, "Ip", true
}
