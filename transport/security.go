package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
)

// TLSConfig is the TLS setup of a node's Raft/forwarding port.
type TLSConfig struct {
	server *tls.Config
	client *tls.Config
}

// Mutual reports whether peers must present a certificate signed by the
// configured CA: only then does TLS alone authenticate nodes.
func (t *TLSConfig) Mutual() bool {
	return t != nil && t.server.ClientAuth == tls.RequireAndVerifyClientCert
}

// LoadTLS reads a node certificate and key, and optionally a CA. With a CA,
// TLS is mutual: each side presents its certificate and checks the other's
// against the CA, so only holders of a CA-signed certificate take part.
// Without a CA, the server is checked against the system roots and clients
// are not asked for certificates.
func LoadTLS(certFile, keyFile, caFile string) (*TLSConfig, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("transport: --tls-cert and --tls-key must be given together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("transport: load certificate: %w", err)
	}
	server := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	client := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("transport: read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("transport: %s holds no PEM certificate", caFile)
		}
		server.ClientCAs = pool
		server.ClientAuth = tls.RequireAndVerifyClientCert
		client.RootCAs = pool
	}
	return &TLSConfig{server: server, client: client}, nil
}

// ParseGossipKey decodes a base64 memberlist key of 16, 24 or 32 bytes
// (AES-128, -192 or -256).
func ParseGossipKey(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("transport: --gossip-key is not base64: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("transport: --gossip-key must decode to 16, 24 or 32 bytes, got %d", len(k))
}
