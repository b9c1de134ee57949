package detect

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/internal/testenv"
)

// fail2banWeb names the regression logs of fail2ban's filters for web
// servers and web applications, the ones that may hold access-log lines;
// the other fixtures (sshd, postfix, ...) are not web logs.
var fail2banWeb = []string{
	"apache-auth", "apache-badbots", "apache-botsearch", "apache-fakegooglebot", "apache-modsecurity",
	"apache-nohome", "apache-noscript", "apache-overflows", "apache-pass", "apache-shellshock",
	"drupal-auth", "haproxy-http-auth", "lighttpd-auth", "nginx-bad-request", "nginx-botsearch",
	"nginx-forbidden", "nginx-http-auth", "nginx-limit-req", "php-url-fopen", "traefik-auth",
}

// TestFail2banFixtures checks the hosts fail2ban's Apache and nginx filter
// tests expect to be flagged: a host whose lines are access-log lines and
// that fail2ban matches should give a signal (a line some scenario's content
// filter passes); hosts fail2ban leaves alone must give none. The fixtures
// are the ones Debian's fail2ban package installs (GPL, not copied here).
func TestFail2banFixtures(t *testing.T) {
	dir := testenv.Fail2banLogs(t)
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	f := accesslog.Auto()
	var rep strings.Builder
	var want, got, benign, falseFlags int
	for _, name := range fail2banWeb {
		file := filepath.Join(dir, name)
		if _, err := os.Stat(file); err != nil {
			// Older fail2ban releases lack some of them (1.0.2: nginx-forbidden).
			fmt.Fprintf(&rep, "  n/a   %-22s not in this fail2ban version\n", name)
			continue
		}
		lines := readLog(t, file)
		expect := map[string]bool{} // host -> fail2ban matches it
		flagged := map[string]bool{}
		parsed := 0
		for i := 0; i+1 < len(lines); i++ {
			l := lines[i]
			if !strings.HasPrefix(l, "# failJSON:") {
				continue
			}
			var fj struct {
				Match bool   `json:"match"`
				Host  string `json:"host"`
			}
			if json.Unmarshal([]byte(strings.TrimPrefix(l, "# failJSON:")), &fj) != nil || fj.Host == "" {
				continue
			}
			var e accesslog.Entry
			if f.Parse([]byte(lines[i+1]), &e) != nil {
				continue
			}
			parsed++
			expect[fj.Host] = expect[fj.Host] || fj.Match
			if len(rules.Signals(&e)) > 0 {
				flagged[fj.Host] = true
			}
		}
		if parsed == 0 {
			fmt.Fprintf(&rep, "  n/a   %-22s no access-log line (error log or another format)\n", name)
			continue
		}
		var missed, wrong []string
		w, g, b, ff := 0, 0, 0, 0
		for host, m := range expect {
			switch {
			case m && flagged[host]:
				w, g = w+1, g+1
			case m:
				w++
				missed = append(missed, host)
			case flagged[host]:
				b, ff = b+1, ff+1
				wrong = append(wrong, host)
			default:
				b++
			}
		}
		sort.Strings(missed)
		sort.Strings(wrong)
		want, got, benign, falseFlags = want+w, got+g, benign+b, falseFlags+ff
		fmt.Fprintf(&rep, "  %-28s hosts flagged %d/%d, benign hosts flagged %d/%d", name, g, w, ff, b)
		if len(missed) > 0 {
			fmt.Fprintf(&rep, "; missed %v", missed)
		}
		if len(wrong) > 0 {
			fmt.Fprintf(&rep, "; wrongly flagged %v", wrong)
		}
		rep.WriteString("\n")
	}
	t.Logf("fail2ban fixtures: %d of %d hosts to flag are flagged; %d of %d hosts to leave alone are flagged\n%s", got, want, falseFlags, benign, rep.String())
	if want == 0 {
		t.Fatal("no access-log fixture found")
	}
	if got*10 < want*9 {
		t.Errorf("only %d of %d hosts flagged", got, want)
	}
	if falseFlags > 0 {
		t.Errorf("%d hosts fail2ban leaves alone are flagged", falseFlags)
	}
}
