package transport

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// ClusterKeySize is the length of a cluster key in bytes.
const ClusterKeySize = 32

// ErrHandshake is returned when a peer fails the cluster-key handshake:
// it holds another key, none, or replays or reflects someone else's.
var ErrHandshake = errors.New("transport: cluster-key handshake failed")

// GenerateClusterKey returns a new random cluster key, base64-encoded: the
// text ParseClusterKey reads.
func GenerateClusterKey() (string, error) {
	k := make([]byte, ClusterKeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("transport: generate cluster key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// ParseClusterKey decodes a base64 cluster key of ClusterKeySize bytes.
// Surrounding white space (a key file's newline) is ignored.
func ParseClusterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("transport: cluster key is empty; want the base64 of 32 random bytes, as 'warden keygen' prints")
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("transport: cluster key is not base64 (%v); want the base64 of 32 random bytes, as 'warden keygen' prints", err)
	}
	if len(k) != ClusterKeySize {
		return nil, fmt.Errorf("transport: cluster key decodes to %d bytes; want %d (the base64 of 32 random bytes, as 'warden keygen' prints)", len(k), ClusterKeySize)
	}
	return k, nil
}

// ReadClusterKeyFile reads a cluster key from a file holding its base64
// text, as written by `warden keygen > FILE`.
func ReadClusterKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("transport: read cluster key: %w", err)
	}
	k, err := ParseClusterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return k, nil
}

// GossipKeyFromClusterKey derives memberlist's AES-256 key from the cluster
// key, so that one secret guards both ports. The label keeps the two keys
// independent: knowing the gossip key tells nothing about the cluster key.
func GossipKeyFromClusterKey(clusterKey []byte) []byte {
	k, err := hkdf.Key(sha256.New, clusterKey, nil, "warden gossip key v1", 32)
	if err != nil {
		panic(err) // only for lengths sha256 cannot give; 32 is not one
	}
	return k
}

// The handshake, run on every connection of a mux that has a cluster key,
// right after the protocol byte (and inside TLS, if any):
//
//	client → server  proto, "WARDENK1", Nc (32 random bytes)
//	server → client  Ns (32 random bytes), HMAC(K, server label ‖ proto ‖ Nc ‖ Ns)
//	client → server  HMAC(K, client label ‖ proto ‖ Nc ‖ Ns)
//
// Each side checks the other's proof (constant time). A transcript replayed
// to a server fails, since the server picks a new Ns; a server's proof
// reflected back as a client's fails on its label. Then both sides derive
// one key per direction from K and both nonces, and every byte that follows
// travels in records sealed by sealedConn.
const (
	helloMagic  = "WARDENK1"
	nonceSize   = 32
	proofSize   = sha256.Size
	labelServer = "warden transport v1 server proof"
	labelClient = "warden transport v1 client proof"
	labelC2S    = "warden transport v1 client to server"
	labelS2C    = "warden transport v1 server to client"
)

func proof(key []byte, label string, proto byte, nc, ns []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	h.Write([]byte{proto})
	h.Write(nc)
	h.Write(ns)
	return h.Sum(nil)
}

// sessionKeys derives the per-direction record keys of one connection.
func sessionKeys(key []byte, proto byte, nc, ns []byte) (c2s, s2c []byte) {
	salt := append(append([]byte{}, nc...), ns...)
	derive := func(label string) []byte {
		k, err := hkdf.Key(sha256.New, key, salt, label+string([]byte{proto}), 32)
		if err != nil {
			panic(err)
		}
		return k
	}
	return derive(labelC2S), derive(labelS2C)
}

// clientHandshake authenticates a dialled connection, sending the protocol
// byte first. The caller sets the deadline.
func clientHandshake(c net.Conn, key []byte, proto byte) (net.Conn, error) {
	nc := make([]byte, nonceSize)
	if _, err := rand.Read(nc); err != nil {
		return nil, err
	}
	hello := make([]byte, 0, 1+len(helloMagic)+nonceSize)
	hello = append(append(append(hello, proto), helloMagic...), nc...)
	if _, err := c.Write(hello); err != nil {
		return nil, err
	}
	var resp [nonceSize + proofSize]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		return nil, fmt.Errorf("%w: no answer (%v); has the peer no cluster key, or too many connections?", ErrHandshake, err)
	}
	ns, sp := resp[:nonceSize], resp[nonceSize:]
	if !hmac.Equal(sp, proof(key, labelServer, proto, nc, ns)) {
		return nil, fmt.Errorf("%w: the peer does not hold this cluster key", ErrHandshake)
	}
	if _, err := c.Write(proof(key, labelClient, proto, nc, ns)); err != nil {
		return nil, err
	}
	c2s, s2c := sessionKeys(key, proto, nc, ns)
	return newSealedConn(c, s2c, c2s), nil
}

// serverHandshake authenticates an accepted connection whose protocol byte
// has been read. The caller sets the deadline.
func serverHandshake(c net.Conn, key []byte, proto byte) (net.Conn, error) {
	// The first byte tells at once a peer that sends no handshake (the
	// forwarding frame of a node without the key starts with a zero).
	var hello [len(helloMagic) + nonceSize]byte
	_, err := io.ReadFull(c, hello[:1])
	if err == nil && hello[0] == helloMagic[0] {
		_, err = io.ReadFull(c, hello[1:])
	}
	if err != nil {
		return nil, fmt.Errorf("%w: incomplete hello: %v", ErrHandshake, err)
	}
	if string(hello[:len(helloMagic)]) != helloMagic {
		return nil, fmt.Errorf("%w: the peer did not start a handshake (no cluster key on it?)", ErrHandshake)
	}
	nc := hello[len(helloMagic):]
	ns := make([]byte, nonceSize)
	if _, err := rand.Read(ns); err != nil {
		return nil, err
	}
	if _, err := c.Write(append(ns, proof(key, labelServer, proto, nc, ns)...)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	var cp [proofSize]byte
	if _, err := io.ReadFull(c, cp[:]); err != nil {
		return nil, fmt.Errorf("%w: no proof: %v", ErrHandshake, err)
	}
	if !hmac.Equal(cp[:], proof(key, labelClient, proto, nc, ns)) {
		return nil, fmt.Errorf("%w: wrong proof (another cluster key, or a replayed handshake)", ErrHandshake)
	}
	c2s, s2c := sessionKeys(key, proto, nc, ns)
	return newSealedConn(c, c2s, s2c), nil
}
