package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The package test installs the .deb on this machine for real, so it owns
// these paths for its duration and refuses to start if anything else does.
const (
	pkgBin      = "/usr/bin/warden"
	pkgAgentCfg = "/etc/warden/agent.yaml"
	pkgStateDir = "/var/lib/warden"
	pkgUnitDir  = "/lib/systemd/system"
)

// TestPackage builds the .deb and the tarball with the packager, checks
// what they hold, then installs, upgrades, removes and purges the .deb
// with dpkg, checking each step on the real system. It needs root, dpkg
// and systemd-analyze, and fails rather than skips without them.
func TestPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestPackage installs the .deb with dpkg and must run as root (CI runs as root); rerun it as root")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "systemd-analyze", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("TestPackage needs %s (Debian: apt-get install dpkg systemd): %v", tool, err)
		}
	}
	if _, err := os.Lstat(pkgBin); err == nil {
		t.Fatalf("%s already exists (from another install); TestPackage will not overwrite it: remove it or `dpkg --purge warden`, then rerun", pkgBin)
	}
	if st := dpkgStatus(t); st != "" {
		t.Fatalf("dpkg already knows a package warden (status %q); TestPackage will not touch it: `dpkg --purge warden`, then rerun", st)
	}
	if _, err := os.Lstat(pkgStateDir); err == nil {
		t.Fatalf("%s already exists; TestPackage purges the package, which deletes it: move it away, then rerun", pkgStateDir)
	}

	bin, err := filepath.Abs(wardenBin(t))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	deb, tgz := buildPackage(t, bin, "0.0.0+e2e", out)

	// What the .deb holds, and what dpkg will treat as config files.
	debFiles := map[string]bool{}
	for _, line := range strings.Split(run(t, "dpkg-deb", "-c", deb), "\n") {
		if f := strings.Fields(line); len(f) >= 6 {
			debFiles[strings.TrimPrefix(f[len(f)-1], "./")] = true
		}
	}
	for _, want := range []string{
		"usr/bin/warden",
		"lib/systemd/system/warden-agent.service",
		"lib/systemd/system/warden-broker.service",
		"etc/warden/agent.yaml",
		"etc/warden/broker.yaml",
		"usr/share/doc/warden/copyright",
		"usr/share/doc/warden/README.md",
	} {
		if !debFiles[want] {
			t.Errorf("%s lacks %s; it holds %v", filepath.Base(deb), want, sortedKeys(debFiles))
		}
	}
	conffiles := run(t, "dpkg-deb", "-I", deb, "conffiles")
	for _, want := range []string{"/etc/warden/agent.yaml", "/etc/warden/broker.yaml"} {
		if !strings.Contains(conffiles, want+"\n") {
			t.Errorf("conffiles lack %s:\n%s", want, conffiles)
		}
	}
	if v := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Version")); v != "0.0.0+e2e" {
		t.Errorf("Version field %q, want 0.0.0+e2e", v)
	}

	// The tarball holds the same, under one top directory.
	top := fmt.Sprintf("warden_0.0.0+e2e_linux_%s/", runtime.GOARCH)
	tarFiles := tarList(t, tgz)
	for _, want := range []string{"warden", "systemd/warden-agent.service", "systemd/warden-broker.service",
		"etc/warden/agent.yaml", "etc/warden/broker.yaml", "LICENSE", "README.md"} {
		if _, ok := tarFiles[top+want]; !ok {
			t.Errorf("%s lacks %s; it holds %v", filepath.Base(tgz), top+want, sortedKeys(tarFiles))
		}
	}
	if st, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	} else if got := tarFiles[top+"warden"]; got != st.Size() {
		t.Errorf("tarball warden is %d bytes, the binary %d", got, st.Size())
	}
	if t.Failed() {
		t.FailNow()
	}

	// From here on the system holds the package: purge it whatever happens.
	t.Cleanup(func() {
		if dpkgStatus(t) != "" {
			if out, err := exec.Command("dpkg", "--purge", "warden").CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg --purge warden: %v\n%s", err, out)
			}
		}
		if _, err := os.Lstat(pkgBin); err == nil {
			t.Errorf("cleanup: %s still exists after dpkg --purge warden", pkgBin)
		}
	})

	t.Log(run(t, "dpkg", "-i", deb))
	if st := dpkgStatus(t); st != "install ok installed" {
		t.Fatalf("after dpkg -i, status %q", st)
	}
	if v := strings.TrimSpace(run(t, pkgBin, "version")); v == "" {
		t.Errorf("%s version printed nothing", pkgBin)
	} else {
		t.Logf("%s version: %s", pkgBin, v)
	}

	// The installed binary accepts the installed configuration files.
	t.Log(run(t, pkgBin, "config", "check", "--config", pkgAgentCfg))
	t.Log(run(t, pkgBin, "config", "check", "--for", "broker", "--config", "/etc/warden/broker.yaml"))

	// The installed units pass systemd's own checks, with the binary there.
	units := []string{filepath.Join(pkgUnitDir, "warden-agent.service"), filepath.Join(pkgUnitDir, "warden-broker.service")}
	verify, err := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, verify)
	}
	for _, line := range strings.Split(string(verify), "\n") {
		if strings.Contains(line, "warden") {
			t.Errorf("systemd-analyze verify names our units:\n%s", verify)
			break
		}
	}

	// The system user and group, and the config files readable by that group only.
	u, err := user.Lookup("warden")
	if err != nil {
		t.Fatalf("user warden after install: %v", err)
	}
	if u.HomeDir != pkgStateDir {
		t.Errorf("user warden's home is %q, want %s", u.HomeDir, pkgStateDir)
	}
	g, err := user.LookupGroup("warden")
	if err != nil {
		t.Fatalf("group warden after install: %v", err)
	}
	for _, p := range []string{"/etc/warden", pkgAgentCfg, "/etc/warden/broker.yaml"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		if strconv.Itoa(int(sys.Gid)) != g.Gid || sys.Uid != 0 {
			t.Errorf("%s is owned by %d:%d, want root:warden (0:%s)", p, sys.Uid, sys.Gid, g.Gid)
		}
		if st.Mode().Perm()&0o007 != 0 {
			t.Errorf("%s has mode %v: others may read it", p, st.Mode().Perm())
		}
	}
	if st, err := os.Stat("/etc/default/warden-agent"); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("/etc/default/warden-agent has mode %v, want 0600 (it holds secrets)", st.Mode().Perm())
	}
	if cf := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "warden"); !strings.Contains(cf, pkgAgentCfg) {
		t.Errorf("dpkg does not treat %s as a config file: %q", pkgAgentCfg, cf)
	}
	installed, err := os.ReadFile(pkgAgentCfg)
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile("../packaging/etc/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(installed) != string(shipped) {
		t.Errorf("%s differs from packaging/etc/agent.yaml", pkgAgentCfg)
	}

	// An upgrade keeps the operator's edit of a config file, and the state.
	edit := "\n# edited by the operator\n"
	if err := os.WriteFile(pkgAgentCfg, append(installed, edit...), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(pkgStateDir, "agent"), 0o750); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(pkgStateDir, "agent", "marker")
	if err := os.WriteFile(marker, []byte("state"), 0o640); err != nil {
		t.Fatal(err)
	}
	deb2, _ := buildPackage(t, bin, "0.0.1+e2e", t.TempDir())
	t.Log(run(t, "dpkg", "-i", deb2))
	if v := run(t, "dpkg-query", "-W", "-f=${Version}", "warden"); v != "0.0.1+e2e" {
		t.Errorf("after the upgrade, version %q, want 0.0.1+e2e", v)
	}
	if b, err := os.ReadFile(pkgAgentCfg); err != nil || !strings.HasSuffix(string(b), edit) {
		t.Errorf("the upgrade did not keep the edit of %s (err %v)", pkgAgentCfg, err)
	}

	// Remove: the binary goes, config and state stay, the user stays.
	t.Log(run(t, "dpkg", "-r", "warden"))
	if _, err := os.Lstat(pkgBin); err == nil {
		t.Errorf("%s still exists after dpkg -r", pkgBin)
	}
	for _, p := range []string{pkgAgentCfg, marker} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("dpkg -r removed %s: %v", p, err)
		}
	}

	// Purge: config and state go; the user stays (files may still be its).
	t.Log(run(t, "dpkg", "--purge", "warden"))
	for _, p := range []string{pkgBin, "/etc/warden", "/etc/default/warden-agent", pkgStateDir} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still exists after dpkg --purge", p)
		}
	}
	if _, err := user.Lookup("warden"); err != nil {
		t.Errorf("dpkg --purge removed the user warden: %v", err)
	}
	if st := dpkgStatus(t); st != "" {
		t.Errorf("after dpkg --purge, status %q", st)
	}
}

// buildPackage runs the packager on bin and returns the .deb and tarball.
func buildPackage(t *testing.T, bin, version, out string) (deb, tgz string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", ".", "--binary", bin, "--version", version, "--arch", runtime.GOARCH, "--out", out)
	cmd.Dir = "../packaging"
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packager: %v\n%s", err, b)
	} else {
		t.Logf("packager:\n%s", b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "warden_"+version+"_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("packager wrote .deb files %v, want one", debs)
	}
	tgz = filepath.Join(out, fmt.Sprintf("warden_%s_linux_%s.tar.gz", version, runtime.GOARCH))
	if _, err := os.Stat(tgz); err != nil {
		t.Fatal(err)
	}
	return debs[0], tgz
}

// dpkgStatus is dpkg's status of package warden, "" when dpkg has no record of it.
func dpkgStatus(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "warden").Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return "" // dpkg-query exits 1 for a package it does not know
	}
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	if s := strings.TrimSpace(string(out)); s != "unknown ok not-installed" {
		return s
	}
	return ""
}

// run runs a command and returns its standard output, failing the test
// (with its standard error) if it does not exit 0.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// tarList maps each regular file of a .tar.gz to its size.
func tarList(t *testing.T, path string) map[string]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	list := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return list
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			list[h.Name] = h.Size
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
