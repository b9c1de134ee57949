package node

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startHTTP starts a single-node cluster whose config edit changes, and
// waits for it to lead.
func (c *cluster) startHTTP(id string, edit func(*Config)) *Node {
	c.t.Helper()
	n := c.startEdit(id, 0, edit)
	// The leader records itself as a member within a second of its
	// election; until then the dashboard says it is joining.
	waitFor(c.t, 15*time.Second, "a leader, recorded as a member", func() bool {
		_, recorded := n.State().Members[id]
		return n.Leader() != "" && recorded
	})
	return n
}

func status(t *testing.T, cl *http.Client, method, url, auth, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHTTP_ReadTokenGuardsReadsAndBearerIsRequired(t *testing.T) {
	c := newCluster(t, 2)
	n := c.startHTTP("n1", func(cfg *Config) { cfg.HTTPToken, cfg.AdminToken = "reader", "boss" })
	base := "http://" + n.HTTPAddr()
	cl := http.DefaultClient
	for _, path := range []string{"/v1/stats", "/v1/cluster", "/v1/partitions", "/v1/alerts", "/v1/decisions", "/v1/malformed", "/v1/blocklist?format=plain", "/metrics"} {
		for auth, want := range map[string]int{
			"":              http.StatusUnauthorized,
			"Bearer wrong":  http.StatusUnauthorized,
			"reader":        http.StatusUnauthorized, // the scheme is required
			"Basic reader":  http.StatusUnauthorized,
			"Bearer reader": http.StatusOK,
			"bearer reader": http.StatusOK,
			"Bearer boss":   http.StatusOK, // the admin may read
		} {
			if got := status(t, cl, "GET", base+path, auth, ""); got != want {
				t.Errorf("GET %s with %q: %d, want %d", path, auth, got, want)
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if got := status(t, cl, "GET", base+path, "", ""); got == http.StatusUnauthorized {
			t.Errorf("%s needs a token; load balancers probe it without one", path)
		}
	}
	// The admin token without the Bearer scheme no longer passes, and the
	// read token cannot write.
	body := `{"value":"192.0.2.7","type":"ban","duration":"1h"}`
	for auth, want := range map[string]int{"boss": http.StatusUnauthorized, "Bearer reader": http.StatusUnauthorized, "Bearer boss": http.StatusCreated} {
		if got := status(t, cl, "POST", base+"/v1/decisions", auth, body); got != want {
			t.Errorf("POST /v1/decisions with %q: %d, want %d", auth, got, want)
		}
	}
}

func TestHTTP_PprofOffByDefaultAndAdminOnly(t *testing.T) {
	c := newCluster(t, 1)
	off := c.startHTTP("n1", func(cfg *Config) { cfg.AdminToken = "boss" })
	if got := status(t, http.DefaultClient, "GET", "http://"+off.HTTPAddr()+"/debug/pprof/", "Bearer boss", ""); got != http.StatusNotFound {
		t.Errorf("pprof without --pprof: %d, want 404", got)
	}
	c2 := newCluster(t, 1)
	on := c2.startHTTP("n1", func(cfg *Config) { cfg.AdminToken, cfg.Pprof = "boss", true })
	url := "http://" + on.HTTPAddr() + "/debug/pprof/heap"
	if got := status(t, http.DefaultClient, "GET", url, "", ""); got != http.StatusUnauthorized {
		t.Errorf("pprof without the admin token: %d, want 401", got)
	}
	if got := status(t, http.DefaultClient, "GET", url, "Bearer boss", ""); got != http.StatusOK {
		t.Errorf("pprof with the admin token: %d, want 200", got)
	}
}

func TestHTTP_BodyLimitAndConnectionCap(t *testing.T) {
	c := newCluster(t, 1)
	n := c.startHTTP("n1", func(cfg *Config) { cfg.AdminToken, cfg.HTTPMaxConns = "boss", 2 })
	base := "http://" + n.HTTPAddr()
	huge := `{"value":"192.0.2.7","reason":"` + strings.Repeat("x", 1<<20) + `"}`
	if got := status(t, http.DefaultClient, "POST", base+"/v1/decisions", "Bearer boss", huge); got < 400 || got >= 500 {
		t.Errorf("a 1 MiB body: %d, want a 4xx refusal", got)
	}
	// Two idle connections fill the cap: a third request waits...
	var held []net.Conn
	for i := 0; i < 2; i++ {
		conn, err := net.Dial("tcp", n.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	time.Sleep(200 * time.Millisecond) // let the server accept them
	quick := &http.Client{Timeout: 700 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := quick.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("a third connection was served beyond --http-max-conns 2")
	}
	// ...and is served once one closes.
	held[0].Close()
	slow := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := slow.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("after a connection closed: %v", err)
	}
	resp.Body.Close()
	held[1].Close()
}

func TestHTTP_TLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	c := newCluster(t, 1)
	n := c.startHTTP("n1", func(cfg *Config) { cfg.HTTPTLSCert, cfg.HTTPTLSKey = certFile, keyFile })
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if got := status(t, cl, "GET", "https://"+n.HTTPAddr()+"/v1/cluster", "", ""); got != http.StatusOK {
		t.Errorf("GET over TLS: %d", got)
	}
	resp, err := http.Get("http://" + n.HTTPAddr() + "/v1/cluster")
	if err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP served on the TLS port")
		}
		resp.Body.Close()
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warden-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	var cb, kpem bytes.Buffer
	_ = pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&kpem, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	if err := os.WriteFile(certFile, cb.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, kpem.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(cb.Bytes())
	return certFile, keyFile, pool
}
