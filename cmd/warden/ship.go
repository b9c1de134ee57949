package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func runShip(args []string) error {
	fs := newFlags("ship", "[FILE...|-] --brokers LIST --topic T")
	var brokers listFlag = []string{"127.0.0.1:9092"}
	fs.Var(&brokers, "brokers", "Kafka seed brokers, comma-separated")
	topic := fs.String("topic", "access-logs", "topic to write to")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, args); err != nil {
		return err
	}
	files := fs.Args()
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
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(*topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(100000),
		kgo.RecordRetries(1<<30), // keep retrying: an idempotent producer neither loses nor repeats
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
			return
		}
		sent.Add(1)
	}
	for _, f := range files {
		if err := shipFile(ctx, cl, f, promise, !*quiet); err != nil {
			return err
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d lines not acknowledged by Kafka: %v", n, firstErr.Load())
	}
	fmt.Fprintf(os.Stderr, "shipped %d lines to %s\n", sent.Load(), *topic)
	return nil
}

func shipFile(ctx context.Context, cl *kgo.Client, name string, promise func(*kgo.Record, error), progress bool) error {
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
		cl.Produce(ctx, &kgo.Record{Key: ClientIP(val), Value: val}, promise)
		bar.set(read)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

// ClientIP returns the client address of an access-log line: the first
// field, or the second when the first is a virtual host (vhost_combined).
// A line with no address in either place is keyed by its first field, so it
// still lands in one partition deterministically.
func ClientIP(line []byte) []byte {
	f1, rest := field(line)
	if _, err := netip.ParseAddr(string(f1)); err == nil {
		return f1
	}
	if f2, _ := field(rest); len(f2) > 0 {
		if _, err := netip.ParseAddr(string(f2)); err == nil {
			return f2
		}
	}
	return f1
}

func field(b []byte) (f, rest []byte) {
	b = bytes.TrimLeft(b, " \t")
	i := bytes.IndexAny(b, " \t")
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
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
