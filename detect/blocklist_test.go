package detect

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenhq/warden/internal/testenv"
)

func TestBlocklistFormats(t *testing.T) {
	values := []string{"203.0.113.7", "198.51.100.0/24", "2001:db8::1"}
	want := map[string][]string{
		"plain":    {"203.0.113.7\n", "198.51.100.0/24\n", "2001:db8::1\n"},
		"nginx":    {"deny 203.0.113.7;", "deny 198.51.100.0/24;", "deny 2001:db8::1;"},
		"apache":   {"<RequireAll>", "Require all granted", "Require not ip 203.0.113.7", "Require not ip 2001:db8::1", "</RequireAll>"},
		"nftables": {"set blocklist4", "elements = { 203.0.113.7/32, 198.51.100.0/24 }", "elements = { 2001:db8::1/128 }", "ip saddr @blocklist4 drop"},
	}
	for format, parts := range want {
		out, err := Blocklist(format, values)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if !strings.Contains(out, p) {
				t.Errorf("%s lacks %q:\n%s", format, p, out)
			}
		}
	}
	if _, err := Blocklist("iptables", values); err == nil {
		t.Error("unknown format accepted")
	}
	// nftables itself checks the ruleset, empty sets included.
	nft := testenv.Tool(t, "nft")
	for _, vs := range [][]string{values, nil} {
		out, _ := Blocklist("nftables", vs)
		f := filepath.Join(t.TempDir(), "warden.nft")
		os.WriteFile(f, []byte(out), 0o644)
		if msg, err := exec.Command(nft, "-c", "-f", f).CombinedOutput(); err != nil {
			t.Errorf("nft -c rejects the ruleset: %v\n%s\n%s", err, msg, out)
		}
	}
}
