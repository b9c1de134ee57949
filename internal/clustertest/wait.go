package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrTimeout is what Poll returns when the condition did not hold before
// the deadline.
var ErrTimeout = errors.New("timed out")

// Poll calls cond every interval until it holds (nil), ctx ends (its
// error) or timeout passes (ErrTimeout).
func Poll(ctx context.Context, timeout, every time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return ErrTimeout
}

// Listening reports whether addr accepts a TCP connection.
func Listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// WaitTCP waits until addr accepts TCP connections: a process is ready to
// serve (the broker) once its port answers.
func WaitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	err := Poll(ctx, timeout, 100*time.Millisecond, func() bool { return Listening(addr) })
	if errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%s not answering after %s", addr, timeout)
	}
	return err
}

// AllOwned reports whether the agent serving HTTP on addr lists n
// partitions, each with an owner: the cluster formed and assigned them.
func AllOwned(addr string, n int) bool {
	parts, err := Partitions(addr)
	if err != nil || len(parts) != n {
		return false
	}
	for _, p := range parts {
		if p.Owner == "" {
			return false
		}
	}
	return true
}
