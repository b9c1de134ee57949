package pipeline

import (
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
