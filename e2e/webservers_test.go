package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/clustertest"
	"github.com/wardenhq/warden/internal/testenv"
)

// The web-server tests run Debian's nginx and Apache on loopback ports,
// with configurations written here, send them real HTTP requests and check
// that the cluster counts exactly those requests and alerts on the attacks
// among them.

const browserUA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

// attacker is the client address the attacks come from; the normal
// clients are 127.0.0.10 to 127.0.0.14.
const attacker = "127.0.0.66"

// clientFrom is an HTTP client whose connections come from a loopback
// address of its own, which the server logs as the client.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// webTraffic is a set of requests: normal pages, missing pages, attacks.
type webTraffic struct {
	t    *testing.T
	base string
	sent int
}

func (w *webTraffic) get(ip, path, ua string) int {
	w.t.Helper()
	req, err := http.NewRequest("GET", w.base+path, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set("User-Agent", ua)
	resp, err := clientFrom(ip).Do(req)
	if err != nil {
		w.t.Fatalf("GET %s from %s: %v", path, ip, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	w.sent++
	return resp.StatusCode
}

// normal sends n rounds of ordinary browsing from five clients: pages that
// exist and, now and then, one that does not.
func (w *webTraffic) normal(n int) {
	w.t.Helper()
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("127.0.0.%d", 10+i%5)
		if code := w.get(ip, "/", browserUA); code != 200 {
			w.t.Fatalf("GET / answered %d", code)
		}
		w.get(ip, "/page.html", browserUA)
		if i%4 == 0 {
			if code := w.get(ip, fmt.Sprintf("/missing-%d.html", i), browserUA); code != 404 {
				w.t.Fatalf("a missing page answered %d", code)
			}
		}
	}
}

// attacks sends probes for secrets and web shells from the attacker.
func (w *webTraffic) attacks() {
	w.t.Helper()
	for _, p := range []string{"/.env", "/.git/config", "/wp-config.php", "/.aws/credentials", "/.ssh/id_rsa", "/.htpasswd"} {
		w.get(attacker, p, browserUA)
	}
	for _, p := range []string{"/shell.php", "/c99.php", "/wso.php"} {
		w.get(attacker, p, browserUA)
	}
}

func writeSite(t *testing.T, root string) {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"index.html": "<h1>home</h1>\n", "page.html": "<p>a page</p>\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCounted waits until the cluster's /v1/stats counts exactly n
// requests, and checks it stays there.
func waitCounted(t *testing.T, httpAddr string, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("/v1/stats counting the %d requests made", n), func() bool {
		got, err := statsRequests(httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		return got >= int64(n)
	})
	time.Sleep(time.Second)
	if got, _ := statsRequests(httpAddr); got != int64(n) {
		t.Fatalf("/v1/stats counts %d requests, %d were made", got, n)
	}
}

// checkAlerts checks /v1/alerts: the attacker alerted for secrets and web
// shells, no normal client alerted.
func checkAlerts(t *testing.T, httpAddr string) {
	t.Helper()
	var alerts []struct {
		Scenario string `json:"scenario"`
		SourceIP string `json:"source_ip"`
	}
	want := map[string]bool{"http-sensitive-files": false, "http-backdoors-attempts": false}
	waitFor(t, 30*time.Second, "alerts for the attacks", func() bool {
		if err := getJSON("http://"+httpAddr+"/v1/alerts", &alerts); err != nil {
			return false
		}
		for _, a := range alerts {
			if _, ok := want[a.Scenario]; ok && a.SourceIP == attacker {
				want[a.Scenario] = true
			}
		}
		return want["http-sensitive-files"] && want["http-backdoors-attempts"]
	})
	for _, a := range alerts {
		if a.SourceIP != attacker {
			t.Errorf("normal client %s alerted for %s", a.SourceIP, a.Scenario)
		}
	}
}

// oneNode starts a broker and one agent keeping every minute.
func oneNode(t *testing.T) *procCluster {
	c := newProcClusterWith(t, 1, 4, map[string][]string{"n1": {"--retention", "0"}})
	c.waitOwned(4, 30*time.Second)
	return c
}

// nginx is a running nginx with a configuration of the test's.
type nginx struct {
	bin, prefix, conf string
	addr              string
	p                 *proc
}

// startNginx writes a configuration into dir (prefix, pid file, error
// log, temp paths all there) serving a small site on a loopback port with
// accessLog as its access_log directive, and starts nginx in the
// foreground.
func startNginx(t *testing.T, dir, accessLog string) *nginx {
	t.Helper()
	n := &nginx{bin: testenv.Tool(t, "nginx"), prefix: dir, conf: filepath.Join(dir, "nginx.conf"), addr: freeAddr(t)}
	writeSite(t, filepath.Join(dir, "www"))
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 64; }
http {
    client_body_temp_path %[2]s/tmp-body;
    proxy_temp_path %[2]s/tmp-proxy;
    fastcgi_temp_path %[2]s/tmp-fastcgi;
    uwsgi_temp_path %[2]s/tmp-uwsgi;
    scgi_temp_path %[2]s/tmp-scgi;
    types { text/html html; }
    server {
        listen %[3]s;
        root %[2]s/www;
        %[4]s;
    }
}
`, user, dir, n.addr, accessLog)
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(n.bin, "-p", dir, "-c", n.conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = f, f
	p, err := clustertest.Spawn("nginx", cmd, f)
	if err != nil {
		t.Fatal(err)
	}
	n.p = newProc(p)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-n.p.done:
		case <-time.After(5 * time.Second):
			n.p.kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("---- nginx error.log (tail) ----\n%s", tail(b, 2000))
		}
	})
	waitFor(t, 10*time.Second, "nginx answering", func() bool {
		resp, err := http.Get("http://" + n.addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return n
}

// TestWebServers_NginxSyslogToShip: nginx logs with `access_log
// syslog:server=...` to `warden ship --listen-syslog udp://...`; the
// cluster counts exactly the requests made and alerts on the attacks.
func TestWebServers_NginxSyslogToShip(t *testing.T) {
	c := oneNode(t)
	sysAddr := freeAddr(t)
	metrics := freeAddr(t)
	ship := startProc(t, c.dir, "ship", "ship", "--listen-syslog", "udp://"+sysAddr, "--brokers", c.broker, "--topic", c.topic,
		"--metrics-addr", metrics, "--ship-id", "nginx-syslog")
	defer ship.kill()
	waitFor(t, 10*time.Second, "ship listening", func() bool {
		b, _ := os.ReadFile(filepath.Join(c.dir, "ship.log"))
		return bytes.Contains(b, []byte("listening for syslog"))
	})
	// The first counter sample appears with the first datagram; to tell
	// "none dropped" from "not counted", look for the reason label later.
	n := startNginx(t, filepath.Join(c.dir, "nginx"), "access_log syslog:server="+sysAddr+",tag=nginx combined")
	w := &webTraffic{t: t, base: "http://" + n.addr}
	w.normal(40)
	w.attacks()
	w.normal(10)
	waitCounted(t, c.specs["n1"].http, w.sent+1) // and nginx's own readiness probe
	checkAlerts(t, c.specs["n1"].http)
	if d, ok := metric("http://"+metrics+"/metrics", `warden_ship_syslog_dropped_total{reason="kernel"}`); ok && d != 0 {
		t.Fatalf("%v datagrams dropped on loopback at this rate", d)
	}
	if got, _ := metric("http://"+metrics+"/metrics", `warden_ship_syslog_messages_total`); got != float64(w.sent+1) {
		t.Fatalf("ship received %v syslog messages, nginx logged %d requests", got, w.sent+1)
	}
}

// TestWebServers_NginxFileFollowedAcrossRotateAndReopen: nginx writes its
// access log to a file that `ship --follow` ships; midway the log is
// rotated as logrotate does (rename, then `nginx -s reopen`), with
// requests between the rename and the reopen; every request is counted
// exactly once.
func TestWebServers_NginxFileFollowedAcrossRotateAndReopen(t *testing.T) {
	c := oneNode(t)
	dir := filepath.Join(c.dir, "nginx")
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(logs, "access.log")
	n := startNginx(t, dir, "access_log "+log+" combined")
	ship := startProc(t, c.dir, "ship", "ship", "--follow", log+"*", "--brokers", c.broker, "--topic", c.topic,
		"--ship-id", "nginx-file", "--poll-interval", "50ms")
	defer ship.kill()
	waitFor(t, 15*time.Second, "ship following", func() bool {
		b, _ := os.ReadFile(filepath.Join(c.dir, "ship.log"))
		return bytes.Contains(b, []byte("position read back from Kafka"))
	})
	w := &webTraffic{t: t, base: "http://" + n.addr}
	w.sent = 1 // nginx's readiness probe above
	w.normal(30)
	waitCounted(t, c.specs["n1"].http, w.sent)
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	w.normal(5) // still written to the renamed file
	if out, err := exec.Command(n.bin, "-p", dir, "-c", n.conf, "-s", "reopen").CombinedOutput(); err != nil {
		t.Fatalf("nginx -s reopen: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "nginx reopening its log", func() bool {
		_, err := os.Stat(log)
		return err == nil
	})
	w.attacks()
	w.normal(20)
	waitCounted(t, c.specs["n1"].http, w.sent)
	checkAlerts(t, c.specs["n1"].http)
	b, _ := os.ReadFile(filepath.Join(c.dir, "ship.log"))
	if !bytes.Contains(b, []byte("file renamed")) || !bytes.Contains(b, []byte("following new file")) {
		t.Fatalf("ship did not see the rotation (%d bytes of log):\n%s", len(b), b)
	}
}

// TestWebServers_ApachePipedLogs: Apache's `CustomLog "|warden ship ... -"
// combined` pipes its log into ship; the cluster counts exactly the
// requests and alerts on the attacks; when Apache stops, the pipe closes
// and ship delivers what it read and exits cleanly.
func TestWebServers_ApachePipedLogs(t *testing.T) {
	c := oneNode(t)
	apache := testenv.Tool(t, "apache2")
	dir, err := os.MkdirTemp("", "warden-apache-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // Apache's children run as www-data
		t.Fatal(err)
	}
	writeSite(t, filepath.Join(dir, "www"))
	addr := freeAddr(t)
	shipID := fmt.Sprintf("apache-%d", time.Now().UnixNano())
	var modules strings.Builder
	for _, m := range []string{"mpm_event", "authz_core", "log_config", "dir", "mime", "unixd"} {
		so := filepath.Join("/usr/lib/apache2/modules", "mod_"+m+".so")
		if _, err := os.Stat(so); err == nil { // else compiled in
			fmt.Fprintf(&modules, "LoadModule %s_module %s\n", m, so)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "User www-data\nGroup www-data\n"
	}
	conf := fmt.Sprintf(`ServerRoot "%[1]s"
%[2]s%[3]sListen %[4]s
ServerName localhost
PidFile %[1]s/httpd.pid
DefaultRuntimeDir %[1]s
ErrorLog %[1]s/error.log
LogLevel info
DocumentRoot "%[1]s/www"
<Directory "%[1]s/www">
    Require all granted
</Directory>
DirectoryIndex index.html
TypesConfig /etc/mime.types
LogFormat "%%h %%l %%u %%t \"%%r\" %%>s %%O \"%%{Referer}i\" \"%%{User-Agent}i\"" combined
CustomLog "|%[5]s ship --brokers %[6]s --topic %[7]s --quiet --ship-id %[8]s -" combined
`, dir, modules.String(), user, addr, wardenBin(t), c.broker, c.topic, shipID)
	confPath := filepath.Join(dir, "httpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "apache.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(apache, "-f", confPath, "-DFOREGROUND")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			o, _ := os.ReadFile(filepath.Join(dir, "apache.out"))
			t.Logf("---- apache error.log ----\n%s\n---- apache output ----\n%s", tail(b, 3000), o)
		}
	}()
	waitFor(t, 15*time.Second, "Apache answering", func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	w := &webTraffic{t: t, base: "http://" + addr}
	w.sent = 1 // the readiness probe above
	w.normal(40)
	w.attacks()
	w.normal(10)
	waitCounted(t, c.specs["n1"].http, w.sent)
	checkAlerts(t, c.specs["n1"].http)
	if pids := shipPIDs(shipID); len(pids) != 1 {
		t.Fatalf("%d ship processes for Apache's pipe, want 1", len(pids))
	}

	// Apache stops: the pipe closes and ship exits after delivering.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Apache did not stop")
	}
	stopped = true
	waitFor(t, 10*time.Second, "ship exiting with Apache", func() bool { return len(shipPIDs(shipID)) == 0 })
	b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
	if want := fmt.Sprintf("shipped %d lines to %s", w.sent, c.topic); !bytes.Contains(b, []byte(want)) {
		t.Fatalf("Apache's error log lacks ship's %q:\n%s", want, tail(b, 3000))
	}
	if n, _ := statsRequests(c.specs["n1"].http); n != int64(w.sent) {
		t.Fatalf("/v1/stats counts %d requests after the stop, %d were made", n, w.sent)
	}
}

// shipPIDs lists the processes whose command line names ship id.
func shipPIDs(shipID string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(shipID)) && bytes.Contains(b, []byte("ship")) {
			out = append(out, pid)
		}
	}
	return out
}

// TestProcesses_ShipStdinUntilEOFAndThroughSIGTERM: `warden ship -` ships
// standard input until it closes and exits 0; sent SIGTERM while the pipe
// is open, it keeps reading what the writer still sends for a moment (a
// server's last lines), delivers it and exits 0.
func TestProcesses_ShipStdinUntilEOFAndThroughSIGTERM(t *testing.T) {
	c := newProcClusterIdle(t, 0, 2, nil)
	line := func(i int) string {
		return fmt.Sprintf(`192.0.2.%d - - [02/Nov/2026:10:00:00 +0000] "GET /p/%d HTTP/1.1" 200 5 "-" "x"`, i%200, i)
	}
	run := func(from, to int, signalAt int) string {
		cmd := exec.Command(wardenBin(t), "ship", "--brokers", c.broker, "--topic", c.topic, "-")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			if i == signalAt {
				time.Sleep(300 * time.Millisecond)
				_ = cmd.Process.Signal(syscall.SIGTERM)
				time.Sleep(300 * time.Millisecond)
			}
			fmt.Fprintln(in, line(i))
		}
		in.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		go func() { <-ctx.Done(); _ = cmd.Process.Kill() }()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("ship -: %v\n%s", err, out.String())
		}
		return out.String()
	}
	if out := run(0, 500, -1); !strings.Contains(out, "shipped 500 lines") {
		t.Fatalf("ship - until EOF: %s", out)
	}
	if out := run(500, 800, 650); !strings.Contains(out, "shipped 300 lines") {
		t.Fatalf("ship - through SIGTERM: %s", out)
	}
	if n := topicCount(t, c.broker, c.topic); n != 800 {
		t.Fatalf("topic holds %d lines, want 800", n)
	}
}
