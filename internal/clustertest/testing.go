package clustertest

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// This file holds the helpers that fail a test instead of returning an
// error. They take TB, not testing.TB, so that the package (which `warden
// chaos` links) does not import the testing package.

// TB is the part of testing.TB these helpers use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// WaitFor polls cond every 50 ms until it holds, and fails the test if
// timeout passes first, naming what it waited for.
func WaitFor(t TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if Poll(context.Background(), timeout, 50*time.Millisecond, cond) != nil {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// MustFreeAddr is FreeAddr on 127.0.0.1, failing the test when no port is
// free.
func MustFreeAddr(t TB) string {
	t.Helper()
	addr, err := FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return addr
}

// MustReadAll is ReadAll, failing the test when the topic cannot be read
// to its end within two minutes.
func MustReadAll(t TB, broker, topic string) map[int32][]*kgo.Record {
	t.Helper()
	recs, err := ReadAll(context.Background(), broker, topic)
	if err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	return recs
}
