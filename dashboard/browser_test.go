package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)
	return ctx
}

// waitJS polls expr in the page until it is truthy and returns its value.
func waitJS[T any](ctx context.Context, t *testing.T, what, expr string, timeout time.Duration) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		last, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('live').className + ' ' + document.getElementById('requests').textContent`))
		t.Fatalf("waiting for %s (%s): %v; page: %s", what, expr, err, last)
	}
	return v
}

// screenshot saves a full-page PNG under bench/tmp/dashboard/ (kept after
// the test, for a look) and logs its path.
func screenshot(ctx context.Context, t *testing.T, name string) {
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

// pausable holds a Source's events back while paused, as a node stopped
// with SIGSTOP would.
type pausable struct {
	Source
	mu     sync.Mutex
	paused chan struct{}
}

func (p *pausable) Cluster(now time.Time) Cluster {
	p.mu.Lock()
	ch := p.paused
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return p.Source.Cluster(now)
}

func (p *pausable) pause(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.paused == nil {
		p.paused = make(chan struct{})
	}
	if !on && p.paused != nil {
		close(p.paused)
		p.paused = nil
	}
}

// pageServer serves the page and a stream of src's events.
func pageServer(t *testing.T, src Source) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", Page)
	mux.Handle("GET /assets/", Assets())
	done := make(chan struct{})
	mux.Handle("GET /v1/events", &Stream{Source: src, Interval: 200 * time.Millisecond, Done: done})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { close(done); srv.Close() })
	return srv
}

// TestBrowser_ChartFunctions runs testdata/charts_test.js, the tests of
// the page's formatting and chart functions, in Chromium.
func TestBrowser_ChartFunctions(t *testing.T) {
	srv := pageServer(t, newFakeSource(t))
	ctx := newBrowser(t, 1280, 800)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS[bool](ctx, t, "the page's script", `!!window.warden && !!window.warden.stack`, 10*time.Second)
	src, err := os.ReadFile(filepath.Join("testdata", "charts_test.js"))
	if err != nil {
		t.Fatal(err)
	}
	failures, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](string(src)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range failures {
		t.Error(f)
	}
}

// TestBrowser_PageFollowsTheStream opens the page on a node-less server
// (a fake Source) and checks what Chromium renders: the figures, the live
// indicator through a dropped connection and a stalled stream, new data
// without a reload; it saves screenshots at desktop and phone width, light
// and dark.
func TestBrowser_PageFollowsTheStream(t *testing.T) {
	fake := newFakeSource(t)
	src := &pausable{Source: fake}
	srv := pageServer(t, src)
	ctx := newBrowser(t, 1280, 800)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS[bool](ctx, t, "the header's request count", `document.getElementById('requests').textContent === '3,000'`, 15*time.Second)
	waitJS[bool](ctx, t, "the live indicator", `document.getElementById('live').classList.contains('on') && document.getElementById('live-text').textContent === 'live'`, 5*time.Second)
	st := fake.Stats(analyticsQueryTop())
	first := waitJS[string](ctx, t, "the top IPs", `(() => { const r = document.querySelector('#top-ips tbody tr'); return r && r.dataset.key; })()`, 5*time.Second)
	if first != st.TopIPs[0].Key {
		t.Errorf("top IP %q, stats say %q", first, st.TopIPs[0].Key)
	}
	rows := waitJS[int](ctx, t, "the alerts table", `document.querySelectorAll('#alerts tbody tr[data-key]:not([data-key=""])').length`, 5*time.Second)
	if rows != 4 {
		t.Errorf("%d alerts listed, want 4", rows)
	}
	// Record every change of the indicator from here on.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.marker = 1; window.liveLog = [];
		new MutationObserver(() => window.liveLog.push(document.getElementById('live-text').textContent))
			.observe(document.getElementById('live'), {subtree: true, childList: true, characterData: true, attributes: true});`)); err != nil {
		t.Fatal(err)
	}

	// New requests show without a reload.
	fake.add(t, 500, 90)
	waitJS[bool](ctx, t, "the new count", `document.getElementById('requests').textContent === '3,500' && window.marker === 1`, 10*time.Second)

	// A dropped connection: the indicator goes off, EventSource comes back
	// by itself.
	srv.CloseClientConnections()
	waitJS[bool](ctx, t, "the indicator off, then live again",
		`window.liveLog.some((s) => s !== 'live') && document.getElementById('live-text').textContent === 'live'`, 10*time.Second)

	// A stream that stalls: no error, no event.
	src.pause(true)
	waitJS[bool](ctx, t, "the indicator to say stalled", `document.getElementById('live-text').textContent === 'stalled'`, 10*time.Second)
	src.pause(false)
	waitJS[bool](ctx, t, "live after the stall", `document.getElementById('live').classList.contains('on')`, 10*time.Second)
	screenshot(ctx, t, "fake-desktop-light")

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("theme"))); err != nil {
		t.Fatal(err)
	}
	theme := waitJS[string](ctx, t, "the dark theme", `document.documentElement.dataset.theme`, 5*time.Second)
	if theme != "dark" {
		t.Errorf("theme %q after the toggle", theme)
	}
	bg := waitJS[string](ctx, t, "the dark background", `getComputedStyle(document.body).backgroundColor`, 5*time.Second)
	if bg != "rgb(15, 19, 24)" {
		t.Errorf("dark background %s", bg)
	}
	time.Sleep(300 * time.Millisecond)
	screenshot(ctx, t, "fake-desktop-dark")

	// Phone width: one column, nothing wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	waitJS[bool](ctx, t, "the page to fit 390 px", `document.documentElement.scrollWidth <= 392`, 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	screenshot(ctx, t, "fake-phone-dark")

	// A filter in the URL is a shareable view.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/?vhost=api.example.com&q=%2Fshop")); err != nil {
		t.Fatal(err)
	}
	waitJS[bool](ctx, t, "the host's count", `document.getElementById('requests').textContent === '1,750'`, 10*time.Second)
	paths := waitJS[string](ctx, t, "matching paths", `Array.from(document.querySelectorAll('#top-paths tbody tr')).map((r) => r.dataset.key).join(' ')`, 5*time.Second)
	for _, p := range strings.Fields(paths) {
		if !strings.Contains(p, "/shop") {
			t.Errorf("search /shop lists %q", p)
		}
	}

	// A filter the node refuses says why; Clear goes back to everything.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/?from=yesterday")); err != nil {
		t.Fatal(err)
	}
	waitJS[bool](ctx, t, "the filter's error", `document.getElementById('filter-error').textContent.includes('RFC 3339') && document.getElementById('live').classList.contains('off')`, 10*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("clear"))); err != nil {
		t.Fatal(err)
	}
	waitJS[bool](ctx, t, "everything again", `location.search === '' && document.getElementById('requests').textContent === '3,500' && document.getElementById('filter-error').textContent === ''`, 10*time.Second)
}
