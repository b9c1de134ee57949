package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Type() string       { return "list" }
func (l *list) Set(s string) error { *l = strings.Split(s, ","); return nil }

type testFlags struct {
	fs      *pflag.FlagSet
	dataDir string
	voters  int
	every   time.Duration
	quiet   bool
	token   string
	join    list
}

func newTestFlags(t *testing.T, args ...string) *testFlags {
	t.Helper()
	f := &testFlags{fs: pflag.NewFlagSet("test", pflag.ContinueOnError)}
	f.fs.StringVar(&f.dataDir, "data-dir", "/default", "")
	f.fs.IntVar(&f.voters, "voters", 3, "")
	f.fs.DurationVar(&f.every, "every", time.Second, "")
	f.fs.BoolVar(&f.quiet, "quiet", false, "")
	f.fs.StringVar(&f.token, "admin-token", "", "")
	f.fs.Var(&f.join, "join", "")
	f.fs.String(ConfigFlag, "", "")
	MarkSecret(f.fs, "admin-token")
	if err := f.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func Test_PrecedenceFlagEnvFileDefault(t *testing.T) {
	file := writeFile(t, "data-dir: /from-file\nvoters: 5\nevery: 2s\njoin: [a:1, b:2]\n")
	f := newTestFlags(t, "--config", file, "--data-dir=/from-flag")
	l, err := Load(f.fs, env("WARDEN_VOTERS", "1", "WARDEN_DATA_DIR", "/from-env"), true)
	if err != nil {
		t.Fatal(err)
	}
	if f.dataDir != "/from-flag" || l.Source("data-dir") != FromFlag {
		t.Errorf("data-dir = %q from %s, want the flag", f.dataDir, l.Source("data-dir"))
	}
	if f.voters != 1 || l.Source("voters") != FromEnv {
		t.Errorf("voters = %d from %s, want 1 from env", f.voters, l.Source("voters"))
	}
	if f.every != 2*time.Second || l.Source("every") != FromFile {
		t.Errorf("every = %s from %s, want 2s from the file", f.every, l.Source("every"))
	}
	if strings.Join(f.join, " ") != "a:1 b:2" {
		t.Errorf("join = %q, want the file's list", f.join)
	}
	if f.quiet || l.Source("quiet") != FromDefault {
		t.Errorf("quiet = %v from %s, want the default", f.quiet, l.Source("quiet"))
	}
}

func Test_EnvNamesTheFile(t *testing.T) {
	file := writeFile(t, "voters: 5\n")
	f := newTestFlags(t)
	if _, err := Load(f.fs, env("WARDEN_CONFIG", file), true); err != nil {
		t.Fatal(err)
	}
	if f.voters != 5 {
		t.Errorf("voters = %d, want 5 from the file named by $WARDEN_CONFIG", f.voters)
	}
}

func Test_BadFilesNameFileLineAndKey(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	tests := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "data-dir: /x\nvotrs: 3\n", []string{":2:", `key "votrs"`, `did you mean "voters"`}},
		{"wrong type", "voters: three\n", []string{":1:", `key "voters"`, "want a whole number"}},
		{"bad duration", "every: soon\n", []string{`key "every"`, "want a duration"}},
		{"bad bool", "quiet: maybe\n", []string{`key "quiet"`, "want true or false"}},
		{"list for a scalar", "data-dir: [a, b]\n", []string{`key "data-dir"`, "a list"}},
		{"mapping", "voters: {a: 1}\n", []string{`key "voters"`, "a mapping"}},
		{"not a mapping", "- a\n- b\n", []string{"want a mapping"}},
		{"bad yaml", "voters: [\n", []string{"not valid YAML"}},
		{"twice", "voters: 3\nvoters: 5\n", []string{"given twice"}},
		{"nested config", "config: other.yaml\n", []string{"cannot name another"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, tt.body)
			f := newTestFlags(t, "--config", file)
			_, err := Load(f.fs, env(), true)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("%v is not ErrConfig", err)
			}
			for _, w := range append(tt.want, file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("not one line: %q", err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		f := newTestFlags(t, "--config", missing)
		_, err := Load(f.fs, env(), true)
		if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "no such file") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("bad env", func(t *testing.T) {
		f := newTestFlags(t)
		_, err := Load(f.fs, env("WARDEN_VOTERS", "x"), true)
		if err == nil || !strings.Contains(err.Error(), "$WARDEN_VOTERS") {
			t.Errorf("err = %v", err)
		}
	})
}

func Test_EmptyFileSetsNothing(t *testing.T) {
	for _, body := range []string{"", "# only a comment\n", "~\n"} {
		f := newTestFlags(t, "--config", writeFile(t, body))
		if _, err := Load(f.fs, env(), true); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}

func Test_SecretsFromFilesAndMasked(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, "admin-token-file: "+tokenFile+"\n")
	f := newTestFlags(t, "--config", file)
	l, err := Load(f.fs, env(), true)
	if err != nil {
		t.Fatal(err)
	}
	if f.token != "s3cret" {
		t.Fatalf("token = %q, want the file's content without its newline", f.token)
	}
	out := string(WriteYAML(Effective(f.fs, l)))
	if strings.Contains(out, "s3cret") || !strings.Contains(out, "admin-token: '********'") {
		t.Errorf("secret not masked:\n%s", out)
	}

	f = newTestFlags(t, "--admin-token", "x", "--admin-token-file", tokenFile)
	if _, err := Load(f.fs, env(), true); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both given: err = %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	_ = os.WriteFile(empty, nil, 0o600)
	f = newTestFlags(t, "--admin-token-file", empty)
	if _, err := Load(f.fs, env(), true); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty file: err = %v", err)
	}
}

func Test_WrittenConfigLoadsBack(t *testing.T) {
	file := writeFile(t, "data-dir: /d\nvoters: 5\njoin: [a:1, b:2]\nquiet: true\n")
	f := newTestFlags(t, "--config", file)
	l, err := Load(f.fs, env(), true)
	if err != nil {
		t.Fatal(err)
	}
	var kept []Setting
	for _, s := range Effective(f.fs, l) {
		if s.Key != "admin-token" {
			kept = append(kept, s)
		}
	}
	again := writeFile(t, string(WriteYAML(kept)))
	g := newTestFlags(t, "--config", again)
	if _, err := Load(g.fs, env(), true); err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, WriteYAML(kept))
	}
	if g.dataDir != "/d" || g.voters != 5 || !g.quiet || strings.Join(g.join, ",") != "a:1,b:2" {
		t.Errorf("round trip: %+v", g)
	}
}
