package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/testenv"
)

// alertsOf reads /v1/alerts from a node.
func alertsOf(t *testing.T, addr string) []detect.Alert {
	var out []detect.Alert
	if err := getJSON("http://"+addr+"/v1/alerts", &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// readAlertsTopic reads the alerts topic as a read-committed consumer does.
func readAlertsTopic(t *testing.T, broker, topic string) []detect.Alert {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []detect.Alert
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var a detect.Alert
			if err := json.Unmarshal(r.Value, &a); err != nil {
				t.Errorf("alerts topic record %d: %v", r.Offset, err)
			}
			out = append(out, a)
		})
		if n == 0 {
			return out
		}
	}
}

// TestProcesses_AlertsExactlyOnceAcrossLeaderKill sends traffic with attacks
// through a 3-process cluster, SIGKILLs the Raft leader (the alert
// publisher) mid-stream, and checks that every node serves the same alerts
// as warden analyze on the topic's records, and that the alerts topic holds
// each of them exactly once.
func TestProcesses_AlertsExactlyOnceAcrossLeaderKill(t *testing.T) {
	c := newProcCluster(t, 3, 6)
	c.waitOwned(6, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 23)
	p.gen.AttackShare = 0.2
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 16; i++ {
			p.produce(1000)
			time.Sleep(150 * time.Millisecond)
		}
	}()
	var leader string
	waitFor(t, 30*time.Second, "alerts published", func() bool {
		ci, err := c.clusterInfo("n1")
		if err != nil || ci.Leader == "" {
			return false
		}
		leader = ci.Leader
		return len(alertsOf(t, c.specs["n1"].http)) > 20
	})
	c.killAgent(leader)
	time.Sleep(1500 * time.Millisecond)
	c.startAgent(leader, 3)
	<-done
	c.waitApplied(p, 60*time.Second, "n1", "n2", "n3")

	// The oracle: warden analyze over the records of the topic.
	recs := readTopic(t, c.broker, c.topic)
	var file bytes.Buffer
	for part := int32(0); part < 6; part++ {
		for _, r := range recs[part] {
			file.Write(r.Value)
			file.WriteByte('\n')
		}
	}
	path := filepath.Join(t.TempDir(), "topic.log")
	os.WriteFile(path, file.Bytes(), 0o644)
	out, err := exec.Command(wardenBin(t), "analyze", "--json", "--doc", "alerts", "--quiet", path).Output()
	if err != nil {
		t.Fatalf("warden analyze: %v", err)
	}
	var want []detect.Alert
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	key := func(a detect.Alert) string {
		return a.ID + " " + a.Scenario + " " + a.SourceIP + " " + strconv.Itoa(a.Events)
	}
	set := func(as []detect.Alert) []string {
		var s []string
		for _, a := range as {
			s = append(s, key(a))
		}
		sort.Strings(s)
		return s
	}
	if len(want) < 20 {
		t.Fatalf("analyze found only %d alerts; the workload lacks attacks", len(want))
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		got := alertsOf(t, c.specs[id].http)
		if strings.Join(set(got), "\n") != strings.Join(set(want), "\n") {
			t.Fatalf("%s: %d alerts, analyze %d; the sets differ", id, len(got), len(want))
		}
	}
	// Each alert exactly once in the alerts topic.
	var inTopic []detect.Alert
	waitFor(t, 30*time.Second, "every alert in the alerts topic", func() bool {
		inTopic = readAlertsTopic(t, c.broker, c.topic+".alerts")
		return len(inTopic) >= len(want)
	})
	seen := map[string]int{}
	for _, a := range inTopic {
		seen[a.ID]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("alert %s is %d times in the alerts topic", id, n)
		}
	}
	if strings.Join(set(inTopic), "\n") != strings.Join(set(want), "\n") {
		t.Errorf("alerts topic holds %d alerts, analyze found %d; the sets differ", len(inTopic), len(want))
	}
	t.Logf("%d alerts; leader %s SIGKILLed mid-stream; every node and the alerts topic (each alert once) agree with warden analyze", len(want), leader)
}

// TestProcesses_BouncerReceivesBansAndTheirExpiry runs Debian's
// crowdsec-custom-bouncer, a real CrowdSec bouncer, against a Warden node:
// a ban Warden decides reaches the bouncer's script, its expiry removes it,
// and an operator's decision added and deleted through the admin API does
// the same.
func TestProcesses_BouncerReceivesBansAndTheirExpiry(t *testing.T) {
	bouncer := testenv.Tool(t, "crowdsec-custom-bouncer")
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rules, []byte("scenarios:\n  - {name: http-bad-user-agent, crowdsec: crowdsecurity/http-bad-user-agent, filter: {ua_contains: [sqlmap]}, trigger: match, ban: 4s}\n"), 0o644)
	c := newProcClusterWith(t, 1, 2, map[string][]string{"n1": {"--rules", rules, "--bouncer-keys", "secret-key", "--admin-token", "admin-secret",
		"--allow", "192.0.2.0/24"}})
	api := c.specs["n1"].http
	waitFor(t, 30*time.Second, "node ready", func() bool {
		resp, err := http.Get("http://" + api + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	script := filepath.Join(dir, "enforce.sh")
	calls := filepath.Join(dir, "calls.log")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2\" >> "+calls+"\n"), 0o755)
	cfg := filepath.Join(dir, "bouncer.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`bin_path: %s
feed_via_stdin: false
total_retries: 0
scenarios_containing: []
scenarios_not_containing: []
origins: []
piddir: %s
update_frequency: 1s
cache_retention_duration: 1s
daemonize: false
log_mode: file
log_dir: %s
log_level: debug
api_url: http://%s/
api_key: secret-key
prometheus:
  enabled: false
`, script, dir, dir, api)), 0o644)
	cmd := exec.Command(bouncer, "-c", cfg)
	var bout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &bout, &bout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(stop)
	has := func(s string) bool {
		b, _ := os.ReadFile(calls)
		return strings.Contains(string(b), s)
	}

	// A scanner: Warden's own ban (4 s, from the rules above).
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker), kgo.DefaultProduceTopic(c.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700")
	for _, ip := range []string{"203.0.113.66", "192.0.2.10"} {
		line := fmt.Sprintf(`%s - - [%s] "GET /?id=1 HTTP/1.1" 200 10 "-" "sqlmap/1.7.2#stable (https://sqlmap.org)"`, ip, now)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(detect.PartitionKey(ip)), Value: []byte(line)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the bouncer's script called with add 203.0.113.66", func() bool { return has("add 203.0.113.66") })
	waitFor(t, 20*time.Second, "the ban's expiry reaching the script (del)", func() bool { return has("del 203.0.113.66") })
	if has("192.0.2.10") {
		t.Error("an allow-listed address reached the bouncer")
	}

	// An operator's decision, then its deletion.
	post := func(body string, token string) *http.Response {
		req, _ := http.NewRequest("POST", "http://"+api+"/v1/decisions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post(`{"value":"198.51.100.7","duration":"1h","reason":"test"}`, "wrong"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong admin token: status %d", r.StatusCode)
	}
	if r := post(`{"value":"198.51.100.7","duration":"1h","reason":"test"}`, "admin-secret"); r.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/decisions: status %d", r.StatusCode)
	}
	waitFor(t, 20*time.Second, "manual decision at the bouncer", func() bool { return has("add 198.51.100.7") })
	for format, want := range map[string]string{"plain": "198.51.100.7\n", "nginx": "deny 198.51.100.7;", "nftables": "198.51.100.7/32"} {
		resp, err := http.Get("http://" + api + "/v1/blocklist?format=" + format)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if !strings.Contains(b.String(), want) {
			t.Errorf("blocklist %s lacks %q:\n%s", format, want, b.String())
		}
	}
	var ds []detect.DecisionView
	getJSON("http://"+api+"/v1/decisions", &ds)
	var id int64
	for _, d := range ds {
		if d.Value == "198.51.100.7" {
			id = d.ID
		}
	}
	req, _ := http.NewRequest("DELETE", "http://"+api+"/v1/decisions/"+strconv.FormatInt(id, 10), nil)
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("DELETE: %v %v", err, resp)
	}
	waitFor(t, 20*time.Second, "deleted decision removed at the bouncer", func() bool { return has("del 198.51.100.7") })

	// Blocklists and the stream's key check.
	resp, err = http.Get("http://" + api + "/v1/decisions/stream")
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("stream without a key: %v", resp.StatusCode)
	}
	stop()
	b, _ := os.ReadFile(calls)
	t.Logf("bouncer script calls:\n%s", b)
}
