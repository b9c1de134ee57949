package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// CookieName is the session cookie of the dashboard.
const CookieName = "warden_session"

// DefaultSessionTTL is how long a login lasts.
const DefaultSessionTTL = 12 * time.Hour

// Sessions makes and checks the session cookie a browser gets for typing
// the read token into the login form: a browser cannot send a bearer
// header with a page load or an EventSource, but it sends a cookie. The
// cookie holds an expiry and an HMAC of it under a key derived from the
// token, never the token itself: every node with the same token accepts
// it, it cannot be stretched past its expiry, and changing the token ends
// every session. It grants reads only.
type Sessions struct {
	key []byte
	ttl time.Duration
}

// NewSessions returns the sessions of a node whose read token is token; a
// ttl of 0 means DefaultSessionTTL.
func NewSessions(token string, ttl time.Duration) *Sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("warden dashboard session key v1"))
	return &Sessions{key: m.Sum(nil), ttl: ttl}
}

func (s *Sessions) mac(expiry string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(expiry))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Cookie returns a new session cookie, valid from now for the TTL:
// HttpOnly (the page's script never sees it), SameSite=Strict (no other
// site's page makes the browser send it) and Secure when the node serves
// TLS.
func (s *Sessions) Cookie(now time.Time, secure bool) *http.Cookie {
	exp := now.Add(s.ttl)
	v := strconv.FormatInt(exp.Unix(), 10)
	return &http.Cookie{Name: CookieName, Value: v + "." + s.mac(v), Path: "/", Expires: exp,
		MaxAge: int(s.ttl / time.Second), HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// Valid reports whether r carries a session cookie this token made that
// has not expired at now.
func (s *Sessions) Valid(r *http.Request, now time.Time) bool {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return false
	}
	v, mac, ok := strings.Cut(c.Value, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(v, 10, 64)
	if err != nil || exp <= now.Unix() || exp > now.Add(s.ttl).Unix()+60 {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(s.mac(v)))
}

// ClearCookie is the cookie that ends a session in the browser.
func ClearCookie(secure bool) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteStrictMode}
}
