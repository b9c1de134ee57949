package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
)

func runAnalyze(args []string) error {
	fs := newFlags("analyze", "FILE... [--log-format F] [--json] [--from T] [--to T] [--top N]")
	logFormat := fs.String("log-format", "", "a preset ("+strings.Join(accesslog.PresetNames, ", ")+"), json:FIELD=KEY,..., or an Apache LogFormat string; detected from the first lines when empty")
	asJSON := fs.Bool("json", false, "print the document GET /v1/stats returns")
	from := fs.String("from", "", "only requests at or after this time (RFC 3339, or 2006-01-02[T15:04])")
	to := fs.String("to", "", "only requests before this time")
	top := fs.Int("top", analytics.DefaultTop, "rows per top list; 0 for all")
	retention := fs.Duration("retention", 0, "keep only this much event time back from the newest request; 0 keeps all")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "parsing goroutines")
	quiet := fs.Bool("quiet", false, "no progress bar or format report on stderr")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fmt.Fprintf(os.Stderr, "%s: name at least one log file, or - for standard input (run '%s -h' for usage)\n", fs.Name(), fs.Name())
		return errUsage
	}
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
	if *workers < 1 {
		return fmt.Errorf("--workers %d: want 1 or more", *workers)
	}

	an := &analyzer{workers: *workers, showProgress: !*quiet && isTerminal(os.Stderr)}
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
	if !*quiet && an.detected != "" {
		fmt.Fprintln(os.Stderr, an.detected)
	}
	st := store.Stats(q)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printReport(os.Stdout, files, an, st)
	return nil
}

// parseInterspersed parses flags that may come after the file names.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
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
	buf   []byte
	first int64 // line number of the chunk's first line
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
	}

	chunks := make(chan chunk, an.workers*2)
	pool := sync.Pool{New: func() any { b := make([]byte, 0, chunkSize+64<<10); return &b }}
	aggs := make([]*analytics.Aggregate, an.workers)
	var wg sync.WaitGroup
	for i := range aggs {
		aggs[i] = analytics.NewAggregate()
		wg.Add(1)
		go func(a *analytics.Aggregate) {
			defer wg.Done()
			folder := analytics.NewFolder(an.format)
			for c := range chunks {
				an.foldChunk(name, folder, a, c)
				b := c.buf[:0]
				pool.Put(&b)
			}
		}(aggs[i])
	}
	bar := newProgress(name, size, an.showProgress && size > 0)
	var read, lineNo int64
	var carry []byte
	var readErr error
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
			chunks <- chunk{buf: buf[:end], first: lineNo + 1}
			lineNo += int64(bytes.Count(buf[:end], []byte{'\n'}))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				readErr = fmt.Errorf("read %s: %w", name, err)
			}
			break
		}
		if len(carry) >= chunkSize { // one line longer than a chunk
			chunks <- chunk{buf: append([]byte(nil), carry...), first: lineNo + 1}
			lineNo++
			carry = carry[:0]
		}
	}
	if len(carry) > 0 {
		chunks <- chunk{buf: carry, first: lineNo + 1}
	}
	close(chunks)
	wg.Wait()
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

func (an *analyzer) foldChunk(name string, folder *analytics.Folder, a *analytics.Aggregate, c chunk) {
	buf := c.buf
	no := c.first
	var lines int64
	for len(buf) > 0 {
		i := bytes.IndexByte(buf, '\n')
		var line []byte
		if i < 0 {
			line, buf = buf, nil
		} else {
			line, buf = buf[:i], buf[i+1:]
		}
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			no++
			continue // blank lines are not requests, nor malformed
		}
		lines++
		if err := folder.Fold(a, line); err != nil {
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
		no++
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
