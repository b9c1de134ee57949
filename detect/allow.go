package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// AllowRule lets requests through every scenario: a request that meets all
// the conditions given feeds no bucket (CrowdSec's whitelists, applied to
// requests). It is a function of the request alone, so it is applied the
// same way in the cluster and offline.
//
// A rule on what the client says about itself (its user agent, a header)
// is spoofable: anyone can send Googlebot's user agent. The verified form
// adds `from`, the ranges the crawler's operator publishes: the rule then
// holds only for requests from there. Nothing is resolved in DNS while
// running; the ranges are configuration.
type AllowRule struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// From: the client is one of these addresses or in one of these ranges.
	From []string `yaml:"from"`
	// UAContains: the user agent holds one of these (ignoring case).
	UAContains []string `yaml:"ua_contains"`
	// PathPrefix / Path: the decoded path starts with / is one of these.
	PathPrefix []string `yaml:"path_prefix"`
	Path       []string `yaml:"path"`
	Methods    []string `yaml:"methods"`
	// Header: for each logged header named (user-agent, referer, host,
	// user), its value holds one of the strings (ignoring case).
	Header   map[string][]string `yaml:"header"`
	Disabled bool                `yaml:"disabled"`
}

// allowRule is a compiled AllowRule.
type allowRule struct {
	name, description string
	from              []netip.Prefix
	ua                []string
	prefix, path      []string
	methods           []string
	header            []headerCond
	spoofable         bool
}

type headerCond struct {
	name   string
	values []string
}

// allowHeaders are the request headers an access log holds.
var allowHeaders = map[string]bool{"user-agent": true, "referer": true, "host": true, "user": true}

func compileAllow(a AllowRule) (*allowRule, error) {
	if a.Name == "" {
		return nil, errors.New("an allow rule has no name")
	}
	c := &allowRule{name: a.Name, description: a.Description}
	for _, f := range a.From {
		p, err := ParseAllow([]string{f})
		if err != nil || len(p) == 0 {
			return nil, fmt.Errorf("allow rule %q: from %q is neither an IP address nor a CIDR range", a.Name, f)
		}
		c.from = append(c.from, p...)
	}
	lower := func(l []string) []string {
		var out []string
		for _, x := range l {
			if x != "" {
				out = append(out, strings.ToLower(x))
			}
		}
		return out
	}
	c.ua, c.prefix, c.path = lower(a.UAContains), lower(a.PathPrefix), lower(a.Path)
	for _, m := range a.Methods {
		c.methods = append(c.methods, strings.ToUpper(m))
	}
	for name, vals := range a.Header {
		n := strings.ToLower(name)
		if !allowHeaders[n] {
			return nil, fmt.Errorf("allow rule %q: header %q: an access log holds user-agent, referer, host and user", a.Name, name)
		}
		c.header = append(c.header, headerCond{name: n, values: lower(vals)})
	}
	// Map order is random: keep the conditions in a fixed order.
	for i := 1; i < len(c.header); i++ {
		for j := i; j > 0 && c.header[j].name < c.header[j-1].name; j-- {
			c.header[j], c.header[j-1] = c.header[j-1], c.header[j]
		}
	}
	if len(c.from) == 0 && len(c.ua) == 0 && len(c.prefix) == 0 && len(c.path) == 0 && len(c.header) == 0 {
		return nil, fmt.Errorf("allow rule %q: give at least one of from, ua_contains, path_prefix, path, header", a.Name)
	}
	c.spoofable = len(c.from) == 0 && (len(c.ua) > 0 || len(c.header) > 0)
	return c, nil
}

// Spoofable reports whether the rule trusts only what the client says.
func (a *allowRule) Spoofable() bool { return a.spoofable }

// allows reports whether the request meets every condition of the rule.
func (a *allowRule) allows(r *request) bool {
	e := r.e
	if len(a.methods) > 0 {
		ok := false
		for _, m := range a.methods {
			ok = ok || string(e.Method) == m
		}
		if !ok {
			return false
		}
	}
	if len(a.prefix) > 0 || len(a.path) > 0 {
		p := r.Path()
		// A path that climbs out of its prefix is not under it.
		if strings.Contains(p, "..") {
			return false
		}
		if len(a.path) > 0 {
			ok := false
			for _, x := range a.path {
				ok = ok || len(p) == len(x) && hasPrefixFold(p, x)
			}
			if !ok {
				return false
			}
		}
		if len(a.prefix) > 0 {
			ok := false
			for _, x := range a.prefix {
				ok = ok || hasPrefixFold(p, x)
			}
			if !ok {
				return false
			}
		}
	}
	if len(a.ua) > 0 && !containsAnyFold(string(e.UserAgent), a.ua) {
		return false
	}
	for _, h := range a.header {
		var v string
		switch h.name {
		case "user-agent":
			v = string(e.UserAgent)
		case "referer":
			v = string(e.Referer)
		case "host":
			v = string(e.VHost)
		case "user":
			v = string(e.User)
		}
		if !containsAnyFold(v, h.values) {
			return false
		}
	}
	if len(a.from) > 0 {
		ip, err := netip.ParseAddr(string(e.Client))
		if err != nil {
			return false
		}
		ip = ip.Unmap()
		ok := false
		for _, p := range a.from {
			ok = ok || p.Contains(ip)
		}
		if !ok {
			return false
		}
	}
	return true
}

func containsAnyFold(s string, subs []string) bool {
	for _, x := range subs {
		for i := 0; i+len(x) <= len(s); i++ {
			if hasPrefixFold(s[i:], x) {
				return true
			}
		}
	}
	return false
}

// allowedBy returns the first allow rule the request meets, or nil.
func (r *Rules) allowedBy(req *request) *allowRule {
	for _, a := range r.allow {
		if a.allows(req) {
			return a
		}
	}
	return nil
}
