// Package wire is the compact binary encoding of Warden's Raft commits:
// varints and length-prefixed bytes, appended to a slice and read back by a
// Reader whose first error sticks, so decoders check once at the end.
package wire

import (
	"encoding/binary"
	"errors"
	"math"
)

// ErrShort means the data ended inside a value, or a length was impossible.
var ErrShort = errors.New("wire: truncated or corrupt data")

// AppendInt appends a signed varint.
func AppendInt(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// AppendUint appends an unsigned varint.
func AppendUint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// AppendBytes appends a length and the bytes.
func AppendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// AppendString appends a length and the string.
func AppendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// AppendSized appends what enc appends, preceded by its length, as
// AppendBytes would write it, without a second buffer: it reserves the
// longest length prefix, then moves the body back if a shorter one does.
func AppendSized(b []byte, enc func([]byte) []byte) []byte {
	const reserve = 5 // a uvarint of up to 2^35
	at := len(b)
	b = append(b, make([]byte, reserve)...)
	b = enc(b)
	n := len(b) - at - reserve
	hdr := binary.AppendUvarint(nil, uint64(n))
	copy(b[at:], hdr)
	copy(b[at+len(hdr):], b[at+reserve:])
	return b[:at+len(hdr)+n]
}

// AppendFixed64 appends v as 8 little-endian bytes (hashes, which varints
// would make longer).
func AppendFixed64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// Reader reads what the Append functions wrote. After the first error every
// read returns zero values and Err reports it.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err is the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Len is the number of bytes left.
func (r *Reader) Len() int { return len(r.b) }

func (r *Reader) fail() {
	if r.err == nil {
		r.err = ErrShort
	}
	r.b = nil
}

// Int reads a signed varint.
func (r *Reader) Int() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Uint reads an unsigned varint.
func (r *Reader) Uint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Count reads a length or element count that must fit in what is left
// (each element takes at least min bytes), so corrupt data cannot make a
// decoder allocate without bound.
func (r *Reader) Count(min int) int {
	v := r.Uint()
	if r.err != nil {
		return 0
	}
	if v > math.MaxInt32 || int(v)*max(min, 1) > len(r.b) {
		r.fail()
		return 0
	}
	return int(v)
}

// Bytes reads a length-prefixed byte string. It aliases the input.
func (r *Reader) Bytes() []byte {
	n := r.Count(1)
	if r.err != nil {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// String reads a length-prefixed string (a copy).
func (r *Reader) String() string { return string(r.Bytes()) }

// Bool reads a flag: one byte, 0 or 1. Any other byte is corrupt data,
// so that a flag reads the same wherever its bytes are copied to (a
// count's bound depends on what follows it).
func (r *Reader) Bool() bool {
	if len(r.b) == 0 || r.b[0] > 1 {
		r.fail()
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

// Fixed64 reads 8 little-endian bytes.
func (r *Reader) Fixed64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}
