package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenhq/warden/analytics"
)

func analyze(t *testing.T, stdin []byte, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(wardenBin(t), append([]string{"analyze"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("warden analyze %v: %v\n%s", args, err, e.String())
	}
	return o.String(), e.String()
}

func statsOf(t *testing.T, out string) analytics.Stats {
	t.Helper()
	var st analytics.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("not a stats document: %v\n%.300s", err, out)
	}
	return st
}

const timedLines = `10.0.0.1 - - [27/Nov/2026:10:00:01 +0000] "GET /a HTTP/1.1" 200 100 "-" "curl/8" 1200
10.0.0.2 - - [27/Nov/2026:10:00:30 +0000] "GET /missing HTTP/1.1" 404 10 "-" "curl/8" 800
10.0.0.1 - - [27/Nov/2026:10:01:05 +0000] "POST /login HTTP/1.1" 500 0 "https://example.org/" "Mozilla/5.0" 250000

10.0.0.3 - - [27/Nov/2026:11:30:00 +0000] "GET /a?x=1 HTTP/1.1" 200 50 "-" "curl/8" 3000
not a log line at all
`

// TestAnalyze_FormatsRangesAndInputs runs warden analyze the way a user
// would: an httpd.conf LogFormat line with %D, a time range, gzip and
// standard input, several files, syslog-prefixed lines, and the text report.
func TestAnalyze_FormatsRangesAndInputs(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "access.log")
	if err := os.WriteFile(plain, []byte(timedLines), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := `LogFormat "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\" %D" timed`

	out, _ := analyze(t, nil, plain, "--json", "--log-format", conf)
	st := statsOf(t, out)
	if st.Requests != 4 || st.Malformed != 1 || st.Bytes != 160 || st.UniqueIPs != 3 {
		t.Errorf("requests %d malformed %d bytes %d unique %d; want 4, 1, 160, 3", st.Requests, st.Malformed, st.Bytes, st.UniqueIPs)
	}
	if st.LatencyMs == nil || st.LatencyMs.Max != 250 || st.Status["404"] != 1 || st.StatusClass["5xx"] != 1 {
		t.Errorf("latency %+v status %v", st.LatencyMs, st.Status)
	}
	if len(st.Top404Paths) != 1 || st.Top404Paths[0].Key != "/missing" || st.TopPaths[0] != (analytics.KeyCount{Key: "/a", Count: 2}) {
		t.Errorf("top paths %v, 404 %v", st.TopPaths, st.Top404Paths)
	}
	if len(st.Series) != 3 || st.From != "2026-11-27T10:00:00Z" || st.To != "2026-11-27T11:31:00Z" {
		t.Errorf("series %d points from %s to %s", len(st.Series), st.From, st.To)
	}

	// A time range selects windows; the flags may follow the file.
	out, _ = analyze(t, nil, plain, "--log-format", conf, "--from", "2026-11-27T10:01", "--to", "2026-11-27T11:00", "--json")
	if st := statsOf(t, out); st.Requests != 1 || st.Methods["POST"] != 1 || st.From != "2026-11-27T10:01:00Z" {
		t.Errorf("range: requests %d methods %v from %s", st.Requests, st.Methods, st.From)
	}

	// gzip, standard input and two files add up.
	gz := filepath.Join(dir, "access.log.1.gz")
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(timedLines))
	zw.Close()
	if err := os.WriteFile(gz, zb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = analyze(t, []byte(timedLines), "--json", "--log-format", conf, plain, gz, "-")
	if st := statsOf(t, out); st.Requests != 12 || st.Malformed != 3 {
		t.Errorf("three inputs: requests %d malformed %d; want 12, 3", st.Requests, st.Malformed)
	}

	// Syslog-prefixed combined lines are detected, and the choice reported.
	var sys strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(timedLines), "\n") {
		if strings.HasPrefix(l, "10.") {
			l = l[:strings.LastIndexByte(l, ' ')] // plain combined
			sys.WriteString("Nov 27 10:00:00 web1 nginx: " + l + "\n")
		}
	}
	syslogFile := filepath.Join(dir, "syslog")
	os.WriteFile(syslogFile, []byte(sys.String()), 0o644)
	out, errOut := analyze(t, nil, syslogFile, "--json")
	if st := statsOf(t, out); st.Requests != 4 || st.Malformed != 0 {
		t.Errorf("syslog: requests %d malformed %d", st.Requests, st.Malformed)
	}
	if !strings.Contains(errOut, "log format syslog+combined (detected: 4 of 4 sample lines parse)") {
		t.Errorf("detection not reported on stderr: %q", errOut)
	}

	// The terminal report.
	out, _ = analyze(t, nil, plain, "--log-format", conf)
	for _, want := range []string{"Requests     4   (malformed lines: 1)", "Latency ms   p50", "Top 404 paths", "/missing",
		"Requests per hour (UTC)", "2026-11-27 10:00", "access.log:6: bad client: not a log line at all"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestAnalyze_MaxLatenessLeavesLateEventsOutOfDetection: a burst of probes
// dated two hours before the lines logged ahead of it raises alerts as
// usual, and none with --max-lateness 1h (the cluster's same setting),
// while the load figures count every line either way.
func TestAnalyze_MaxLatenessLeavesLateEventsOutOfDetection(t *testing.T) {
	var b strings.Builder
	for i := range 30 {
		fmt.Fprintf(&b, "198.51.100.%d - - [01/Dec/2026:12:00:%02d +0000] \"GET /index.html HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0\"\n", i+1, i)
	}
	probes := []string{"/.env", "/.git/config", "/wp-config.php.bak", "/backup.sql", "/phpmyadmin/", "/server-status", "/config.json", "/.aws/credentials"}
	for i := range 60 {
		fmt.Fprintf(&b, "203.0.113.9 - - [01/Dec/2026:10:00:%02d +0000] \"GET %s%d HTTP/1.1\" 404 196 \"-\" \"Nikto/2.5.0\"\n", i, probes[i%len(probes)], i)
	}
	in := []byte(b.String())
	on, _ := analyze(t, in, "--json", "--doc", "alerts", "-")
	late, _ := analyze(t, in, "--json", "--doc", "alerts", "--max-lateness", "1h", "-")
	if n := len(alertPairs(t, []byte(on))); n == 0 {
		t.Fatal("the probes raised no alert without a max lateness: the test shows nothing")
	}
	if got := alertPairs(t, []byte(late)); len(got) != 0 {
		t.Errorf("with --max-lateness 1h, late probes still raised %v", got)
	}
	for _, args := range [][]string{{"--json", "-"}, {"--json", "--max-lateness", "1h", "-"}} {
		out, _ := analyze(t, in, args...)
		if st := statsOf(t, out); st.Requests != 90 {
			t.Errorf("%v: %d requests counted, want 90", args, st.Requests)
		}
	}
}
