// Command warden is the one binary of Warden: the embedded broker, cluster
// nodes, the log shipper, status and the demo. It only parses flags and
// wires packages together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"demo", "all-in-one: embedded broker, 3 nodes, generated traffic", runDemo},
		{"broker", "run the embedded Kafka-protocol broker", runBroker},
		{"agent", "run one cluster node", runAgent},
		{"ship", "send access-log lines into Kafka, keyed by client IP", runShip},
		{"analyze", "the same pipeline over log files, offline, in one process", runAnalyze},
		{"chaos", "run a real multi-process cluster through faults and check nothing was lost or doubled", runChaos},
		{"status", "show members, leader and partitions of a cluster", runStatus},
		{"version", "print the version", func([]string) error { fmt.Println("warden", version); return nil }},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Warden turns web access logs in Kafka into load figures and attack bans, exactly once, as a fault-tolerant cluster.")
	fmt.Fprintln(w, "\nUsage: warden <command> [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'warden <command> -h' for a command's flags.")
}

// errUsage marks an error already explained by the flag set.
var errUsage = errors.New("usage")

// errViolation marks a chaos run whose checks failed (the report says which).
var errViolation = errors.New("violation")

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		case errors.Is(err, errViolation):
			return 1
		default:
			fmt.Fprintf(os.Stderr, "warden %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "warden: unknown command %q (run 'warden -h' for the list)\n", args[0])
	return 2
}

// newFlags returns a flag set that reports a bad flag in one line.
func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("warden "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every parse error; only -h should
	// print the full text, so Usage stays quiet and parse prints it.
	fs.Usage = func() {}
	synopses[fs] = synopsis
	return fs
}

var synopses = map[*flag.FlagSet]string{}

func printUsage(fs *flag.FlagSet) {
	fmt.Fprintf(os.Stdout, "Usage: %s %s\n\nFlags:\n", fs.Name(), synopses[fs])
	fs.SetOutput(os.Stdout)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses args, turning a bad flag into one clear line on stderr.
func parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(fs)
		return err
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v (run '%s -h' for usage)\n", fs.Name(), err, fs.Name())
		return errUsage
	}
	return nil
}

// listFlag is a comma-separated list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// newLogger returns a text logger to stderr at level.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	fs.DurationVar(p, name, def, usage)
}
