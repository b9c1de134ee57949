package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// Decision is a timed remedy for a source, in the fields CrowdSec's bouncers
// read.
type Decision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"` // "warden" (from an alert) or "manual"
	Type     string `json:"type"`   // ban or captcha
	Scope    string `json:"scope"`  // Ip or Range
	Value    string `json:"value"`
	Scenario string `json:"scenario"`
	// CrowdSec is the name of the CrowdSec scenario the decision's
	// scenario matches, spelt as CrowdSec spells it ("" if none).
	CrowdSec string `json:"crowdsec_scenario,omitempty"`
	AlertID  string `json:"alert_id,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Created and Until are Unix nanoseconds: the event time of the alert
	// (or the leader's clock for a manual decision) and the end of the
	// decision.
	Created int64 `json:"created"`
	Until   int64 `json:"until"`
	Deleted bool  `json:"deleted,omitempty"`
	// Seq is the book's change sequence number of the decision's creation,
	// DeletedSeq that of its deletion (0 while it is not deleted). Bouncer
	// streams answer "what changed after position P" with them.
	Seq        uint64 `json:"seq,omitempty"`
	DeletedSeq uint64 `json:"deleted_seq,omitempty"`
	// Simulated: what would have been decided; never in force, so no
	// bouncer or blocklist gets it.
	Simulated bool `json:"simulated,omitempty"`
}

// Active reports whether d is in force at now.
func (d *Decision) Active(now time.Time) bool {
	return !d.Deleted && !d.Simulated && d.Until > now.UnixNano()
}

// BookConfig is the decision policy.
type BookConfig struct {
	// Allow lists addresses and ranges never to decide against.
	Allow []string `json:"allow,omitempty"`
	// MaxEscalation caps the doubling of a repeat offender's ban.
	MaxEscalation int `json:"max_escalation"`
	// MaxBan caps any ban.
	MaxBan string `json:"max_ban"`
	// MaxUnpublished bounds the alerts kept because they are not yet in
	// the alerts topic (0: DefaultMaxUnpublished); past it the oldest
	// unpublished ones are dropped and counted in UnpublishedDropped.
	MaxUnpublished int `json:"max_unpublished,omitempty"`
	// Simulate marks every decision from an alert simulated (see
	// Decision.Simulated): alerts as usual, no ban enforced.
	Simulate bool `json:"simulate,omitempty"`
}

// DefaultMaxUnpublished is how many alerts wait for the alerts topic by
// default: at a few hundred bytes each, tens of MiB, hours of a heavy attack.
const DefaultMaxUnpublished = 100_000

// DefaultBookConfig doubles a ban per earlier decision in the last week, up
// to 16 times, at most 30 days.
func DefaultBookConfig() BookConfig { return BookConfig{MaxEscalation: 4, MaxBan: "720h"} }

// ParseAllow checks an allow-list: addresses and CIDR ranges.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, a := range list {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if p, err := netip.ParsePrefix(a); err == nil {
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("allow-list entry %q is neither an IP address nor a CIDR range", a)
		}
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// MaxAlerts bounds the alerts a Book keeps (oldest dropped first).
const MaxAlerts = 10000

// offenderMemory is how far back earlier decisions make a ban longer.
const offenderMemory = 7 * 24 * time.Hour

// MaxTombstones bounds the deleted decisions a Book keeps for bouncers to
// learn of their deletion; past it the oldest deletions are forgotten first
// (see Book.TombstoneFloor).
const MaxTombstones = 100000

// Book holds the alerts and decisions: in the FSM for a cluster, in memory
// for `warden analyze`. Every change is a deterministic function of the
// alerts and commands it is given, in order.
type Book struct {
	Config    BookConfig          `json:"config"`
	Alerts    []Alert             `json:"alerts"`
	NextSeq   uint64              `json:"next_seq"`
	Decisions map[int64]*Decision `json:"decisions"`
	NextID    int64               `json:"next_id"`
	Offenders map[string][]int64  `json:"offenders"` // source -> creation times of its decisions
	Published uint64              `json:"published"` // highest alert seq known to be in the alerts topic
	// PrunedAt is the alert time of the last pruning of expired decisions
	// and forgotten offenders, done at most every pruneEvery of event time.
	PrunedAt int64 `json:"pruned_at,omitempty"`
	// Keep bounds the alerts kept once published (0: MaxAlerts; negative:
	// all). Unpublished alerts are kept until published, up to
	// Config.MaxUnpublished.
	Keep int `json:"keep,omitempty"`
	// UnpublishedDropped counts the alerts dropped unpublished because
	// more than Config.MaxUnpublished waited for the alerts topic.
	UnpublishedDropped uint64 `json:"unpublished_dropped,omitempty"`
	// ChangeSeq is the last change sequence number given: each decision
	// created and each one deleted takes the next one.
	ChangeSeq uint64 `json:"change_seq,omitempty"`
	// TombstoneFloor is the highest DeletedSeq of a deleted decision
	// forgotten because more than MaxTombstones were kept: a bouncer
	// standing below it may have missed that deletion, and is answered in
	// full.
	TombstoneFloor uint64 `json:"tombstone_floor,omitempty"`
	allow          []netip.Prefix
}

// NewBook returns an empty Book.
func NewBook(cfg BookConfig) *Book {
	b := &Book{Config: cfg, Decisions: map[int64]*Decision{}, Offenders: map[string][]int64{}, NextSeq: 1, NextID: 1}
	b.allow, _ = ParseAllow(cfg.Allow)
	return b
}

// Clone returns a copy of b that later changes to b leave as it is (for a
// snapshot written while alerts go on arriving). Alerts are copied by
// value and their samples shared: an alert in the book never changes. A
// source's offender history is replaced, never changed in place, so the
// lists are shared too.
func (b *Book) Clone() *Book {
	c := *b
	c.Config.Allow = slices.Clone(b.Config.Allow)
	c.allow = slices.Clone(b.allow)
	c.Alerts = slices.Clone(b.Alerts)
	c.Decisions = make(map[int64]*Decision, len(b.Decisions))
	ds := make([]Decision, 0, len(b.Decisions))
	for id, d := range b.Decisions {
		ds = append(ds, *d)
		c.Decisions[id] = &ds[len(ds)-1]
	}
	c.Offenders = make(map[string][]int64, len(b.Offenders))
	for src, ts := range b.Offenders {
		c.Offenders[src] = ts
	}
	return &c
}

// SetConfig changes the policy; later alerts follow it.
func (b *Book) SetConfig(cfg BookConfig) error {
	allow, err := ParseAllow(cfg.Allow)
	if err != nil {
		return err
	}
	b.Config, b.allow = cfg, allow
	return nil
}

// Restore rebuilds what is not serialised (after a snapshot).
func (b *Book) Restore() {
	b.allow, _ = ParseAllow(b.Config.Allow)
	if b.Decisions == nil {
		b.Decisions = map[int64]*Decision{}
	}
	if b.Offenders == nil {
		b.Offenders = map[string][]int64{}
	}
}

// Allowed reports whether ip is on the allow-list.
func (b *Book) Allowed(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range b.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AddAlert records an alert (giving it the next sequence number) and, unless
// its source is allowed, a decision against the source for the scenario's
// ban, doubled for each decision against it in the week before.
func (b *Book) AddAlert(a Alert, s *Scenario) *Decision {
	a.Seq = b.NextSeq
	b.NextSeq++
	a.Scope, a.Simulated = alertScope(a.SourceIP), b.Config.Simulate || s != nil && s.Simulate
	b.Alerts = append(b.Alerts, a)
	b.trim()
	if s == nil {
		return nil
	}
	// Only an address (or, for a range alert, a range) becomes a decision:
	// the parser ensures it; the book checks again, as a bouncer or
	// blocklist would enforce anything.
	var src string
	var ok bool
	if a.Scope == ScopeRange {
		var scope string
		src, scope, ok = DecisionValue(a.SourceIP)
		ok = ok && scope == "Range"
	} else {
		src, ok = AddrValue(a.SourceIP)
	}
	if !ok || b.Allowed(src) || a.Scope == ScopeRange && b.allowedRange(src) {
		return nil
	}
	t := a.Time
	var recent []int64
	for _, c := range b.Offenders[src] {
		if c > t-int64(offenderMemory) {
			recent = append(recent, c)
		}
	}
	ban := s.Ban
	for i := 0; i < len(recent) && i < b.Config.MaxEscalation; i++ {
		ban *= 2
	}
	if maxBan, err := time.ParseDuration(b.Config.MaxBan); err == nil && maxBan > 0 && ban > maxBan {
		ban = maxBan
	}
	if !a.Simulated { // a simulation leaves no history to lengthen real bans
		b.Offenders[src] = append(recent, t)
	}
	scope := "Ip"
	if a.Scope == ScopeRange {
		scope = "Range"
	}
	cs := a.CrowdSec
	if cs == "" {
		cs = s.CrowdSec
	}
	d := &Decision{ID: b.NextID, Origin: "warden", Type: s.Decision, Scope: scope, Value: src, Scenario: s.Name,
		CrowdSec: cs, AlertID: a.ID, Created: t, Until: t + int64(ban), Seq: b.nextChange(), Simulated: a.Simulated}
	b.NextID++
	b.Decisions[d.ID] = d
	if t >= b.PrunedAt+int64(pruneEvery) {
		b.prune(t)
		b.PrunedAt = t
	}
	return d
}

// The widest ranges a manual decision may cover, on every replica: a /0 ban
// (every client) or anything near it is refused whatever the proposer, so
// that a forged or mistaken command cannot lock everyone out. Nodes may
// refuse narrower ranges at their API (CheckRange with their own limits);
// these floors are constants so that applying a command stays a function
// of the command and the state.
const (
	FloorPrefixV4 = 8
	FloorPrefixV6 = 32
)

// ErrRangeTooWide is the error of a range decision wider than allowed.
var ErrRangeTooWide = errors.New("range too wide")

// CheckRange refuses value if it is a CIDR range wider than /minV4 (IPv4)
// or /minV6 (IPv6). An IPv6 range over IPv4-mapped addresses is held to
// the IPv4 limit too. Single addresses pass, and so does anything that is
// not a range (AddManual says what is wrong with it).
func CheckRange(value string, minV4, minV6 int) error {
	if !strings.Contains(value, "/") {
		return nil
	}
	p, err := netip.ParsePrefix(value)
	if err != nil {
		return nil
	}
	bits := p.Bits()
	if p.Addr().Is4() {
		if bits < minV4 {
			return fmt.Errorf("%w: %s covers more than a /%d, the widest IPv4 range allowed", ErrRangeTooWide, value, minV4)
		}
		return nil
	}
	if bits < minV6 {
		return fmt.Errorf("%w: %s covers more than a /%d, the widest IPv6 range allowed", ErrRangeTooWide, value, minV6)
	}
	if p.Overlaps(mappedV4) && bits-96 < minV4 {
		return fmt.Errorf("%w: %s covers more IPv4-mapped addresses than a /%d, the widest IPv4 range allowed", ErrRangeTooWide, value, minV4)
	}
	return nil
}

// mappedV4 is where IPv6 notation holds the IPv4 addresses.
var mappedV4 = netip.MustParsePrefix("::ffff:0:0/96")

// AddManual records an operator's decision against value (an address or a
// CIDR range no wider than the floors) from now for dur.
func (b *Book) AddManual(value, typ, reason string, now int64, dur time.Duration) (*Decision, error) {
	scope := "Ip"
	if strings.Contains(value, "/") {
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return nil, fmt.Errorf("value %q is not a CIDR range", value)
		}
		if err := CheckRange(value, FloorPrefixV4, FloorPrefixV6); err != nil {
			return nil, err
		}
		value, scope = p.Masked().String(), "Range"
	} else if _, err := netip.ParseAddr(value); err != nil {
		return nil, fmt.Errorf("value %q is not an IP address", value)
	}
	canonical, _, ok := DecisionValue(value)
	if !ok {
		return nil, fmt.Errorf("value %q is not an IP address or CIDR range (an address may not carry a %%zone)", value)
	}
	value = canonical
	if typ == "" {
		typ = "ban"
	}
	if typ != "ban" && typ != "captcha" {
		return nil, fmt.Errorf("type %q: want ban or captcha", typ)
	}
	if dur <= 0 {
		return nil, fmt.Errorf("duration must be positive")
	}
	d := &Decision{ID: b.NextID, Origin: "manual", Type: typ, Scope: scope, Value: value, Scenario: "manual", Reason: reason,
		Created: now, Until: now + int64(dur), Seq: b.nextChange()}
	b.NextID++
	b.Decisions[d.ID] = d
	b.prune(now)
	return d, nil
}

// Delete marks decision id deleted; it reports whether it existed. The
// decision stays in the book as a tombstone, with the next change sequence
// number, until it is pruned as an ended one (a day past its original end)
// or more than MaxTombstones deletions are kept.
func (b *Book) Delete(id int64) bool {
	d, ok := b.Decisions[id]
	if !ok || d.Deleted {
		return false
	}
	d.Deleted = true
	d.DeletedSeq = b.nextChange()
	b.boundTombstones(MaxTombstones)
	return true
}

// nextChange gives the next change sequence number.
func (b *Book) nextChange() uint64 {
	b.ChangeSeq++
	return b.ChangeSeq
}

// boundTombstones forgets the oldest deletions past limit, raising the
// floor below which a bouncer's position cannot be answered exactly.
func (b *Book) boundTombstones(limit int) {
	var dead []*Decision
	for _, d := range b.Decisions {
		if d.Deleted {
			dead = append(dead, d)
		}
	}
	if len(dead) <= limit {
		return
	}
	sort.Slice(dead, func(i, j int) bool { return dead[i].DeletedSeq < dead[j].DeletedSeq })
	for _, d := range dead[:len(dead)-limit] {
		delete(b.Decisions, d.ID)
		b.TombstoneFloor = max(b.TombstoneFloor, d.DeletedSeq)
	}
}

// prune forgets decisions that ended (or were deleted) more than a day
// before t, and offenders with no decision in the memory window.
// pruneEvery spaces the book's pruning in event time: a scan of every
// decision and offender per alert would make a flood of alerts quadratic.
const pruneEvery = time.Hour

func (b *Book) prune(t int64) {
	for id, d := range b.Decisions {
		if d.Until < t-int64(24*time.Hour) {
			delete(b.Decisions, id)
		}
	}
	for ip, cs := range b.Offenders {
		if len(cs) > 0 && cs[len(cs)-1] < t-int64(offenderMemory) {
			delete(b.Offenders, ip)
		}
	}
}

// ActiveDecisions returns the decisions in force at now, by id.
func (b *Book) ActiveDecisions(now time.Time) []Decision {
	var out []Decision
	for _, d := range b.Decisions {
		if d.Active(now) {
			out = append(out, *d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AllDecisions returns every decision kept, by id.
func (b *Book) AllDecisions() []Decision {
	out := make([]Decision, 0, len(b.Decisions))
	for _, d := range b.Decisions {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AlertsSince returns the alerts with a last_seen at or after since (all for
// the zero time), oldest first.
func (b *Book) AlertsSince(since time.Time) []Alert {
	out := []Alert{}
	alerts := b.Alerts
	if keep := b.keep(); keep > 0 && len(alerts) > keep {
		alerts = alerts[len(alerts)-keep:] // the latest, however many wait for the topic
	}
	for _, a := range alerts {
		if since.IsZero() || a.Time >= since.UnixNano() {
			out = append(out, a)
		}
	}
	return out
}

// DecisionView is a decision as the API shows it, in CrowdSec's fields:
// duration is what remains at the time of the request, until an RFC 3339 time.
type DecisionView struct {
	ID        int64  `json:"id"`
	Origin    string `json:"origin"`
	Type      string `json:"type"`
	Scope     string `json:"scope"`
	Value     string `json:"value"`
	Scenario  string `json:"scenario"`
	CrowdSec  string `json:"crowdsec_scenario,omitempty"`
	Duration  string `json:"duration"`
	Until     string `json:"until"`
	Simulated bool   `json:"simulated"`
	AlertID   string `json:"alert_id,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Active    bool   `json:"active"`
}

// View renders d at now.
func (d Decision) View(now time.Time) DecisionView {
	left := time.Duration(d.Until - now.UnixNano())
	if left < 0 {
		left = 0
	}
	return DecisionView{ID: d.ID, Origin: d.Origin, Type: d.Type, Scope: d.Scope, Value: d.Value, Scenario: d.Scenario,
		CrowdSec: d.CrowdSec, Duration: left.Round(time.Second).String(), Until: time.Unix(0, d.Until).UTC().Format(time.RFC3339),
		AlertID: d.AlertID, Reason: d.Reason, Active: d.Active(now), Simulated: d.Simulated}
}

// DecisionViews renders ds at now.
func DecisionViews(ds []Decision, now time.Time) []DecisionView {
	out := make([]DecisionView, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.View(now))
	}
	return out
}

func (b *Book) keep() int {
	if b.Keep == 0 {
		return MaxAlerts
	}
	return b.Keep
}

// ForgetAlerts drops every kept alert and the offender history derived
// from them (a replay rebuilds both); sequence numbers go on from where
// they were, so the alerts topic never sees one twice, and decisions stay.
func (b *Book) ForgetAlerts() {
	b.Alerts = nil
	b.Offenders = map[string][]int64{}
	b.Published = b.NextSeq - 1
}

// MarkPublished records that the alerts through seq are in the alerts
// topic; those past the kept number can then go.
func (b *Book) MarkPublished(seq uint64) {
	b.Published = max(b.Published, seq)
	b.trim()
}

// Unpublished is how many kept alerts are not yet in the alerts topic.
func (b *Book) Unpublished() int {
	return len(b.Alerts) - b.firstUnpublished()
}

// firstUnpublished is the index of the first alert past Published.
func (b *Book) firstUnpublished() int {
	return sort.Search(len(b.Alerts), func(i int) bool { return b.Alerts[i].Seq > b.Published })
}

// trim keeps the latest Keep alerts and every unpublished one, up to
// MaxUnpublished of those; it only re-slices (alerts are in seq order and
// the published ones come first), so each alert costs O(1).
func (b *Book) trim() {
	keep := b.keep()
	if keep < 0 {
		return
	}
	first := b.firstUnpublished()
	if over := len(b.Alerts) - keep; over > 0 {
		b.Alerts = b.Alerts[min(over, first):]
		first -= min(over, first)
	}
	maxU := b.Config.MaxUnpublished
	if maxU <= 0 {
		maxU = DefaultMaxUnpublished
	}
	if over := len(b.Alerts) - first - maxU; over > 0 {
		b.Alerts = b.Alerts[first+over:]
		b.UnpublishedDropped += uint64(over)
	}
}
