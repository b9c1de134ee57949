package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/internal/kafkaopt"
)

// FollowConfig configures a Follower.
type FollowConfig struct {
	// Patterns are the files to follow: paths or globs (filepath.Match
	// syntax), matched again at every poll so that files appearing later
	// and rotated files are found.
	Patterns []string
	// Topic is written to; it must exist.
	Topic string
	// ShipID names this shipper in every record (HeaderShipID). A
	// restarted ship reads back only its own records, so two shippers
	// writing to one topic need different ids.
	ShipID string
	// LogFormat finds each line's client, its record key (see Keyer).
	LogFormat string
	// PollInterval is how often the files are checked when idle.
	PollInterval time.Duration
	// PartialTimeout is how long a last line without its newline is held
	// before it is sent as it is; 0 holds it until the newline comes.
	PartialTimeout time.Duration
	// MaxLine cuts longer lines into pieces of this many bytes.
	MaxLine int
	// Settle is waited at start before reading back from Kafka, so that
	// requests a killed predecessor left on the wire have landed.
	Settle time.Duration
	// DrainTimeout bounds the wait for Kafka's acknowledgements at stop.
	DrainTimeout time.Duration
	// MaxBuffered is the producer's kgo.MaxBufferedRecords: with that many
	// lines unacknowledged, Produce waits, and so does reading
	// (backpressure, never dropping).
	MaxBuffered int
	// StateFile, if set, is a local file that only speeds up the start: it
	// bounds how far back the read-back goes (Kafka stays the truth).
	StateFile string
	// ClientOpts are the options of the read-back consumers (seed
	// brokers, TLS, SASL): the same Kafka as the producer's.
	ClientOpts []kgo.Opt
	Logger     *slog.Logger
	Metrics    *Metrics
}

// DefaultFollowConfig returns the defaults.
func DefaultFollowConfig() FollowConfig {
	return FollowConfig{LogFormat: "auto", PollInterval: 250 * time.Millisecond, PartialTimeout: 5 * time.Second,
		MaxLine: 64 << 10, Settle: time.Second, DrainTimeout: 10 * time.Second, MaxBuffered: 10000}
}

// Validate reports the first problem with c.
func (c FollowConfig) Validate() error {
	switch {
	case len(c.Patterns) == 0:
		return errors.New("no files to follow")
	case c.Topic == "":
		return errors.New("no topic")
	case c.ShipID == "":
		return errors.New("no ship id")
	case strings.ContainsAny(c.ShipID, " \t\n"):
		return fmt.Errorf("ship id %q contains white space", c.ShipID)
	case c.PollInterval <= 0:
		return errors.New("poll interval must be positive")
	case c.PartialTimeout < 0:
		return errors.New("partial timeout must not be negative")
	case c.MaxLine < 1:
		return errors.New("max line must be positive")
	}
	for _, p := range c.Patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	if _, err := NewKeyer(c.LogFormat); err != nil {
		return err
	}
	return nil
}

// Producer is the part of a franz-go client a Follower produces with. The
// client must be idempotent (franz-go's default) and must never fail a
// record on its own (no delivery timeout, unlimited retries): a failed
// record stops the Follower.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Flush(ctx context.Context) error
	BufferedProduceRecords() int64
}

// Follower follows files as `tail -F` does and ships their lines exactly
// once across its own restarts and crashes: see DESIGN.md.
type Follower struct {
	cfg   FollowConfig
	cl    Producer
	keyer *Keyer
	lg    *slog.Logger
	m     *Metrics

	pctx    context.Context // for Produce: outlives the stop signal by the drain
	pcancel context.CancelFunc

	mu       sync.Mutex
	files    []*tracker
	nextSeq  uint64    // last sequence number given
	seqs     watermark // over sequence numbers
	recAcked uint64    // the acknowledged sequence read back at start
	jumped   bool      // every line of the earlier runs is known to be in Kafka
	floors   *floorTracker
	startEnd map[int32]int64 // end offsets at start
	marksAt  time.Time
	since    int // records since the last marks
	dirty    bool
	fatal    error
	skipped  map[string]bool // paths skipped as compressed, said once
	blocked  bool
	// ackedFloors are the floors of the newest marks record Kafka
	// acknowledged, for the state file.
	ackedFloors map[int32]int64
	topicID     string
	stateWarned bool
}

// tracker is one followed file.
type tracker struct {
	path     string
	file     *os.File
	dev, ino uint64
	prefix   []byte // its first bytes, up to FingerprintBytes
	pos      int64  // the next byte to read
	buf      []byte // bytes read at pos-len(buf): a line without its newline yet
	bufAt    time.Time
	size     int64 // at the last check
	w        watermark
	// skip holds, by start offset, the lines read back from Kafka beyond
	// the watermark (their next offset); recoverTo is the end of the
	// furthest of them.
	skip      map[int64]int64
	skipOrder []int64 // the starts in skip, ascending
	recoverTo int64
	gone      bool // no pattern matches it any more
	detached  bool // its content is gone (truncated in place, no copy)
	grewAt    time.Time
}

func (t *tracker) identity() Identity { return identityOf(t.dev, t.ino, t.prefix) }

// NewFollower checks cfg; Run does the work.
func NewFollower(cfg FollowConfig, cl Producer) (*Follower, error) {
	d := DefaultFollowConfig()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = d.PollInterval
	}
	if cfg.MaxLine == 0 {
		cfg.MaxLine = d.MaxLine
	}
	if cfg.LogFormat == "" {
		cfg.LogFormat = d.LogFormat
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = d.DrainTimeout
	}
	if cfg.MaxBuffered == 0 {
		cfg.MaxBuffered = d.MaxBuffered
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	k, _ := NewKeyer(cfg.LogFormat)
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f := &Follower{cfg: cfg, cl: cl, keyer: k, lg: lg.With("subsystem", "follow"), m: cfg.Metrics, skipped: map[string]bool{}}
	f.m.watchLag(f.Lags)
	return f, nil
}

// Run reads back the position from Kafka, then follows the files until ctx
// is done; then it waits up to DrainTimeout for Kafka to acknowledge what
// was sent. It returns an error when Kafka refused a record or the
// position cannot be read back.
func (f *Follower) Run(ctx context.Context) error {
	f.pctx, f.pcancel = context.WithCancel(context.Background())
	defer f.pcancel()
	// A stop while Kafka is away: reading may be waiting in Produce for
	// room in the buffer. Past the drain timeout that wait is given up
	// (those lines are simply not sent; the next start finds out).
	stopWaiting := context.AfterFunc(ctx, func() { time.AfterFunc(f.cfg.DrainTimeout, f.pcancel) })
	defer stopWaiting()
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(f.cfg.Settle):
	}
	start := time.Now()
	rec, err := f.readBackRetrying(ctx)
	if err != nil || ctx.Err() != nil {
		return err
	}
	f.restore(rec)
	f.lg.Info("position read back from Kafka", "ship_id", f.cfg.ShipID, "records_read", rec.scanned, "files", len(f.files),
		"lines_beyond_watermarks", len(rec.lines), "bounded_by_state_file", rec.hinted, "took", time.Since(start).Round(time.Millisecond))
	// Only the floors of a marks record Kafka acknowledged may go to the
	// state file: a start must still find that record above them.
	f.topicID = rec.topicID
	t := time.NewTicker(f.cfg.PollInterval)
	defer t.Stop()
	saved := time.Now()
	for ctx.Err() == nil {
		if time.Since(saved) >= 10*time.Second {
			f.mu.Lock()
			fl := f.ackedFloors
			f.ackedFloors = nil
			f.mu.Unlock()
			if fl != nil {
				f.saveState(fl)
			}
			saved = time.Now()
		}
		progress := f.round()
		if err := f.failed(); err != nil {
			return err
		}
		if progress {
			continue
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return f.drain()
}

// readBackRetrying reads the position back from Kafka, retrying with
// backoff (one log line per new reason) while Kafka cannot be read, but
// not past a security failure: the same settings would fail again.
func (f *Follower) readBackRetrying(ctx context.Context) (*recovery, error) {
	delay, last := 250*time.Millisecond, ""
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		h, herr := loadHint(f.cfg.StateFile)
		if herr != nil {
			f.lg.Warn("ignoring the state file", "err", herr)
		}
		rec, err := readBack(rctx, f.cfg.ClientOpts, f.cfg.Topic, f.cfg.ShipID, h)
		cancel()
		if err == nil || ctx.Err() != nil {
			return rec, nil
		}
		err = kafkaopt.Explain(err)
		if kafkaopt.IsSecurity(err) {
			return nil, err
		}
		if msg := err.Error(); msg != last {
			f.lg.Warn("cannot read the shipped position back from Kafka; not reading the files until it can (retrying with backoff)", "err", err)
			last = msg
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// saveState writes floors to the state file, if there is one.
func (f *Follower) saveState(floors map[int32]int64) {
	if f.cfg.StateFile == "" {
		return
	}
	if err := saveHint(f.cfg.StateFile, &hint{ShipID: f.cfg.ShipID, Topic: f.cfg.Topic, TopicID: f.topicID, Floors: floors}); err != nil && !f.stateWarned {
		f.stateWarned = true
		f.lg.Warn("cannot write the state file (it only speeds up starts)", "err", err)
	}
}

func (f *Follower) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal
}

// drain waits for the acknowledgements of what was sent.
func (f *Follower) drain() error {
	dctx, cancel := context.WithTimeout(context.Background(), f.cfg.DrainTimeout)
	defer cancel()
	err := f.cl.Flush(dctx)
	f.mu.Lock()
	left := f.seqs.pending()
	fatal := f.fatal
	floors := f.ackedFloors
	f.mu.Unlock()
	if floors != nil {
		f.saveState(floors)
	}
	if fatal != nil {
		return fatal
	}
	if err != nil || left > 0 {
		f.lg.Warn("stopping with lines Kafka has not acknowledged; the next start finds out from Kafka which of them arrived", "lines", left)
	}
	for _, t := range f.files {
		t.file.Close()
	}
	return nil
}

// reportedAcked is HeaderAcked for the next record.
func (f *Follower) reportedAcked() uint64 {
	if f.jumped {
		return uint64(f.seqs.mark)
	}
	return f.recAcked
}

// restore turns what was read back into trackers (DESIGN.md, "Restart").
func (f *Follower) restore(rec *recovery) {
	f.nextSeq = rec.maxSeq
	f.seqs = watermark{mark: int64(rec.maxSeq)}
	f.recAcked = rec.acked
	f.floors = newFloorTracker(rec.floors)
	f.startEnd = rec.ends
	cands := f.candidates()
	defer func() {
		for _, c := range cands {
			if !c.taken {
				c.file.Close()
			}
		}
	}()
	resolve := func(id Identity) *candidate {
		var byContent *candidate
		for _, c := range cands {
			same := c.dev == id.Dev && c.ino == id.Ino
			if id.Matches(c.prefix) || (id.Len == 0 && same) {
				if same {
					return c
				}
				if byContent == nil || c.size > byContent.size {
					byContent = c
				}
			}
		}
		return byContent
	}
	type group struct {
		w, maxNext int64
		skip       map[int64]int64
	}
	groups := map[*candidate]*group{}
	get := func(c *candidate) *group {
		if g := groups[c]; g != nil {
			return g
		}
		g := &group{skip: map[int64]int64{}}
		groups[c] = g
		return g
	}
	for _, m := range rec.marks {
		c := resolve(m.ID)
		if c == nil {
			f.lg.Warn("a file this ship followed is not among the matches any more: lines written to it after its last shipped position were not shipped (rotated out of the patterns, or compressed, while ship was down?)",
				"file", m.ID.String(), "shipped_up_to_byte", m.W)
			continue
		}
		g := get(c)
		g.w = max(g.w, m.W)
	}
	lost := 0
	for _, s := range rec.lines {
		c := resolve(s.File)
		if c == nil {
			lost++
			continue
		}
		g := get(c)
		g.skip[s.Start] = s.Next
		g.maxNext = max(g.maxNext, s.Next)
	}
	if lost > 0 {
		f.lg.Debug("records read back from files no longer matched", "records", lost)
	}
	for c, g := range groups {
		t := &tracker{path: c.path, file: c.file, dev: c.dev, ino: c.ino, prefix: c.prefix, pos: g.w, size: c.size,
			w: watermark{mark: g.w}, skip: map[int64]int64{}, recoverTo: g.w, grewAt: time.Now()}
		for s, n := range g.skip {
			if s >= g.w {
				t.skip[s] = n
				t.skipOrder = append(t.skipOrder, s)
				t.recoverTo = max(t.recoverTo, n)
			}
		}
		sort.Slice(t.skipOrder, func(i, j int) bool { return t.skipOrder[i] < t.skipOrder[j] })
		if c.size < g.w {
			f.lg.Warn("file is shorter than the position shipped from it; waiting for it to grow", "path", c.path, "size", c.size, "position", g.w)
		}
		c.taken = true
		f.files = append(f.files, t)
		f.lg.Info("resuming file", "path", c.path, "at_byte", g.w, "known_in_kafka_beyond", len(t.skip))
	}
	f.adoptNew(cands)
	f.checkJump()
	f.dirty = true
	f.m.setFiles(len(f.files))
}

// candidate is a file the patterns match.
type candidate struct {
	path     string
	file     *os.File
	dev, ino uint64
	size     int64
	prefix   []byte
	taken    bool
}

// matches expands the patterns into paths of regular files, sorted.
func (f *Follower) matches() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range f.cfg.Patterns {
		ms, _ := filepath.Glob(p)
		for _, m := range ms {
			if seen[m] {
				continue
			}
			seen[m] = true
			if compressedName(m) {
				f.skipOnce(m, "compressed (by its name)")
				continue
			}
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

func (f *Follower) skipOnce(path, why string) {
	if !f.skipped[path] {
		f.skipped[path] = true
		f.lg.Info("not following", "path", path, "why", why)
	}
}

var compressedSuffixes = []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".Z"}

func compressedName(p string) bool {
	for _, s := range compressedSuffixes {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

func compressedContent(prefix []byte) bool {
	for _, magic := range [][]byte{{0x1f, 0x8b}, []byte("BZh"), {0xfd, '7', 'z', 'X', 'Z', 0}, {0x28, 0xb5, 0x2f, 0xfd}} {
		if bytes.HasPrefix(prefix, magic) {
			return true
		}
	}
	return false
}

// candidates opens every match that is not followed yet (by inode) and
// reads its beginning. Callers close the files they do not keep.
func (f *Follower) candidates() []*candidate {
	var out []*candidate
	for _, p := range f.matches() {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		dev, ino := inode(fi)
		if f.following(dev, ino) != nil {
			continue
		}
		file, err := os.Open(p)
		if err != nil {
			f.lg.Warn("cannot open", "path", p, "err", err)
			f.m.err("read")
			continue
		}
		fi, err = file.Stat()
		if err != nil {
			file.Close()
			continue
		}
		dev, ino = inode(fi)
		prefix, err := readPrefix(file, fi.Size())
		if err != nil {
			file.Close()
			continue
		}
		if compressedContent(prefix) {
			file.Close()
			f.skipOnce(p, "compressed (by its content)")
			continue
		}
		out = append(out, &candidate{path: p, file: file, dev: dev, ino: ino, size: fi.Size(), prefix: prefix})
	}
	return out
}

// following returns the live tracker of an inode.
func (f *Follower) following(dev, ino uint64) *tracker {
	for _, t := range f.files {
		if !t.detached && t.dev == dev && t.ino == ino {
			return t
		}
	}
	return nil
}

// adoptNew starts following the candidates that are new files: neither
// followed already nor a copy of a followed file's content (a copy in the
// making, or logrotate's copytruncate before the truncation). An empty
// file waits for its first bytes while other files are followed.
func (f *Follower) adoptNew(cands []*candidate) {
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].size > cands[j].size })
	for _, c := range cands {
		if c.taken {
			continue
		}
		alias := false
		for _, t := range f.files {
			if t.detached {
				continue
			}
			if len(c.prefix) == 0 || (len(t.prefix) > 0 && compatible(c.prefix, t.prefix)) {
				alias = true
				break
			}
		}
		if alias {
			continue
		}
		c.taken = true
		t := &tracker{path: c.path, file: c.file, dev: c.dev, ino: c.ino, prefix: c.prefix, size: c.size, skip: map[int64]int64{}, grewAt: time.Now()}
		f.mu.Lock()
		f.files = append(f.files, t)
		f.dirty = true
		f.mu.Unlock()
		f.lg.Info("following new file", "path", c.path, "size", c.size)
	}
}

// round checks the files once and reads what they have; it reports
// whether it read anything.
func (f *Follower) round() bool {
	paths := f.matches()
	byInode := map[[2]uint64]string{}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			dev, ino := inode(fi)
			byInode[[2]uint64{dev, ino}] = p
		}
	}
	for _, t := range f.files {
		if t.detached {
			continue
		}
		if p, ok := byInode[[2]uint64{t.dev, t.ino}]; ok {
			if p != t.path {
				f.lg.Info("file renamed", "from", t.path, "to", p)
				t.path = p
			}
			t.gone = false
		} else if !t.gone {
			t.gone = true
			f.lg.Info("file no longer matched (rotated away or deleted); reading it to its end", "path", t.path)
		}
	}
	progress := false
	for _, t := range f.files {
		if t.detached {
			continue
		}
		if !f.check(t) {
			continue
		}
		if f.read(t) {
			progress = true
		}
	}
	cands := f.candidates()
	f.adoptNew(cands)
	for _, c := range cands {
		if !c.taken {
			c.file.Close()
		}
	}
	f.flushPartials()
	f.prune()
	f.report()
	return progress
}

// check stats t's file and handles truncation. It reports whether t can
// be read.
func (f *Follower) check(t *tracker) bool {
	fi, err := t.file.Stat()
	if err != nil {
		f.m.err("read")
		return false
	}
	size := fi.Size()
	if size == t.size && len(t.prefix) >= FingerprintBytes {
		return true
	}
	// Shrunk since last seen, or no longer starting with its first bytes:
	// the content was truncated or replaced. (Reading may stand past the
	// end: a copy taken before the last lines read was adopted.)
	if size < t.size || !f.samePrefix(t, size) {
		f.truncated(t)
		return !t.detached
	}
	if size > t.size {
		t.grewAt = time.Now()
	}
	t.size = size
	return true
}

// samePrefix re-reads the beginning of t's file: it must still start with
// t.prefix (which grows up to FingerprintBytes as the file does).
func (f *Follower) samePrefix(t *tracker, size int64) bool {
	cur, err := readPrefix(t.file, size)
	if err != nil {
		return true // a read error is not evidence of a new content
	}
	if !bytes.HasPrefix(cur, t.prefix) {
		return false
	}
	if len(cur) > len(t.prefix) {
		f.mu.Lock()
		t.prefix = cur
		f.dirty = true
		f.mu.Unlock()
	}
	return true
}

// truncated handles t's file losing its content in place: logrotate's
// copytruncate (t then follows the copy, if a pattern matches it) or a
// rewrite (t is detached and the new content is a new file).
func (f *Follower) truncated(t *tracker) {
	adopted := false
	cands := f.candidates()
	// The longest copy first. A copy may be shorter than what was read (the
	// server wrote on between logrotate's copy and its truncation): its
	// content is then the beginning of ours.
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].size > cands[j].size })
	for _, c := range cands {
		if !adopted && len(t.prefix) > 0 && len(c.prefix) > 0 && compatible(c.prefix, t.prefix) {
			adopted = true
			f.lg.Info("file truncated in place after being copied (copytruncate): following the copy", "path", t.path, "copy", c.path, "at_byte", t.pos)
			f.mu.Lock()
			t.file.Close()
			t.file, t.path, t.dev, t.ino, t.size, t.prefix = c.file, c.path, c.dev, c.ino, c.size, c.prefix
			t.gone, t.grewAt = false, time.Now()
			f.dirty = true
			f.mu.Unlock()
			continue
		}
		c.file.Close()
	}
	if adopted {
		return
	}
	f.lg.Warn("file truncated or rewritten in place, and no copy of it is among the matches: lines not read before that were lost; its new content is followed as a new file",
		"path", t.path, "read_up_to_byte", t.pos)
	f.m.err("truncated")
	f.flush(t)
	f.mu.Lock()
	t.detached = true
	f.dirty = true
	f.mu.Unlock()
}

// samePrefixNoGrow reports whether t's file still starts with t.prefix.
func (f *Follower) samePrefixNoGrow(t *tracker) bool {
	cur := make([]byte, len(t.prefix))
	n, err := t.file.ReadAt(cur, 0)
	if n < len(cur) && err != nil && !errors.Is(err, io.EOF) {
		return true // a read error is not evidence of a new content
	}
	return bytes.Equal(cur[:n], t.prefix)
}

// read reads up to 1 MiB from t (fairness between files) and sends the
// complete lines. It reports whether it read anything.
func (f *Follower) read(t *tracker) bool {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	readAny := false
	for budget := 16; budget > 0; budget-- {
		n, err := t.file.ReadAt(buf, t.pos)
		if n == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				f.m.err("read")
			}
			break
		}
		// The file must still hold the content t follows: a truncation
		// between the check and this read would mix two contents.
		if len(t.prefix) > 0 && !f.samePrefixNoGrow(t) {
			break // the next round's check finds the truncation
		}
		readAny = true
		t.buf = append(t.buf, buf[:n]...)
		t.pos += int64(n)
		t.bufAt = time.Now()
		if !f.lines(t) {
			return readAny // stopped: a fatal produce error
		}
		if n < chunk {
			break
		}
	}
	return readAny
}

// lines sends the complete lines in t.buf and keeps the rest. It returns
// false when sending must stop.
func (f *Follower) lines(t *tracker) bool {
	base := t.pos - int64(len(t.buf))
	b := t.buf
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		var line []byte
		var n int
		switch {
		case i >= 0 && i < f.cfg.MaxLine:
			line, n = b[:i], i+1
		case len(b) >= f.cfg.MaxLine:
			line, n = b[:f.cfg.MaxLine], f.cfg.MaxLine
			if f.m != nil {
				f.m.long.Inc()
			}
		default:
			t.buf = append(t.buf[:0], b...)
			return true
		}
		resume, ok := f.emit(t, base, base+int64(n), line)
		if !ok {
			return false
		}
		if resume >= 0 {
			// A line read back from Kafka ended elsewhere (it was sent
			// as a partial line): read on from where it ended.
			t.pos, t.buf = resume, t.buf[:0]
			return true
		}
		b, base = b[n:], base+int64(n)
	}
	t.buf = t.buf[:0]
	return true
}

// emit sends one line [start, end) of t, or skips it when Kafka has it.
// resume is -1, or the offset to read on from. ok is false after a fatal
// error.
func (f *Follower) emit(t *tracker, start, end int64, line []byte) (resume int64, ok bool) {
	f.mu.Lock()
	if f.fatal != nil || f.pctx.Err() != nil {
		f.mu.Unlock()
		return -1, false
	}
	cut := int64(-1)
	for len(t.skipOrder) > 0 && t.skipOrder[0] < start {
		t.skipOrder = t.skipOrder[1:] // passed: read past by a resume
	}
	if len(t.skipOrder) > 0 && t.skipOrder[0] > start && t.skipOrder[0] < end {
		// A line in Kafka starts inside this one (an earlier run cut its
		// lines elsewhere: another --max-line, a partial line flushed):
		// send the part before it, then read on from there.
		cut = t.skipOrder[0]
		end, line = cut, line[:cut-start]
	}
	if next, found := t.skip[start]; found {
		delete(t.skip, start)
		t.skipOrder = t.skipOrder[1:]
		t.w.push(next, true)
		f.checkJump()
		f.mu.Unlock()
		if f.m != nil {
			f.m.skipped.Inc()
		}
		if next != end {
			return next, true
		}
		return -1, true
	}
	val := bytes.TrimSuffix(line, []byte{'\r'})
	if len(bytes.TrimSpace(val)) == 0 {
		t.w.push(end, true)
		f.checkJump()
		f.mu.Unlock()
		return cut, true
	}
	f.nextSeq++
	seq := f.nextSeq
	sit := f.seqs.push(int64(seq), false)
	fit := t.w.push(end, false)
	hdrs, floors := f.headers(t, seq, start, end)
	r := &kgo.Record{Value: append([]byte(nil), val...), Headers: hdrs}
	f.mu.Unlock()
	r.Key = f.keyer.Key(r.Value)
	f.backpressure()
	f.cl.Produce(f.pctx, r, func(r *kgo.Record, err error) { f.acked(t, fit, sit, seq, floors, r, err) })
	f.m.sent(t.path, len(val))
	return cut, true
}

// backpressure notes, once per episode, that the buffer of unacknowledged
// lines is full: Produce then waits, and so does reading.
func (f *Follower) backpressure() {
	full := f.cl.BufferedProduceRecords() >= int64(f.maxBuffered())
	if full == f.blocked {
		return
	}
	f.blocked = full
	f.m.setBlocked(full)
	if full {
		f.mu.Lock()
		lags := make([]any, 0, 2*len(f.files))
		for _, t := range f.files {
			lags = append(lags, t.path, t.size-t.w.mark)
		}
		f.mu.Unlock()
		f.lg.Warn("Kafka is not acknowledging lines fast enough: the buffer is full and reading waits (nothing is dropped); lag in bytes per file:", lags...)
	} else {
		f.lg.Info("Kafka acknowledges again; reading resumes")
	}
}

// goneGrace is how long a file no pattern matches any more must stay
// unchanged before it is closed.
const goneGrace = 5 * time.Second

func (f *Follower) maxBuffered() int { return f.cfg.MaxBuffered }

// headers builds a record's headers, and returns the floors it lists if
// it lists the files; f.mu is held.
func (f *Follower) headers(t *tracker, seq uint64, start, end int64) ([]kgo.RecordHeader, map[int32]int64) {
	h := []kgo.RecordHeader{
		{Key: HeaderShipID, Value: []byte(f.cfg.ShipID)},
		{Key: HeaderSeq, Value: strconv.AppendUint(nil, seq, 10)},
		{Key: HeaderAcked, Value: strconv.AppendUint(nil, f.reportedAcked(), 10)},
		{Key: HeaderFile, Value: []byte(t.identity().String())},
		{Key: HeaderOffset, Value: strconv.AppendInt(nil, start, 10)},
		{Key: HeaderNext, Value: strconv.AppendInt(nil, end, 10)},
		{Key: HeaderPath, Value: []byte(t.path)},
	}
	f.since++
	var floors map[int32]int64
	if f.dirty || f.since >= 64 || time.Since(f.marksAt) >= time.Second {
		ms := make([]fileMark, 0, len(f.files))
		for _, o := range f.files {
			ms = append(ms, fileMark{ID: o.identity(), W: o.w.mark})
		}
		floors = f.floors.snapshot()
		h = append(h, kgo.RecordHeader{Key: HeaderFiles, Value: []byte(encodeMarks(ms))},
			kgo.RecordHeader{Key: HeaderFloors, Value: []byte(encodeFloors(floors))})
		f.dirty, f.since, f.marksAt = false, 0, time.Now()
	}
	return h, floors
}

// acked is the promise of a line's record.
func (f *Follower) acked(t *tracker, fit, sit *mitem, seq uint64, floors map[int32]int64, r *kgo.Record, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.fatal == nil && !(errors.Is(err, context.Canceled) && f.pctx.Err() != nil) {
			f.fatal = fmt.Errorf("kafka: refused a line of %s: %w", t.path, err)
			f.m.err("produce")
		}
		return
	}
	t.w.ack(fit)
	f.seqs.ack(sit)
	if floors != nil {
		f.ackedFloors = floors
	}
	f.floors.add(r.Partition, seq, r.Offset)
	f.checkJump()
	f.floors.advance(f.reportedAcked())
	f.m.ack()
}

// checkJump moves HeaderAcked from the value read back to this run's own
// once every line of the earlier runs is known to be in Kafka; f.mu is
// held (or the Follower not yet running).
func (f *Follower) checkJump() {
	if f.jumped {
		return
	}
	for _, t := range f.files {
		if !t.detached && t.w.mark < t.recoverTo {
			return
		}
	}
	f.jumped = true
	for p, e := range f.startEnd {
		f.floors.floor[p] = max(f.floors.floor[p], e-1)
	}
	f.floors.advance(f.reportedAcked())
	f.dirty = true
}

// flushPartials sends last lines that waited PartialTimeout for their
// newline.
func (f *Follower) flushPartials() {
	if f.cfg.PartialTimeout <= 0 {
		return
	}
	for _, t := range f.files {
		if len(t.buf) > 0 && !t.detached && time.Since(t.bufAt) >= f.cfg.PartialTimeout {
			f.flush(t)
		}
	}
}

// flush sends t's partial line as it is.
func (f *Follower) flush(t *tracker) {
	if len(t.buf) == 0 {
		return
	}
	start := t.pos - int64(len(t.buf))
	line := append([]byte(nil), t.buf...)
	t.buf = t.buf[:0]
	if resume, _ := f.emit(t, start, t.pos, line); resume >= 0 {
		t.pos = resume
	}
	if f.m != nil {
		f.m.partial.Inc()
	}
}

// prune stops following files that are gone or detached, read to their
// end and acknowledged.
func (f *Follower) prune() {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.files[:0]
	for _, t := range f.files {
		// A file rotated away may still be written to until the server
		// reopens its logs: it is read until it stops growing.
		idle := time.Since(t.grewAt) >= max(goneGrace, f.cfg.PartialTimeout)
		done := len(t.buf) == 0 && t.w.pending() == 0 && (t.detached || (t.gone && t.pos >= t.size && idle))
		if done {
			t.file.Close()
			f.dirty = true
			f.lg.Info("stopped following", "path", t.path, "shipped_bytes", t.w.mark)
			continue
		}
		kept = append(kept, t)
	}
	for i := len(kept); i < len(f.files); i++ {
		f.files[i] = nil
	}
	f.files = kept
}

// report updates the file count.
func (f *Follower) report() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m.setFiles(len(f.files))
}

// FileLag is one followed file and the bytes of it Kafka has not
// acknowledged.
type FileLag struct {
	Path string
	Lag  int64
}

// Lags returns the files followed and their lag now: the file's size
// (asked of the file system) less what Kafka acknowledged.
func (f *Follower) Lags() []FileLag {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []FileLag
	for _, t := range f.files {
		if t.detached {
			continue
		}
		size := t.size
		if fi, err := t.file.Stat(); err == nil {
			size = fi.Size()
		}
		out = append(out, FileLag{Path: t.path, Lag: max(0, size-t.w.mark)})
	}
	return out
}
