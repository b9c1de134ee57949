package detect

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Position is a place in the book's history of decisions, as a bouncer
// stream answer leaves its bouncer: every change up to change sequence
// number Seq, and every expiry up to the wall-clock time Time (Unix ns) of
// the answer. The zero Position is "nothing yet": an answer from it is a
// full one.
type Position struct {
	Seq  uint64 `json:"seq"`
	Time int64  `json:"time"`
	// Startup marks the position of an answer to startup=true.
	Startup bool `json:"startup,omitempty"`
}

// IsZero reports whether p is the position of a bouncer that has nothing.
func (p Position) IsZero() bool { return p.Seq == 0 && p.Time == 0 }

// DecisionFilter selects decisions as the query parameters of CrowdSec's
// local API do: each list is an OR of its items, and an empty list selects
// all.
// Scopes and origins compare without regard to case; the scenario lists
// are case-insensitive substrings of the decision's bouncer scenario.
type DecisionFilter struct {
	Scopes                 []string
	Origins                []string
	ScenariosContaining    []string
	ScenariosNotContaining []string
}

// ParseList splits a comma-separated query parameter, dropping blanks.
func ParseList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// Match reports whether d passes f.
func (f DecisionFilter) Match(d *Decision) bool {
	if len(f.Scopes) > 0 && !anyFold(f.Scopes, func(s string) bool { return strings.EqualFold(s, d.Scope) }) {
		return false
	}
	if len(f.Origins) > 0 && !anyFold(f.Origins, func(o string) bool { return strings.EqualFold(o, d.Origin) }) {
		return false
	}
	if len(f.ScenariosContaining) == 0 && len(f.ScenariosNotContaining) == 0 {
		return true
	}
	sc := strings.ToLower(d.BouncerScenario())
	in := func(s string) bool { return strings.Contains(sc, strings.ToLower(s)) }
	return (len(f.ScenariosContaining) == 0 || anyFold(f.ScenariosContaining, in)) && !anyFold(f.ScenariosNotContaining, in)
}

func anyFold(list []string, f func(string) bool) bool {
	for _, x := range list {
		if f(x) {
			return true
		}
	}
	return false
}

// BouncerScenario is the scenario a bouncer is told, as CrowdSec tells it:
// the CrowdSec scenario's name where the decision's scenario has one
// (typos included: "crowdsecurity/http-sqli-probbing-detection"), Warden's
// own scenario name otherwise, and for an operator's decision its reason
// (as cscli's --reason), or "manual 'TYPE' from 'warden'" without one.
func (d *Decision) BouncerScenario() string {
	switch {
	case d.CrowdSec != "":
		return d.CrowdSec
	case d.Origin == "manual" && d.Reason != "":
		return d.Reason
	case d.Origin == "manual":
		return fmt.Sprintf("manual '%s' from 'warden'", d.Type)
	}
	return d.Scenario
}

// Changes is what a bouncer at a position is sent.
type Changes struct {
	// New holds, per value and type changed since the position, the
	// longest decision in force; Deleted, per value and type changed
	// whose decisions have all ended (deleted or expired), the latest of
	// them. A value never appears in both, so a bouncer that applies
	// Deleted then New, as CrowdSec's do, ends with what is in force.
	New, Deleted []Decision
	// At is the position of this answer.
	At Position
	// Full is set when the answer holds everything: asked from the zero
	// position, or from one the book cannot answer exactly (before its
	// tombstone floor, or past its last change).
	Full bool
}

// Empty reports whether the answer tells nothing.
func (c Changes) Empty() bool { return len(c.New) == 0 && len(c.Deleted) == 0 }

// Changes answers a bouncer standing at base, at now: every value and type
// with a decision created, deleted or expired after base, in its state at
// now.
//
// Decisions are compared per value and type because that is how bouncers
// hold them: telling a bouncer that an expired 4-hour ban on an address
// ended, while a later 8-hour one on the same address is in force, would
// lift the ban.
func (b *Book) Changes(base Position, now time.Time, f DecisionFilter) Changes {
	nowNs := now.UnixNano()
	res := Changes{At: Position{Seq: b.ChangeSeq, Time: nowNs}}
	res.Full = base.IsZero() || base.Seq > b.ChangeSeq || base.Seq < b.TombstoneFloor
	// First the values touched since base (none, for most pulls: no
	// allocation), then their state.
	touched := map[valueKey]int{} // index in states
	var states []valueState
	if res.Full {
		touched, states = make(map[valueKey]int, len(b.Decisions)), make([]valueState, 0, len(b.Decisions))
	}
	for _, d := range b.Decisions {
		changed := res.Full || d.Seq > base.Seq || (d.Deleted && d.DeletedSeq > base.Seq) ||
			(!d.Deleted && d.Until > base.Time && d.Until <= nowNs)
		if k := (valueKey{d.Type, d.Value}); changed && f.Match(d) {
			if _, ok := touched[k]; !ok {
				touched[k] = len(states)
				states = append(states, valueState{})
			}
		}
	}
	if len(states) == 0 {
		return res
	}
	for _, d := range b.Decisions {
		i, ok := touched[valueKey{d.Type, d.Value}]
		if !ok || !f.Match(d) {
			continue
		}
		g := &states[i]
		if d.Active(now) {
			if g.live == nil || d.Until > g.live.Until || (d.Until == g.live.Until && d.ID > g.live.ID) {
				g.live = d
			}
		} else if g.ended == nil || d.ID > g.ended.ID {
			g.ended = d
		}
	}
	for _, g := range states {
		if g.live != nil {
			res.New = append(res.New, *g.live)
		} else {
			res.Deleted = append(res.Deleted, *g.ended)
		}
	}
	sort.Slice(res.New, func(i, j int) bool { return res.New[i].ID < res.New[j].ID })
	sort.Slice(res.Deleted, func(i, j int) bool { return res.Deleted[i].ID < res.Deleted[j].ID })
	return res
}

// valueKey is how bouncers hold decisions: by value and type.
type valueKey struct{ typ, value string }

// valueState is a value's longest decision in force and latest ended one.
type valueState struct{ live, ended *Decision }

// LiveQuery is a bouncer's question in live mode (GET /v1/decisions with
// CrowdSec's parameters): the decisions in force that pass the filter and,
// when set, have Type and Value, and cover Prefix (Contains, CrowdSec's default:
// a ban on 192.0.2.0/24 answers ?ip=192.0.2.7) or lie within it.
type LiveQuery struct {
	DecisionFilter
	Type, Value string
	Prefix      netip.Prefix // zero: any address
	Contains    bool
}

// ParsePrefix reads an address or a CIDR range as a prefix (an address is
// a /32 or /128), IPv4-mapped IPv6 as IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR range", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Live returns the decisions in force at now that answer q, by id.
func (b *Book) Live(q LiveQuery, now time.Time) []Decision {
	var out []Decision
	for _, d := range b.Decisions {
		if !d.Active(now) || !q.Match(d) || (q.Type != "" && d.Type != q.Type) || (q.Value != "" && d.Value != q.Value) {
			continue
		}
		if q.Prefix.IsValid() {
			dp, err := ParsePrefix(d.Value)
			if err != nil || dp.Addr().Is4() != q.Prefix.Addr().Is4() {
				continue
			}
			inner, outer := q.Prefix, dp
			if !q.Contains {
				inner, outer = dp, q.Prefix
			}
			if outer.Bits() > inner.Bits() || !outer.Contains(inner.Addr()) {
				continue
			}
		}
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
