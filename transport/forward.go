package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ForwardHandler applies a forwarded proposal on the leader and returns the
// FSM's result, encoded by the caller's convention.
type ForwardHandler func(ctx context.Context, payload []byte) ([]byte, error)

// ErrRemote wraps an error the leader returned for a forwarded proposal.
var ErrRemote = errors.New("transport: leader refused")

// maxFrame bounds one forwarded message (a group commit of many batches).
const maxFrame = 64 << 20

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
func (m *Mux) serveForward(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		req, err := readFrame(r)
		if err != nil {
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

func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("transport: frame of %d bytes exceeds %d", n, maxFrame)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeFrame(w io.Writer, status byte, payload []byte) error {
	buf := make([]byte, 5+len(payload))
	buf[0] = status
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}
