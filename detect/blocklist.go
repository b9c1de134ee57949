package detect

import (
	"fmt"
	"net/netip"
	"strings"
)

// Blocklist renders banned addresses and ranges for a web server or firewall:
// plain (one per line), nginx (deny rules), apache (Require not ip inside
// RequireAll) or nftables (a table with IPv4 and IPv6 sets and a drop rule).
// Values that are not an address or a range are left out (RenderBlocklist
// counts them).
func Blocklist(format string, values []string) (string, error) {
	out, _, err := RenderBlocklist(format, values)
	return out, err
}

// RenderBlocklist is Blocklist, and also reports how many values it left
// out. Each value is checked again here, whatever produced it, and written
// in canonical form (DecisionValue): anything else in a value could be a
// directive of its own in the server's configuration ("all", "1.2.3.4;
// allow all", a newline), so it is skipped, never written.
func RenderBlocklist(format string, values []string) (out string, skipped int, err error) {
	switch format {
	case "plain", "nginx", "apache", "nftables":
	default:
		return "", 0, fmt.Errorf("format %q: want plain, nginx, apache or nftables", format)
	}
	clean := make([]string, 0, len(values))
	for _, v := range values {
		if c, _, ok := DecisionValue(v); ok {
			clean = append(clean, c)
		}
	}
	skipped, values = len(values)-len(clean), clean
	var b strings.Builder
	switch format {
	case "plain":
		for _, v := range values {
			b.WriteString(v + "\n")
		}
	case "nginx":
		b.WriteString("# Warden blocklist: include in an http, server or location block\n")
		for _, v := range values {
			fmt.Fprintf(&b, "deny %s;\n", v)
		}
	case "apache":
		b.WriteString("# Warden blocklist: Include inside a <Directory> or <Location> block\n<RequireAll>\n    Require all granted\n")
		for _, v := range values {
			fmt.Fprintf(&b, "    Require not ip %s\n", v)
		}
		b.WriteString("</RequireAll>\n")
	case "nftables":
		var v4, v6 []string
		for _, v := range values {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				a := netip.MustParseAddr(v) // checked above
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if p.Addr().Unmap().Is4() {
				v4 = append(v4, p.String())
			} else {
				v6 = append(v6, p.String())
			}
		}
		b.WriteString("# Warden blocklist: nft -f FILE\ntable inet warden\ndelete table inet warden\ntable inet warden {\n")
		for _, s := range []struct {
			name, typ string
			elems     []string
		}{{"blocklist4", "ipv4_addr", v4}, {"blocklist6", "ipv6_addr", v6}} {
			fmt.Fprintf(&b, "    set %s {\n        type %s\n        flags interval\n", s.name, s.typ)
			if len(s.elems) > 0 {
				fmt.Fprintf(&b, "        elements = { %s }\n", strings.Join(s.elems, ", "))
			}
			b.WriteString("    }\n")
		}
		b.WriteString("    chain input {\n        type filter hook input priority -10; policy accept;\n        ip saddr @blocklist4 drop\n        ip6 saddr @blocklist6 drop\n    }\n}\n")
	}
	return b.String(), skipped, nil
}
