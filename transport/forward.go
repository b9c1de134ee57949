package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// ForwardHandler applies a forwarded proposal on the leader and returns the
// FSM's result, encoded by the caller's convention.
type ForwardHandler func(ctx context.Context, payload []byte) ([]byte, error)

// ErrRemote wraps an error the leader returned for a forwarded proposal.
var ErrRemote = errors.New("transport: leader refused")

// maxFrame bounds one forwarded message. The largest is a group commit:
// the batches packed after the first stop at 2 MiB (node/commit.go), but
// the first batch alone is bounded only by its records (40,000 lines from
// as many sources encode to about 13 MiB), so the bound is generous. What
// keeps a stranger from spending it is authentication; what keeps a frame
// header from spending it is readFrame, which allocates as bytes arrive.
const maxFrame = 64 << 20

// frameChunk is what readFrame allocates before the bytes of a frame
// arrive; it doubles from there.
const frameChunk = 64 << 10

// ErrFrameTooLarge is returned for a frame whose header claims more than
// the forwarding protocol allows.
var ErrFrameTooLarge = errors.New("transport: frame too large")

// HandleForward sets the handler for forwarded proposals.
func (m *Mux) HandleForward(h ForwardHandler) {
	m.mu.Lock()
	m.forward = h
	m.mu.Unlock()
}

// A forwarding connection carries any number of request/response pairs:
//
//	request:  uint32 length, payload
//	response: 1 status byte (0 ok, 1 error), uint32 length, payload or error text
//
// Each request must arrive whole within the request timeout of the previous
// answer (or of the handshake), and each answer must leave within it.
func (m *Mux) serveForward(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(m.requestTimeout))
		req, err := readFrame(r)
		if err != nil {
			if errors.Is(err, ErrFrameTooLarge) {
				if ok, dropped := m.frameLog.allow(); ok {
					m.log.Warn("forwarded request refused", "remote", c.RemoteAddr(), "err", err, "refused_since_last_log", dropped)
				}
			}
			return
		}
		m.mu.RLock()
		h := m.forward
		m.mu.RUnlock()
		var resp []byte
		status := byte(0)
		if h == nil {
			status, resp = 1, []byte("node is not ready to take proposals")
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, herr := h(ctx, req)
			cancel()
			if herr != nil {
				status, resp = 1, []byte(herr.Error())
			} else {
				resp = out
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(m.requestTimeout))
		if err := writeFrame(c, status, resp); err != nil {
			return
		}
	}
}

// Forward sends payload to the leader at addr and returns its answer. One
// call, one connection: proposals are few (one per node per batch interval),
// and a fresh connection never carries a half-read answer of an earlier call
// that timed out.
func (m *Mux) Forward(ctx context.Context, addr string, payload []byte) ([]byte, error) {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	c, err := m.dial(addr, protoForward, timeout)
	if err != nil {
		return nil, fmt.Errorf("transport: forward to %s: %w", addr, err)
	}
	c = &watchedConn{Conn: c, m: m, addr: addr}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := c.Write(append(hdr[:], payload...)); err != nil {
		return nil, fmt.Errorf("transport: forward to %s: %w", addr, err)
	}
	r := bufio.NewReader(c)
	status, err := r.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("transport: forward to %s: %w", addr, err)
	}
	resp, err := readFrame(r)
	if err != nil {
		return nil, fmt.Errorf("transport: forward to %s: %w", addr, err)
	}
	if status != 0 {
		return nil, fmt.Errorf("%w: %s", ErrRemote, resp)
	}
	return resp, nil
}

// readFrame reads a uint32 length and that many bytes. A length over
// maxFrame is refused before anything is allocated, and the buffer grows
// with the bytes that come, so a header alone costs frameChunk at most.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > maxFrame {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, maxFrame)
	}
	b := make([]byte, 0, min(n, frameChunk))
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), cap(b)))
		}
		k, err := r.Read(b[len(b):min(cap(b), n)])
		b = b[:len(b)+k]
		if err != nil && len(b) < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return b, nil
}

func writeFrame(w io.Writer, status byte, payload []byte) error {
	buf := make([]byte, 5+len(payload))
	buf[0] = status
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}
