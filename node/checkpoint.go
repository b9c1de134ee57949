package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/pipeline"
)

// A detecting worker starts from its partition's detector checkpoint
// (fsm/checkpoint.go), which stands behind the committed position: before
// it commits anything it reads the records since the checkpoint again and
// runs them through detection, keeping what they raise to itself (their
// alerts were committed with their batches). Those are at most
// --checkpoint-records records, or --checkpoint-interval of them.

// replayTimeout bounds a replay. Past it (or when the records are gone:
// deleted by retention, or a merge that cannot reach its marks) the worker
// goes on from what it has replayed and says so: detection misses what was
// not replayed, offsets and figures miss nothing. Any other error (the
// broker unreachable, a fetch that failed) is transient: the worker stops
// and its successor replays again (replayRetry), since going on from half a
// replay would detect on a state the run never had.
const replayTimeout = 30 * time.Second

// replayEmptyPolls is how many polls in a row must find the partition
// read to its end before a replay believes it: a broker that has just
// restarted may answer before it serves the records.
const replayEmptyPolls = 3

// errReplayShort: the repartition partition ends before the merge reaches
// the committed marks.
var errReplayShort = errors.New("the merge does not reach the committed marks")

// replayRetry says whether a replay that ended with err must be tried
// again by a new worker rather than gone on from.
func replayRetry(err error) bool {
	return err != nil && !errors.Is(err, kerr.OffsetOutOfRange) && !errors.Is(err, errReplayShort) &&
		!errors.Is(err, context.DeadlineExceeded)
}

// replayClient reads partition of topic from offset from, for a replay.
func (n *Node) replayClient(topic string, partition int32, from int64) (*kgo.Client, error) {
	return kgo.NewClient(n.workerClientOpts(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)...)
}

// replayPoll polls cl once and hands each record to each; it reports the
// partition's high watermark (-1 when the fetch did not say) and the first
// fetch error.
func replayPoll(ctx context.Context, cl *kgo.Client, each func(*kgo.Record)) (int64, error) {
	fs := cl.PollRecords(ctx, 10000)
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	var ferr error
	fs.EachError(func(_ string, _ int32, err error) {
		if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			ferr = err
		}
	})
	hw := int64(-1)
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Err == nil {
			hw = max(hw, p.HighWatermark)
		}
		for _, r := range p.Records {
			each(r)
		}
	})
	return hw, ferr
}

// replayInput brings src's detector from the checkpoint at from up to the
// committed offset until: every record between runs through the source's
// clock and detector as it did before (pipeline.Source.Replay), parsed as
// folder parses. It returns the records replayed.
func (n *Node) replayInput(ctx context.Context, partition int32, from, until int64, folder *analytics.Folder, src *pipeline.Source) (int, error) {
	cl, err := n.replayClient(n.cfg.Topic, partition, from)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	replayed, next, empty := 0, from, 0
	for next < until {
		got := 0
		hw, err := replayPoll(ctx, cl, func(r *kgo.Record) {
			if r.Offset < next {
				return
			}
			got++
			if r.Offset >= until {
				next = until // past the committed offset: done
				return
			}
			next = r.Offset + 1
			if e := folder.Parse(r.Value); e != nil {
				src.Replay(e, r.Offset, r.Value)
			}
			replayed++
		})
		if err != nil {
			return replayed, err
		}
		if got > 0 || hw < 0 || hw > until {
			empty = 0
		} else if empty++; empty == replayEmptyPolls {
			break // the rest below the committed offset is transaction markers
		}
	}
	return replayed, nil
}

// replayByClient brings a second stage's detector from its checkpoint ck
// up to what the committed marks cur say was applied: it merges the
// repartition partition again from the checkpoint's offset and marks, as
// the stage did, and pours every line the merge gives back that cur counts
// as applied (a source offset below its mark's next), until every source
// has reached its mark.
func (n *Node) replayByClient(ctx context.Context, partition int32, ck fsm.Checkpoint, cur fsm.ByClient, sources int32,
	format *accesslog.Format, detector *detect.Detector) (int, error) {
	next := func(marks []fsm.SourceMark, s int32) int64 {
		if int(s) < len(marks) {
			return marks[s].Next
		}
		return 0
	}
	behind := map[int32]bool{}
	for s := range max(int32(len(cur.Marks)), sources) {
		if next(ck.Marks, s) < next(cur.Marks, s) {
			behind[s] = true
		}
	}
	if len(behind) == 0 {
		return 0, nil
	}
	cl, err := n.replayClient(n.repartTopic(), partition, ck.Offset)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	merger := pipeline.NewMerger(fsm.ByClient{Committed: ck.Offset, Marks: ck.Marks, MaxTS: ck.MaxTS, Gen: ck.Gen}, sources)
	seal := n.repartSealer()
	var entry accesslog.Entry
	var scratch []pipeline.Packed
	replayed, readPos, empty := 0, ck.Offset, 0
	var aerr error
	for len(behind) > 0 {
		got := 0
		hw, err := replayPoll(ctx, cl, func(r *kgo.Record) {
			if aerr != nil || r.Offset < readPos || len(behind) == 0 {
				return
			}
			got++
			readPos = r.Offset + 1
			// Given back after each line, as the stage's batches are cut
			// wherever its polls end.
			_, aerr = addRecord(merger, r, seal, &scratch, func() {
				for it, ok := merger.Next(); ok; it, ok = merger.Next() {
					if it.Offset >= next(cur.Marks, it.Source) {
						continue // not applied before: the stage itself takes it again
					}
					if readForwarded(format, &it, &entry) == nil {
						detector.Observe(&entry, it.Offset, it.Value)
					}
					replayed++
					if it.Offset+1 >= next(cur.Marks, it.Source) {
						delete(behind, it.Source)
					}
				}
			})
		})
		switch {
		case aerr != nil:
			return replayed, aerr
		case err != nil:
			return replayed, err
		case got > 0 || hw < 0 || readPos < hw:
			empty = 0
		case empty < replayEmptyPolls-1:
			empty++
		default:
			return replayed, fmt.Errorf("%w: the repartition partition ends at %d with %d sources short", errReplayShort, hw, len(behind))
		}
	}
	return replayed, nil
}

// endReplay closes a replay from the checkpoint at from, begun at t0, that
// ended with err, and says whether the worker goes on: not when its context
// ended, nor when the replay must be tried again (replayRetry, after a
// pause). Going on, the alerts the replay raised are dropped: they were
// committed with the batches the records came in.
func (n *Node) endReplay(ctx context.Context, lg *slog.Logger, detector *detect.Detector, from int64, replayed int, t0 time.Time, err error) bool {
	switch {
	case ctx.Err() != nil:
		return false
	case replayRetry(err):
		lg.Info("detector replay from its checkpoint failed; retrying", "from", from, "replayed", replayed, "err", err)
		sleepCtx(ctx, 500*time.Millisecond)
		return false
	case err != nil:
		lg.Warn("detector replay from its checkpoint incomplete; detection goes on without the records not replayed",
			"from", from, "replayed", replayed, "err", err)
	case replayed > 0:
		lg.Debug("detector replayed from its checkpoint", "from", from, "records", replayed, "took", time.Since(t0))
	}
	n.metrics.detectorReplayed.Add(float64(replayed))
	detector.Alerts()
	return true
}
