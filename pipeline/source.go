package pipeline

import (
	"strings"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
)

// Fold is the part of a record's processing that needs no order: it adds
// the record to the batch's digest, parses it with f and folds it into the
// batch's load figures, or keeps it in the batch's malformed sample. It
// returns the parsed entry (valid until f parses again), or nil and the
// reason the line is malformed. Folds of one batch may run on several
// goroutines, each with its own Folder and Batch, whose figures merge.
func Fold(f *analytics.Folder, b *fsm.Batch, partition int32, offset int64, value []byte) (*accesslog.Entry, error) {
	b.Digest.AddRecord(partition, offset, value)
	return fold(f, b, partition, offset, value)
}

// FoldOffline is Fold for `warden analyze`'s batches: their digest counts
// the records and bytes but leaves out the records' hash, the cluster's
// check that every replica applied the same records, which a file read in
// one process never needs (it cost 4% of analyze's CPU).
func FoldOffline(f *analytics.Folder, b *fsm.Batch, partition int32, offset int64, value []byte) (*accesslog.Entry, error) {
	b.Digest.Records++
	b.Digest.Bytes += int64(len(value))
	return fold(f, b, partition, offset, value)
}

func fold(f *analytics.Folder, b *fsm.Batch, partition int32, offset int64, value []byte) (*accesslog.Entry, error) {
	parsed, err := f.Fold(b.Analytics, value)
	if err != nil {
		if len(b.Malformed) == 2*fsm.MaxMalformedSample {
			// Only the last MaxMalformedSample are kept: bound the memory
			// of a batch of junk.
			b.Malformed = append(b.Malformed[:0], b.Malformed[fsm.MaxMalformedSample:]...)
		}
		b.Malformed = append(b.Malformed, BadRecord(partition, offset, value, err))
		return nil, err
	}
	if !parsed {
		return nil, nil
	}
	return f.Entry(), nil
}

// BadRecord is the FSM's sample entry for a record that did not parse.
func BadRecord(partition int32, offset int64, value []byte, err error) fsm.BadRecord {
	line := value
	if len(line) > fsm.MaxBadLineBytes {
		line = line[:fsm.MaxBadLineBytes]
	}
	return fsm.BadRecord{Partition: partition, Offset: offset, Reason: accesslog.Reason(err),
		Line: strings.ToValidUTF8(string(line), "\uFFFD")}
}

// Source is the ordered part of the processing of one source partition (for
// `warden analyze`, of its files, one source): its clock, and where its
// parsed events go, in offset order. Exactly one of Detector and Forward is
// set: Detector when the source holds all of each client's lines (input
// keyed by client, or one process over files), Forward otherwise.
type Source struct {
	Partition int32
	Clock     Clock
	Detector  *detect.Detector
	// Forward sends a parsed line on to the repartition topic, with the
	// source's watermark at it.
	Forward func(e *accesslog.Entry, offset, watermark int64, value []byte)
	ev      detect.Event
}

// Observe takes the next parsed event of the source into b: late (counted),
// forwarded, or evaluated and poured into the detector.
func (s *Source) Observe(b *fsm.Batch, e *accesslog.Entry, offset int64, value []byte) {
	switch {
	case s.Clock.Observe(e.Time):
		b.Late++
	case s.Forward != nil:
		s.Forward(e, offset, s.Clock.Watermark, value)
	default:
		s.Detector.Rules().Evaluate(e, value, offset, &s.ev)
		s.Detector.Pour(&s.ev)
	}
}

// Pour is Observe for an event already evaluated (detect.Rules.Evaluate may
// run ahead, in parallel, as `warden analyze` does); Forward must be nil.
func (s *Source) Pour(b *fsm.Batch, ev *detect.Event) {
	if s.Clock.Observe(ev.Time) {
		b.Late++
		return
	}
	s.Detector.Pour(ev)
}

// Finish closes batch b of the source: the malformed sample trimmed, the
// watermark, and the detector's delta when the source detects: a
// checkpoint if cp says one is due (every batch is one for a nil cp).
func (s *Source) Finish(b *fsm.Batch, cp *Checkpoints) {
	Trim(b)
	b.Watermark = s.Clock.Watermark
	if s.Forward == nil && s.Detector != nil {
		if cp == nil {
			b.Detect, b.Checkpoint = s.Detector.Flush(), true
			return
		}
		cp.Close(b, s.Detector, time.Now())
	}
}

// Replay runs the next parsed event of the source through its clock and
// detector as Observe does, for a record already committed: a new owner
// bringing the detector from its checkpoint up to the committed offset.
// What it raises was committed with the record's batch.
func (s *Source) Replay(e *accesslog.Entry, offset int64, value []byte) {
	if s.Clock.Observe(e.Time) || s.Detector == nil {
		return
	}
	s.Detector.Rules().Evaluate(e, value, offset, &s.ev)
	s.Detector.Pour(&s.ev)
}

// Trim keeps the last MaxMalformedSample of a batch's malformed records.
func Trim(b *fsm.Batch) {
	if over := len(b.Malformed) - fsm.MaxMalformedSample; over > 0 {
		b.Malformed = b.Malformed[over:]
	}
}

// NewBatch is an empty batch of partition p's records [from, ...).
func NewBatch(node string, p int32, epoch uint64, from int64) fsm.Batch {
	return NextBatch(node, p, epoch, from, nil)
}

// NextBatch is NewBatch folding its figures into prev, reset, when prev is
// not nil: the figures of the worker's previous batch, once encoded, keep
// the memory their counts grew (analytics.Aggregate.Reset).
func NextBatch(node string, p int32, epoch uint64, from int64, prev *analytics.Aggregate) fsm.Batch {
	if prev != nil {
		prev.Reset()
	} else {
		prev = analytics.NewAggregate()
	}
	return fsm.Batch{Node: node, Partition: p, Epoch: epoch, From: from, Until: from, Analytics: prev}
}
