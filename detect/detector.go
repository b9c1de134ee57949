package detect

import (
	"math"
	"strings"

	"github.com/wardenhq/warden/accesslog"
)

// The detector pours one partition's events into its sources' buckets, in
// offset order, and hands on what changed (Flush) or only the alerts
// (TakeAlerts).

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
	// dues holds each source with a bucket at the time its first bucket
	// may become collectable, so that a collection visits only those
	// (collect.go).
	dues      dueHeap
	watermark int64
	dirty     map[string]*source
	alerts    []Alert
	// unsettled are the buckets that took a raw sample since the last
	// TakeAlerts, Alerts or Flush: settled at the next, so that a dirty
	// set kept across batches (Alerts) does not hold fetch buffers.
	unsettled []*Bucket
	// pending estimates the bytes of the next Flush's buckets (Pending).
	pending int
	ev      Event
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
	for _, src := range d.sources {
		d.schedule(src)
	}
	return d
}

func (d *Detector) source(ip string) *source {
	src := d.sources[ip]
	if src == nil {
		src = &source{key: ip, due: math.MaxInt64}
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
		if _, ok := d.dirty[src.key]; !ok {
			d.dirty[src.key] = src
			d.pending += (len(ev.IP) + pendingPerSource) * len(ev.Matches)
		}
		for _, m := range ev.Matches {
			s := d.rules.Scenarios[m.Scenario]
			if m.Group == "" && s.GroupBy == "ip" && s.Scope == ScopeIP {
				d.pour(src, m, ev, src.key)
				d.poured(src, m.Scenario)
				continue
			}
			// A network's bucket lives under its CIDR; one grouped on
			// more than the IP under "ip<US>group", still within this
			// partition and IP.
			key, who := m.Group, m.Group
			if s.Scope != ScopeRange {
				key, who = src.key+groupSep+m.Group, src.key
			}
			gs := d.sources[key]
			if gs == nil {
				gs = d.source(key)
			}
			if _, ok := d.dirty[key]; !ok {
				d.dirty[key] = gs
				d.pending += len(key) + pendingPerSource
			}
			d.pour(gs, m, ev, who)
			d.poured(gs, m.Scenario)
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
			if b.Extra != nil {
				b.Samples, b.raw = b.Samples[:0], b.raw[:0]
			}
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
		b.Keys = append(b.Keys, m.Key)
		d.pending += 8
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
	if len(x.raw) == 0 {
		d.unsettled = append(d.unsettled, b)
	}
	d.pending += len(line)
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
	b.Level, b.Keys, b.Extra = 0, nil, nil
	b.Blackhole = t + int64(s.Blackhole)
}

// TakeAlerts returns the alerts raised since the last call (or Flush) and
// forgets them; for callers that keep no delta (warden analyze).
func (d *Detector) TakeAlerts() []Alert {
	a := d.alerts
	d.alerts = nil
	clear(d.unsettled)
	d.unsettled = d.unsettled[:0]
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
	d.pending = 0
	return a
}

// pendingPerSource is Pending's estimate of a changed bucket's bytes
// besides its source's key: its fields and its scenario's name.
const pendingPerSource = 48

// Pending estimates the bytes the buckets of the next Flush encode to
// (sources changed, their samples and distinct values, counted as they
// come: an upper bound within a factor of a few). A stage that checkpoints
// seldom flushes early when it grows, so that a checkpoint fits one Raft
// entry.
func (d *Detector) Pending() int { return d.pending }

// Alerts returns a delta of the alerts raised since the last Alerts or
// Flush and nothing else: no bucket, and no watermark (which must stay
// with the buckets it goes with). The changed buckets stay dirty, so the
// next Flush, a checkpoint, still carries every bucket changed since the
// one before.
func (d *Detector) Alerts() *Delta {
	delta := &Delta{Partition: d.partition, Alerts: d.alerts}
	d.alerts = nil
	for _, b := range d.unsettled {
		b.settle()
	}
	clear(d.unsettled)
	d.unsettled = d.unsettled[:0]
	return delta
}

// Flush returns the delta since the last Flush and starts a new one.
func (d *Detector) Flush() *Delta {
	clear(d.unsettled)
	d.unsettled = d.unsettled[:0]
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
	d.pending = 0
	d.alerts = nil
	return delta
}
