package node

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/dashboard"
)

// With --http-token the page is a login form; the token typed into it
// gives a session cookie that reads the API and the event stream, and
// changes nothing.
func TestHTTP_DashboardLoginGivesAReadSession(t *testing.T) {
	c := newCluster(t, 2)
	n := c.startHTTP("n1", func(cfg *Config) { cfg.HTTPToken, cfg.AdminToken = "reader", "boss" })
	base := "http://" + n.HTTPAddr()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := http.Get(base + "/?range=1h")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `name="token"`) || !strings.Contains(string(body), `value="/?range=1h"`) {
		t.Fatalf("GET / without a session: %d\n%s", resp.StatusCode, body)
	}
	if got := status(t, http.DefaultClient, "GET", base+"/", "Bearer reader", ""); got != http.StatusOK {
		t.Errorf("GET / with the read token as a bearer: %d", got)
	}
	login := func(token string) *http.Response {
		resp, err := noRedirect.PostForm(base+"/login", url.Values{"token": {token}, "next": {"/?range=1h"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := login("wrong"); r.StatusCode != http.StatusUnauthorized || len(r.Cookies()) != 0 {
		t.Errorf("a wrong token: %d, cookies %v", r.StatusCode, r.Cookies())
	}
	r := login("reader")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/?range=1h" || len(r.Cookies()) != 1 {
		t.Fatalf("the read token: %d %v", r.StatusCode, r.Header)
	}
	session := r.Cookies()[0]
	if session.Name != dashboard.CookieName || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || strings.Contains(session.Value, "reader") {
		t.Errorf("session cookie %+v", session)
	}
	with := func(method, path, body string, ck *http.Cookie) int {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.AddCookie(ck)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/", "/v1/stats", "/v1/cluster", "/metrics"} {
		if got := with("GET", path, "", session); got != http.StatusOK {
			t.Errorf("GET %s with the session: %d", path, got)
		}
	}
	if got := with("POST", "/v1/decisions", `{"value":"192.0.2.7"}`, session); got != http.StatusUnauthorized {
		t.Errorf("POST /v1/decisions with the session alone: %d, want 401", got)
	}
	forged := *session
	forged.Value = "99999999999." + strings.Repeat("A", 43)
	if got := with("GET", "/v1/stats", "", &forged); got != http.StatusUnauthorized {
		t.Errorf("a forged session: %d", got)
	}
	// The event stream, read with the session.
	req, _ := http.NewRequest("GET", base+"/v1/events", nil)
	req.AddCookie(session)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ev := firstEvent(t, resp)
	if ev.Node != "n1" || !ev.Login || len(ev.Cluster.Members) != 1 || ev.Cluster.Members[0].State != dashboard.StateAlive || !ev.Cluster.Members[0].Self {
		t.Errorf("first event: node %q login %v members %+v", ev.Node, ev.Login, ev.Cluster.Members)
	}
	// Logging out drops the cookie.
	req, _ = http.NewRequest("POST", base+"/logout", nil)
	out, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if cs := out.Cookies(); out.StatusCode != http.StatusSeeOther || len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Errorf("logout: %d %v", out.StatusCode, cs)
	}
}

// firstEvent reads the first update of an event stream.
func firstEvent(t *testing.T, resp *http.Response) *dashboard.Event {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev dashboard.Event
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatal(err)
			}
			return &ev
		}
	}
	t.Fatalf("stream ended: %v", sc.Err())
	return nil
}

// Without a read token the page and its stream are open, and the stream's
// figures are the node's: partitions, commits, the member.
func TestHTTP_DashboardOpenWithoutToken(t *testing.T) {
	c := newCluster(t, 2)
	n := c.startHTTP("n1", func(*Config) {})
	p := newProducer(t, c.broker.Addr(), c.topic, 4)
	mustProduce(t, p, 200)
	waitFor(t, 20*time.Second, "records applied", func() bool { return p.caughtUp(n) })
	base := "http://" + n.HTTPAddr()
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `src="/assets/app.js"`) || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET /: %d, CSP %q\n%.200s", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), body)
	}
	for _, a := range []string{"/assets/app.js", "/assets/style.css"} {
		if got := status(t, http.DefaultClient, "GET", base+a, "", ""); got != 200 {
			t.Errorf("GET %s: %d", a, got)
		}
	}
	if got := status(t, http.DefaultClient, "GET", base+"/assets/index.html", "", ""); got != http.StatusNotFound {
		t.Errorf("GET /assets/index.html: %d, want 404 (only the script and the style)", got)
	}
	if got := status(t, http.DefaultClient, "GET", base+"/v1/events?range=2h", "", ""); got != http.StatusBadRequest {
		t.Errorf("a bad filter: %d", got)
	}
	quick := &http.Client{Timeout: 2 * time.Second}
	if got := status(t, quick, "HEAD", base+"/v1/events", "", ""); got != http.StatusOK {
		t.Errorf("HEAD /v1/events: %d", got)
	}
	resp, err = http.Get(base + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ev := firstEvent(t, resp)
	if ev.Login || ev.Header.Requests != 200 || len(ev.Cluster.Partitions) != 2 || ev.Cluster.Leader != "n1" || ev.Cluster.LagRecords != 0 {
		t.Errorf("event: login %v, %d requests, %d partitions, leader %q, lag %d", ev.Login, ev.Header.Requests, len(ev.Cluster.Partitions), ev.Cluster.Leader, ev.Cluster.LagRecords)
	}
	for _, part := range ev.Cluster.Partitions {
		if part.Owner != "n1" || part.LastCommitS == nil {
			t.Errorf("partition %+v: want owned by n1, with its last commit's age", part)
		}
	}
	if ev.Cluster.LeaderChanges < 1 || ev.Cluster.LastRebalance == nil {
		t.Errorf("leader changes %d, last rebalance %v", ev.Cluster.LeaderChanges, ev.Cluster.LastRebalance)
	}
}
