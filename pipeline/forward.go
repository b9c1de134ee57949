package pipeline

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/fnv"
)

// Header is the name of the record header that carries a forwarded
// record's origin on the repartition topic.
const Header = "warden-src"

// Origin kinds: a forwarded line, or a marker with no line.
const (
	// KindLine is a line of the source partition at Offset.
	KindLine byte = 0
	// KindProgress says: every line of the source below Offset has been
	// forwarded, and the source's watermark there is Watermark.
	KindProgress byte = 1
	// KindIdle is a progress marker from a source that had nothing more
	// to read: it holds no other source back until it sends again.
	KindIdle byte = 2
)

// Origin is where a record of the repartition topic comes from.
type Origin struct {
	Kind byte
	// Gen is the cluster's replay generation when it was forwarded: a
	// whole-topic replay starts a new one, and the second stage drops
	// what an older one forwarded.
	Gen       uint64
	Source    int32
	Offset    int64
	Watermark int64
}

// Key is the order key of a forwarded line.
func (o Origin) Key() Key { return Key{Watermark: o.Watermark, Source: o.Source, Offset: o.Offset} }

const originVersion = 1

// MaxOriginBytes is the longest header value AppendOrigin writes.
const MaxOriginBytes = 2 + 3*binary.MaxVarintLen64 + binary.MaxVarintLen32

// AppendOrigin appends the header value of o to b.
func AppendOrigin(b []byte, o Origin) []byte {
	b = append(b, originVersion, o.Kind)
	b = binary.AppendUvarint(b, o.Gen)
	b = binary.AppendUvarint(b, uint64(uint32(o.Source)))
	b = binary.AppendVarint(b, o.Offset)
	b = binary.AppendVarint(b, o.Watermark)
	return b
}

// ErrBadOrigin is the verdict on a repartition record whose origin header
// is missing or does not decode: anyone who can write to the topic can
// write such a record, and the second stage drops and counts it.
var ErrBadOrigin = errors.New("pipeline: record without a valid origin")

// ParseOrigin decodes a header value written by AppendOrigin.
func ParseOrigin(b []byte) (Origin, error) {
	var o Origin
	if len(b) < 2 || b[0] != originVersion || b[1] > KindIdle {
		return o, ErrBadOrigin
	}
	o.Kind = b[1]
	b = b[2:]
	var n int
	if o.Gen, n = binary.Uvarint(b); n <= 0 {
		return o, ErrBadOrigin
	}
	b = b[n:]
	src, n := binary.Uvarint(b)
	if n <= 0 || src > 1<<31-1 {
		return o, ErrBadOrigin
	}
	o.Source, b = int32(src), b[n:]
	if o.Offset, n = binary.Varint(b); n <= 0 || o.Offset < 0 {
		return o, ErrBadOrigin
	}
	b = b[n:]
	if o.Watermark, n = binary.Varint(b); n <= 0 || n != len(b) {
		return o, ErrBadOrigin
	}
	return o, nil
}

// Target is the repartition partition of a record keyed key, among n: the
// same for every node and every run, whatever a Kafka client's
// partitioner would pick.
func Target(key []byte, n int32) int32 {
	if n <= 0 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int32(h.Sum32() % uint32(n))
}

// MACHeader carries a forwarded record's MAC when the cluster has a key:
// the repartition topic is as open as the input to anyone who can write to
// Kafka, but a forged origin could do more there than a forged line can in
// the input (an offset far ahead would make the second stage drop the real
// lines of that source as repeats), so with a key only sealed records count.
const MACHeader = "warden-mac"

// macSize is the length of a MAC: the first 16 bytes of HMAC-SHA256.
const macSize = 16

// Sealer computes and checks the MACs of forwarded records under a key
// derived from the cluster key. A nil Sealer seals nothing and accepts
// everything (a cluster without a key, on loopback).
type Sealer struct{ key []byte }

// NewSealer returns a Sealer for key (nil for none).
func NewSealer(key []byte) *Sealer {
	if len(key) == 0 {
		return nil
	}
	return &Sealer{key: key}
}

// Seal returns the MAC of a record with header origin, key and value.
func (s *Sealer) Seal(origin, key, value []byte) []byte {
	if s == nil {
		return nil
	}
	m := hmac.New(sha256.New, s.key)
	var n [8]byte
	for _, part := range [][]byte{origin, key, value} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		m.Write(n[:])
		m.Write(part)
	}
	return m.Sum(nil)[:macSize]
}

// Check reports whether mac is the record's MAC (always true for a nil
// Sealer).
func (s *Sealer) Check(mac, origin, key, value []byte) bool {
	if s == nil {
		return true
	}
	return len(mac) == macSize && hmac.Equal(mac, s.Seal(origin, key, value))
}
