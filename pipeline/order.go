// Package pipeline is what Warden does to the records of one partition,
// for the cluster's workers and for `warden analyze` alike: parse each
// line, fold it into the batch's load figures or set it aside as
// malformed, place it in the order detection needs, and either feed it to
// the detector (input keyed by client) or forward it, keyed by its client,
// to the repartition topic whose partitions detection then reads in that
// order (any other input). See DESIGN.md.
package pipeline

import "math"

// Key places one record in the order detection sees a client's events:
// by the watermark of its source partition at that record, then by source
// partition, then by source offset. A source's watermark is the latest
// event time among its records up to and including this one, so keys grow
// along each source partition, and merging the sources by key is a total
// order that depends on the records alone, never on when they arrived.
type Key struct {
	Watermark int64 // Unix ns
	Source    int32
	Offset    int64
}

// Less orders keys.
func (k Key) Less(o Key) bool {
	if k.Watermark != o.Watermark {
		return k.Watermark < o.Watermark
	}
	if k.Source != o.Source {
		return k.Source < o.Source
	}
	return k.Offset < o.Offset
}

// NoWatermark is the watermark of a source that has shown no event yet.
const NoWatermark = math.MinInt64

// Clock is one source partition's watermark, and its verdict on late
// events: with MaxLateness > 0, an event more than MaxLateness older than
// the watermark is late. A late event still counts in the load figures;
// detection leaves it out. Both the verdict and the watermark depend only
// on the partition's records in offset order, so every replica, every
// retry and `warden analyze` (one source: the files in order) agree.
type Clock struct {
	Watermark   int64
	MaxLateness int64 // ns; 0: no event is late
}

// NewClock resumes a source's clock at watermark (NoWatermark for none).
func NewClock(watermark int64, maxLateness int64) Clock {
	return Clock{Watermark: watermark, MaxLateness: maxLateness}
}

// Observe moves the watermark past an event at t and says whether the
// event is late.
func (c *Clock) Observe(t int64) (late bool) {
	if c.MaxLateness > 0 && c.Watermark != NoWatermark && t < c.Watermark-c.MaxLateness {
		return true
	}
	c.Watermark = max(c.Watermark, t)
	return false
}
