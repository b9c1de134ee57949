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
type Bucket struct {
	Level     int      `json:"l"`
	LastLeak  int64    `json:"t"`            // Unix ns of the last leak step
	Keys      []uint64 `json:"k,omitempty"`  // distinct values poured, oldest first
	FirstT    int64    `json:"ft"`           // first event of the current fill
	FirstOff  int64    `json:"fo"`           //
	LastT     int64    `json:"lt"`           // newest event seen
	Blackhole int64    `json:"bh,omitempty"` // no new alert before this time
	Samples   []string `json:"s,omitempty"`  // the last few lines poured
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
		nb := *b
		nb.Keys = append([]uint64(nil), b.Keys...)
		nb.Samples = append([]string(nil), b.Samples...)
		c.Buckets[k] = &nb
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

// Detector runs the rules over one partition's records in offset order.
type Detector struct {
	rules     *Rules
	partition int32
	state     *PartitionState
	dirty     map[string]bool
	alerts    []Alert
	req       request
}

// NewDetector returns a detector for partition continuing from state (which
// it takes over; pass a clone to keep the original).
func NewDetector(rules *Rules, partition int32, state *PartitionState) *Detector {
	if state == nil {
		state = &PartitionState{}
	}
	if state.Buckets == nil {
		state.Buckets = map[string]*Bucket{}
	}
	return &Detector{rules: rules, partition: partition, state: state, dirty: map[string]bool{}}
}

// State is the detector's current state.
func (d *Detector) State() *PartitionState { return d.state }

// Observe runs every scenario on one parsed request at offset; line is the
// raw line, kept as a sample.
func (d *Detector) Observe(e *accesslog.Entry, offset int64, line []byte) {
	if len(e.Client) == 0 {
		return
	}
	d.state.Watermark = max(d.state.Watermark, e.Time)
	d.req.reset(e)
	var ip string
	for _, s := range d.rules.Scenarios {
		if !s.matches(&d.req) {
			continue
		}
		if ip == "" {
			ip = string(e.Client)
		}
		d.pour(s, ip, e, offset, line)
	}
	if (offset+1)%gcEvery == 0 {
		d.collect()
	}
}

func (d *Detector) pour(s *Scenario, ip string, e *accesslog.Entry, offset int64, line []byte) {
	key := s.Name + "|" + ip
	b := d.state.Buckets[key]
	if b == nil {
		b = &Bucket{}
		d.state.Buckets[key] = b
	}
	d.dirty[key] = true
	t := e.Time
	b.LastT = max(b.LastT, t)
	if t < b.Blackhole {
		return
	}
	if s.Trigger != TriggerMatch && b.Level > 0 && t > b.LastLeak {
		steps := (t - b.LastLeak) / int64(s.Leak)
		if steps > 0 {
			n := int(min(steps, int64(b.Level)))
			b.Level -= n
			if len(b.Keys) >= n {
				b.Keys = b.Keys[n:]
			}
			b.LastLeak += steps * int64(s.Leak)
		}
	}
	if s.Trigger == TriggerDistinct {
		h := xxhash.Sum64String(d.req.distinct(s.Distinct))
		for _, k := range b.Keys {
			if k == h {
				return
			}
		}
		b.Keys = append(b.Keys, h)
	}
	if b.Level == 0 {
		b.LastLeak, b.FirstT, b.FirstOff, b.Samples = t, t, offset, b.Samples[:0]
	}
	b.Level++
	sample := string(line)
	if len(sample) > maxSampleBytes {
		sample = strings.ToValidUTF8(sample[:maxSampleBytes], "")
	}
	if len(b.Samples) == maxSamples {
		b.Samples = append(b.Samples[:0], b.Samples[1:]...)
	}
	b.Samples = append(b.Samples, sample)
	if b.Level <= s.Capacity {
		return
	}
	d.alerts = append(d.alerts, Alert{
		ID: alertID(s.Name, ip, t, line), Scenario: s.Name, CrowdSec: s.CrowdSec, SourceIP: ip, Events: b.Level,
		FirstSeen: rfc3339(b.FirstT), LastSeen: rfc3339(t), Partition: d.partition, Offsets: [2]int64{b.FirstOff, offset + 1},
		Samples: append([]string(nil), b.Samples...), Time: t,
	})
	b.Level, b.Keys, b.Samples = 0, nil, nil
	b.Blackhole = t + int64(s.Blackhole)
}

// collect drops buckets that are drained and out of their blackhole since
// well before the watermark: they behave as absent ones would.
func (d *Detector) collect() {
	limit := d.state.Watermark - int64(gcGrace)
	for key, b := range d.state.Buckets {
		s := d.rules.Scenario(key[:strings.IndexByte(key, '|')])
		drained := b.Level == 0
		if s != nil && !drained {
			drained = b.LastLeak+int64(b.Level)*int64(s.Leak) < limit
		}
		if (drained || s == nil) && b.Blackhole < limit && b.LastT < limit {
			delete(d.state.Buckets, key)
			d.dirty[key] = true
		}
	}
}

// Flush returns the delta since the last Flush and starts a new one.
func (d *Detector) Flush() *Delta {
	delta := &Delta{Partition: d.partition, Watermark: d.state.Watermark, Alerts: d.alerts}
	if len(d.dirty) > 0 {
		delta.Buckets = make(map[string]*Bucket, len(d.dirty))
		for k := range d.dirty {
			if b, ok := d.state.Buckets[k]; ok {
				nb := *b
				nb.Keys = append([]uint64(nil), b.Keys...)
				nb.Samples = append([]string(nil), b.Samples...)
				delta.Buckets[k] = &nb
			} else {
				delta.Buckets[k] = nil
			}
		}
	}
	d.dirty = map[string]bool{}
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
