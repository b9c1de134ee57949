package shipper

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTopicMissing: the topic to ship to does not exist.
var ErrTopicMissing = errors.New("shipper: topic missing")

// recovery is what Kafka holds of an earlier run of one ship id: read back
// from the tail of every partition (DESIGN.md, "Restart").
type recovery struct {
	// acked is the HeaderAcked of the newest record listing the files
	// (the latest "marks" record); marks is that list.
	acked uint64
	marks []fileMark
	// maxSeq is the highest sequence number seen.
	maxSeq uint64
	// lines are the records of this ship id with a sequence number above
	// acked: the lines that may lie beyond a file's watermark.
	lines []shipped
	// floors is, per partition, the offset below which nothing was read
	// back (and nothing needed to be); ends are the end offsets read.
	floors map[int32]int64
	ends   map[int32]int64
	// scanned counts the records read back; hinted says whether the state
	// file bounded the read-back.
	scanned int
	hinted  bool
	topicID string
}

func (h *hint) floorOf(p int32) (int64, bool) {
	if h == nil {
		return 0, false
	}
	f, ok := h.Floors[p]
	return f, ok
}

// readBack reads the partitions of topic backwards from their ends, in
// chunks, until it holds every record of shipID that can lie above the
// newest marks record's acknowledged sequence number (see DESIGN.md for
// why that suffices).
//
// floors, when not nil, bounds the read-back from below (a state file's
// hint); it applies only if topicID is still the topic's ID.
func readBack(ctx context.Context, opts []kgo.Opt, topic, shipID string, h *hint) (*recovery, error) {
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	ends, err := ka.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("%w: topic %q does not exist in Kafka: create it, or check the topic name", ErrTopicMissing, topic)
	}
	if err != nil {
		return nil, fmt.Errorf("read back the topic's end offsets: %w", err)
	}
	starts, err := ka.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("read back the topic's start offsets: %w", err)
	}
	topicID := ""
	if md, err := ka.ListTopics(ctx, topic); err == nil {
		if d, ok := md[topic]; ok && d.ID != (kadm.TopicID{}) {
			topicID = d.ID.String()
		}
	}
	type part struct {
		start, end, lo int64 // [lo, end) read so far
		vector         bool  // a marks record of ours seen in it
		minSeq         uint64
		seen           bool // a record of ours seen in it
		chunk          int64
	}
	rec := &recovery{floors: map[int32]int64{}, ends: map[int32]int64{}, topicID: topicID}
	parts := map[int32]*part{}
	ends.Each(func(o kadm.ListedOffset) {
		parts[o.Partition] = &part{end: o.Offset, lo: o.Offset, chunk: 256}
		rec.ends[o.Partition] = o.Offset
	})
	usable := h != nil && h.ShipID == shipID && h.Topic == topic && h.TopicID == topicID
	starts.Each(func(o kadm.ListedOffset) {
		if p := parts[o.Partition]; p != nil {
			p.start = o.Offset
			if f, ok := h.floorOf(o.Partition); usable && ok && f+1 > p.start && f < p.end {
				p.start = f + 1 // nothing below matters (the state file)
				rec.hinted = true
			}
		}
	})
	var best *shipped // newest marks record
	var all []shipped
	// done says whether partition p holds nothing more that matters, given
	// the newest marks record found so far.
	done := func(id int32, p *part) bool {
		if p.lo <= p.start {
			return true
		}
		if best == nil {
			return false // still looking for a marks record
		}
		floor, hasFloor := best.Floors[id]
		// A newer marks record cannot lie below a record of ours with a
		// lower sequence number, nor below the floor.
		newerPossible := !p.vector && !(p.seen && p.minSeq < best.Seq) && !(hasFloor && p.lo <= floor+1)
		// Records above best.Acked lie above the floor, and above any
		// record of ours at or below it.
		abovePossible := !(hasFloor && p.lo <= floor+1) && !(p.seen && p.minSeq <= best.Acked)
		return !newerPossible && !abovePossible
	}
	ids := make([]int32, 0, len(parts))
	for id := range parts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for {
		progress := false
		for _, id := range ids {
			p := parts[id]
			if done(id, p) {
				continue
			}
			from := max(p.start, p.lo-p.chunk)
			recs, err := fetchRange(ctx, opts, topic, id, from, p.lo)
			if err != nil {
				return nil, err
			}
			rec.scanned += len(recs)
			// Newest first, so the checks above see the order of the log.
			for i := len(recs) - 1; i >= 0; i-- {
				s, ours, err := parseShipped(recs[i], shipID)
				if err != nil {
					return nil, err
				}
				if !ours {
					continue
				}
				all = append(all, s)
				rec.maxSeq = max(rec.maxSeq, s.Seq)
				if !p.seen || s.Seq < p.minSeq {
					p.minSeq = s.Seq
				}
				p.seen = true
				if s.HasMarks {
					p.vector = true
					if best == nil || s.Seq > best.Seq {
						b := s
						best = &b
					}
				}
			}
			p.lo, p.chunk = from, min(p.chunk*2, 1<<16)
			progress = true
		}
		if !progress {
			break
		}
	}
	for id, p := range parts {
		rec.floors[id] = p.lo - 1
	}
	if best != nil {
		rec.acked, rec.marks = best.Acked, best.Marks
	}
	for _, s := range all {
		if s.Seq > rec.acked {
			rec.lines = append(rec.lines, s)
		}
	}
	sort.Slice(rec.lines, func(i, j int) bool { return rec.lines[i].Seq < rec.lines[j].Seq })
	return rec, nil
}

// fetchRange reads the records of one partition with offsets in [from, to).
func fetchRange(ctx context.Context, opts []kgo.Opt, topic string, partition int32, from, to int64) ([]*kgo.Record, error) {
	if from >= to {
		return nil, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		// Control records hold offsets too: without them a range that
		// ends in a transaction marker would never seem complete.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read back partition %d from offset %d: %w", partition, from, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("read back partition %d from offset %d: %w", partition, from, ferr)
		}
		last := int64(-1)
		fs.EachRecord(func(r *kgo.Record) {
			last = max(last, r.Offset)
			if r.Offset < to && !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
		if last >= to-1 {
			return out, nil
		}
	}
}
