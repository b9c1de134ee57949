package node

import (
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"
)

// The HTTP surface's limits. Reads are small documents; the one long
// response, a CPU profile, lifts its own write deadline.
const (
	httpReadTimeout   = 30 * time.Second
	httpWriteTimeout  = 60 * time.Second
	httpIdleTimeout   = 2 * time.Minute
	httpHeaderTimeout = 5 * time.Second
	httpMaxHeader     = 64 << 10
	// maxBodyBytes bounds every request body (an operator's decision is
	// a few hundred bytes).
	maxBodyBytes = 64 << 10
)

// Access levels of the HTTP API.
type access int

const (
	open  access = iota // health checks: load balancers probe them
	read                // documents, /metrics, the dashboard's stream: --http-token (or its session cookie) when set
	admin               // changes and profiles: --admin-token
)

// guard wraps h with the check its access level needs and the body limit.
func (n *Node) guard(level access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		switch level {
		case read:
			// A browser carries the dashboard's session cookie instead
			// (dashboard.Sessions): it cannot send a bearer header.
			if n.cfg.HTTPToken != "" && !n.bearerIs(r, n.cfg.HTTPToken) && !n.bearerIs(r, n.cfg.AdminToken) && !n.sessionValid(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="warden"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong token (Authorization: Bearer TOKEN, the --http-token or the --admin-token)"})
				return
			}
		case admin:
			if !n.authorized(w, r) {
				return
			}
		}
		h(w, r)
	}
}

// bearerIs reports whether r carries "Authorization: Bearer want"; an
// empty want never matches. The scheme is required (a bare token is not
// accepted), compared without regard to case as RFC 7235 says.
func (n *Node) bearerIs(r *http.Request, want string) bool {
	if want == "" {
		return false
	}
	tok, ok := bearer(r)
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return "", false
	}
	return strings.TrimSpace(h[7:]), true
}

// handlePprof serves Go's profiler, admin only; the profile and trace
// endpoints run for their ?seconds= and so lift the write deadline.
func (n *Node) handlePprof(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "profile":
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		pprof.Profile(w, r)
	case "trace":
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		pprof.Trace(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	default:
		pprof.Index(w, r)
	}
}

// newHTTPServer builds the API server with its limits.
func (n *Node) newHTTPServer() *http.Server {
	return &http.Server{
		Handler:           n.routes(),
		ReadHeaderTimeout: httpHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeader,
		ErrorLog:          nil,
	}
}

// listenHTTP opens the API port: TLS when a certificate is configured,
// at most HTTPMaxConns connections at once.
func (n *Node) listenHTTP() (net.Listener, error) {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", n.cfg.HTTPAddr, err)
	}
	if max := n.cfg.HTTPMaxConns; max > 0 {
		ln = &limitListener{Listener: ln, sem: make(chan struct{}, max)}
	}
	if n.cfg.HTTPTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(n.cfg.HTTPTLSCert, n.cfg.HTTPTLSKey)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("--http-tls-cert/--http-tls-key: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	return ln, nil
}

// limitListener accepts at most cap(sem) connections at once; more wait in
// the kernel's backlog until one closes.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
