package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB whose Fatalf records the message instead of
// stopping the test, so the failing paths can be checked.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestRootHasGoMod(t *testing.T) {
	root := Root(t)
	if !isRoot(root) || !filepath.IsAbs(root) {
		t.Fatalf("Root = %q: not the absolute directory of %s's go.mod", root, Module)
	}
}

func TestData(t *testing.T) {
	p := Data(t, "elastic-apache/apache_logs")
	if fi, err := os.Stat(p); err != nil || fi.Size() == 0 || !filepath.IsAbs(p) {
		t.Fatalf("Data = %q (%v)", p, err)
	}
	r := &recorder{TB: t}
	if p := Data(r, "no/such/file"); p != "" || !strings.Contains(r.msg, "testdata/no/such/file is missing") {
		t.Errorf("missing file: Data = %q, message %q", p, r.msg)
	}
}

func TestTool(t *testing.T) {
	r := &recorder{TB: t}
	if Tool(r, "no-such-tool") != "" || !strings.Contains(r.msg, "no Debian package known for no-such-tool") {
		t.Errorf("unknown tool: message %q", r.msg)
	}
	t.Setenv("PATH", t.TempDir())
	r = &recorder{TB: t}
	if p := Tool(r, "kcat"); p != "" || r.msg != "kcat not installed: run scripts/test-deps (apt-get install --no-install-recommends kcat)" {
		t.Errorf("tool not in PATH: Tool = %q, message %q", p, r.msg)
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "goaccess")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if p := Tool(t, "goaccess"); p != fake {
		t.Errorf("Tool(goaccess) = %q, want %q", p, fake)
	}
}

func TestInstallCommand(t *testing.T) {
	if got := InstallCommand("nftables", "kcat"); got != "apt-get install --no-install-recommends kcat nftables" {
		t.Errorf("InstallCommand = %q", got)
	}
}

// TestScriptChecksThePackages keeps scripts/test-deps and Packages in step:
// the script checks every program the tests may ask Tool for, with the same
// package, and the fail2ban fixtures.
func TestScriptChecksThePackages(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(Root(t), "scripts", "test-deps"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\nchecks=(\n")
	end := strings.Index(s[start+1:], "\n)\n")
	if start < 0 || end < 0 {
		t.Fatal("scripts/test-deps has no checks=( ... ) list")
	}
	script := map[string]string{}
	for _, l := range strings.Split(s[start+len("\nchecks=(\n"):start+1+end], "\n") {
		f := strings.Fields(strings.Trim(strings.TrimSpace(l), `"`))
		if len(f) != 2 {
			t.Fatalf("scripts/test-deps: check %q is not \"what package\"", l)
		}
		what := f[0]
		if d := filepath.Dir(what); d == "/usr/sbin" || d == "/sbin" {
			what = filepath.Base(what)
		}
		script[what] = f[1]
	}
	for name, pkg := range Packages {
		if script[name] != pkg {
			t.Errorf("scripts/test-deps checks %s as package %q, testenv.Packages says %q", name, script[name], pkg)
		}
	}
	if script[Fail2banLogDir] != "fail2ban" {
		t.Errorf("scripts/test-deps does not check %s (package fail2ban)", Fail2banLogDir)
	}
	if len(script) != len(Packages)+1 {
		t.Errorf("scripts/test-deps checks %d things, testenv knows %d programs and the fail2ban fixtures", len(script), len(Packages))
	}
}

func TestFail2banLogs(t *testing.T) {
	dir := Fail2banLogs(t)
	if _, err := os.Stat(filepath.Join(dir, "apache-badbots")); err != nil {
		t.Fatal(err)
	}
}
