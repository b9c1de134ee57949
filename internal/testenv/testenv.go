// Package testenv finds what Warden's tests need outside their own code: the
// test data committed under the repository's testdata/ folder, the peer
// programs the tests run (Debian packages, which scripts/test-deps installs)
// and the fail2ban fixtures Debian's fail2ban package installs.
//
// It is meant for _test.go files of any package. A test that cannot find
// what it needs fails, naming what is missing and the command that installs it: no
// test passes by skipping, on a developer's machine or in CI.
package testenv

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Module is the module path whose go.mod marks the repository root.
const Module = "github.com/wardenhq/warden"

// Fail2banLogDir is where Debian's fail2ban package installs fail2ban's
// filter regression logs (GPL-2.0-or-later, so not copied into testdata/).
const Fail2banLogDir = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs"

// Packages maps each program the tests run to the Debian package that
// installs it. scripts/test-deps checks and installs the same list.
var Packages = map[string]string{
	"kcat":                    "kcat",
	"goaccess":                "goaccess",
	"crowdsec-custom-bouncer": "crowdsec-custom-bouncer",
	"fail2ban-regex":          "fail2ban",
	"nft":                     "nftables",
	"chromium":                "chromium",
	"nginx":                   "nginx",
	"apache2":                 "apache2",
	"systemd-analyze":         "systemd",
	"dpkg-deb":                "dpkg",
}

// sbin holds the directories searched after $PATH: nginx, apache2 and nft
// live in /usr/sbin, which is not in every user's $PATH.
var sbin = []string{"/usr/sbin", "/sbin"}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// Root returns the absolute path of the repository root (the directory of
// Warden's go.mod).
func Root(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() { rootDir, rootErr = findRoot() })
	if rootErr != nil {
		t.Fatalf("testenv: %v", rootErr)
		return ""
	}
	return rootDir
}

// findRoot tries the directory this file was compiled from, then walks up
// from the working directory (the test's package directory under go test).
func findRoot() (string, error) {
	var tried []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Join(filepath.Dir(file), "..", "..")
		if isRoot(dir) {
			return filepath.Clean(dir), nil
		}
		tried = append(tried, dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isRoot(dir) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	tried = append(tried, wd+" and its parents")
	return "", errors.New("no go.mod of module " + Module + " in " + strings.Join(tried, ", "))
}

func isRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) == 2 && f[0] == "module" {
			return f[1] == Module
		}
	}
	return false
}

// Data returns the absolute path of testdata/rel (rel uses forward slashes)
// under the repository root. It fails the test if the file or directory is
// not there.
func Data(t testing.TB, rel string) string {
	t.Helper()
	root := Root(t)
	if root == "" {
		return ""
	}
	p := filepath.Join(root, "testdata", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test data testdata/%s is missing (%v); it is committed in the repository, see testdata/SOURCES.md", rel, err)
		return ""
	}
	return p
}

// Tool returns the absolute path of the program name, searched in $PATH and
// then in /usr/sbin and /sbin. It fails the test if the program is not
// installed, naming the Debian package to install; name must be one of
// Packages.
func Tool(t testing.TB, name string) string {
	t.Helper()
	pkg, ok := Packages[name]
	if !ok {
		t.Fatalf("testenv: no Debian package known for %s: add it to testenv.Packages and scripts/test-deps", name)
		return ""
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	for _, dir := range sbin {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("%s not installed: run scripts/test-deps (%s)", name, InstallCommand(pkg))
	return ""
}

// Fail2banLogs returns Fail2banLogDir. It fails the test if the directory is
// missing or empty.
func Fail2banLogs(t testing.TB) string {
	t.Helper()
	ents, err := os.ReadDir(Fail2banLogDir)
	if err != nil || len(ents) == 0 {
		why := "empty"
		if err != nil {
			why = err.Error()
		}
		t.Fatalf("fail2ban's test logs %s are missing (%s): run scripts/test-deps (%s)", Fail2banLogDir, why, InstallCommand("fail2ban"))
		return ""
	}
	return Fail2banLogDir
}

// NeedRoot fails the test unless it runs as root; what says what needs it.
func NeedRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("%s needs root: run the tests as root (as CI does), e.g. sudo make test", what)
	}
}

// InstallCommand returns the apt-get command that installs the Debian
// packages pkgs.
func InstallCommand(pkgs ...string) string {
	pkgs = append([]string(nil), pkgs...)
	sort.Strings(pkgs)
	return "apt-get install --no-install-recommends " + strings.Join(pkgs, " ")
}
