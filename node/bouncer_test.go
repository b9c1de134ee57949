package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/detect"
)

// bouncerClient pulls a node's stream as a CrowdSec bouncer does: one
// HTTP client (kept-alive connections), one key, one user agent.
type bouncerClient struct {
	t        *testing.T
	addr     string
	key, ua  string
	instance string
	cl       *http.Client
}

func newBouncer(t *testing.T, n *Node, key, ua string) *bouncerClient {
	return &bouncerClient{t: t, addr: n.HTTPAddr(), key: key, ua: ua, cl: &http.Client{Timeout: 10 * time.Second}}
}

func (b *bouncerClient) request(method, path string) *http.Request {
	req, err := http.NewRequest(method, "http://"+b.addr+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", b.key)
	req.Header.Set("User-Agent", b.ua)
	if b.instance != "" {
		req.Header.Set(InstanceHeader, b.instance)
	}
	return req
}

// pull GETs /v1/decisions/stream and returns the values new and deleted.
func (b *bouncerClient) pull(startup bool, params string) (newVals, deleted string) {
	b.t.Helper()
	path := "/v1/decisions/stream?startup=" + strconv.FormatBool(startup)
	if params != "" {
		path += "&" + params
	}
	resp, err := b.cl.Do(b.request(http.MethodGet, path))
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("pull: %s", resp.Status)
	}
	var a streamAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		b.t.Fatal(err)
	}
	join := func(ds []streamDecision) string {
		var s []string
		for _, d := range ds {
			s = append(s, d.Value)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	return join(a.New), join(a.Deleted)
}

// dropPull sends a pull on a connection of its own and closes it without
// reading the answer, as a bouncer that times out or crashes does.
func (b *bouncerClient) dropPull() {
	b.t.Helper()
	c, err := net.Dial("tcp", b.addr)
	if err != nil {
		b.t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /v1/decisions/stream?startup=false HTTP/1.1\r\nHost: %s\r\nX-Api-Key: %s\r\nUser-Agent: %s\r\n\r\n", b.addr, b.key, b.ua)
	c.Close()
}

func (b *bouncerClient) status(method, path, body string) (int, string) {
	b.t.Helper()
	req := b.request(method, path)
	if body != "" {
		req.Body = io.NopCloser(strings.NewReader(body))
	}
	resp, err := b.cl.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func addDecision(t *testing.T, n *Node, value, dur string) int64 {
	t.Helper()
	code, body := postDecision(t, n, "boss", fmt.Sprintf(`{"value":%q,"duration":%q,"reason":"test"}`, value, dur))
	if code != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", value, code, body)
	}
	var v detect.DecisionView
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.ID == 0 {
		t.Fatalf("POST %s: %s", value, body)
	}
	return v.ID
}

func deleteDecision(t *testing.T, n *Node, id int64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+n.HTTPAddr()+"/v1/decisions/"+strconv.FormatInt(id, 10), nil)
	req.Header.Set("Authorization", "Bearer boss")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("DELETE %d: %s %s", id, resp.Status, b)
	}
}

// An operator's write made while the cluster has no leader (an election)
// waits for one, and is applied once: it answers as it would have, not 503.
func TestDecisions_WritesDuringAnElectionWaitForALeader(t *testing.T) {
	n := bouncerNode(t, nil)
	n.noLeaderWrites.Store(5)
	id := addDecision(t, n, "192.0.2.7", "1h")
	if left := n.noLeaderWrites.Load(); left > 0 {
		t.Fatalf("%d elections left: the POST did not meet them", left)
	}
	n.noLeaderWrites.Store(5)
	deleteDecision(t, n, id)
	if left := n.noLeaderWrites.Load(); left > 0 {
		t.Fatalf("%d elections left: the DELETE did not meet them", left)
	}
	var found []detect.Decision
	for _, d := range n.fsm.Decisions(true, time.Now()) {
		if d.Value == "192.0.2.7" {
			found = append(found, d)
		}
	}
	if len(found) != 1 || !found[0].Deleted || found[0].ID != id {
		t.Fatalf("decisions for 192.0.2.7 after the elections: %+v, want decision %d, once, deleted", found, id)
	}
	n.noLeaderWrites.Store(5)
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.HTTPAddr()+"/v1/config", strings.NewReader(`{"log_format":"combined","retention":"2h"}`))
	req.Header.Set("Authorization", "Bearer boss")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if cc := n.fsm.Config(); resp.StatusCode != http.StatusOK || cc == nil || cc.LogFormat != "combined" {
		t.Fatalf("POST /v1/config during an election: %s %s; config %+v", resp.Status, b, cc)
	}
}

func bouncerNode(t *testing.T, adjust func(*Config)) *Node {
	return startSolo(t, "solo", func(c *Config) {
		c.BouncerKeys, c.AdminToken = []string{"key-1", "key-2"}, "boss"
		if adjust != nil {
			adjust(c)
		}
	})
}

// TestBouncer_LostAnswerDoesNotLoseDeletion: a pull whose answer the
// bouncer never reads (the connection dropped), and one whose answer it
// reads and throws away, do not lose a deletion: the next pull has it.
func TestBouncer_LostAnswerDoesNotLoseDeletion(t *testing.T) {
	n := bouncerNode(t, nil)
	gone := addDecision(t, n, "192.0.2.1", "4h")
	addDecision(t, n, "192.0.2.2", "4h")
	b := newBouncer(t, n, "key-1", "crowdsec-firewall-bouncer/v0.0.31")
	if nv, _ := b.pull(true, ""); nv != "192.0.2.1,192.0.2.2" {
		t.Fatalf("startup: new %q", nv)
	}
	if nv, del := b.pull(false, ""); nv != "" || del != "" {
		t.Fatalf("nothing changed, yet new %q deleted %q", nv, del)
	}
	deleteDecision(t, n, gone)
	b.dropPull()
	b.pull(false, "") // read and thrown away
	b.dropPull()
	if nv, del := b.pull(false, ""); del != "192.0.2.1" || nv != "" {
		t.Fatalf("after lost answers: new %q deleted %q, want the deletion of 192.0.2.1", nv, del)
	}
	rec, ok := n.fsm.Bouncer(identifyAt(b, "127.0.0.1:1").id)
	if !ok || rec.UserAgent != b.ua || rec.Addr != "127.0.0.1" || len(rec.History) < 2 {
		t.Errorf("replicated record: %+v (found %v)", rec, ok)
	}
}

// identifyAt is the instance the node sees for b's requests from addr.
func identifyAt(b *bouncerClient, addr string) bouncerInstance {
	r := b.request(http.MethodGet, "/")
	r.RemoteAddr = addr
	return identify(r, b.key)
}

// TestBouncer_TwoBouncersOneKeyBothReceiveEveryChange: bouncers sharing an
// API key, told apart by their user agent or by an instance name, each
// receive every addition and deletion, whatever order they pull in.
func TestBouncer_TwoBouncersOneKeyBothReceiveEveryChange(t *testing.T) {
	n := bouncerNode(t, nil)
	fw := newBouncer(t, n, "key-1", "crowdsec-firewall-bouncer/v0.0.31")
	nginx := newBouncer(t, n, "key-1", "crowdsec-nginx-bouncer/v1.0.8")
	a := newBouncer(t, n, "key-1", "crowdsec-custom-bouncer/v0.0.15")
	a.instance = "edge-a"
	bb := newBouncer(t, n, "key-1", "crowdsec-custom-bouncer/v0.0.15")
	bb.instance = "edge-b"
	all := []*bouncerClient{fw, nginx, a, bb}
	for _, c := range all {
		c.pull(true, "")
	}
	id := addDecision(t, n, "203.0.113.9", "4h")
	for _, c := range all {
		if nv, _ := c.pull(false, ""); nv != "203.0.113.9" {
			t.Errorf("%s %s: new %q after the addition", c.ua, c.instance, nv)
		}
	}
	deleteDecision(t, n, id)
	for _, c := range []*bouncerClient{bb, a, nginx, fw} {
		if _, del := c.pull(false, ""); del != "203.0.113.9" {
			t.Errorf("%s %s: deleted %q after the deletion", c.ua, c.instance, del)
		}
	}
	ids := map[string]bool{}
	for _, c := range all {
		ids[identifyAt(c, "127.0.0.1:1").id] = true
	}
	if len(ids) != 4 {
		t.Errorf("%d instances for 4 bouncers", len(ids))
	}
}

// TestBouncer_ExpiredDecisionArrivesInDeleted: a decision that runs out is
// in the next pull's deleted list, as a deletion is.
func TestBouncer_ExpiredDecisionArrivesInDeleted(t *testing.T) {
	n := bouncerNode(t, nil)
	addDecision(t, n, "198.51.100.20", "1s")
	addDecision(t, n, "198.51.100.21", "1h")
	b := newBouncer(t, n, "key-1", "crowdsec-custom-bouncer/v0.0.15")
	if nv, _ := b.pull(true, ""); !strings.Contains(nv, "198.51.100.20") {
		t.Fatalf("startup: new %q", nv)
	}
	var del string
	waitFor(t, 10*time.Second, "the expiry in deleted", func() bool {
		_, del = b.pull(false, "")
		return del != ""
	})
	if del != "198.51.100.20" {
		t.Errorf("deleted %q, want the expired 198.51.100.20", del)
	}
}

// TestBouncer_StreamFilters: scopes, origins, scenarios_containing and
// scenarios_not_containing select as CrowdSec's do.
func TestBouncer_StreamFilters(t *testing.T) {
	n := bouncerNode(t, nil)
	addDecision(t, n, "192.0.2.0/24", "1h")
	addDecision(t, n, "198.51.100.7", "1h")
	b := newBouncer(t, n, "key-1", "test/1")
	for params, want := range map[string]string{
		"":                                 "192.0.2.0/24,198.51.100.7",
		"scopes=ip":                        "198.51.100.7",
		"scopes=Range":                     "192.0.2.0/24",
		"origins=manual":                   "192.0.2.0/24,198.51.100.7",
		"origins=crowdsec,cscli":           "",
		"scenarios_containing=TEST":        "192.0.2.0/24,198.51.100.7", // the reason is a manual decision's scenario
		"scenarios_not_containing=foo,est": "",
	} {
		b.instance = "f" + params
		if nv, _ := b.pull(true, params); nv != want {
			t.Errorf("?%s: new %q, want %q", params, nv, want)
		}
	}
}

// TestBouncer_LiveModeAnswersAsCrowdSec: GET /v1/decisions with an API key
// (or CrowdSec's parameters) is CrowdSec's live mode; without, Warden's
// own list behind the read token.
func TestBouncer_LiveModeAnswersAsCrowdSec(t *testing.T) {
	n := bouncerNode(t, func(c *Config) { c.HTTPToken = "reader" })
	addDecision(t, n, "192.0.2.0/24", "1h")
	addDecision(t, n, "198.51.100.7", "1h")
	b := newBouncer(t, n, "key-2", "lua-resty-http/0.16.1 (Lua) ngx_lua/10021")
	for q, want := range map[string]string{
		"?ip=192.0.2.7":                      "192.0.2.0/24",
		"?ip=198.51.100.7":                   "198.51.100.7",
		"?ip=203.0.113.1":                    "null",
		"?range=192.0.2.0/25":                "192.0.2.0/24",
		"?range=192.0.0.0/16&contains=false": "192.0.2.0/24",
		"?scope=ip":                          "198.51.100.7",
		"?value=198.51.100.7&type=ban":       "198.51.100.7",
		"?type=captcha":                      "null",
		"":                                   "192.0.2.0/24,198.51.100.7",
	} {
		code, body := b.status(http.MethodGet, "/v1/decisions"+q, "")
		if code != http.StatusOK {
			t.Errorf("%s: %d %s", q, code, body)
			continue
		}
		got := strings.TrimSpace(body)
		if got != "null" {
			var ds []streamDecision
			if err := json.Unmarshal([]byte(body), &ds); err != nil {
				t.Fatalf("%s: %v: %s", q, err, body)
			}
			var vs []string
			for _, d := range ds {
				vs = append(vs, d.Value)
				if d.Type != "ban" || d.Origin != "manual" || d.Scenario != "test" || d.Duration == "" {
					t.Errorf("%s: %+v", q, d)
				}
			}
			got = strings.Join(vs, ",")
		}
		if got != want {
			t.Errorf("%s: %s, want %s", q, got, want)
		}
	}
	if code, body := b.status(http.MethodHead, "/v1/decisions?ip=192.0.2.7", ""); code != http.StatusOK || body != "" {
		t.Errorf("HEAD: %d %q", code, body)
	}
	if code, _ := b.status(http.MethodGet, "/v1/decisions?ip=not-an-ip", ""); code != http.StatusBadRequest {
		t.Errorf("bad ip: %d", code)
	}
	// Without a key: live parameters are refused as CrowdSec refuses them;
	// Warden's list still needs the read token.
	for path, want := range map[string]int{"/v1/decisions?ip=192.0.2.7": 403, "/v1/decisions": 401} {
		if got := status(t, http.DefaultClient, http.MethodGet, "http://"+n.HTTPAddr()+path, "", ""); got != want {
			t.Errorf("GET %s without a key: %d, want %d", path, got, want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.HTTPAddr()+"/v1/decisions", nil)
	req.Header.Set("Authorization", "Bearer reader")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var views []detect.DecisionView
	err = json.NewDecoder(resp.Body).Decode(&views)
	resp.Body.Close()
	if err != nil || len(views) != 2 || !views[0].Active {
		t.Errorf("Warden's list: %v %+v", err, views)
	}
	wrong := newBouncer(t, n, "nope", "x")
	if code, _ := wrong.status(http.MethodGet, "/v1/decisions?ip=192.0.2.7", ""); code != http.StatusForbidden {
		t.Errorf("wrong key: %d", code)
	}
}

// TestBouncer_HeartbeatUsageMetricsAndHead: the calls recent bouncers make
// besides pulling are answered, behind the key; HEAD on the stream records
// nothing.
func TestBouncer_HeartbeatUsageMetricsAndHead(t *testing.T) {
	n := bouncerNode(t, nil)
	b := newBouncer(t, n, "key-1", "crowdsec-firewall-bouncer/v0.0.31")
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{http.MethodGet, "/v1/heartbeat", "", http.StatusOK},
		{http.MethodPost, "/v1/usage-metrics", `{"remediation_components":[{"type":"crowdsec-firewall-bouncer","metrics":[]}]}`, http.StatusCreated},
		{http.MethodHead, "/v1/decisions/stream", "", http.StatusOK},
		{http.MethodHead, "/v1/decisions", "", http.StatusOK},
	} {
		if code, body := b.status(c.method, c.path, c.body); code != c.want || body != "" {
			t.Errorf("%s %s: %d %q, want %d", c.method, c.path, code, body, c.want)
		}
	}
	if _, ok := n.fsm.Bouncer(identifyAt(b, "127.0.0.1:1").id); ok {
		t.Error("HEAD on the stream recorded a pull")
	}
	anon := newBouncer(t, n, "", "x")
	for _, path := range []string{"/v1/heartbeat", "/v1/decisions/stream"} {
		if code, _ := anon.status(http.MethodGet, path, ""); code != http.StatusForbidden {
			t.Errorf("GET %s without a key: %d", path, code)
		}
	}
	if code, _ := anon.status(http.MethodPost, "/v1/usage-metrics", "{}"); code != http.StatusForbidden {
		t.Errorf("usage metrics without a key: %d", code)
	}
}

// TestBouncer_DeletionReachesBouncerAfterNodeKill: a bouncer pulls from n1,
// the operator deletes a decision, n1's answer is lost and n1 dies; the
// bouncer's next pull, to n2, has the deletion.
func TestBouncer_DeletionReachesBouncerAfterNodeKill(t *testing.T) {
	c := newCluster(t, 2)
	c.configure = func(cfg *Config) { cfg.BouncerKeys, cfg.AdminToken = []string{"key-1"}, "boss" }
	n1 := c.start("n1", 3)
	n2 := c.start("n2", 3, n1.GossipAddr())
	n3 := c.start("n3", 3, n1.GossipAddr())
	// A settled cluster: three voters, one leader every node agrees on
	// (writes while n3 joins can meet an election and answer 503).
	waitFor(t, 20*time.Second, "three voters and one leader", func() bool {
		voters := 0
		for _, m := range n1.ClusterInfo().Members {
			if m.Voter {
				voters++
			}
		}
		l := n1.Leader()
		return voters == 3 && l != "" && n2.Leader() == l && n3.Leader() == l
	})
	gone := addDecision(t, n1, "192.0.2.1", "4h")
	addDecision(t, n1, "192.0.2.2", "4h")
	b := newBouncer(t, n1, "key-1", "crowdsec-firewall-bouncer/v0.0.31")
	b.pull(true, "")
	b.pull(false, "")
	deleteDecision(t, n1, gone)
	b.pull(false, "") // answered by n1, lost on the way
	waitFor(t, 10*time.Second, "n2 to hold the deletion", func() bool {
		for _, d := range n2.fsm.Decisions(true, time.Now()) {
			if d.ID == gone {
				return d.Deleted
			}
		}
		return false
	})
	c.kill("n1")
	b.addr = n2.HTTPAddr()
	if nv, del := b.pull(false, ""); del != "192.0.2.1" || nv != "" {
		t.Fatalf("from n2: new %q deleted %q, want the deletion of 192.0.2.1", nv, del)
	}
}
