package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/internal/testenv"
)

// A newcomer's machine: the repository cloned alone into an empty
// directory, with nothing beside it. The unit tier passes there, and the
// demo built there serves a cluster whose /v1/stats counts requests within
// 10 seconds.
func TestFreshClone_UnitTierAndDemo(t *testing.T) {
	root := testenv.Root(t)
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git not found: it is a prerequisite (apt-get install git)")
	}
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Fatal("make not found: it is a prerequisite (apt-get install make)")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "clone", "warden")
	out, err := exec.Command(git, "clone", "-q", root, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	// Nothing beside the clone: its parent holds it alone, and that
	// parent's parent holds only the parent.
	for _, d := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		entries, err := os.ReadDir(d)
		if err != nil || len(entries) != 1 {
			t.Fatalf("%s holds %d entries beside the clone (%v)", d, len(entries), err)
		}
	}
	start := time.Now()
	cmd := exec.Command(makeBin, "test-unit", "build")
	cmd.Dir = dir
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make test-unit in a fresh clone: %v\n%s", err, tail(out, 6000))
	}
	t.Logf("fresh clone: make test-unit build took %s", time.Since(start).Round(time.Second))

	demo := exec.Command(filepath.Join(dir, "bin", "warden"), "demo", "--duration", "25s", "--http-port", "0", "--status-every", "30s")
	demo.Dir = dir
	stdout, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	demo.Stderr = &stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = demo.Process.Kill(); _ = demo.Wait() }()
	urlRe := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if m := urlRe.FindString(sc.Text()); m != "" && !sent {
				urls <- m
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var url string
	select {
	case url = <-urls:
	case <-time.After(20 * time.Second):
		t.Fatalf("the demo printed no node URL:\n%s", stderr.String())
	}
	started := time.Now()
	var st analytics.Stats
	waitFor(t, 10*time.Second, "the demo's /v1/stats counts requests", func() bool {
		return getJSON(url+"/v1/stats", &st) == nil && st.Requests > 0
	})
	t.Logf("demo: %d requests counted %s after its URL was printed", st.Requests, time.Since(started).Round(100*time.Millisecond))
}
