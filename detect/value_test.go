package detect

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/testenv"
)

// hostile are values that are not an address or a range, some of them
// directives of their own once written into a server's configuration.
var hostile = []string{
	"all", "", " ", "localhost", "1.2.3.4; allow all", "1.2.3.4;\ndeny all", "::1%eth0", "::1%x; allow all",
	"10.0.0.0/8 x", "10.0.0.0/33", "1.2.3.4/", "{ 1.2.3.4 }", "1.2.3.4\n", "}", "# comment",
}

func TestDecisionValue(t *testing.T) {
	good := map[string][2]string{
		"203.0.113.7":      {"203.0.113.7", "Ip"},
		"2001:DB8:0::1":    {"2001:db8::1", "Ip"},
		"::ffff:192.0.2.1": {"192.0.2.1", "Ip"},
		"198.51.100.7/24":  {"198.51.100.0/24", "Range"},
		"2001:db8::/48":    {"2001:db8::/48", "Range"},
	}
	for in, want := range good {
		v, scope, ok := DecisionValue(in)
		if !ok || v != want[0] || scope != want[1] {
			t.Errorf("DecisionValue(%q) = %q %q %v, want %q %q", in, v, scope, ok, want[0], want[1])
		}
	}
	for _, in := range hostile {
		if v, _, ok := DecisionValue(in); ok {
			t.Errorf("DecisionValue(%q) = %q, want refused", in, v)
		}
	}
}

// TestBlocklistSkipsNonAddresses: whatever the values given, every line of
// every format is an address or a range, and the count of those left out
// is reported.
func TestBlocklistSkipsNonAddresses(t *testing.T) {
	good := []string{"203.0.113.7", "198.51.100.0/24", "2001:DB8::1", "::ffff:192.0.2.1"}
	values := append(append([]string(nil), good...), hostile...)
	lines := map[string]func(string) (string, bool){
		"plain": func(l string) (string, bool) { return l, true },
		"nginx": func(l string) (string, bool) {
			v, ok := strings.CutPrefix(l, "deny ")
			return strings.TrimSuffix(v, ";"), ok
		},
		"apache": func(l string) (string, bool) { return strings.CutPrefix(strings.TrimSpace(l), "Require not ip ") },
	}
	for format, value := range lines {
		out, skipped, err := RenderBlocklist(format, values)
		if err != nil {
			t.Fatal(err)
		}
		if skipped != len(hostile) {
			t.Errorf("%s: %d skipped, want %d", format, skipped, len(hostile))
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			v, ok := value(l)
			if !ok {
				continue
			}
			if _, _, valid := DecisionValue(v); !valid {
				t.Errorf("%s: line %q holds %q, not an address or range", format, l, v)
			}
			got = append(got, v)
		}
		if want := "203.0.113.7 198.51.100.0/24 2001:db8::1 192.0.2.1"; strings.Join(got, " ") != want {
			t.Errorf("%s: values %q, want %s", format, got, want)
		}
		if strings.Contains(out, "all;") || strings.Contains(out, "allow") {
			t.Errorf("%s output carries a directive:\n%s", format, out)
		}
	}
	out, skipped, _ := RenderBlocklist("nftables", values)
	if skipped != len(hostile) || !strings.Contains(out, "elements = { 203.0.113.7/32, 198.51.100.0/24, 192.0.2.1/32 }") ||
		!strings.Contains(out, "elements = { 2001:db8::1/128 }") || strings.Contains(out, "allow") {
		t.Errorf("nftables: %d skipped:\n%s", skipped, out)
	}
	nft := testenv.Tool(t, "nft")
	f := filepath.Join(t.TempDir(), "warden.nft")
	os.WriteFile(f, []byte(out), 0o644)
	if msg, err := exec.Command(nft, "-c", "-f", f).CombinedOutput(); err != nil {
		t.Errorf("nft -c rejects the ruleset: %v\n%s\n%s", err, msg, out)
	}
}

// TestBookRefusesNonAddresses: an alert whose source is not an address is
// kept, but makes no decision; a manual decision must be an address or a
// range, stored in canonical form.
func TestBookRefusesNonAddresses(t *testing.T) {
	s := &Scenario{Name: "x", Ban: time.Hour, Decision: "ban"}
	b := NewBook(DefaultBookConfig())
	for i, src := range append([]string{"::1%eth0"}, hostile...) {
		if d := b.AddAlert(Alert{ID: "a", SourceIP: src, Time: int64(i)}, s); d != nil {
			t.Errorf("alert from %q made decision %+v", src, d)
		}
	}
	if len(b.Decisions) != 0 || len(b.Offenders) != 0 || len(b.Alerts) != len(hostile)+1 {
		t.Fatalf("%d decisions, %d offenders, %d alerts", len(b.Decisions), len(b.Offenders), len(b.Alerts))
	}
	if d := b.AddAlert(Alert{ID: "b", SourceIP: "::ffff:192.0.2.1", Time: 1}, s); d == nil || d.Value != "192.0.2.1" || len(b.Offenders["192.0.2.1"]) != 1 {
		t.Errorf("IPv4-mapped source: %+v, offenders %v", d, b.Offenders)
	}
	for _, v := range hostile {
		if d, err := b.AddManual(v, "ban", "", 1, time.Hour); err == nil {
			t.Errorf("AddManual(%q) = %+v", v, d)
		}
	}
	if d, err := b.AddManual("2001:DB8:0::1", "ban", "", 1, time.Hour); err != nil || d.Value != "2001:db8::1" || d.Scope != "Ip" {
		t.Errorf("AddManual(2001:DB8:0::1) = %+v, %v", d, err)
	}
	if len(b.Decisions) != 2 {
		t.Errorf("%d decisions, want 2", len(b.Decisions))
	}
}
