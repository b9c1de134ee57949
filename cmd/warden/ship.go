package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/internal/kafkaopt"
	"github.com/wardenhq/warden/shipper"
)

// shipFlags are the settings of `warden ship`.
type shipFlags struct {
	brokers        *listFlag
	topic          string
	quiet          bool
	timeout        time.Duration
	logFormat      string
	follow         bool
	shipID         string
	pollInterval   time.Duration
	partialTimeout time.Duration
	maxLine        int
	bufferLines    int
	settle         time.Duration
	metricsAddr    string
	stateFile      string
	syslog         *listFlag
	level          string
	kafka          kafkaFlags
	printConfig    *bool
}

func newShipCmd() *cobra.Command {
	host, _ := os.Hostname()
	o := &shipFlags{brokers: newList("127.0.0.1:9092"), syslog: newList()}
	c := &cobra.Command{
		Use:   "ship [FILE...|-] | --follow FILE|GLOB... | --listen-syslog URL --brokers LIST --topic T",
		Short: "Send access-log lines into Kafka, keyed by client IP",
		Long: `Send access-log lines into Kafka, keyed by the client address of each
parsed line (--log-format), with an idempotent producer.

Without --follow: reads the files in order (- or none: standard input, until
it closes, as an Apache piped log does), then exits. A broker that cannot be
reached, or lines Kafka does not acknowledge, within --timeout end the command
with a non-zero exit saying how many lines were not delivered.

With --follow: follows the files and globs like 'tail -F' (new lines as they
are written; rotation by rename-and-create and by copytruncate; files that
appear later; a last line without its newline held until it comes, or sent
after --partial-timeout) until SIGTERM, exactly once across its own restarts
and crashes: every record names its file and byte offset in headers, and at
start ship reads its last records back from the topic (those with its
--ship-id) to learn where each file stands, whatever happened to the files
meanwhile. Two ship processes writing to one topic need different
--ship-id. While Kafka is unreachable ship reads into a buffer of
--buffer-lines lines, then waits (nothing is dropped); --metrics-addr serves
lines, bytes, per-file lag in bytes and errors for Prometheus.

With --listen-syslog udp://HOST:PORT or tcp://HOST:PORT (repeatable, and
with --follow or alone): receives RFC 3164 and RFC 5424 messages, such as
nginx's 'access_log syslog:server=HOST:PORT', and ships their payload, the
log line (the sender's host and app go into headers). TCP takes
octet-counted and newline framing. Syslog is AT MOST ONCE: over UDP a
datagram the socket buffer has no room for is lost (the kernel's count is
exported as warden_ship_syslog_dropped_total{reason="kernel"}), and neither
UDP nor TCP syslog has acknowledgements, so messages in flight when ship
stops are lost. For exactly once, log to a file and use --follow.`,
		RunE: func(c *cobra.Command, files []string) error {
			if *o.printConfig {
				printConfig(c)
				return nil
			}
			return o.run(files)
		},
	}
	fs := c.Flags()
	fs.Var(o.brokers, "brokers", "Kafka seed brokers, comma-separated")
	fs.StringVar(&o.topic, "topic", "access-logs", "topic to write to")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up when Kafka cannot be reached, or does not acknowledge a line, for this long (with --follow: the longest wait for acknowledgements at stop)")
	fs.StringVar(&o.logFormat, "log-format", "auto", "how to find each line's client, the record key: auto (each line by the first format that reads it), a preset ("+strings.Join(accesslog.PresetNames, ", ")+"), json:FIELD=KEY,..., syslog+FORMAT or an Apache LogFormat string; a line that does not parse is sent without a key")
	fs.BoolVar(&o.follow, "follow", false, "follow the files and globs given, like tail -F, exactly once across restarts (see above)")
	fs.StringVar(&o.shipID, "ship-id", host, "with --follow: this shipper's name in its records; a restart reads back only its own, so give each ship writing to one topic its own id")
	fs.DurationVar(&o.pollInterval, "poll-interval", 250*time.Millisecond, "with --follow: how often idle files are checked for new lines, rotation and new files")
	fs.DurationVar(&o.partialTimeout, "partial-timeout", 5*time.Second, "with --follow: send a last line that has no newline after this long (0: wait for the newline)")
	fs.IntVar(&o.maxLine, "max-line", 64<<10, "longest line in bytes: with --follow longer lines are sent in pieces; a longer syslog message is dropped and counted")
	fs.IntVar(&o.bufferLines, "buffer-lines", 10000, "lines sent and not yet acknowledged by Kafka; when full, reading waits")
	fs.DurationVar(&o.settle, "restart-settle", time.Second, "with --follow: wait this long at start before reading the position back, so that what a killed predecessor left on the wire has landed")
	fs.StringVar(&o.stateFile, "state-file", "", "with --follow: a local file that only speeds up starts on a busy shared topic, by bounding how far back ship reads its records (the position itself always comes from Kafka)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "with --follow or --listen-syslog: host:port to serve Prometheus metrics on (/metrics): lines, bytes, per-file lag, errors, dropped datagrams")
	fs.Var(o.syslog, "listen-syslog", "receive syslog messages on udp://HOST:PORT or tcp://HOST:PORT (repeatable; at most once, see above)")
	fs.StringVar(&o.level, "log-level", "info", "debug, info, warn or error (with --follow or --listen-syslog)")
	o.kafka.add(fs)
	o.printConfig = addConfigFlags(fs)
	shipOf[c] = o
	return c
}

// check validates the settings without connecting.
func (o *shipFlags) check() error {
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.timeout)
	}
	if len(o.brokers.vals) == 0 {
		return fmt.Errorf("--brokers is required")
	}
	if o.topic == "" {
		return fmt.Errorf("--topic is required")
	}
	if _, err := shipper.NewKeyer(o.logFormat); err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	if o.bufferLines < 1 {
		return fmt.Errorf("--buffer-lines must be at least 1, got %d", o.bufferLines)
	}
	if o.follow {
		cfg := o.followConfig(nil, nil, nil)
		cfg.Patterns = []string{"x"}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("--follow: %w", err)
		}
	}
	if _, err := newLogger(o.level); err != nil {
		return err
	}
	_, err := o.kafka.options(func(string) {})
	return err
}

func (o *shipFlags) followConfig(patterns []string, base []kgo.Opt, m *shipper.Metrics) shipper.FollowConfig {
	cfg := shipper.DefaultFollowConfig()
	cfg.Patterns, cfg.Topic, cfg.ShipID, cfg.LogFormat = patterns, o.topic, o.shipID, o.logFormat
	cfg.PollInterval, cfg.PartialTimeout, cfg.MaxLine, cfg.Settle = o.pollInterval, o.partialTimeout, o.maxLine, o.settle
	cfg.DrainTimeout, cfg.MaxBuffered, cfg.ClientOpts, cfg.Metrics = o.timeout, o.bufferLines, base, m
	cfg.StateFile = o.stateFile
	return cfg
}

// runLong runs the long-lived sources (--follow, --listen-syslog) until
// SIGTERM.
func (o *shipFlags) runLong(patterns []string) error {
	lg, err := newLogger(o.level)
	if err != nil {
		return err
	}
	switch {
	case o.follow && len(patterns) == 0:
		return fmt.Errorf("--follow needs the files or globs to follow")
	case !o.follow && len(patterns) > 0:
		return fmt.Errorf("files given with --listen-syslog: add --follow to follow them")
	}
	for _, p := range patterns {
		if p == "-" {
			return fmt.Errorf("--follow follows files; for standard input run ship without --follow")
		}
	}
	kopts, err := o.kafka.options(func(w string) { lg.Warn(w) })
	if err != nil {
		return err
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(o.brokers.vals...)}, kopts...)
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), base...),
		kgo.DefaultProduceTopic(o.topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(5*time.Millisecond),
		// Backpressure: with this many lines unacknowledged, Produce waits.
		kgo.MaxBufferedRecords(o.bufferLines),
		// Never give a line up: the idempotent producer retries until
		// Kafka takes it; a stop leaves it to the read-back at next start.
		kgo.UnknownTopicRetries(-1),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	m := shipper.NewMetrics()
	m.WatchBuffered(cl.BufferedProduceRecords)
	var listeners []*shipper.Syslog
	for _, u := range o.syslog.vals {
		l, err := shipper.ListenSyslog(shipper.SyslogConfig{URL: u, ShipID: o.shipID, LogFormat: o.logFormat, MaxMessage: o.maxLine, StopTimeout: o.timeout, Logger: lg, Metrics: m}, cl)
		if err != nil {
			return fmt.Errorf("--listen-syslog: %w", err)
		}
		listeners = append(listeners, l)
	}
	if o.metricsAddr != "" {
		stopMetrics, err := serveMetrics(o.metricsAddr, m, lg)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(sigCtx)
	defer cancel()
	errs := make(chan error, len(listeners)+1)
	running := 0
	run := func(f func(context.Context) error) {
		running++
		go func() {
			err := f(ctx)
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	if o.follow {
		cfg := o.followConfig(patterns, base, m)
		cfg.Logger = lg
		f, err := shipper.NewFollower(cfg, cl)
		if err != nil {
			return fmt.Errorf("--follow: %w", err)
		}
		lg.Info("following", "patterns", patterns, "topic", o.topic, "ship_id", o.shipID)
		run(f.Run)
	}
	for _, l := range listeners {
		run(l.Serve)
	}
	var first error
	for i := 0; i < running; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if len(listeners) > 0 {
		fctx, fcancel := context.WithTimeout(context.Background(), o.timeout)
		if err := cl.Flush(fctx); err != nil && first == nil {
			lg.Warn("stopping with syslog lines Kafka has not acknowledged", "lines", cl.BufferedProduceRecords())
		}
		fcancel()
	}
	if first != nil {
		return first
	}
	lg.Info("stopped")
	return nil
}

// serveMetrics serves m on addr until the returned function is called.
func serveMetrics(addr string, m *shipper.Metrics, lg *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lg.Error("metrics server stopped", "err", err)
		}
	}()
	lg.Info("serving metrics", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

func (o *shipFlags) run(files []string) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.follow || len(o.syslog.vals) > 0 {
		return o.runLong(files)
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, f := range files {
		if f == "-" {
			continue
		}
		if fi, err := os.Stat(f); err != nil {
			return fmt.Errorf("cannot read %s: %w", f, err)
		} else if fi.IsDir() {
			return fmt.Errorf("%s is a directory, not a log file", f)
		}
	}
	kopts, err := o.kafka.options(func(w string) { fmt.Fprintf(os.Stderr, "warden ship: WARNING: %s\n", w) })
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.brokers.vals...),
		kgo.DefaultProduceTopic(o.topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.MaxBufferedRecords(100000),
		// An idempotent producer retries without loss or repetition; a
		// record not acknowledged within the timeout fails and is counted.
		kgo.RecordDeliveryTimeout(o.timeout),
		kgo.ProduceRequestTimeout(min(o.timeout, 10*time.Second)),
	}, kopts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A broker that is down or restarting may come back: try until the timeout.
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	for err = cl.Ping(pctx); err != nil && pctx.Err() == nil && !kafkaopt.IsSecurity(err); err = cl.Ping(pctx) {
		select {
		case <-pctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("brokers %s unreachable for %s (%v): no lines delivered", o.brokers, o.timeout, kafkaopt.Explain(err))
	}

	var sent, failed atomic.Int64
	var firstErr atomic.Pointer[error] // of any type: atomic.Value would panic on a second type
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, &err)
			return
		}
		sent.Add(1)
	}
	for _, f := range files {
		keyer, _ := shipper.NewKeyer(o.logFormat)
		if err := o.shipOne(ctx, cl, f, keyer, promise); err != nil {
			return err
		}
	}
	// The flush outlives a stop signal: what was read is delivered.
	fctx, fcancel := context.WithTimeout(context.Background(), o.timeout)
	defer fcancel()
	if err := cl.Flush(fctx); err != nil {
		return fmt.Errorf("%d lines not acknowledged by Kafka within --timeout %s", cl.BufferedProduceRecords(), o.timeout)
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d lines not delivered (%d delivered): Kafka did not acknowledge them within --timeout %s: %v", n, sent.Load(), o.timeout, *firstErr.Load())
	}
	fmt.Fprintf(os.Stderr, "shipped %d lines to %s\n", sent.Load(), o.topic)
	return nil
}

// stdinGrace is how long standard input is still read after SIGTERM: a
// web server stopping (Apache signals its piped loggers as it closes their
// pipes) has written its last lines by then.
const stdinGrace = 2 * time.Second

// shipOne ships one file, or standard input ("-") until it closes. A stop
// signal ends a file at once; standard input is read on for stdinGrace
// (or to its end), so that a server's last lines are not lost.
func (o *shipFlags) shipOne(ctx context.Context, cl *kgo.Client, name string, keyer *shipper.Keyer, promise func(*kgo.Record, error)) error {
	send := func(r *kgo.Record) { cl.Produce(context.Background(), r, promise) }
	if name == "-" {
		in := pollableStdin()
		stop := context.AfterFunc(ctx, func() {
			if in.SetReadDeadline(time.Now().Add(stdinGrace)) != nil {
				in.Close() // not a pipe: no deadlines; stop at the next line
			}
		})
		defer stop()
		_, err := shipper.ShipLines(context.Background(), in, keyer, o.shipID, send, nil)
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
			fmt.Fprintf(os.Stderr, "warden ship: stopped by a signal; standard input was read %s longer\n", stdinGrace)
			return nil
		}
		if err != nil {
			return fmt.Errorf("standard input: %w", err)
		}
		return nil
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	bar := newProgress(name, size, !o.quiet && size > 0 && isTerminal(os.Stderr))
	defer bar.done()
	if _, err := shipper.ShipLines(ctx, f, keyer, o.shipID, send, bar.set); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// pollableStdin returns standard input such that a read deadline can end
// a blocked read: a pipe or FIFO is switched to non-blocking mode (the
// writer's end is a separate file description, so the server's writes
// are not affected) and handed to Go's poller.
func pollableStdin() *os.File {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return os.Stdin
	}
	fd := int(os.Stdin.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		return os.Stdin
	}
	return os.NewFile(uintptr(fd), "stdin")
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress draws a one-line bar on stderr, at most ten times a second.
type progress struct {
	name  string
	total int64
	on    bool
	last  time.Time
	start time.Time
}

func newProgress(name string, total int64, on bool) *progress {
	return &progress{name: name, total: total, on: on, start: time.Now()}
}

func (p *progress) set(n int64) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	frac := float64(n) / float64(p.total)
	const width = 30
	filled := int(frac * width)
	bar := bytes.Repeat([]byte("#"), min(filled, width))
	bar = append(bar, bytes.Repeat([]byte("."), width-len(bar))...)
	rate := float64(n) / time.Since(p.start).Seconds() / (1 << 20)
	fmt.Fprintf(os.Stderr, "\r%s [%s] %5.1f%% %.1f MiB/s", p.name, bar, frac*100, rate)
}

func (p *progress) done() {
	if p.on {
		p.last = time.Time{}
		p.set(p.total)
		fmt.Fprintln(os.Stderr)
	}
}
