package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/pipeline"
)

func newAnalyzeCmd() *cobra.Command {
	var o analyzeFlags
	o.allow = newList()
	c := &cobra.Command{
		Use:   "analyze FILE... [--log-format F] [--json [--doc stats|alerts|decisions]] [--from T] [--to T] [--top N] [--explain IP] [--simulate]",
		Short: "The same pipeline over log files, offline, in one process",
		Long: `Run Warden's pipeline over log files (- for standard input, .gz read as
gzip) in one process, with no Kafka and no Raft: a terminal report (totals,
status table, top lists, requests per hour, alerts, decisions) or, with
--json, exactly the document the cluster's HTTP API serves.`,
		RunE: func(c *cobra.Command, files []string) error {
			if len(files) == 0 {
				return usagef(c, "name at least one log file, or - for standard input")
			}
			return o.run(files)
		},
	}
	fs := c.Flags()
	fs.StringVar(&o.logFormat, "log-format", "", "a preset ("+strings.Join(accesslog.PresetNames, ", ")+"), json:FIELD=KEY,..., or an Apache LogFormat string; when empty, each line in the first format that reads it, as an agent's default (the format detected from the first lines is reported)")
	fs.BoolVar(&o.asJSON, "json", false, "print the document GET /v1/stats returns")
	fs.StringVar(&o.from, "from", "", "only requests at or after this time (RFC 3339, or 2006-01-02[T15:04])")
	fs.StringVar(&o.to, "to", "", "only requests before this time")
	fs.IntVar(&o.top, "top", analytics.DefaultTop, "rows per top list; 0 for all")
	fs.DurationVar(&o.retention, "retention", pipeline.AnalyzeRetention, "keep only this much event time back from the newest request; 0 keeps all")
	fs.DurationVar(&o.maxLateness, "max-lateness", pipeline.MaxLateness, "events more than this older than the newest event before them are late: counted in the figures, left out of detection, as the cluster's --max-lateness (0: none is late)")
	fs.IntVar(&o.workers, "workers", runtime.GOMAXPROCS(0), "parsing goroutines")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar or format report on stderr")
	fs.StringVar(&o.doc, "doc", "stats", "with --json, which API document to print: stats (GET /v1/stats), alerts (GET /v1/alerts) or decisions (GET /v1/decisions?all=1)")
	fs.StringVar(&o.rulesFile, "rules", "", "a YAML rule file applied over the built-in scenarios")
	fs.Var(o.allow, "allow", "addresses or CIDR ranges never to ban, comma-separated")
	fs.StringVar(&o.explain, "explain", "", "print, for this client address, which requests fed which scenario, why, and whether it fired (instead of the report)")
	fs.BoolVar(&o.simulate, "simulate", false, "mark every decision simulated, as an agent with --simulate would: alerts as usual, nothing banned")
	return c
}

type analyzeFlags struct {
	logFormat, from, to, doc, rulesFile string
	explain                             string
	asJSON, quiet, simulate             bool
	top, workers                        int
	retention, maxLateness              time.Duration
	allow                               *listFlag
}

func (o *analyzeFlags) run(files []string) error {
	var err error
	q := analytics.Query{Top: o.top}
	if o.top == 0 {
		q.Top = -1
	} else if o.top < 0 {
		return fmt.Errorf("--top %d: want 0 (all) or more", o.top)
	}
	if q.From, err = parseTimeFlag("from", o.from); err != nil {
		return err
	}
	if q.To, err = parseTimeFlag("to", o.to); err != nil {
		return err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return fmt.Errorf("--to %s is not after --from %s", o.to, o.from)
	}
	if err := (analytics.Config{Retention: o.retention}).Validate(); err != nil {
		return fmt.Errorf("--retention: %w", err)
	}
	if o.maxLateness < 0 {
		return fmt.Errorf("--max-lateness %s: want 0 or more", o.maxLateness)
	}
	if o.doc != "stats" && o.doc != "alerts" && o.doc != "decisions" {
		return fmt.Errorf("--doc %q: want stats, alerts or decisions", o.doc)
	}
	if o.workers < 1 {
		return fmt.Errorf("--workers %d: want 1 or more", o.workers)
	}
	rules, err := readRules(o.rulesFile)
	if err != nil {
		return err
	}
	if _, err := detect.ParseAllow(o.allow.vals); err != nil {
		return fmt.Errorf("--allow: %w", err)
	}
	logFormat := o.logFormat
	if logFormat == "" {
		logFormat = pipeline.LogFormat
	}
	an := &analyzer{workers: o.workers, showProgress: !o.quiet && isTerminal(os.Stderr), showDetected: !o.quiet, detectFormat: o.logFormat == ""}
	if an.format, err = accesslog.Lookup(logFormat); err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	// The files are one partition of a cluster configured by these flags;
	// every batch goes through the FSM's apply (pipeline.Offline).
	an.off, err = pipeline.NewOffline(fsm.Config{LogFormat: logFormat, Retention: o.retention.String(), Rules: rules,
		Allow: o.allow.vals, Simulate: o.simulate, MaxLateness: lateness(o.maxLateness)}, int32(o.workers))
	an.next = make([]int64, o.workers)
	if err != nil {
		return err
	}
	an.rules = an.off.State.Rules()
	// The stats document needs no detection: skip it then.
	an.detect = !o.asJSON || o.doc != "stats" || o.explain != ""
	an.clock = pipeline.NewClock(0, int64(o.maxLateness))
	var explain *detect.Explainer
	if o.explain != "" {
		explain = &detect.Explainer{IP: o.explain, Rules: an.rules,
			Parse: func(l []byte, e *accesslog.Entry) error { return an.format.Parse(l, e) }}
	}
	if an.detect {
		an.startShards(int32(o.workers), explain)
	}
	for _, name := range files {
		if err := an.file(name); err != nil {
			an.stopShards()
			return err
		}
	}
	an.stopShards()
	if an.err != nil {
		return an.err
	}
	book := an.off.State.Book
	if explain != nil {
		explain.Write(os.Stdout, book)
		return nil
	}
	st := an.off.State.Analytics.Stats(q)
	if o.asJSON {
		switch o.doc {
		case "alerts":
			return node.WriteDoc(os.Stdout, book.AlertsSince(q.From))
		case "decisions":
			return node.WriteDoc(os.Stdout, detect.DecisionViews(book.AllDecisions(), time.Now()))
		}
		return node.WriteDoc(os.Stdout, st)
	}
	printReport(os.Stdout, files, an, st)
	printDetections(os.Stdout, book)
	return nil
}

// lateness spells a max lateness as the cluster configuration does.
func lateness(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// readRules reads the rule file (if any), checked over the built-in
// scenarios; the configuration carries its YAML, as the cluster's does.
func readRules(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--rules: %w", err)
	}
	if _, err := detect.Parse(detect.BuiltinYAML(), b); err != nil {
		return "", fmt.Errorf("--rules %s: %w", path, err)
	}
	return string(b), nil
}

func parseTimeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s %q: want a time as 2026-11-27T10:00:00Z, 2026-11-27T10:00 or 2026-11-27", name, v)
}

// analyzer drives the pipeline over files: a reader cuts each input into
// chunks of whole lines; workers fold chunks (pipeline.FoldOffline: figures,
// malformed sample, digest) into their own offline partition's batches and
// evaluate the scenarios' filters, in any order; a sequencer takes the
// chunks in input order, drops late events (the files' clock) and hands
// each event to its client's detection shard; a committer commits the
// shards' deltas chunk by chunk, in shard order (see shard).
type analyzer struct {
	format       *accesslog.Format
	detected     string
	detectFormat bool
	workers      int
	key          []byte // dispatch's scratch: a client's partition key
	// lastIP and lastShard are the client dispatch sent last and its
	// shard: a client's requests come in runs (a page and its assets).
	lastIP       []byte
	lastShard    int
	showProgress bool
	showDetected bool

	detect bool
	rules  *detect.Rules
	clock  pipeline.Clock // the files' watermark: one source, in order
	shards []*shard
	queue  chan queued // each chunk's shard results, in input order
	queued sync.WaitGroup
	off    *pipeline.Offline
	offMu  sync.Mutex // the offline state takes one commit at a time
	offset int64      // line index over all inputs: detection's offset
	next   []int64    // next offset of each worker's partition

	mu       sync.Mutex
	lines    int64
	bad      []badLine
	badCount int64
	err      error // the first commit that failed
}

type badLine struct {
	file   string
	line   int64
	reason string
	text   string
}

const maxBadShown = 5

type chunk struct {
	seq   int // order of the chunk in the input
	buf   []byte
	first int64 // line number of the chunk's first line (in its file)
	base  int64 // offset (line index over all inputs) of its first line
	n     int64 // its lines
	pool  *[]byte
	// Filled by a worker: the chunk's requests as the detector sees them.
	events  []detect.Event
	matches []detect.Match
	ips     []byte
}

const chunkSize = 4 << 20

// peekBytes is how much of a file's start reportFormat reads for its
// sample lines.
const peekBytes = 256 << 10

func openInput(name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), 0, nil
	}
	fh, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	var size int64
	if fi, err := fh.Stat(); err == nil {
		if fi.IsDir() {
			fh.Close()
			return nil, 0, fmt.Errorf("%s is a directory", name)
		}
		size = fi.Size()
	}
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(fh)
		if err != nil {
			fh.Close()
			return nil, 0, fmt.Errorf("%s: %w", name, err)
		}
		return struct {
			io.Reader
			io.Closer
		}{zr, fh}, 0, nil
	}
	return fh, size, nil
}

// reportFormat detects the format of the file's first lines, for the
// report (parsing goes on with the configured format).
func (an *analyzer) reportFormat(name string, br *bufio.Reader) error {
	head, _ := br.Peek(peekBytes)
	var sample [][]byte
	for len(head) > 0 && len(sample) < 100 {
		l, rest, found := bytes.Cut(head, []byte{'\n'})
		if !found && len(sample) > 0 {
			break // a cut-off last line would not parse
		}
		if len(bytes.TrimSpace(l)) > 0 {
			sample = append(sample, l)
		}
		head = rest
	}
	d, err := accesslog.Detect(sample)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	an.detected = fmt.Sprintf("%s: %s", name, d)
	if an.showDetected {
		fmt.Fprintln(os.Stderr, an.detected)
	}
	return nil
}

func (an *analyzer) file(name string) error {
	in, size, err := openInput(name)
	if err != nil {
		return err
	}
	defer in.Close()
	// A buffer as large as reportFormat's peek: a chunk's read, longer,
	// then goes from the file into the chunk, not through the buffer.
	br := bufio.NewReaderSize(in, peekBytes)
	if an.detectFormat {
		if err := an.reportFormat(name, br); err != nil {
			return err
		}
	}

	todo := make(chan *chunk, an.workers*2)
	done := make(chan *chunk, an.workers*2)
	pool := sync.Pool{New: func() any { b := make([]byte, 0, chunkSize+64<<10); return &b }}
	// Chunks go back to a pool with the slices their detection filled,
	// so that the next chunk's events do not grow them again.
	chunks := sync.Pool{New: func() any { return new(chunk) }}
	var wg sync.WaitGroup
	for w := range int32(an.workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			folder := analytics.NewFolder(an.format)
			b := pipeline.NewBatch(pipeline.OfflineNode, w, 1, an.next[w])
			// One event for the worker's lines: Evaluate keeps its
			// memory of recent texts with it.
			var ev detect.Event
			for c := range todo {
				an.foldChunk(name, folder, c, &b, &ev)
				if b.Until-b.From >= flushLines {
					an.flush(&b)
				}
				done <- c
			}
			an.flush(&b)
		}()
	}
	seqDone := make(chan struct{})
	go func() {
		defer close(seqDone)
		next := 0
		waiting := map[int]*chunk{}
		for c := range done {
			waiting[c.seq] = c
			for {
				w, ok := waiting[next]
				if !ok {
					break
				}
				delete(waiting, next)
				next++
				release := func() {
					if w.pool != nil {
						*w.pool = w.buf[:0]
						pool.Put(w.pool)
					}
					clear(w.events) // they alias the buffer given back
					*w = chunk{events: w.events[:0], matches: w.matches[:0], ips: w.ips[:0]}
					chunks.Put(w)
				}
				if !an.detect {
					release()
					continue
				}
				an.dispatch(w, release)
			}
		}
	}()

	bar := newProgress(name, size, an.showProgress && size > 0)
	var read, lineNo int64
	var carry []byte
	var readErr error
	seq := 0
	send := func(buf []byte, bp *[]byte) {
		c := chunks.Get().(*chunk)
		c.seq, c.buf, c.first, c.base, c.pool = seq, buf, lineNo+1, an.offset, bp
		seq++
		n := int64(bytes.Count(buf, []byte{'\n'}))
		if len(buf) > 0 && buf[len(buf)-1] != '\n' {
			n++
		}
		c.n = n
		lineNo += n
		an.offset += n
		todo <- c
	}
	for {
		bp := pool.Get().(*[]byte)
		buf := append((*bp)[:0], carry...)
		n, err := io.ReadFull(br, buf[len(buf):chunkSize])
		buf = buf[:len(buf)+n]
		read += int64(n)
		bar.set(read)
		end := len(buf)
		if err == nil {
			if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
				end = i + 1
			}
		}
		carry = append(carry[:0], buf[end:]...)
		if end > 0 {
			send(buf[:end], bp)
		} else {
			pool.Put(bp)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				readErr = fmt.Errorf("read %s: %w", name, err)
			}
			break
		}
		if len(carry) >= chunkSize { // one line longer than a chunk
			send(append([]byte(nil), carry...), nil)
			carry = carry[:0]
		}
	}
	if len(carry) > 0 {
		send(append([]byte(nil), carry...), nil)
	}
	close(todo)
	wg.Wait()
	close(done)
	<-seqDone
	bar.done()
	if readErr != nil {
		return readErr
	}
	return an.err
}

// flushLines is how many lines a worker folds into one batch of figures:
// large batches share their keys, so each costs the state's merge less.
const flushLines = 1 << 20

// flush commits a worker's batch of figures (prepared on the worker, applied
// under the state's lock) and starts the next one where it ended.
func (an *analyzer) flush(b *fsm.Batch) {
	p := b.Partition
	if b.Until > b.From {
		pipeline.Trim(b)
		cmd, err := an.off.Prepare(b)
		an.offMu.Lock()
		if err == nil {
			err = an.off.Apply(cmd)
		}
		if err != nil && an.err == nil {
			an.err = err
		}
		an.offMu.Unlock()
	}
	an.next[p] = b.Until
	*b = pipeline.NewBatch(pipeline.OfflineNode, p, 1, b.Until)
}

// Detection runs on shards, as the cluster's second stages do: each
// client's network (detect.PartitionKey) belongs to one shard
// (pipeline.Target), whose detector takes that client's events in input
// order; each shard is partition s of the offline state, and its detector
// deltas are that partition's second-stage batches, committed chunk by
// chunk in shard order, so the alerts enter the book in the same order
// every run.
type shard struct {
	id   int32
	det  *detect.Detector
	in   chan shardWork
	next int64 // the next offset of the shard's second stage
	// checkpoints is when a batch carries the detector's buckets, as a
	// worker's detecting stage does; the others carry only their alerts.
	checkpoints *pipeline.Checkpoints
}

type shardWork struct {
	events []*detect.Event
	done   chan shardDone
}

// queued is a chunk dispatched to the shards: their results, and what gives
// the chunk's buffer back once they are all in.
type queued struct {
	outs    []chan shardDone
	release func()
}

type shardDone struct {
	batch fsm.Batch
	ok    bool // events were taken: the batch is to be committed
}

// startShards starts k detectors and the committer of their batches.
func (an *analyzer) startShards(k int32, explain *detect.Explainer) {
	an.queue = make(chan queued, 4)
	for id := range max(1, k) {
		sh := &shard{id: id, det: detect.NewDetector(an.rules, id, nil), in: make(chan shardWork, 4),
			checkpoints: pipeline.NewCheckpoints(pipeline.CheckpointInterval, pipeline.CheckpointRecords, time.Now(), true)}
		sh.det.Offline = true // see pipeline/defaults.go
		if explain != nil {
			sh.det.Trace(explain.IP, explain.Step) // the one shard that holds it
		}
		an.shards = append(an.shards, sh)
		go sh.run()
	}
	an.queued.Add(1)
	go func() {
		defer an.queued.Done()
		for q := range an.queue {
			for _, out := range q.outs {
				d := <-out
				if !d.ok {
					continue
				}
				an.offMu.Lock()
				if an.err == nil {
					if err := an.off.Commit(&d.batch); err != nil {
						an.err = err
					}
				}
				an.offMu.Unlock()
			}
			q.release()
		}
	}()
}

// stopShards waits until every dispatched chunk is committed.
func (an *analyzer) stopShards() {
	if an.queue == nil {
		return
	}
	close(an.queue)
	an.queued.Wait()
	for _, sh := range an.shards {
		close(sh.in)
	}
	an.queue = nil
}

func (sh *shard) run() {
	for w := range sh.in {
		if len(w.events) == 0 {
			w.done <- shardDone{}
			continue
		}
		for _, ev := range w.events {
			sh.det.Pour(ev)
		}
		n := int64(len(w.events))
		b := fsm.Batch{Stage: fsm.StageByClient, Partition: sh.id, From: sh.next, Until: sh.next + n}
		sh.checkpoints.Add(len(w.events))
		sh.checkpoints.Close(&b, sh.det, time.Now())
		sh.next += n
		w.done <- shardDone{batch: b, ok: true}
	}
}

// dispatch takes one chunk's events, in input order: the files' clock
// says which are late (left out), the others go to their client's shard;
// release runs once every shard is done with the chunk's lines.
func (an *analyzer) dispatch(c *chunk, release func()) {
	k := int32(len(an.shards))
	per := make([][]*detect.Event, k)
	for i := range c.events {
		ev := &c.events[i]
		if an.clock.Observe(ev.Time) {
			continue
		}
		if an.lastIP == nil || !bytes.Equal(ev.IP, an.lastIP) {
			an.key = detect.AppendPartitionKey(an.key[:0], ev.IP)
			an.lastIP, an.lastShard = append(an.lastIP[:0], ev.IP...), int(pipeline.Target(an.key, k))
		}
		per[an.lastShard] = append(per[an.lastShard], ev)
	}
	outs := make([]chan shardDone, k)
	for s, sh := range an.shards {
		outs[s] = make(chan shardDone, 1)
		sh.in <- shardWork{events: per[s], done: outs[s]}
	}
	// The committer takes the chunk's results in shard order, then gives
	// the chunk's buffer back.
	an.queue <- queued{outs: outs, release: release}
}

// foldChunk folds a chunk's lines into the worker's batch b (the worker's
// partition, at its next offsets) and evaluates the scenarios' filters on
// them for the sequencer (at the lines' offsets over all inputs).
func (an *analyzer) foldChunk(name string, folder *analytics.Folder, c *chunk, b *fsm.Batch, ev *detect.Event) {
	buf := c.buf
	no := c.first
	off := c.base
	var lines int64
	if an.detect && int64(cap(c.events)) < c.n {
		c.events = make([]detect.Event, 0, c.n)
	}
	for len(buf) > 0 {
		i := bytes.IndexByte(buf, '\n')
		var line []byte
		if i < 0 {
			line, buf = buf, nil
		} else {
			line, buf = buf[:i], buf[i+1:]
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		e, err := pipeline.FoldOffline(folder, b, b.Partition, b.Until, line)
		b.Until++
		if err != nil {
			lines++
			an.mu.Lock()
			an.badCount++
			if len(an.bad) < maxBadShown {
				text := string(line)
				if len(text) > 200 {
					text = text[:200] + "…"
				}
				an.bad = append(an.bad, badLine{file: name, line: no, reason: accesslog.Reason(err), text: strings.ToValidUTF8(text, "?")})
			}
			an.mu.Unlock()
		}
		if e != nil {
			lines++
		}
		if e != nil && an.detect {
			an.rules.Evaluate(e, line, off, ev)
			// The client address may live in the entry's scratch buffer
			// (JSON lines): keep a copy with the chunk.
			start := len(c.ips)
			c.ips = append(c.ips, e.Client...)
			m0 := len(c.matches)
			c.matches = append(c.matches, ev.Matches...)
			c.events = append(c.events, detect.Event{Time: ev.Time, Offset: off, Line: line,
				IP: c.ips[start:len(c.ips):len(c.ips)], Matches: c.matches[m0:len(c.matches):len(c.matches)]})
		}
		no++
		off++
	}
	// The slices above may have moved as they grew: point them again.
	ipPos, mPos := 0, 0
	for i := range c.events {
		ev := &c.events[i]
		n := len(ev.IP)
		ev.IP = c.ips[ipPos : ipPos+n : ipPos+n]
		ipPos += n
		k := len(ev.Matches)
		ev.Matches = c.matches[mPos : mPos+k : mPos+k]
		mPos += k
	}
	an.mu.Lock()
	an.lines += lines
	an.mu.Unlock()
}
