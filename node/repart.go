package node

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/pipeline"
)

// The repartition stage. Unless the input is keyed by client, the first
// stage (runWorker) forwards each parsed line, keyed by its client's
// network, to the partition pipeline.Target picks of the repartition topic,
// with its origin (source partition, offset, watermark) in a header, and
// markers that say how far each source has forwarded; the second stage
// (runByClient), run by the same owner for the same partition number,
// merges what arrives back into key order, drops repeats, and detects.
// See pipeline/DESIGN.md.

// repartTopic is the repartition topic's name.
func (n *Node) repartTopic() string {
	if n.cfg.RepartitionTopic != "" {
		return n.cfg.RepartitionTopic
	}
	return n.cfg.Topic + ".by-client"
}

// twoStage reports whether the cluster's configuration asks for the
// repartition stage.
func twoStage(c *fsm.Config) bool { return c != nil && !c.InputKeyedByClient }

// ensureRepart makes the repartition topic exist with at least count
// partitions (the input's, as the FSM knows them).
func (n *Node) ensureRepart(ctx context.Context, count int32) error {
	if n.repartReady.Load() >= int64(count) {
		return nil
	}
	topic := n.repartTopic()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := n.admin.CreateTopic(ctx, count, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		var have int32
		td, lerr := n.admin.ListTopics(ctx, topic)
		if lerr != nil {
			return lerr
		}
		if d, ok := td[topic]; ok {
			if d.Err != nil {
				return d.Err
			}
			have = int32(len(d.Partitions))
		}
		err = nil
		if have < count {
			var cr []error
			rs, uerr := n.admin.UpdatePartitions(ctx, int(count), topic)
			for _, r := range rs {
				cr = append(cr, r.Err)
			}
			err = errors.Join(append(cr, uerr)...)
		}
	}
	if err != nil {
		return fmt.Errorf("repartition topic %q: %w", topic, err)
	}
	n.repartReady.Store(int64(count))
	return nil
}

// forwarder is the first stage's side of the repartition topic for one
// input partition.
type forwarder struct {
	topic   string
	source  int32
	targets int32
	gen     uint64
	// last is what each target was last told of this source: the offset
	// below which all was forwarded, and the watermark there.
	last []struct{ covered, wm int64 }
	idle bool // the last thing sent was an idle marker
	recs []*kgo.Record
	seal *pipeline.Sealer
	// packs are the open pack of each target: lines go a pack at a time,
	// each with its parse (pipeline.KindParsed), closed into a record at
	// its bounds, before a marker to its target and at the flush.
	packs []pipeline.Pack
	key   []byte // line's scratch: a client's partition key
	// slab, hdrs and arena hold the next flush's records, their headers,
	// and their origins' bytes, a chunk at a time: a few allocations a
	// flush instead of several a record. Nothing in them is written
	// twice; a full chunk is left to the records that point into it, and
	// a flush starts new chunks.
	slab  []kgo.Record
	hdrs  []kgo.RecordHeader
	arena []byte
}

// forwardChunk is how many records (and twice as many headers) a chunk of
// the forwarder holds; forwardArena how many bytes of origins.
const (
	forwardChunk = 512
	forwardArena = 32 << 10
)

// record returns a zeroed record from the slab.
func (f *forwarder) record() *kgo.Record {
	if len(f.slab) == cap(f.slab) {
		f.slab = make([]kgo.Record, 0, forwardChunk)
	}
	f.slab = f.slab[:len(f.slab)+1]
	return &f.slab[len(f.slab)-1]
}

// room makes the arena hold n more bytes without moving what it holds.
func (f *forwarder) room(n int) {
	if cap(f.arena)-len(f.arena) < n {
		f.arena = make([]byte, 0, max(forwardArena, n))
	}
}

// sealed returns b[from:], the arena's newest bytes, as a slice nothing
// appends to.
func (f *forwarder) sealed(from int) []byte {
	return f.arena[from:len(f.arena):len(f.arena)]
}

func newForwarder(topic string, source, targets int32, gen uint64, seal *pipeline.Sealer) *forwarder {
	f := &forwarder{topic: topic, source: source, targets: targets, gen: gen, seal: seal, packs: make([]pipeline.Pack, targets)}
	f.last = make([]struct{ covered, wm int64 }, targets)
	for i := range f.last {
		f.last[i].covered = -1
	}
	return f
}

// line forwards one parsed line of the source at offset, watermark wm,
// into its target's pack (the target of its client's partition key).
func (f *forwarder) line(e *accesslog.Entry, offset, wm int64, value []byte) {
	f.key = detect.AppendPartitionKey(f.key[:0], e.Client)
	t := pipeline.Target(f.key, f.targets)
	// The pack keeps the value until it closes, at the latest at the
	// batch's flush: the batch's fetched records outlive it.
	if f.packs[t].AddParsed(offset, wm, value, e) {
		f.closePack(t)
	}
	f.last[t].covered, f.last[t].wm = offset+1, wm
}

// closePack makes target t's open pack a record, if it holds lines; the
// record owns the body from then on.
func (f *forwarder) closePack(t int32) {
	if f.packs[t].Len() == 0 {
		return
	}
	o, body := f.packs[t].Close(f.gen, f.source)
	r := f.record()
	*r = kgo.Record{Topic: f.topic, Partition: t, Value: body, Headers: f.headers(o, nil, body)}
	f.recs = append(f.recs, r)
}

// closePacks closes every target's open pack.
func (f *forwarder) closePacks() {
	for t := range f.targets {
		f.closePack(t)
	}
}

// marks adds a marker of kind to each target not yet told that every line
// below covered was forwarded, with watermark wm (every target, for an
// idle marker). The packs close first, so that each marker follows the
// lines it covers in its partition.
func (f *forwarder) marks(kind byte, covered, wm int64) {
	f.closePacks()
	o := pipeline.Origin{Kind: kind, Gen: f.gen, Source: f.source, Offset: covered, Watermark: wm}
	hdrs := f.headers(o, nil, nil)
	for t := range f.targets {
		if kind == pipeline.KindProgress && f.last[t].covered == covered && f.last[t].wm == wm {
			continue
		}
		r := f.record()
		*r = kgo.Record{Topic: f.topic, Partition: t, Headers: hdrs}
		f.recs = append(f.recs, r)
		f.last[t].covered, f.last[t].wm = covered, wm
	}
	f.idle = kind == pipeline.KindIdle
}

// headers are a forwarded record's: its origin, and its MAC when the
// cluster has a key.
func (f *forwarder) headers(o pipeline.Origin, key, value []byte) []kgo.RecordHeader {
	f.room(pipeline.MaxOriginBytes)
	from := len(f.arena)
	f.arena = pipeline.AppendOrigin(f.arena, o)
	hdr := f.sealed(from)
	if cap(f.hdrs)-len(f.hdrs) < 2 {
		f.hdrs = make([]kgo.RecordHeader, 0, 2*forwardChunk)
	}
	at := len(f.hdrs)
	f.hdrs = append(f.hdrs, kgo.RecordHeader{Key: pipeline.Header, Value: hdr})
	if mac := f.seal.Seal(hdr, key, value); mac != nil {
		f.hdrs = append(f.hdrs, kgo.RecordHeader{Key: pipeline.MACHeader, Value: mac})
	}
	return f.hdrs[at:len(f.hdrs):len(f.hdrs)]
}

// repartSealer is the Sealer of this node's repartition records: keyed by
// a key derived from the cluster key, none without one.
func (n *Node) repartSealer() *pipeline.Sealer {
	if len(n.cfg.ClusterKey) == 0 {
		return nil
	}
	k, err := hkdf.Key(sha256.New, n.cfg.ClusterKey, nil, "warden repartition mac v1", 32)
	if err != nil {
		panic(err) // 32 bytes of sha256 are always there
	}
	return pipeline.NewSealer(k)
}

// flush produces what was added and waits for every record's
// acknowledgement: the batch commits only once its lines are on the
// repartition topic, so a crash repeats them (the second stage drops the
// repeats) and never loses them.
func (f *forwarder) flush(ctx context.Context, prod *ownProducer) error {
	f.closePacks()
	if len(f.recs) == 0 {
		return nil
	}
	cl, err := prod.client()
	if err != nil {
		return err
	}
	recs := f.recs
	f.recs, f.slab, f.hdrs, f.arena = nil, nil, nil, nil
	for _, r := range cl.ProduceSync(ctx, recs...) {
		if r.Err != nil {
			return fmt.Errorf("forward to %s: %w", f.topic, r.Err)
		}
	}
	return nil
}

// runByClient is the second stage of partition p: it reads partition p of
// the repartition topic from the FSM's position, merges, detects, and
// commits [from, until) with the detector's delta and the sources' marks.
// A batch takes at most limit lines (0: --max-batch-records); one that
// encodes past the bound makes it return the smaller cap its successor
// starts with, as the first stage does.
func (n *Node) runByClient(ctx context.Context, p fsm.Partition, limit int) (next int) {
	lg := n.log.With("subsystem", "by-client", "partition", p.Partition, "epoch", p.Epoch)
	if limit <= 0 || limit > n.cfg.MaxBatchRecords {
		limit = n.cfg.MaxBatchRecords
	}
	var cfg *fsm.Config
	for cfg = n.fsm.Config(); cfg == nil; cfg = n.fsm.Config() {
		select {
		case <-ctx.Done():
			return limit
		case <-time.After(100 * time.Millisecond):
		}
	}
	format, err := accesslog.Lookup(cfg.LogFormat)
	if err != nil {
		lg.Error("log format in the cluster configuration does not compile", "log_format", cfg.LogFormat, "err", err)
		return limit
	}
	sources := int32(n.fsm.PartitionCount())
	if err := n.ensureRepart(ctx, sources); err != nil {
		lg.Warn("cannot prepare the repartition topic; retrying", "err", err)
		sleepCtx(ctx, time.Second)
		return limit
	}
	start, dstate, gen, ok := n.fsm.ByClientStart(p.Partition)
	if !ok || start.Epoch != p.Epoch {
		return limit
	}
	bc := start.ByClient
	if bc.Gen != gen {
		bc.Gen, bc.Marks = gen, nil
	}
	from := bc.Committed
	// Each batch names how many commits of the partition's second stage
	// it follows (fsm.Batch.Follows): one cut on a state that had not yet
	// applied an earlier batch of this stage (a commit answered as lost
	// with its leader, applied after all) is refused, though its From
	// matches when that batch moved no offset.
	follows := bc.Commits
	// The run names itself in its batches: once another run's batch
	// commits after it read the state (its predecessor's, in flight
	// when it stopped), none of its own is taken but a first
	// (fsm.Batch.Run), and it starts again.
	run, started := newRunID(), follows
	// The lines come from the node's one consumer of the repartition
	// topic, from the FSM's position (fetcher.go).
	sub, err := n.repartFetcher().subscribe(p.Partition, from)
	if err != nil {
		lg.Error("kafka client", "err", err)
		return limit
	}
	defer sub.close()
	merger := pipeline.NewMerger(bc, sources)
	seal := n.repartSealer()
	detector := detect.NewDetector(n.fsm.Rules(), p.Partition, dstate)
	// The detector state stands at its last checkpoint: the lines applied
	// since go through detection again first (checkpoint.go).
	ck := start.Detector
	resume := ck.Set && ck.Stage == fsm.StageByClient && ck.Gen == gen && start.ByClient.Gen == gen && ck.Offset <= from
	replayed := 0
	if resume {
		t0 := time.Now()
		replayed, err = n.replayByClient(ctx, p.Partition, ck, bc, sources, format, detector)
		if !n.endReplay(ctx, lg, detector, ck.Offset, replayed, t0, err) {
			return limit
		}
	}
	// A replay makes the first batch a checkpoint: a worker restarted
	// again (a commit lost to a change of leader restarts it) then replays
	// only what came since, not the same records again.
	checkpoints := pipeline.NewCheckpoints(n.cfg.CheckpointInterval, n.cfg.CheckpointRecords, time.Now(), !resume || replayed > 0)
	checkpoints.Add(replayed)
	lg.Debug("second stage started", "from", from)

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	inflight := make(chan pendingBatch, maxInFlight)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		for pb := range inflight {
			select {
			case err := <-pb.done:
				n.metrics.observeBatch(err)
				if err != nil {
					if wctx.Err() == nil {
						lg.Info("second-stage batch not committed; re-reading position", "err", err)
					}
					stop()
				}
			case <-wctx.Done():
			}
		}
	}()
	defer func() {
		close(inflight)
		<-waited
	}()

	var entry accesslog.Entry
	var recs []*kgo.Record
	var scratch []pipeline.Packed
	readPos := from
	for wctx.Err() == nil && !n.draining.Load() {
		deadline := time.Now().Add(n.cfg.BatchInterval)
		read := 0
		released := 0
		for read < limit && time.Now().Before(deadline) {
			pctx, cancel := context.WithDeadline(wctx, deadline)
			// The subscription's records are this partition's, in order,
			// from this stage's start on.
			var errs []error
			// Records hold up to a pack of lines each.
			recs, errs = sub.poll(pctx, reuseRecords(recs), max(1, (limit-read)/pipeline.MaxPackLines))
			cancel()
			for _, err := range errs {
				lg.Warn("fetch error", "err", err)
				if errors.Is(err, kerr.OffsetOutOfRange) {
					n.skipRepartLoss(wctx, p, from, lg)
					return limit
				}
			}
			var aerr error
			for _, r := range recs {
				if aerr != nil {
					break
				}
				readPos = r.Offset + 1
				var got int
				got, aerr = addRecord(merger, r, seal, &scratch, nil)
				read += got
			}
			// The lines the merge lets through, up to the batch's cap
			// (the rest stay held, and go in the next batch).
			for released < limit {
				it, ok := merger.Next()
				if !ok {
					break
				}
				released++
				if readForwarded(format, &it, &entry) == nil {
					detector.Observe(&entry, it.Offset, it.Value)
				}
			}
			if aerr != nil {
				lg.Info("records of a newer replay generation; waiting for the state to catch up")
				sleepCtx(wctx, 500*time.Millisecond)
				return limit
			}
			if wctx.Err() != nil {
				return limit
			}
			if read > 0 && time.Until(deadline) < 3*n.cfg.BatchInterval/4 {
				break
			}
		}
		if c := n.fsm.Config(); c != nil && (c.LogFormat != cfg.LogFormat || c.Rules != cfg.Rules || !twoStage(c)) {
			return // restart from the FSM's state with the new configuration
		}
		if read == 0 && released == 0 {
			continue
		}
		until := readPos
		if low, ok := merger.Low(); ok {
			until = low
		}
		if src, mk, ok := merger.WaitingFor(); ok {
			lg.Debug("second stage waiting", "for_partition", src, "mark", mk, "held", merger.Held(), "read", readPos)
		}
		checkpoints.Add(released)
		b := fsm.Batch{Node: n.cfg.ID, Partition: p.Partition, Epoch: p.Epoch, Stage: fsm.StageByClient, Gen: gen,
			From: from, Until: until, Follows: follows, Sequenced: true, Run: run, RunStart: follows == started}
		checkpoints.Close(&b, detector, time.Now())
		if d := b.Detect; until == from && len(d.Buckets) == 0 && len(d.Alerts) == 0 && !merger.Changed() {
			if b.Checkpoint {
				checkpoints.Force() // still owed: none went
			}
			continue // nothing to commit yet
		}
		b.Marks, b.Merge, b.MaxTS = merger.TakeMarks(), merger.TakeCounts(), merger.MaxTS()
		data := fsm.EncodeBatch(&b)
		if maxBytes := n.cfg.maxBatchBytes; len(data) > maxBytes && released > 1 {
			next = max(1, min(released/2, released*(maxBytes/4)/len(data)))
			lg.Info("second-stage batch too large for one commit; restarting with smaller batches",
				"from", b.From, "lines", released, "bytes", len(data), "max_bytes", maxBytes, "next_lines", next)
			return next
		}
		if released > 0 {
			limit = batchLimit(limit, released, len(data), n.cfg.MaxBatchRecords, n.cfg.maxBatchBytes)
		}
		pb := pendingBatch{data: data, done: make(chan error, 1)}
		select {
		case inflight <- pb:
		case <-wctx.Done():
			return limit
		}
		select {
		case n.commitCh <- pb:
		case <-wctx.Done():
			return limit
		}
		from = until
		follows++
	}
	return limit
}

// readForwarded sets e to forwarded line it: read back from its layout,
// the parse the first stage made, or (a record of a line, or a layout that
// does not read) parsed again with format.
func readForwarded(format *accesslog.Format, it *pipeline.Item, e *accesslog.Entry) error {
	if it.Layout != nil && e.ReadLayout(it.Layout, it.Value, it.Watermark) == nil {
		return nil
	}
	return format.Parse(it.Value, e)
}

// recordLines appends to out what repartition record r gives the merge: a
// pack's lines, or the one line or marker of a record of its own (releases
// before packs wrote a record a line, and markers still go one a record).
// A record whose origin does not read, is not sealed by the cluster's key
// or whose pack does not decode gives an error, and nothing.
func recordLines(r *kgo.Record, seal *pipeline.Sealer, out []pipeline.Packed) ([]pipeline.Packed, error) {
	o, err := originOf(r, seal)
	if err != nil {
		return out, err
	}
	return pipeline.Lines(o, r.Value, out)
}

// addRecord gives merger repartition record r (recordLines), each line
// followed by each, if not nil; it returns how many lines or markers went
// in, and the merge's error.
func addRecord(merger *pipeline.Merger, r *kgo.Record, seal *pipeline.Sealer, scratch *[]pipeline.Packed, each func()) (int, error) {
	ts := r.Timestamp.UnixMilli()
	lines, err := recordLines(r, seal, (*scratch)[:0])
	*scratch = lines
	if err != nil {
		// Counted as bad; its timestamp still counts (IdleHold).
		err = merger.Add(r.Offset, ts, pipeline.Origin{}, nil, err)
		if err == nil && each != nil {
			each()
		}
		return 1, err
	}
	for i := range lines {
		if err := merger.AddParsed(r.Offset, ts, lines[i].Origin, lines[i].Value, lines[i].Layout, nil); err != nil {
			return i + 1, err
		}
		if each != nil {
			each()
		}
	}
	clear(lines) // the scratch keeps no record's bytes
	return len(lines), nil
}

// originOf reads a repartition record's origin, if its header is there and
// sealed by the cluster's key (when there is one).
func originOf(r *kgo.Record, seal *pipeline.Sealer) (pipeline.Origin, error) {
	var hdr, mac []byte
	for _, h := range r.Headers {
		switch h.Key {
		case pipeline.Header:
			hdr = h.Value
		case pipeline.MACHeader:
			mac = h.Value
		}
	}
	if hdr == nil || !seal.Check(mac, hdr, r.Key, r.Value) {
		return pipeline.Origin{}, pipeline.ErrBadOrigin
	}
	return pipeline.ParseOrigin(hdr)
}

// skipRepartLoss is the second stage's answer to records of the
// repartition topic deleted by retention before it read them: those lines
// cannot reach detection any more. It moves the committed offset to the log
// start in a batch of its own (the marks stay: later lines of each source
// are still told from repeats), says so once at error level and raises an
// operator alert through the same path as the input's losses. Raise the
// repartition topic's retention above the longest the cluster may lag.
func (n *Node) skipRepartLoss(ctx context.Context, p fsm.Partition, from int64, lg *slog.Logger) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	starts, err := n.admin.ListStartOffsets(lctx, n.repartTopic())
	cancel()
	if err != nil {
		lg.Warn("cannot read the repartition topic's log start; retrying", "err", err)
		sleepCtx(ctx, time.Second)
		return
	}
	o, ok := starts.Lookup(n.repartTopic(), p.Partition)
	if !ok || o.Err != nil || o.Offset <= from {
		sleepCtx(ctx, time.Second)
		return
	}
	b := fsm.Batch{Node: n.cfg.ID, Partition: p.Partition, Epoch: p.Epoch, Stage: fsm.StageByClient, Gen: n.fsm.Gen(),
		From: from, Until: o.Offset, Merge: fsm.MergeCounts{Lost: o.Offset - from}, Watermark: time.Now().UnixNano()}
	pb := pendingBatch{data: fsm.EncodeBatch(&b), done: make(chan error, 1)}
	select {
	case n.commitCh <- pb:
	case <-ctx.Done():
		return
	}
	select {
	case err = <-pb.done:
	case <-ctx.Done():
		return
	}
	if err == nil {
		lg.Error("repartition records deleted by retention before detection read them: skipped, their lines are not detected on",
			"topic", n.repartTopic(), "from", from, "until", o.Offset, "lost", o.Offset-from)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// idleFor reports whether the partition has been at its end (offset) for
// idleAfter, since *since (set here when it first finds it there). Under
// steady traffic a partition is never that long at its end, so the second
// stages always wait for its lines and merge in the exact order; a quiet
// partition holds them up by idleAfter at most.
func (n *Node) idleFor(since *time.Time, partition int32, offset int64) bool {
	if !n.caughtUp(partition, offset) {
		*since = time.Time{}
		return false
	}
	if since.IsZero() {
		*since = time.Now()
	}
	return time.Since(*since) >= idleAfter(n.cfg.BatchInterval)
}

// idleAfter is how long a partition must be at its end before it says it
// is idle: two batch intervals, and past pipeline.IdleHold, so that the
// idle marker's own timestamp lets through the last lines it forwarded.
func idleAfter(interval time.Duration) time.Duration {
	return max(2*interval, pipeline.IdleHold*time.Millisecond+interval)
}

// caughtUp reports whether offset is at the partition's end, as the Kafka
// watcher last saw it.
func (n *Node) caughtUp(partition int32, offset int64) bool {
	ends, ok := n.kafkaStat.endOffsets()
	if !ok {
		return false
	}
	end, known := ends[partition]
	return known && end <= offset
}

// watchPlacement runs on every node while the input is declared keyed by
// client: every 10 s it counts the clients whose detector state is in more
// than one partition (the producer does not key by client after all, and
// detection sees a share of each), exports the count and warns when it
// rises from zero.
func (n *Node) watchPlacement() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if c := n.fsm.Config(); c == nil || !c.InputKeyedByClient {
			n.misplaced.Store(0)
			warned = false
			continue
		}
		count, example := n.fsm.ClientsInSeveralPartitions()
		n.misplaced.Store(int64(count))
		switch {
		case count > 0 && !warned:
			n.log.Warn("the input is declared keyed by client (--input-keyed-by-client), but clients appear in several partitions: detection sees only a share of their requests; key the producer by client (warden ship does), or let the cluster repartition (input-keyed-by-client: false)",
				"clients", count, "example", example)
			warned = true
		case count == 0:
			warned = false
		}
	}
}

// registerRepartMetrics exports the repartition stage's figures.
func registerRepartMetrics(reg *prometheus.Registry, f *fsm.FSM, misplaced *atomic.Int64) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_clients_in_several_partitions",
			Help: "With --input-keyed-by-client: clients whose detector state is in more than one partition (the input is not keyed by client)."},
			func() float64 { return float64(misplaced.Load()) }),
		repartCollector{f: f})
}

// repartCollector sums, at each scrape and from one view of the state, the
// cluster-wide counters of every partition's stages.
type repartCollector struct{ f *fsm.FSM }

var repartCounters = []struct {
	desc *prometheus.Desc
	get  func(p fsm.Partition) int64
}{
	{prometheus.NewDesc("warden_late_events_total", "Events more than --max-lateness older than their partition's watermark: counted in the figures, left out of detection, cluster-wide.", nil, nil),
		func(p fsm.Partition) int64 { return p.Late }},
	{prometheus.NewDesc("warden_repartition_applied_total", "Lines the second stage took into detection, cluster-wide.", nil, nil),
		func(p fsm.Partition) int64 { return p.ByClient.Applied }},
	{prometheus.NewDesc("warden_repartition_dropped_total", "Forwarded lines and markers dropped as repeats of a first-stage retry or of an older replay generation, cluster-wide.", nil, nil),
		func(p fsm.Partition) int64 { return p.ByClient.Dropped }},
	{prometheus.NewDesc("warden_repartition_bad_total", "Repartition records without a valid origin header, MAC or pack (not written by this cluster), dropped, cluster-wide.", nil, nil),
		func(p fsm.Partition) int64 { return p.ByClient.Bad }},
	{prometheus.NewDesc("warden_repartition_out_of_order_total", "Lines of a partition that was idle and came back with events older than lines already applied, cluster-wide.", nil, nil),
		func(p fsm.Partition) int64 { return p.ByClient.OutOfOrder }},
	{prometheus.NewDesc("warden_repartition_lost_total", "Repartition records deleted by retention before the second stage read them, cluster-wide.", nil, nil),
		func(p fsm.Partition) int64 { return p.ByClient.Lost }},
}

func (repartCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range repartCounters {
		ch <- c.desc
	}
}

func (rc repartCollector) Collect(ch chan<- prometheus.Metric) {
	s, _ := rc.f.View()
	for _, c := range repartCounters {
		var t int64
		for _, p := range s.Partitions {
			t += c.get(p)
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t))
	}
}
