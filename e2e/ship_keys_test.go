package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/testenv"
)

// TestProcesses_ShipKeysByTheParsedClient: ship keys every record by the
// network of the client of the parsed line (detect.PartitionKey) (default --log-format auto), so JSON lines and
// syslog-framed lines are keyed by their real client, not by a prefix such
// as `{"remote_addr":` or `<13>Dec`; kcat shows the keys.
func TestProcesses_ShipKeysByTheParsedClient(t *testing.T) {
	c := newProcClusterIdle(t, 0, 3, nil)
	lines := map[string]string{ // line -> its client
		`{"remote_addr":"192.0.2.10","time_local":"02/Nov/2026:10:00:00 +0000","request":"GET /a HTTP/1.1","status":"200","body_bytes_sent":"5","http_user_agent":"curl/8"}`: "192.0.2.10",
		`{"remote_addr":"192.0.2.11","time_iso8601":"2026-11-02T10:00:01+00:00","request":"GET /b HTTP/1.1","status":404,"body_bytes_sent":9,"http_user_agent":"curl/8"}`:    "192.0.2.11",
		`<13>Dec  1 10:00:00 web1 nginx: 198.51.100.20 - - [02/Nov/2026:10:00:02 +0000] "GET /c HTTP/1.1" 200 5 "-" "curl/8"`:                                                "198.51.100.20",
		`<13>Dec 11 10:00:03 web1 apache: 198.51.100.21 - - [02/Nov/2026:10:00:03 +0000] "GET /d HTTP/1.1" 200 5 "-" "curl/8"`:                                               "198.51.100.21",
		`<190>1 2026-11-02T10:00:04Z web1 nginx 77 - - 2001:db8::22 - - [02/Nov/2026:10:00:04 +0000] "GET /e HTTP/1.1" 200 5 "-" "curl/8"`:                                   "2001:db8::22",
		`www.example.com:443 203.0.113.23 - - [02/Nov/2026:10:00:05 +0000] "GET /f HTTP/1.1" 200 5 "-" "curl/8"`:                                                             "203.0.113.23",
		`203.0.113.24 - - [02/Nov/2026:10:00:06 +0000] "GET /g HTTP/1.1" 200 5 "-" "curl/8"`:                                                                                 "203.0.113.24",
	}
	var file strings.Builder
	for l := range lines {
		file.WriteString(l + "\n")
	}
	path := filepath.Join(t.TempDir(), "mixed.log")
	if err := os.WriteFile(path, []byte(file.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(wardenBin(t), "ship", "--brokers", c.broker, "--topic", c.topic, "--quiet", path).CombinedOutput(); err != nil {
		t.Fatalf("warden ship: %v\n%s", err, out)
	}
	out, err := exec.Command(testenv.Tool(t, "kcat"), "-b", c.broker, "-C", "-t", c.topic, "-e", "-q", "-f", "%k\t%s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(got) != len(lines) {
		t.Fatalf("kcat read %d records, want %d:\n%s", len(got), len(lines), out)
	}
	for _, r := range got {
		key, line, _ := strings.Cut(r, "\t")
		want, ok := lines[line]
		if !ok {
			t.Fatalf("unexpected record %q", r)
		}
		if want = detect.PartitionKey(want); key != want {
			t.Errorf("key %q for %s, want %q", key, line, want)
		}
	}
}
