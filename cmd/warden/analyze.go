package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
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
	fs.StringVar(&o.logFormat, "log-format", "", "a preset ("+strings.Join(accesslog.PresetNames, ", ")+"), json:FIELD=KEY,..., or an Apache LogFormat string; detected from the first lines when empty")
	fs.BoolVar(&o.asJSON, "json", false, "print the document GET /v1/stats returns")
	fs.StringVar(&o.from, "from", "", "only requests at or after this time (RFC 3339, or 2006-01-02[T15:04])")
	fs.StringVar(&o.to, "to", "", "only requests before this time")
	fs.IntVar(&o.top, "top", analytics.DefaultTop, "rows per top list; 0 for all")
	fs.DurationVar(&o.retention, "retention", 0, "keep only this much event time back from the newest request; 0 keeps all")
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
	retention                           time.Duration
	allow                               *listFlag
}

func (o *analyzeFlags) run(files []string) error {
	logFormat, asJSON, from, to, top, retention, workers, quiet, doc, rulesFile, allow :=
		&o.logFormat, &o.asJSON, &o.from, &o.to, &o.top, &o.retention, &o.workers, &o.quiet, &o.doc, &o.rulesFile, o.allow.vals
	var err error
	q := analytics.Query{Top: *top}
	if *top == 0 {
		q.Top = -1
	} else if *top < 0 {
		return fmt.Errorf("--top %d: want 0 (all) or more", *top)
	}
	if q.From, err = parseTimeFlag("from", *from); err != nil {
		return err
	}
	if q.To, err = parseTimeFlag("to", *to); err != nil {
		return err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return fmt.Errorf("--to %s is not after --from %s", *to, *from)
	}
	cfg := analytics.Config{Retention: *retention}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("--retention: %w", err)
	}
	if *doc != "stats" && *doc != "alerts" && *doc != "decisions" {
		return fmt.Errorf("--doc %q: want stats, alerts or decisions", *doc)
	}
	if *workers < 1 {
		return fmt.Errorf("--workers %d: want 1 or more", *workers)
	}

	an := &analyzer{workers: *workers, showProgress: !*quiet && isTerminal(os.Stderr), showDetected: !*quiet}
	if an.rules, err = loadRules(*rulesFile); err != nil {
		return err
	}
	// The stats document needs no detection: skip it then.
	an.detect = !*asJSON || *doc != "stats" || o.explain != ""
	an.detector = detect.NewDetector(an.rules, 0, nil)
	an.detector.Offline = true
	var explain *detect.Explainer
	if o.explain != "" {
		explain = &detect.Explainer{IP: o.explain, Rules: an.rules,
			Parse: func(l []byte, e *accesslog.Entry) error { return an.format.Parse(l, e) }}
		an.detector.Trace(o.explain, explain.Step)
	}
	an.book = detect.NewBook(detect.DefaultBookConfig())
	an.book.Keep = -1 // one process over files: every alert
	if err := an.book.SetConfig(detect.BookConfig{Allow: allow, MaxEscalation: 4, MaxBan: "720h", Simulate: o.simulate}); err != nil {
		return fmt.Errorf("--allow: %w", err)
	}
	if *logFormat != "" {
		if an.format, err = accesslog.Lookup(*logFormat); err != nil {
			return fmt.Errorf("--log-format: %w", err)
		}
	}
	store := analytics.NewStore(cfg)
	for _, name := range files {
		if err := an.file(name, store); err != nil {
			return err
		}
	}
	if explain != nil {
		explain.Write(os.Stdout, an.book)
		return nil
	}
	st := store.Stats(q)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		switch *doc {
		case "alerts":
			return enc.Encode(an.book.AlertsSince(q.From))
		case "decisions":
			return enc.Encode(detect.DecisionViews(an.book.AllDecisions(), time.Now()))
		}
		return enc.Encode(st)
	}
	printReport(os.Stdout, files, an, st)
	printDetections(os.Stdout, an.book)
	return nil
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

// analyzer runs the pipeline over files: a reader cuts each input into
// chunks of whole lines, and workers fold chunks into their own Aggregates,
// which are merged at the end (the merge is order-independent).
type analyzer struct {
	format       *accesslog.Format
	detected     string
	workers      int
	showProgress bool
	showDetected bool

	detect   bool
	rules    *detect.Rules
	detector *detect.Detector
	book     *detect.Book
	offset   int64 // line index over all inputs: the offline "offset"

	mu       sync.Mutex
	lines    int64
	bad      []badLine
	badCount int64
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
	pool  *[]byte
	// Filled by a worker: the chunk's requests as the detector sees them.
	events  []detect.Event
	matches []detect.Match
	ips     []byte
}

const chunkSize = 1 << 20

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

func (an *analyzer) file(name string, store *analytics.Store) error {
	in, size, err := openInput(name)
	if err != nil {
		return err
	}
	defer in.Close()
	br := bufio.NewReaderSize(in, chunkSize)
	if an.format == nil {
		head, _ := br.Peek(256 << 10)
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
		an.format = d.Format
		an.detected = fmt.Sprintf("%s: %s", name, d)
		if an.showDetected {
			fmt.Fprintln(os.Stderr, an.detected)
		}
	}

	// Workers parse chunks in any order (figures merge in any order) and
	// evaluate the scenarios' filters; the sequencer pours the events into
	// the buckets in input order, which is all the detector needs in order.
	todo := make(chan *chunk, an.workers*2)
	done := make(chan *chunk, an.workers*2)
	pool := sync.Pool{New: func() any { b := make([]byte, 0, chunkSize+64<<10); return &b }}
	aggs := make([]*analytics.Aggregate, an.workers)
	var wg sync.WaitGroup
	for i := range aggs {
		aggs[i] = analytics.NewAggregate()
		wg.Add(1)
		go func(a *analytics.Aggregate) {
			defer wg.Done()
			folder := analytics.NewFolder(an.format)
			for c := range todo {
				an.foldChunk(name, folder, a, c)
				done <- c
			}
		}(aggs[i])
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
				for i := range w.events {
					an.detector.Pour(&w.events[i])
				}
				for _, a := range an.detector.TakeAlerts() {
					an.book.AddAlert(a, an.rules.Scenario(a.Scenario))
				}
				if w.pool != nil {
					*w.pool = w.buf[:0]
					pool.Put(w.pool)
				}
			}
		}
	}()

	bar := newProgress(name, size, an.showProgress && size > 0)
	var read, lineNo int64
	var carry []byte
	var readErr error
	seq := 0
	send := func(buf []byte, bp *[]byte) {
		c := &chunk{seq: seq, buf: buf, first: lineNo + 1, base: an.offset, pool: bp}
		seq++
		n := int64(bytes.Count(buf, []byte{'\n'}))
		if len(buf) > 0 && buf[len(buf)-1] != '\n' {
			n++
		}
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
	for _, a := range aggs {
		if err := store.Merge(a); err != nil {
			return err
		}
	}
	return nil
}

func (an *analyzer) foldChunk(name string, folder *analytics.Folder, a *analytics.Aggregate, c *chunk) {
	buf := c.buf
	no := c.first
	off := c.base
	var lines int64
	var ev detect.Event
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
		parsed, err := folder.Fold(a, line)
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
		if parsed {
			lines++
		}
		if parsed && an.detect {
			e := folder.Entry()
			an.rules.Evaluate(e, line, off, &ev)
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

// printReport writes the terminal report.
func printReport(w io.Writer, files []string, an *analyzer, st *analytics.Stats) {
	fmt.Fprintf(w, "Warden analysis of %s (log format %s)\n\n", strings.Join(files, ", "), an.format.Name())
	if st.From != "" {
		fmt.Fprintf(w, "  Period       %s  to  %s\n", st.From, st.To)
	}
	fmt.Fprintf(w, "  Requests     %s", commas(st.Requests))
	if st.Malformed > 0 {
		fmt.Fprintf(w, "   (malformed lines: %s)", commas(st.Malformed))
	}
	fmt.Fprintln(w)
	if st.ExpiredRequests > 0 {
		fmt.Fprintf(w, "  Expired      %s requests before %s (outside --retention)\n", commas(st.ExpiredRequests), st.RetainedFrom)
	}
	fmt.Fprintf(w, "  Bandwidth    %s (%s bytes)\n", human(st.Bytes), commas(st.Bytes))
	fmt.Fprintf(w, "  Unique IPs   %s (HyperLogLog estimate)\n", commas(int64(st.UniqueIPs)))
	if l := st.LatencyMs; l != nil {
		fmt.Fprintf(w, "  Latency ms   p50 %.1f   p90 %.1f   p99 %.1f   max %.1f\n", l.P50, l.P90, l.P99, l.Max)
	} else {
		fmt.Fprintf(w, "  Latency      not in this log format (add %%D to log it)\n")
	}
	fmt.Fprintf(w, "\n  Status       ")
	for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
		if n := st.StatusClass[c]; n > 0 {
			fmt.Fprintf(w, "%s %s (%.1f%%)   ", c, commas(n), pct(n, st.Requests))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "               ")
	for i, k := range sortedKeys(st.Status) {
		if i > 0 && i%6 == 0 {
			fmt.Fprintf(w, "\n               ")
		}
		fmt.Fprintf(w, "%s %-9s", k, commas(st.Status[k]))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  Methods      ")
	for _, k := range sortedKeys(st.Methods) {
		fmt.Fprintf(w, "%s %s   ", k, commas(st.Methods[k]))
	}
	fmt.Fprintln(w)
	for _, l := range []struct {
		title string
		rows  []analytics.KeyCount
	}{{"Top paths", st.TopPaths}, {"Top 404 paths", st.Top404Paths}, {"Top client IPs", st.TopIPs},
		{"Top user agents", st.TopUserAgents}, {"Top referrers", st.TopReferrers}} {
		fmt.Fprintf(w, "\n  %s\n", l.title)
		if len(l.rows) == 0 {
			fmt.Fprintf(w, "    (none)\n")
		}
		for _, r := range l.rows {
			k := r.Key
			if len(k) > 90 {
				k = k[:87] + "..."
			}
			fmt.Fprintf(w, "    %10s  %5.1f%%  %s\n", commas(r.Count), pct(r.Count, st.Requests), k)
		}
	}
	printHours(w, st)
	if an.badCount > 0 {
		fmt.Fprintf(w, "\n  Malformed lines: %s; the first ones:\n", commas(an.badCount))
		for _, b := range an.bad {
			fmt.Fprintf(w, "    %s:%d: %s: %s\n", b.file, b.line, b.reason, b.text)
		}
	}
}

// printHours prints requests per hour with a bar each.
func printHours(w io.Writer, st *analytics.Stats) {
	type hour struct {
		t       string
		n, errs int64
	}
	var hours []hour
	for _, p := range st.Series {
		h := p.T[:13] + ":00"
		if len(hours) == 0 || hours[len(hours)-1].t != h {
			hours = append(hours, hour{t: h})
		}
		hours[len(hours)-1].n += p.Requests
		hours[len(hours)-1].errs += p.StatusClass["5xx"]
	}
	if len(hours) == 0 {
		return
	}
	var peak int64
	for _, h := range hours {
		peak = max(peak, h.n)
	}
	fmt.Fprintf(w, "\n  Requests per hour (UTC)\n")
	const width = 40
	for _, h := range hours {
		n := int(float64(h.n) / float64(peak) * width)
		if n == 0 && h.n > 0 {
			n = 1
		}
		fmt.Fprintf(w, "    %s  %-*s %8s", strings.Replace(h.t, "T", " ", 1), width, strings.Repeat("█", n), commas(h.n))
		if h.errs > 0 {
			fmt.Fprintf(w, "  (5xx %s)", commas(h.errs))
		}
		fmt.Fprintln(w)
	}
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func pct(n, total int64) float64 {
	if total == 0 {
		return 0
	}
	return float64(n) * 100 / float64(total)
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// loadRules reads the rule file (if any) over the built-in scenarios.
func loadRules(path string) (*detect.Rules, error) {
	if path == "" {
		return detect.Builtin()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	r, err := detect.Parse(detect.BuiltinYAML(), b)
	if err != nil {
		return nil, fmt.Errorf("--rules %s: %w", path, err)
	}
	return r, nil
}

// printDetections writes the alerts and decisions part of the report.
func printDetections(w io.Writer, b *detect.Book) {
	alerts := b.AlertsSince(time.Time{})
	fmt.Fprintf(w, "\n  Alerts: %d\n", len(alerts))
	by := map[string]int{}
	for _, a := range alerts {
		by[a.Scenario]++
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return by[names[i]] > by[names[j]] || by[names[i]] == by[names[j]] && names[i] < names[j]
	})
	for _, n := range names {
		fmt.Fprintf(w, "    %6d  %s\n", by[n], n)
	}
	const show = 20
	if len(alerts) > 0 {
		fmt.Fprintf(w, "\n    %-20s  %-30s  %-16s  %6s  %s\n", "LAST SEEN", "SCENARIO", "SOURCE", "EVENTS", "ID")
		for i, a := range alerts {
			if i == show {
				fmt.Fprintf(w, "    ... %d more (warden analyze --json --doc alerts)\n", len(alerts)-show)
				break
			}
			fmt.Fprintf(w, "    %-20s  %-30s  %-16s  %6d  %s\n", a.LastSeen, a.Scenario, a.SourceIP, a.Events, a.ID)
		}
	}
	ds := b.AllDecisions()
	fmt.Fprintf(w, "\n  Decisions: %d\n", len(ds))
	if len(ds) > 0 {
		fmt.Fprintf(w, "    %-5s  %-7s  %-18s  %-30s  %-20s  %s\n", "ID", "TYPE", "VALUE", "SCENARIO", "UNTIL", "")
		for i, d := range ds {
			if i == show {
				fmt.Fprintf(w, "    ... %d more (warden analyze --json --doc decisions)\n", len(ds)-show)
				break
			}
			state := "expired"
			if d.Active(time.Now()) {
				state = "active"
			} else if d.Simulated {
				state = "simulated"
			}
			fmt.Fprintf(w, "    %-5d  %-7s  %-18s  %-30s  %-20s  %s\n", d.ID, d.Type, d.Value, d.Scenario, time.Unix(0, d.Until).UTC().Format(time.RFC3339), state)
		}
	}
}
