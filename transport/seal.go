package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
)

// maxRecord bounds the payload of one sealed record. A reader holds one
// record (and checks its MAC) before it hands any of it on, so this is also
// the most an authenticated-to-be peer can make a connection buffer.
const maxRecord = 64 << 10

// ErrBadRecord is returned by a sealed connection whose peer sent a record
// that does not verify: tampered with, replayed, reordered or cut.
var ErrBadRecord = errors.New("transport: sealed record does not verify")

// sealedConn carries a connection's bytes after the cluster-key handshake
// in records
//
//	uint32 length, payload, HMAC-SHA256(direction key, seq ‖ length ‖ payload)
//
// where seq counts the records sent in that direction from 0. The counter is
// never sent: a record replayed, dropped or moved fails its MAC at the
// receiver, and the direction keys (derived from the cluster key and both
// nonces) keep one connection's records from verifying on another, or in the
// other direction. Payloads are authenticated, not encrypted; TLS is for
// secrecy. Reads and writes have separate state, so one goroutine may read
// while another writes (raft's pipeline does). Any error is final.
type sealedConn struct {
	net.Conn

	rmu  sync.Mutex
	rmac hash.Hash
	rseq uint64
	rbuf []byte // the current record: header, payload, MAC
	rest []byte // verified payload not yet returned
	rerr error

	wmu  sync.Mutex
	wmac hash.Hash
	wseq uint64
	wbuf []byte
	werr error
}

func newSealedConn(c net.Conn, readKey, writeKey []byte) *sealedConn {
	return &sealedConn{Conn: c, rmac: hmac.New(sha256.New, readKey), wmac: hmac.New(sha256.New, writeKey)}
}

func recordMAC(h hash.Hash, seq uint64, hdr, payload, dst []byte) []byte {
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	h.Reset()
	h.Write(s[:])
	h.Write(hdr)
	h.Write(payload)
	return h.Sum(dst)
}

func (c *sealedConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.rest) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		c.rerr = c.readRecord()
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *sealedConn) readRecord() error {
	var hdr [4]byte
	if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxRecord {
		return fmt.Errorf("%w: record of %d bytes (want 1 to %d)", ErrBadRecord, n, maxRecord)
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, maxRecord+proofSize*2)
	}
	body := c.rbuf[:int(n)+proofSize]
	if _, err := io.ReadFull(c.Conn, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	payload, mac := body[:n], body[n:]
	want := recordMAC(c.rmac, c.rseq, hdr[:], payload, c.rbuf[maxRecord+proofSize:maxRecord+proofSize])
	if !hmac.Equal(mac, want) {
		return ErrBadRecord
	}
	c.rseq++
	c.rest = payload
	return nil
}

func (c *sealedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		if c.werr != nil {
			return written, c.werr
		}
		chunk := p[:min(len(p), maxRecord)]
		b := c.wbuf[:0]
		b = binary.BigEndian.AppendUint32(b, uint32(len(chunk)))
		b = append(b, chunk...)
		b = recordMAC(c.wmac, c.wseq, b[:4], chunk, b)
		c.wbuf = b
		c.wseq++
		if _, err := c.Conn.Write(b); err != nil {
			c.werr = err
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}
