package wire

import (
	"bytes"
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b []byte
	b = AppendInt(b, -5)
	b = AppendInt(b, math.MaxInt64)
	b = AppendUint(b, 300)
	b = AppendString(b, "héllo")
	b = AppendBytes(b, nil)
	b = AppendFixed64(b, 0xdeadbeefcafef00d)
	r := NewReader(b)
	if v := r.Int(); v != -5 {
		t.Fatalf("int %d", v)
	}
	if v := r.Int(); v != math.MaxInt64 {
		t.Fatalf("int %d", v)
	}
	if v := r.Uint(); v != 300 {
		t.Fatalf("uint %d", v)
	}
	if v := r.String(); v != "héllo" {
		t.Fatalf("string %q", v)
	}
	if v := r.Bytes(); len(v) != 0 {
		t.Fatalf("bytes %q", v)
	}
	if v := r.Fixed64(); v != 0xdeadbeefcafef00d {
		t.Fatalf("fixed %x", v)
	}
	if r.Err() != nil || r.Len() != 0 {
		t.Fatalf("err %v, %d left", r.Err(), r.Len())
	}
}

func TestTruncatedAndHugeLengths(t *testing.T) {
	b := AppendString(nil, "abcdef")
	for i := 0; i < len(b); i++ {
		r := NewReader(b[:i])
		_ = r.String()
		if r.Err() == nil {
			t.Fatalf("cut at %d: no error", i)
		}
	}
	// A length far beyond the data fails without allocating it.
	r := NewReader(AppendUint(nil, 1<<40))
	if v := r.Bytes(); v != nil || r.Err() == nil {
		t.Fatal("huge length accepted")
	}
	// Errors stick.
	if r.Int() != 0 || r.Fixed64() != 0 || r.Err() == nil {
		t.Fatal("error did not stick")
	}
}

// TestAppendSized_AsAppendBytes checks that AppendSized writes what
// AppendBytes writes, for bodies on both sides of each prefix length.
func TestAppendSized_AsAppendBytes(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152} {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i * 7)
		}
		prefix := []byte("before")
		got := AppendSized(append([]byte(nil), prefix...), func(b []byte) []byte { return append(b, body...) })
		if want := AppendBytes(append([]byte(nil), prefix...), body); !bytes.Equal(got, want) {
			t.Fatalf("body of %d bytes: %d bytes written, AppendBytes writes %d", n, len(got), len(want))
		}
	}
}

// TestBool_OneByteZeroOrOne: a flag is 0 or 1 in one byte, whatever
// follows it; any other byte, or none, is corrupt.
func TestBool_OneByteZeroOrOne(t *testing.T) {
	r := NewReader([]byte{1, 0})
	if !r.Bool() || r.Bool() || r.Err() != nil || r.Len() != 0 {
		t.Fatalf("1, 0 read wrong: %v", r.Err())
	}
	for _, b := range [][]byte{nil, {2, 0, 0, 0}, {0x80, 0x00}, {0x81, 0x00}, {0xff}} {
		r := NewReader(b)
		if r.Bool() || r.Err() == nil {
			t.Errorf("% x accepted", b)
		}
	}
}
