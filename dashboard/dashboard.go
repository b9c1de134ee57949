// Package dashboard is the live page every node serves at /: the page and
// its script and style (embedded, so the binary needs no network and no
// build step), the event document it is drawn from (Build, from a node's
// Source), the Server-Sent Events stream that carries one every second
// (Stream) and the login that turns the read token into a session cookie
// (Sessions).
//
// The page draws its charts itself, in SVG, from the event; it keeps its
// filters in the query string, so a view is a link.
package dashboard

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed assets/index.html assets/app.js assets/style.css assets/login.html assets/login.js
var assets embed.FS

// securityHeaders are sent with the page and the login form: scripts,
// styles and connections from this node only, never in a frame.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
}

// Page serves the dashboard's HTML.
func Page(w http.ResponseWriter, _ *http.Request) {
	b, _ := assets.ReadFile("assets/index.html")
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

// Assets serves the page's scripts and style under /assets/. They hold no
// data, so they need no token (the login form uses them).
func Assets() http.Handler {
	sub, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(sub)
	return http.StripPrefix("/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".js") && !strings.HasSuffix(r.URL.Path, ".css") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
}

var loginTemplate = template.Must(template.ParseFS(assets, "assets/login.html"))

// LoginPage answers 401 with the login form; next is where a successful
// login goes, message what went wrong ("" for none).
func LoginPage(w http.ResponseWriter, next, message string) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("WWW-Authenticate", `Bearer realm="warden"`)
	w.WriteHeader(http.StatusUnauthorized)
	_ = loginTemplate.Execute(w, struct{ Next, Message string }{SafeNext(next), message})
}

// SafeNext keeps a post-login destination only if it is a path on this
// node ("/" and a query), so the form cannot send anyone elsewhere.
func SafeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	return next
}

// Login serves POST /login: a token that check accepts gets a session
// cookie and goes on to the form's next; a wrong one gets the form again.
func Login(s *Sessions, check func(token string) bool, now func() time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			LoginPage(w, "/", "The form could not be read.")
			return
		}
		next := SafeNext(r.PostForm.Get("next"))
		if !check(strings.TrimSpace(r.PostForm.Get("token"))) {
			LoginPage(w, next, "Wrong token.")
			return
		}
		http.SetCookie(w, s.Cookie(now(), r.TLS != nil))
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

// Logout serves POST /logout: the browser drops its session cookie.
func Logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, ClearCookie(r.TLS != nil))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
