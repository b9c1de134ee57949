package detect

import (
	"encoding/binary"
	"encoding/hex"
	"sort"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/wardenhq/warden/accesslog"
)

// Bucket is the state of one scenario for one client IP in one partition.
// There is one per (IP, scenario) a client has touched, so it is kept small:
// the distinct values and sample lines, which most buckets never hold, live
// in Extra.
type Bucket struct {
	Level     int   `json:"l"`
	LastLeak  int64 `json:"t"`            // Unix ns of the last leak step
	FirstT    int64 `json:"ft"`           // first event of the current fill
	FirstOff  int64 `json:"fo"`           //
	LastT     int64 `json:"lt"`           // newest event seen
	Blackhole int64 `json:"bh,omitempty"` // no new alert before this time
	// Extra is nil unless the bucket holds distinct values or samples.
	*Extra
}

// Extra is the part of a Bucket few buckets need.
type Extra struct {
	Keys    []uint64 `json:"k,omitempty"` // distinct values poured, oldest first
	Samples []string `json:"s,omitempty"` // the last few lines poured
	// raw holds the lines poured since Samples was last settled; they
	// alias the caller's records, which live until the next Flush or
	// TakeAlerts, where they are copied (so most lines are never copied).
	raw [][]byte
}

// extra returns b's Extra, making it if needed.
func (b *Bucket) extra() *Extra {
	if b.Extra == nil {
		b.Extra = &Extra{}
	}
	return b.Extra
}

// keys and samples read Extra's lists, empty when there is none.
func (b *Bucket) keys() []uint64 {
	if b.Extra == nil {
		return nil
	}
	return b.Keys
}

func (b *Bucket) samples() []string {
	if b.Extra == nil {
		return nil
	}
	return b.Samples
}

// settle moves the raw lines into Samples, keeping the last maxSamples.
func (b *Bucket) settle() {
	if b.Extra == nil || len(b.raw) == 0 {
		return
	}
	for _, l := range b.raw {
		b.Samples = append(b.Samples, strings.ToValidUTF8(string(l), ""))
	}
	if over := len(b.Samples) - maxSamples; over > 0 {
		b.Samples = append(b.Samples[:0], b.Samples[over:]...)
	}
	b.raw = b.raw[:0]
}

// copy returns a copy of b, settled, sharing nothing with it; its Extra is
// nil when it holds nothing.
func (b *Bucket) copy() *Bucket {
	b.settle()
	nb := *b
	nb.Extra = nil
	if len(b.keys()) > 0 || len(b.samples()) > 0 {
		nb.Extra = &Extra{Keys: append([]uint64(nil), b.keys()...), Samples: append([]string(nil), b.samples()...)}
	}
	return &nb
}

// PartitionState is the detector state of one partition: its buckets by
// "scenario|ip", and the newest event time it has seen.
type PartitionState struct {
	Buckets   map[string]*Bucket `json:"buckets"`
	Watermark int64              `json:"watermark"`
}

// Clone returns a deep copy.
func (p *PartitionState) Clone() *PartitionState {
	c := &PartitionState{Buckets: make(map[string]*Bucket, len(p.Buckets)), Watermark: p.Watermark}
	for k, b := range p.Buckets {
		c.Buckets[k] = b.copy()
	}
	return c
}

// Delta is what one batch changed in a partition's detector state: the
// buckets it touched (nil for a bucket removed), the new watermark, and the
// alerts it raised.
type Delta struct {
	Partition int32              `json:"partition"`
	Buckets   map[string]*Bucket `json:"buckets,omitempty"`
	Watermark int64              `json:"watermark"`
	Alerts    []Alert            `json:"alerts,omitempty"`
}

// Apply folds d into p.
func (p *PartitionState) Apply(d *Delta) {
	if p.Buckets == nil {
		p.Buckets = map[string]*Bucket{}
	}
	for k, b := range d.Buckets {
		if b == nil {
			delete(p.Buckets, k)
		} else {
			p.Buckets[k] = b
		}
	}
	p.Watermark = max(p.Watermark, d.Watermark)
}

// Alert is one scenario overflowing for one source.
type Alert struct {
	ID        string   `json:"id"`
	Seq       uint64   `json:"seq"`
	Scenario  string   `json:"scenario"`
	CrowdSec  string   `json:"crowdsec_scenario"`
	SourceIP  string   `json:"source_ip"`
	Events    int      `json:"events"`
	FirstSeen string   `json:"first_seen"`
	LastSeen  string   `json:"last_seen"`
	Partition int32    `json:"partition"`
	Offsets   [2]int64 `json:"offsets"`
	Samples   []string `json:"samples"`
	// Time is the event time of the request that raised the alert.
	Time int64 `json:"time_unix_nano"`
	// Scope is "range" for an alert on a network (SourceIP is then its
	// CIDR), empty for one address. It follows from the source, so the
	// binary form does not carry it.
	Scope string `json:"scope,omitempty"`
	// Simulated is set by the Book: the scenario or the whole book
	// simulates, and the alert's decision reaches no bouncer.
	Simulated bool `json:"simulated,omitempty"`
}

// maxSamples lines are kept per bucket, each cut at maxSampleBytes.
const (
	maxSamples     = 3
	maxSampleBytes = 300
	// gcGrace: a drained bucket is dropped only once the partition's newest
	// event is this far past it, so records out of order by less than this
	// are judged as if nothing had been dropped.
	gcGrace = 10 * time.Minute
	// gcEvery: drained buckets are collected when a partition's offset
	// passes a multiple of this, a point that does not depend on batching.
	gcEvery = 4096
)

// MaxSources bounds the sources (client IPs, or IP and grouped value) a
// partition's detector keeps; past it, at a collection point, the sources
// idle the longest are dropped first (ties by key), so memory stays bounded
// under a flood of distinct addresses and the choice stays deterministic.
const MaxSources = 500_000

// Match is one scenario an event passed, with the hash of its distinct
// value for a distinct trigger.
type Match struct {
	Scenario int
	Key      uint64
	Group    string // the value grouped on besides the client IP, if any
}

// Event is a request as the buckets see it: who, when, where, and which
// scenarios' filters it passed. Its byte slices alias the caller's line.
type Event struct {
	IP      []byte
	Time    int64
	Offset  int64
	Line    []byte
	Matches []Match
}

// Evaluate runs every scenario's filter on e (the line at offset) and fills
// ev; it reports whether any scenario matched. It keeps no state, so it may
// run concurrently on many lines; Pour must then see the events in order.
func (r *Rules) Evaluate(e *accesslog.Entry, line []byte, offset int64, ev *Event) bool {
	ev.Matches = ev.Matches[:0]
	if len(e.Client) == 0 {
		return false
	}
	var req request
	req.reset(e, r)
	r.match(&req, func(i int, s *Scenario) {
		m := Match{Scenario: i}
		if s.Distinct != "" {
			m.Key = req.distinctKey(s.Distinct)
		}
		switch {
		case s.Scope == ScopeRange:
			m.Group = req.Range()
		case s.GroupBy == "ip_vhost":
			m.Group = string(e.VHost)
		case s.GroupBy == "ip_path":
			m.Group = req.Path()
		case s.GroupBy == "ip_user_agent":
			m.Group = string(e.UserAgent)
		}
		ev.Matches = append(ev.Matches, m)
	})
	ev.IP, ev.Time, ev.Offset, ev.Line = e.Client, e.Time, offset, line
	return len(ev.Matches) > 0
}

// source is one client's buckets: one slot per scenario it has touched
// since the last Flush (most clients touch one or two of the scenarios).
type source struct {
	slots []slot
}

// slot is a source's bucket for one scenario; had says a bucket existed at
// some point since the last Flush (so a removal must be replicated).
type slot struct {
	scenario int32
	had      bool
	b        *Bucket
}

// bucket returns the source's bucket for scenario i, or nil.
func (src *source) bucket(i int) *Bucket {
	for k := range src.slots {
		if int(src.slots[k].scenario) == i {
			return src.slots[k].b
		}
	}
	return nil
}

// set gives the source bucket b for scenario i.
func (src *source) set(i int, b *Bucket) {
	for k := range src.slots {
		if int(src.slots[k].scenario) == i {
			src.slots[k].b, src.slots[k].had = b, true
			return
		}
	}
	src.slots = append(src.slots, slot{scenario: int32(i), had: true, b: b})
}

// settled marks the slots as replicated: had follows the bucket, and slots
// without a bucket go. It reports whether any bucket is left.
func (src *source) settled() bool {
	kept := src.slots[:0]
	for _, sl := range src.slots {
		if sl.b != nil {
			sl.had = true
			kept = append(kept, sl)
		}
	}
	clear(src.slots[len(kept):])
	src.slots = kept
	return len(kept) > 0
}

// Detector runs the rules over one partition's records in offset order.
type Detector struct {
	// Offline turns off collection: for one pass over files, whose lines
	// are not in time order across partitions (each partition's records
	// come after the previous partition's), so no watermark can say a
	// bucket is idle. Memory then grows with the sources in the files.
	Offline   bool
	rules     *Rules
	partition int32
	sources   map[string]*source
	watermark int64
	dirty     map[string]*source
	alerts    []Alert
	ev        Event
	// maxSources is MaxSources; the package's tests lower it.
	maxSources int
	// trace, when set, is told of each pour of traceIP's requests.
	trace   func(Step)
	traceIP string
}

// Trace has fn told of every pour of a request from ip into a bucket (its
// own, or its network's), in order: what `warden analyze --explain`
// prints. It changes nothing the detector decides.
func (d *Detector) Trace(ip string, fn func(Step)) { d.traceIP, d.trace = ip, fn }

// Rules returns the rules the detector evaluates.
func (d *Detector) Rules() *Rules { return d.rules }

// NewDetector returns a detector for partition continuing from state.
func NewDetector(rules *Rules, partition int32, state *PartitionState) *Detector {
	d := &Detector{rules: rules, partition: partition, sources: map[string]*source{}, dirty: map[string]*source{}, maxSources: MaxSources}
	if state == nil {
		return d
	}
	d.watermark = state.Watermark
	for key, b := range state.Buckets {
		name, ip, ok := strings.Cut(key, "|")
		i, known := rules.byName[name]
		if !ok || !known {
			continue // a scenario no longer in the rules
		}
		d.source(ip).set(i, b.copy())
	}
	return d
}

func (d *Detector) source(ip string) *source {
	src := d.sources[ip]
	if src == nil {
		src = &source{}
		d.sources[ip] = src
	}
	return src
}

// State returns a copy of the detector's current state in its wire form.
func (d *Detector) State() *PartitionState {
	st := &PartitionState{Buckets: map[string]*Bucket{}, Watermark: d.watermark}
	for ip, src := range d.sources {
		for _, sl := range src.slots {
			if sl.b != nil {
				st.Buckets[d.rules.Scenarios[sl.scenario].Name+"|"+ip] = sl.b.copy()
			}
		}
	}
	return st
}

// Observe evaluates and pours one parsed request at offset; line is the raw
// line, kept as a sample.
func (d *Detector) Observe(e *accesslog.Entry, offset int64, line []byte) {
	d.rules.Evaluate(e, line, offset, &d.ev)
	d.Pour(&d.ev)
}

// Pour feeds one evaluated event to its source's buckets. Events must come
// in offset order; an event that matched nothing still advances the
// watermark and the collection schedule.
func (d *Detector) Pour(ev *Event) {
	d.watermark = max(d.watermark, ev.Time)
	if len(ev.Matches) > 0 {
		src, ok := d.sources[string(ev.IP)]
		if !ok {
			src = d.source(string(ev.IP))
		}
		d.dirty[string(ev.IP)] = src
		for _, m := range ev.Matches {
			s := d.rules.Scenarios[m.Scenario]
			if m.Group == "" && s.GroupBy == "ip" && s.Scope == ScopeIP {
				d.pour(src, m, ev, string(ev.IP))
				continue
			}
			// A network's bucket lives under its CIDR; one grouped on
			// more than the IP under "ip<US>group", still within this
			// partition and IP.
			key, who := m.Group, m.Group
			if s.Scope != ScopeRange {
				key, who = string(ev.IP)+groupSep+m.Group, string(ev.IP)
			}
			gs := d.sources[key]
			if gs == nil {
				gs = d.source(key)
			}
			d.dirty[key] = gs
			d.pour(gs, m, ev, who)
		}
	}
	if (ev.Offset+1)%gcEvery == 0 && !d.Offline {
		d.collect()
	}
}

// groupSep separates the client IP from the grouped value in a source key.
const groupSep = "\x1f"

func (d *Detector) pour(src *source, m Match, ev *Event, ip string) {
	s := d.rules.Scenarios[m.Scenario]
	b := src.bucket(m.Scenario)
	if b == nil {
		b = &Bucket{}
		src.set(m.Scenario, b)
	}
	tracing := d.trace != nil && string(ev.IP) == d.traceIP
	t := ev.Time
	b.LastT = max(b.LastT, t)
	if t < b.Blackhole {
		if tracing {
			d.step(s, ip, ev, b, StepBlackhole)
		}
		return
	}
	if s.Trigger == TriggerWindow {
		level, total, counted, fresh := windowPour(b, s, t, m.Key)
		b.Level = level
		if !counted {
			if tracing {
				d.step(s, ip, ev, b, StepLate)
			}
			return
		}
		if total == 1 { // the window held nothing before
			b.FirstT, b.FirstOff = t, ev.Offset
			b.Samples, b.raw = b.Samples[:0], b.raw[:0]
		}
		// A value already in the window changes nothing, and cannot make
		// the bucket overflow (it only lowers the share of distinct ones).
		if !fresh {
			if tracing {
				d.step(s, ip, ev, b, StepRepeat)
			}
			return
		}
		d.sample(s, b, ev)
		if level <= s.Capacity || s.ratio > 0 && level*1000 < s.ratio*total {
			if tracing {
				d.step(s, ip, ev, b, StepCounted)
			}
			return
		}
		d.overflow(s, b, ev, ip, tracing)
		return
	}
	if s.Trigger != TriggerMatch && b.Level > 0 && t > b.LastLeak {
		steps := (t - b.LastLeak) / int64(s.Leak)
		if steps > 0 {
			n := int(min(steps, int64(b.Level)))
			b.Level -= n
			if len(b.keys()) >= n {
				b.Keys = b.Keys[n:]
			}
			b.LastLeak += steps * int64(s.Leak)
		}
	}
	if s.Trigger == TriggerDistinct {
		for _, k := range b.keys() {
			if k == m.Key {
				if tracing {
					d.step(s, ip, ev, b, StepRepeat)
				}
				return
			}
		}
		x := b.extra()
		x.Keys = append(x.Keys, m.Key)
	}
	if b.Level == 0 {
		b.LastLeak, b.FirstT, b.FirstOff = t, t, ev.Offset
		if b.Extra != nil {
			b.Samples, b.raw = b.Samples[:0], b.raw[:0]
		}
	}
	b.Level++
	d.sample(s, b, ev)
	if b.Level <= s.Capacity {
		if tracing {
			d.step(s, ip, ev, b, StepCounted)
		}
		return
	}
	d.overflow(s, b, ev, ip, tracing)
}

// sample keeps ev's line with the bucket if it can be among the last
// maxSamples before an overflow: a bucket overflows past Capacity, and
// leaking (or a window sliding) only lowers the level, so each of those
// pours left the level above Capacity-maxSamples. Buckets far from
// overflowing (most of them) then carry no lines in the replicated state.
func (d *Detector) sample(s *Scenario, b *Bucket, ev *Event) {
	if b.Level <= s.Capacity-maxSamples {
		return
	}
	line := ev.Line
	if len(line) > maxSampleBytes {
		line = line[:maxSampleBytes]
	}
	x := b.extra()
	if len(x.raw) == maxSamples {
		x.raw = append(x.raw[:0], x.raw[1:]...)
	}
	x.raw = append(x.raw, line)
}

// overflow raises the alert of a full bucket, empties it and starts its
// blackhole.
func (d *Detector) overflow(s *Scenario, b *Bucket, ev *Event, source string, tracing bool) {
	t := ev.Time
	b.settle()
	d.alerts = append(d.alerts, Alert{
		ID: alertID(s.Name, source, t, ev.Line), Scenario: s.Name, CrowdSec: s.CrowdSec, SourceIP: source, Events: b.Level,
		FirstSeen: rfc3339(b.FirstT), LastSeen: rfc3339(t), Partition: d.partition, Offsets: [2]int64{b.FirstOff, ev.Offset + 1},
		Samples: append([]string(nil), b.samples()...), Time: t, Scope: alertScope(source),
	})
	if tracing {
		d.step(s, source, ev, b, StepAlert)
	}
	b.Level, b.Extra = 0, nil
	b.Blackhole = t + int64(s.Blackhole)
}

// alertScope is an alert's Scope field: "range" for a network, empty for
// an address (the field's zero value, so older alerts read the same).
func alertScope(source string) string {
	if scopeOf(source) == ScopeRange {
		return ScopeRange
	}
	return ""
}

// collect drops buckets that are drained and out of their blackhole since
// well before the watermark: they behave as absent ones would.
func (d *Detector) collect() {
	limit := d.watermark - int64(gcGrace)
	for ip, src := range d.sources {
		live := false
		for k := range src.slots {
			b := src.slots[k].b
			if b == nil {
				continue
			}
			s := d.rules.Scenarios[src.slots[k].scenario]
			drained := b.Level == 0 || b.LastLeak+int64(b.Level)*int64(s.Leak) < limit
			if s.Trigger == TriggerWindow {
				drained = windowEnd(b, s) < limit
			}
			if drained && b.Blackhole < limit && b.LastT < limit {
				src.slots[k].b = nil
				d.dirty[ip] = src
				continue
			}
			live = true
		}
		if !live {
			if _, dirty := d.dirty[ip]; !dirty {
				delete(d.sources, ip)
			}
		}
	}
	if over := len(d.sources) - d.maxSources; over > 0 {
		type idle struct {
			key  string
			last int64
		}
		all := make([]idle, 0, len(d.sources))
		for key, src := range d.sources {
			var last int64
			for _, sl := range src.slots {
				if sl.b != nil {
					last = max(last, sl.b.LastT)
				}
			}
			all = append(all, idle{key, last})
		}
		sort.Slice(all, func(i, j int) bool {
			if all[i].last != all[j].last {
				return all[i].last < all[j].last
			}
			return all[i].key < all[j].key
		})
		for _, x := range all[:over] {
			src := d.sources[x.key]
			for k := range src.slots {
				src.slots[k].b = nil
			}
			d.dirty[x.key] = src
		}
	}
}

// TakeAlerts returns the alerts raised since the last call (or Flush) and
// forgets them; for callers that keep no delta (warden analyze).
func (d *Detector) TakeAlerts() []Alert {
	a := d.alerts
	d.alerts = nil
	for key, src := range d.dirty {
		for _, sl := range src.slots {
			if sl.b != nil {
				sl.b.settle()
			}
		}
		if !src.settled() {
			delete(d.sources, key)
		}
	}
	d.dirty = map[string]*source{}
	return a
}

// Flush returns the delta since the last Flush and starts a new one.
func (d *Detector) Flush() *Delta {
	delta := &Delta{Partition: d.partition, Watermark: d.watermark, Alerts: d.alerts}
	if len(d.dirty) > 0 {
		delta.Buckets = map[string]*Bucket{}
		for ip, src := range d.dirty {
			for _, sl := range src.slots {
				switch {
				case sl.b != nil:
					delta.Buckets[d.rules.Scenarios[sl.scenario].Name+"|"+ip] = sl.b.copy()
				case sl.had:
					delta.Buckets[d.rules.Scenarios[sl.scenario].Name+"|"+ip] = nil
				}
			}
			if !src.settled() {
				delete(d.sources, ip)
			}
		}
	}
	d.dirty = map[string]*source{}
	d.alerts = nil
	return delta
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// alertID is a function of what raised the alert, not of where it was
// processed: the same records give the same id, in the cluster and offline.
func alertID(scenario, ip string, t int64, line []byte) string {
	h := xxhash.New()
	_, _ = h.WriteString(scenario)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(ip)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(t))
	_, _ = h.Write(ts[:])
	_, _ = h.Write(line)
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], h.Sum64())
	return hex.EncodeToString(out[:])
}

// SortAlerts orders alerts by time, then id: a stable order for documents.
func SortAlerts(a []Alert) {
	sort.SliceStable(a, func(i, j int) bool {
		if a[i].Time != a[j].Time {
			return a[i].Time < a[j].Time
		}
		return a[i].ID < a[j].ID
	})
}
