// Command warden is the one binary of Warden: the embedded broker, cluster
// nodes, the log shipper, status and the demo. It only parses flags and
// wires packages together.
//
// The command tree is spf13/cobra with GNU-style flags (pflag): flags go
// before or after positional arguments, as --name value or --name=value.
// Every flag may also come from the environment and, for the long-running
// commands, from a YAML file (package internal/config).
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wardenhq/warden/internal/config"
)

// Set at build time: go build -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

func versionText() string {
	return fmt.Sprintf("warden %s\ncommit %s\n%s %s/%s\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// errUsage marks a command-line mistake; the message says what and how to
// get help. Exit status 2.
type usageError struct {
	cmd string
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(c *cobra.Command, format string, a ...any) error {
	return &usageError{cmd: c.CommandPath(), msg: fmt.Sprintf(format, a...)}
}

// errViolation marks a chaos run whose checks failed (the report says which).
var errViolation = errors.New("violation")

// errQuietUsage is a usage failure already explained on the terminal.
var errQuietUsage = errors.New("usage")

// annNoConfigFile marks a command whose --config flag names a file it
// inspects rather than its own settings.
const annNoConfigFile = "warden-no-config-file"

// layers is where the running command's settings came from (set before it runs).
var layers *config.Layers

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "warden",
		Short: "Access logs in Kafka to load figures and attack bans, exactly once, as a fault-tolerant cluster",
		Long: `Warden turns web access logs in Kafka into load figures and attack bans,
exactly once, as a fault-tolerant cluster.

Every flag can also be set in the environment as WARDEN_ and the flag name in
capitals with '-' as '_' (WARDEN_DATA_DIR); agent, broker and ship also read a
YAML file given with --config whose keys are the flag names. A flag on the
command line wins over the environment, which wins over the file.`,
		Version:       strings.TrimSpace(versionText()),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          rootArgs,
		RunE: func(c *cobra.Command, args []string) error {
			_ = c.Help()
			return errQuietUsage
		},
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			_, noFile := c.Annotations[annNoConfigFile]
			l, err := config.Load(c.Flags(), lookupEnv, !noFile)
			layers = l
			return err
		},
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SuggestionsMinimumDistance = 2
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef(c, "%v", err)
	})
	root.AddCommand(
		newDemoCmd(),
		newBrokerCmd(),
		newAgentCmd(),
		newShipCmd(),
		newAnalyzeCmd(),
		newChaosCmd(),
		newStatusCmd(),
		newConfigCmd(),
		newOffsetsCmd(),
		newKeygenCmd(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version, commit and Go version",
			Args:  noArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				fmt.Fprint(c.OutOrStdout(), versionText())
				return nil
			},
		},
	)
	return root
}

// rootArgs turns a mistyped command into one line with a suggestion.
func rootArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return usagef(c, "%s", msg)
}

// noArgs refuses positional arguments: a stray word is a mistake, never
// silently ignored.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	hint := ""
	if c.Flags().Lookup("addr") != nil && strings.Contains(args[0], ":") {
		hint = fmt.Sprintf("; did you mean --addr %s?", args[0])
	}
	return usagef(c, "unexpected argument %q: %s takes no arguments%s", args[0], c.CommandPath(), hint)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(longDashes(args))
	c, err := root.ExecuteC()
	if c == nil {
		c = root
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errQuietUsage):
		return 2
	case errors.Is(err, errViolation):
		return 1
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s (run '%s --help' for usage)\n", ue.cmd, ue.msg, ue.cmd)
		return 2
	case errors.Is(err, config.ErrConfig):
		fmt.Fprintf(stderr, "%s: %v\n", c.CommandPath(), err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %s\n", c.CommandPath(), inFile(err))
		return 1
	}
}

var flagInError = regexp.MustCompile(`^--([a-z0-9-]+)`)

// inFile names the config file in an error about a setting that came from it.
func inFile(err error) string {
	msg := err.Error()
	if layers == nil || layers.File == "" {
		return msg
	}
	if m := flagInError.FindStringSubmatch(msg); m != nil && layers.Source(m[1]) == config.FromFile {
		return fmt.Sprintf("config %s: key %q: %s", layers.File, m[1], msg)
	}
	return msg
}

var singleDashLong = regexp.MustCompile(`^-[a-z][a-z0-9]*(-[a-z0-9]+)+(=.*)?$|^-[a-z][a-z0-9]+(=.*)?$`)

// longDashes accepts the single-dash long flags (-data-dir) that Go's flag
// package took, which earlier scripts may use, as their double-dash form.
func longDashes(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if singleDashLong.MatchString(a) {
			a = "-" + a
		}
		out[i] = a
	}
	return out
}

// listFlag is a comma-separated list flag. Given more than once, the values
// add up; the first one given replaces the default.
type listFlag struct {
	vals []string
	set  bool
}

func newList(def ...string) *listFlag { return &listFlag{vals: def} }

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }
func (l *listFlag) Type() string   { return "list" }
func (l *listFlag) Set(s string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	l.vals = append(l.vals, splitList(s)...)
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// newLogger returns a text logger to stderr at level.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// addConfigFlags adds --config and --print-config to a long-running command.
func addConfigFlags(fs *pflag.FlagSet) *bool {
	fs.String(config.ConfigFlag, "", "YAML file whose keys are this command's flag names (flags and $WARDEN_* win over it)")
	return fs.Bool("print-config", false, "print the effective configuration (secrets masked) and exit")
}

// printConfig writes the effective settings of c as YAML.
func printConfig(c *cobra.Command) {
	os.Stdout.Write(config.WriteYAML(config.Effective(c.Flags(), layers)))
}

// lookupEnv reads the environment; tests of the layering replace it.
var lookupEnv = os.LookupEnv

// groupCmd is a command that only holds subcommands: alone, it prints its
// help and exits 2, as the root does.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_ = c.Help()
			return errQuietUsage
		},
	}
}
