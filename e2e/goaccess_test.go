package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/internal/testenv"
)

// goaccessReport is the part of GoAccess's JSON output we compare.
type goaccessReport struct {
	General struct {
		TotalRequests int64 `json:"total_requests"`
		ValidRequests int64 `json:"valid_requests"`
		Bandwidth     int64 `json:"bandwidth"`
	} `json:"general"`
	Hosts struct {
		Data []struct {
			Data string `json:"data"`
			Hits struct {
				Count int64 `json:"count"`
			} `json:"hits"`
		} `json:"data"`
	} `json:"hosts"`
	StatusCodes struct {
		Data []struct {
			Data string `json:"data"`
			Hits struct {
				Count int64 `json:"count"`
			} `json:"hits"`
		} `json:"data"`
	} `json:"status_codes"`
}

// TestAnalyzeAgreesWithGoAccess runs GoAccess (Debian's goaccess, COMBINED
// format, JSON output) and warden analyze --json on the same real log and
// compares total requests, bandwidth, requests per status class and hits per
// client IP.
func TestAnalyzeAgreesWithGoAccess(t *testing.T) {
	goaccess := testenv.Tool(t, "goaccess")
	log := testenv.Data(t, "elastic-apache/apache_logs")
	dir := t.TempDir()
	gaOut := filepath.Join(dir, "goaccess.json")
	cmd := exec.Command(goaccess, log, "--log-format=COMBINED", "--no-global-config", "--max-items=1000000", "-o", gaOut)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("goaccess: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(gaOut)
	if err != nil {
		t.Fatal(err)
	}
	var ga goaccessReport
	// GoAccess writes some decoded paths as raw bytes that are not UTF-8;
	// the fields compared here are plain ASCII either way.
	if err := json.Unmarshal(bytes.ToValidUTF8(raw, []byte("?")), &ga); err != nil {
		t.Fatalf("goaccess JSON: %v", err)
	}

	out, err := exec.Command(wardenBin(t), "analyze", "--json", "--top", "0", "--quiet", log).Output()
	if err != nil {
		t.Fatalf("warden analyze: %v", err)
	}
	var st analytics.Stats
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}

	if ga.General.ValidRequests == 0 {
		t.Fatal("GoAccess counted no requests; its output format changed?")
	}
	if st.Requests != ga.General.ValidRequests || st.Malformed != ga.General.TotalRequests-ga.General.ValidRequests {
		t.Errorf("requests: warden %d (+%d malformed), goaccess %d valid of %d", st.Requests, st.Malformed, ga.General.ValidRequests, ga.General.TotalRequests)
	}
	if st.Bytes != ga.General.Bandwidth {
		t.Errorf("bandwidth: warden %d, goaccess %d", st.Bytes, ga.General.Bandwidth)
	}
	gaClasses := map[string]int64{}
	for _, s := range ga.StatusCodes.Data {
		gaClasses[strings.Fields(s.Data)[0]] += s.Hits.Count // "2xx Success"
	}
	for c, n := range gaClasses {
		if st.StatusClass[c] != n {
			t.Errorf("status class %s: warden %d, goaccess %d", c, st.StatusClass[c], n)
		}
	}
	if len(st.StatusClass) != len(gaClasses) {
		t.Errorf("status classes: warden %v, goaccess %v", st.StatusClass, gaClasses)
	}
	ours := map[string]int64{}
	for _, kc := range st.TopIPs {
		ours[kc.Key] = kc.Count
	}
	if len(ours) != len(ga.Hosts.Data) {
		t.Errorf("client IPs: warden %d, goaccess %d", len(ours), len(ga.Hosts.Data))
	}
	var diffs int
	for _, h := range ga.Hosts.Data {
		if ours[h.Data] != h.Hits.Count {
			if diffs++; diffs <= 5 {
				t.Errorf("hits of %s: warden %d, goaccess %d", h.Data, ours[h.Data], h.Hits.Count)
			}
		}
	}
	t.Logf("agree with GoAccess: %d requests, %d bytes, classes %v, hits of all %d client IPs", st.Requests, st.Bytes, gaClasses, len(ga.Hosts.Data))
}
