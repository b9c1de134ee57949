package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestAppendPartitionKey_SameAsPartitionKey compares the two forms on
// every kind of client, and checks that the append form allocates nothing.
func TestAppendPartitionKey_SameAsPartitionKey(t *testing.T) {
	clients := []string{"203.0.113.9", "10.1.2.3", "::ffff:198.51.100.7", "2001:db8:1:2::5", "fe80::1%eth0", "100.64.1.1",
		"127.0.0.1", "not an address", "", "::", "8.8.8.8"}
	buf := make([]byte, 0, 64)
	for _, c := range clients {
		if got, want := string(AppendPartitionKey(buf[:0], []byte(c))), PartitionKey(c); got != want {
			t.Errorf("AppendPartitionKey(%q) = %q, PartitionKey %q", c, got, want)
		}
	}
	// The IPv4 parser against netip's, on near-misses.
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("0123456789..:a%x")
	for range 200_000 {
		b := make([]byte, 1+r.IntN(16))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if r.IntN(2) == 0 { // mostly well-formed, with a twist
			b = fmt.Appendf(nil, "%d.%d.%d.%d", r.IntN(300), r.IntN(256), r.IntN(256), r.IntN(1000))
			if r.IntN(4) == 0 {
				b[r.IntN(len(b))] = alphabet[r.IntN(len(alphabet))]
			}
		}
		a, ok := parseIPv4(b)
		want, err := netip.ParseAddr(string(b))
		if ok && (err != nil || a != want) || !ok && err == nil && want.Is4() {
			t.Fatalf("parseIPv4(%q) = %v %v, netip %v %v", b, a, ok, want, err)
		}
		if got, want := string(AppendPartitionKey(buf[:0], b)), PartitionKey(string(b)); got != want {
			t.Fatalf("AppendPartitionKey(%q) = %q, PartitionKey %q", b, got, want)
		}
	}
	client := []byte("203.0.113.9")
	if n := testing.AllocsPerRun(100, func() { buf = AppendPartitionKey(buf[:0], client) }); n != 0 {
		t.Errorf("AppendPartitionKey allocates %.0f times a call", n)
	}
}
