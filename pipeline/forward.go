package pipeline

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"

	"github.com/wardenhq/warden/accesslog"
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
	// KindPack is a run of the source's lines for one target in one
	// record (a pack): the first at Offset with watermark Watermark, each
	// after it at a greater offset (AppendPacked, Unpack). One record
	// carries up to MaxPackLines lines, where a record a line cost the
	// producer, the broker and the consumer their per-record work for
	// every line.
	KindPack byte = 3
	// KindParsed is a pack whose lines each carry their parse, the
	// accesslog layout of the Entry the first stage read (AppendParsed):
	// the second stage reads the Entry back instead of parsing the line
	// a second time.
	KindParsed byte = 4
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
	if len(b) < 2 || b[0] != originVersion || b[1] > KindParsed {
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

// A pack's bounds: the first stage closes one at MaxPackLines lines or
// once its body reaches MaxPackBytes, and the second stage refuses one of
// more lines.
const (
	MaxPackLines = 64
	MaxPackBytes = 32 << 10
)

// AppendPacked appends to b, the body of a pack, the line at offset with
// watermark wm; prevOffset and prevWM are those of the pack's previous line
// (for its first line, its origin's: the same as the line's). Offsets grow;
// watermarks are written as their difference, which wraps around int64.
func AppendPacked(b []byte, prevOffset, prevWM, offset, wm int64, line []byte) []byte {
	b = binary.AppendUvarint(b, uint64(offset-prevOffset))
	b = binary.AppendVarint(b, wm-prevWM)
	b = binary.AppendUvarint(b, uint64(len(line)))
	return append(b, line...)
}

// Pack gathers a source's lines for one target until it is full, then
// Close makes it one record's origin and body. The lines' bytes are kept
// by reference until Close, which copies them into a body of its exact
// size (one made up front for the largest pack was a large allocation,
// zeroed whole).
type Pack struct {
	vals [][]byte
	offs []int64
	wms  []int64
	size int // a bound on the body's length
	// lays holds each line's layout, one after another, and ends where
	// each ends, when the lines came with their parse (AddParsed).
	lays []byte
	ends []int
}

// Add takes the line at offset with watermark wm, at a greater offset than
// the pack's last one, and reports whether the pack is now full
// (MaxPackLines lines, or MaxPackBytes of body).
func (p *Pack) Add(offset, wm int64, line []byte) (full bool) {
	if len(p.ends) > 0 {
		panic("pipeline: a line without its parse in a pack of parsed lines")
	}
	return p.add(offset, wm, line)
}

// AddParsed is Add of a line with e, its parse: the pack is then of
// parsed lines (KindParsed), each with its layout. A pack holds lines of
// one kind.
func (p *Pack) AddParsed(offset, wm int64, line []byte, e *accesslog.Entry) (full bool) {
	if len(p.ends) != len(p.vals) {
		panic("pipeline: a parsed line in a pack of lines without their parse")
	}
	n := len(p.lays)
	p.lays = accesslog.AppendLayout(p.lays, line, e, wm)
	p.ends = append(p.ends, len(p.lays))
	p.size += len(p.lays) - n + binary.MaxVarintLen64
	return p.add(offset, wm, line)
}

func (p *Pack) add(offset, wm int64, line []byte) (full bool) {
	p.vals, p.offs, p.wms = append(p.vals, line), append(p.offs, offset), append(p.wms, wm)
	p.size += len(line) + 3*binary.MaxVarintLen64
	return len(p.vals) == MaxPackLines || p.size >= MaxPackBytes
}

// Len is the number of lines the pack holds.
func (p *Pack) Len() int { return len(p.vals) }

// Close returns the origin and the body of the pack's record, forwarded
// under generation gen from source, and empties the pack (keeping its
// memory, not the lines). The pack must hold a line.
func (p *Pack) Close(gen uint64, source int32) (Origin, []byte) {
	body := make([]byte, 0, p.size)
	prevOff, prevWM := p.offs[0], p.wms[0]
	kind, from := KindPack, 0
	if len(p.ends) > 0 {
		kind = KindParsed
	}
	for i, v := range p.vals {
		body = AppendPacked(body, prevOff, prevWM, p.offs[i], p.wms[i], v)
		if kind == KindParsed {
			body = binary.AppendUvarint(body, uint64(p.ends[i]-from))
			body = append(body, p.lays[from:p.ends[i]]...)
			from = p.ends[i]
		}
		prevOff, prevWM = p.offs[i], p.wms[i]
	}
	o := Origin{Kind: kind, Gen: gen, Source: source, Offset: p.offs[0], Watermark: p.wms[0]}
	clear(p.vals)
	p.vals, p.offs, p.wms, p.size = p.vals[:0], p.offs[:0], p.wms[:0], 0
	p.lays, p.ends = p.lays[:0], p.ends[:0]
	return o, body
}

// Lines appends to out the lines a repartition record with origin o and
// value gives the merge: a pack's (Unpack), or the one line or marker of a
// record of its own.
func Lines(o Origin, value []byte, out []Packed) ([]Packed, error) {
	if o.Kind == KindPack || o.Kind == KindParsed {
		return Unpack(o, value, out)
	}
	return append(out, Packed{Origin: o, Value: value}), nil
}

// Packed is one line of a pack: its origin (KindLine) and its bytes, which
// alias the pack's body.
type Packed struct {
	Origin
	Value []byte
	// Layout is the line's parse, in a pack of parsed lines; nil else.
	Layout []byte
}

// Unpack appends to out the lines of the pack whose origin is o and body
// body (with their layouts, in a pack of parsed lines). A body that does not decode whole, a first line not at o's offset
// and watermark, offsets that do not grow, or more than MaxPackLines lines
// is refused with ErrBadOrigin, out as it was.
func Unpack(o Origin, body []byte, out []Packed) ([]Packed, error) {
	if o.Kind != KindPack && o.Kind != KindParsed || len(body) == 0 {
		return out, ErrBadOrigin
	}
	n0 := len(out)
	off, wm := o.Offset, o.Watermark
	for first := true; len(body) > 0; first = false {
		d, n := binary.Uvarint(body)
		if n <= 0 || first != (d == 0) || d > math.MaxInt64-uint64(off) {
			return out[:n0], ErrBadOrigin
		}
		body = body[n:]
		dw, n := binary.Varint(body)
		if n <= 0 || first && dw != 0 {
			return out[:n0], ErrBadOrigin
		}
		body = body[n:]
		l, n := binary.Uvarint(body)
		if n <= 0 || l > uint64(len(body)-n) || len(out)-n0 == MaxPackLines {
			return out[:n0], ErrBadOrigin
		}
		body = body[n:]
		// A watermark's delta wraps (from NoWatermark to a real one it
		// would not fit), and so adds back exactly.
		off, wm = off+int64(d), wm+dw
		line := body[:l:l]
		body = body[l:]
		var layout []byte
		if o.Kind == KindParsed {
			// The layout is read when the line reaches detection; one
			// that does not read then leaves the line to be parsed.
			ll, n := binary.Uvarint(body)
			if n <= 0 || ll == 0 || ll > uint64(len(body)-n) {
				return out[:n0], ErrBadOrigin
			}
			layout, body = body[n:n+int(ll):n+int(ll)], body[n+int(ll):]
		}
		out = append(out, Packed{Origin: Origin{Kind: KindLine, Gen: o.Gen, Source: o.Source, Offset: off, Watermark: wm},
			Value: line, Layout: layout})
	}
	return out, nil
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
