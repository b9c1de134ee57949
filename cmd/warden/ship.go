package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
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
	brokers     *listFlag
	topic       string
	quiet       bool
	timeout     time.Duration
	logFormat   string
	kafka       kafkaFlags
	printConfig *bool
}

func newShipCmd() *cobra.Command {
	o := &shipFlags{brokers: newList("127.0.0.1:9092")}
	c := &cobra.Command{
		Use:   "ship [FILE...|-] --brokers LIST --topic T",
		Short: "Send access-log lines into Kafka, keyed by client IP",
		Long: `Send access-log lines into Kafka, keyed by the client address of each
parsed line (--log-format), with an idempotent producer. Reads the files in order (- or none: standard input). A broker that
cannot be reached, or lines Kafka does not acknowledge, within --timeout end
the command with a non-zero exit saying how many lines were not delivered.`,
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
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up when Kafka cannot be reached, or does not acknowledge a line, for this long")
	fs.StringVar(&o.logFormat, "log-format", "auto", "how to find each line's client, the record key: auto (each line by the first format that reads it), a preset ("+strings.Join(accesslog.PresetNames, ", ")+"), json:FIELD=KEY,..., syslog+FORMAT or an Apache LogFormat string; a line that does not parse is sent without a key")
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
	_, err := o.kafka.options(func(string) {})
	return err
}

func (o *shipFlags) run(files []string) error {
	if err := o.check(); err != nil {
		return err
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
		return fmt.Errorf("Kafka at %s unreachable for %s (%v): no lines delivered", o.brokers, o.timeout, kafkaopt.Explain(err))
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
		if err := shipFile(ctx, cl, f, keyer, promise, !o.quiet); err != nil {
			return err
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d lines not delivered (%d delivered): Kafka did not acknowledge them within --timeout %s: %v", n, sent.Load(), o.timeout, *firstErr.Load())
	}
	fmt.Fprintf(os.Stderr, "shipped %d lines to %s\n", sent.Load(), o.topic)
	return nil
}

func shipFile(ctx context.Context, cl *kgo.Client, name string, keyer *shipper.Keyer, promise func(*kgo.Record, error), progress bool) error {
	var r io.Reader = os.Stdin
	var size int64
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
		if fi, err := f.Stat(); err == nil {
			size = fi.Size()
		}
	}
	bar := newProgress(name, size, progress && size > 0 && isTerminal(os.Stderr))
	defer bar.done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var read int64
	for sc.Scan() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		line := sc.Bytes()
		read += int64(len(line)) + 1
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		val := append([]byte(nil), line...)
		cl.Produce(ctx, &kgo.Record{Key: keyer.Key(val), Value: val}, promise)
		bar.set(read)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
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
