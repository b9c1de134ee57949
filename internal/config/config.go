// Package config layers a command's settings the way operators of Consul,
// CrowdSec or Redpanda expect: a flag on the command line wins over the
// environment (WARDEN_ plus the flag name in capitals, '-' as '_'), which
// wins over the YAML file given with --config, which wins over the flag's
// default.
//
// The file and the environment name exactly the command's flags, so every
// flag is a configuration key and nothing else is: an unknown key, a list
// where one value is wanted, or a value the flag refuses is an error naming
// the file, the line and the key. Secrets (tokens, keys, passwords) are flags
// marked with MarkSecret: each gets a companion <name>-file flag that reads
// the value from a file, and Effective masks them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Source says which layer gave a flag its value.
type Source string

// The layers, strongest first.
const (
	FromFlag    Source = "flag"
	FromEnv     Source = "env"
	FromFile    Source = "file"
	FromDefault Source = "default"
)

// EnvPrefix starts the environment name of every flag.
const EnvPrefix = "WARDEN_"

// ConfigFlag is the name of the flag that names the YAML file.
const ConfigFlag = "config"

const (
	secretAnnotation = "warden-secret"
	fileSuffix       = "-file"
)

// ErrConfig marks every error of this package, so callers can tell a bad
// configuration from a failure to run.
var ErrConfig = errors.New("config")

// Error is a configuration error: where it is and what was expected.
type Error struct {
	File string // empty for the environment
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("config %s:%d: %s", e.File, e.Line, e.msg())
	case e.File != "":
		return fmt.Sprintf("config %s: %s", e.File, e.msg())
	default:
		return e.msg()
	}
}

func (e *Error) msg() string {
	if e.Key == "" {
		return e.Msg
	}
	return fmt.Sprintf("key %q: %s", e.Key, e.Msg)
}

func (e *Error) Unwrap() error { return ErrConfig }

// EnvName is the environment variable that sets flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// MarkSecret marks flag name of fs as a secret and adds its <name>-file
// companion. Call it after defining the flag.
func MarkSecret(fs *pflag.FlagSet, name string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("config: no flag " + name)
	}
	_ = fs.SetAnnotation(name, secretAnnotation, []string{"true"})
	fs.String(name+fileSuffix, "", "read --"+name+" from this file (keeps it out of process lists)")
	_ = fs.SetAnnotation(name+fileSuffix, secretAnnotation+"-file", []string{name})
}

// IsSecret reports whether flag f holds a secret.
func IsSecret(f *pflag.Flag) bool {
	_, ok := f.Annotations[secretAnnotation]
	return ok
}

// Layers records where each flag's value came from.
type Layers struct {
	File   string
	source map[string]Source
}

// Source returns the layer that set flag name.
func (l *Layers) Source(name string) Source {
	if s, ok := l.source[name]; ok {
		return s
	}
	return FromDefault
}

// Load fills every flag of fs that the command line did not set: from the
// environment (getenv, normally os.LookupEnv), then, if readFile, from the
// YAML file named by fs's --config flag (set by flag or by $WARDEN_CONFIG).
// Then it reads the secret files. fs must be parsed.
func Load(fs *pflag.FlagSet, getenv func(string) (string, bool), readFile bool) (*Layers, error) {
	l := &Layers{source: map[string]Source{}}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			l.source[f.Name] = FromFlag
		}
	})
	var errs []error
	// The environment first: it may name the file itself.
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		v, ok := getenv(EnvName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, &Error{Msg: fmt.Sprintf("$%s=%q: %s", EnvName(f.Name), v, want(f))})
			return
		}
		l.source[f.Name] = FromEnv
	})
	if len(errs) > 0 {
		return l, errs[0]
	}
	if cf := fs.Lookup(ConfigFlag); readFile && cf != nil && cf.Value.String() != "" {
		l.File = cf.Value.String()
		if err := loadFile(fs, l); err != nil {
			return l, err
		}
	}
	if err := readSecretFiles(fs, l); err != nil {
		return l, err
	}
	return l, nil
}

// loadFile sets, from the YAML file, the flags no stronger layer set.
func loadFile(fs *pflag.FlagSet, l *Layers) error {
	b, err := os.ReadFile(l.File)
	if err != nil {
		return &Error{File: l.File, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return &Error{File: l.File, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return &Error{File: l.File, Line: root.Line, Msg: "want a mapping of flag names to values (data-dir: /var/lib/warden)"}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if seen[key] {
			return &Error{File: l.File, Line: k.Line, Key: key, Msg: "given twice"}
		}
		seen[key] = true
		f := fs.Lookup(key)
		if f == nil || key == "help" || key == ConfigFlag {
			msg := "unknown key (the keys are this command's flag names)"
			if s := suggest(fs, key); s != "" {
				msg = fmt.Sprintf("unknown key; did you mean %q?", s)
			}
			if key == ConfigFlag {
				msg = "a config file cannot name another one"
			}
			return &Error{File: l.File, Line: k.Line, Key: key, Msg: msg}
		}
		val, err := scalar(f, v)
		if err != nil {
			return &Error{File: l.File, Line: v.Line, Key: key, Msg: err.Error()}
		}
		if f.Changed {
			continue // a flag or the environment set it: they win
		}
		if err := fs.Set(key, val); err != nil {
			return &Error{File: l.File, Line: v.Line, Key: key, Msg: fmt.Sprintf("%q: %s", val, want(f))}
		}
		l.source[key] = FromFile
	}
	return nil
}

// scalar turns a YAML value into the string form of the flag.
func scalar(f *pflag.Flag, v *yaml.Node) (string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "", fmt.Errorf("no value (%s)", want(f))
		}
		return v.Value, nil
	case yaml.SequenceNode:
		if !isList(f) {
			return "", fmt.Errorf("a list, but %s", want(f))
		}
		parts := make([]string, 0, len(v.Content))
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("list items must be plain values")
			}
			if strings.Contains(it.Value, ",") {
				return "", fmt.Errorf("list item %q contains a comma", it.Value)
			}
			parts = append(parts, it.Value)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("a mapping, but %s", want(f))
	}
}

func isList(f *pflag.Flag) bool {
	t := f.Value.Type()
	return t == "list" || strings.HasSuffix(t, "Slice")
}

// want says what flag f accepts.
func want(f *pflag.Flag) string {
	switch t := f.Value.Type(); {
	case t == "bool":
		return "want true or false"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "want a whole number"
	case strings.HasPrefix(t, "float"):
		return "want a number"
	case t == "duration":
		return "want a duration such as 200ms, 30s or 24h"
	case isList(f):
		return "want a list (YAML list, or comma-separated)"
	default:
		return "want a string"
	}
}

// readSecretFiles reads each secret given as <name>-file.
func readSecretFiles(fs *pflag.FlagSet, l *Layers) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		names, ok := f.Annotations[secretAnnotation+"-file"]
		if !ok || err != nil || f.Value.String() == "" {
			return
		}
		name := names[0]
		if sf := fs.Lookup(name); sf.Changed {
			err = &Error{File: l.fileIf(f.Name, name), Msg: fmt.Sprintf("give --%s or --%s, not both", name, f.Name)}
			return
		}
		b, rerr := os.ReadFile(f.Value.String())
		if rerr != nil {
			err = &Error{Msg: fmt.Sprintf("--%s: cannot read: %v", f.Name, unwrapPath(rerr))}
			return
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			err = &Error{Msg: fmt.Sprintf("--%s %s is empty", f.Name, f.Value.String())}
			return
		}
		if serr := fs.Set(name, v); serr != nil {
			err = &Error{Msg: fmt.Sprintf("--%s: the file's content: %s", f.Name, want(fs.Lookup(name)))}
			return
		}
		l.source[name] = l.Source(f.Name)
	})
	return err
}

func (l *Layers) fileIf(names ...string) string {
	for _, n := range names {
		if l.Source(n) == FromFile {
			return l.File
		}
	}
	return ""
}

// Setting is one flag's effective value.
type Setting struct {
	Key    string
	Value  string
	Type   string // the flag's type: bool, int, duration, list, string, ...
	Source Source
	Secret bool
}

// Effective lists every flag of fs with its value, secrets masked, sorted by
// name; the <name>-file companions and help are left out.
func Effective(fs *pflag.FlagSet, l *Layers) []Setting {
	var out []Setting
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || f.Name == "print-config" {
			return
		}
		if _, ok := f.Annotations[secretAnnotation+"-file"]; ok && f.Value.String() == "" {
			return
		}
		s := Setting{Key: f.Name, Value: f.Value.String(), Type: f.Value.Type(), Source: l.Source(f.Name), Secret: IsSecret(f)}
		if s.Secret && s.Value != "" {
			s.Value = "********"
		}
		out = append(out, s)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// WriteYAML renders settings as a YAML file that Load would accept, each
// with its source as a comment.
func WriteYAML(settings []Setting) []byte {
	var b bytes.Buffer
	for _, s := range settings {
		if s.Key == ConfigFlag {
			fmt.Fprintf(&b, "# config file: %s\n", orNone(s.Value))
			continue
		}
		fmt.Fprintf(&b, "%s: %s  # %s\n", s.Key, yamlValue(s), s.Source)
	}
	return b.Bytes()
}

// yamlValue renders one setting as its YAML type.
func yamlValue(s Setting) string {
	switch {
	case s.Secret:
		return quote(s.Value)
	case s.Type == "bool", strings.HasPrefix(s.Type, "int"), strings.HasPrefix(s.Type, "uint"), strings.HasPrefix(s.Type, "float"):
		return s.Value
	case s.Type == "list" || strings.HasSuffix(s.Type, "Slice"):
		items := []string{}
		for _, it := range strings.Split(s.Value, ",") {
			if it != "" {
				items = append(items, quote(it))
			}
		}
		return "[" + strings.Join(items, ", ") + "]"
	default:
		return quote(s.Value)
	}
}

func quote(v string) string {
	b, _ := yaml.Marshal(v)
	return strings.TrimRight(string(b), "\n")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// suggest returns the flag name closest to key, if close enough.
func suggest(fs *pflag.FlagSet, key string) string {
	best, bestD := "", 3
	fs.VisitAll(func(f *pflag.Flag) {
		if d := distance(key, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	if best == "" && strings.Contains(key, "_") {
		if fs.Lookup(strings.ReplaceAll(key, "_", "-")) != nil {
			return strings.ReplaceAll(key, "_", "-")
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unwrapPath drops the *PathError's repetition of the path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
