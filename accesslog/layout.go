package accesslog

import (
	"encoding/binary"
	"errors"
	"math"
	"unsafe"
)

// A layout is a parsed Entry written beside its line, so that a reader
// holding both gets the Entry back without parsing the line again: each
// byte field as where it lies in the line (or, for bytes the parse made,
// such as an unescaped JSON string or an IPv6 address spelled canonically,
// the bytes themselves), and the numbers. The repartition stage forwards
// lines with their layouts, and its second stage reads them instead of
// parsing each line a second time.
//
// The encoding: a version byte, then the 11 byte fields in the order of
// layoutFields (appendField), then the time as its distance below a
// reference the caller gives (the line's watermark), the status, the byte
// counts, the duration and the port, as varints.
const layoutVersion = 1

// ErrBadLayout is the error of a layout that does not decode whole, or
// points outside its line.
var ErrBadLayout = errors.New("accesslog: bad layout")

// layoutFields are the Entry's byte fields, in the layout's order.
func layoutFields(e *Entry) [11]*[]byte {
	return [11]*[]byte{&e.Client, &e.Ident, &e.User, &e.Request, &e.Method, &e.Path, &e.Query,
		&e.Protocol, &e.VHost, &e.Referer, &e.UserAgent}
}

// AppendLayout appends e's layout over line, the line e was parsed from,
// with its time as a distance below ref (the forwarded line's watermark,
// which is at or after it: a byte, mostly).
func AppendLayout(b, line []byte, e *Entry, ref int64) []byte {
	b = append(b, layoutVersion)
	prev := 0
	for _, f := range layoutFields(e) {
		b, prev = appendField(b, line, *f, prev)
	}
	b = binary.AppendVarint(b, ref-e.Time) // wrapping, as ReadLayout undoes it
	b = binary.AppendUvarint(b, uint64(e.Status))
	b = binary.AppendVarint(b, e.Bytes)
	b = binary.AppendVarint(b, e.BytesIn)
	b = binary.AppendVarint(b, e.Duration)
	return binary.AppendUvarint(b, uint64(e.Port))
}

// appendField writes one byte field: 0 for nil; (n<<1)|1 and its n bytes
// when they are not the line's; else its start, as the distance from the
// start of the field before that lay in the line (zigzagged, shifted left
// once, plus 2, so that the tag is even and not 0), then its length.
func appendField(b, line, f []byte, prev int) ([]byte, int) {
	if f == nil {
		return append(b, 0), prev
	}
	start, ok := within(line, f)
	if !ok {
		b = binary.AppendUvarint(b, uint64(len(f))<<1|1)
		return append(b, f...), prev
	}
	d := int64(start - prev)
	b = binary.AppendUvarint(b, (uint64(d<<1)^uint64(d>>63))<<1+2)
	return binary.AppendUvarint(b, uint64(len(f))), start
}

// within reports where f lies in line, if it does.
func within(line, f []byte) (int, bool) {
	if len(f) == 0 || len(line) == 0 {
		return 0, false
	}
	l, p := uintptr(unsafe.Pointer(unsafe.SliceData(line))), uintptr(unsafe.Pointer(unsafe.SliceData(f)))
	if p < l || p-l > uintptr(len(line)) || uintptr(len(f)) > uintptr(len(line))-(p-l) {
		return 0, false
	}
	return int(p - l), true
}

// ReadLayout sets e to the Entry that layout describes over line, with ref
// the reference its time was written against. The fields alias line and
// layout. A layout that does not decode whole or points outside line gives
// ErrBadLayout, and e is then reset.
func (e *Entry) ReadLayout(layout, line []byte, ref int64) error {
	e.Reset()
	if err := e.readLayout(layout, line, ref); err != nil {
		e.Reset()
		return err
	}
	return nil
}

func (e *Entry) readLayout(b, line []byte, ref int64) error {
	if len(b) == 0 || b[0] != layoutVersion {
		return ErrBadLayout
	}
	r := layoutReader{b: b[1:]}
	prev := int64(0)
	for _, f := range layoutFields(e) {
		switch tag := r.uvarint(); {
		case r.bad:
			return ErrBadLayout
		case tag == 0:
			*f = nil
		case tag&1 == 1:
			n := tag >> 1
			if n > uint64(len(r.b)) {
				return ErrBadLayout
			}
			*f, r.b = r.b[:n:n], r.b[n:]
		default:
			z := (tag - 2) >> 1
			d := int64(z>>1) ^ -int64(z&1)
			n := r.uvarint()
			if r.bad || d < -int64(len(line)) || d > int64(len(line)) {
				return ErrBadLayout
			}
			start := prev + d
			if start < 0 || start > int64(len(line)) || n > uint64(int64(len(line))-start) {
				return ErrBadLayout
			}
			*f, prev = line[start:start+int64(n):start+int64(n)], start
		}
	}
	// The time was written as ref minus it, wrapping: it comes back exact.
	e.Time = ref - r.varint()
	status := r.uvarint()
	e.Bytes, e.BytesIn, e.Duration = r.varint(), r.varint(), r.varint()
	port := r.uvarint()
	if r.bad || len(r.b) != 0 || status > math.MaxInt32 || port > math.MaxUint16 {
		return ErrBadLayout
	}
	e.Status, e.Port = int(status), int(port)
	return nil
}

// layoutReader reads a layout's varints; a short or overlong one sets bad.
type layoutReader struct {
	b   []byte
	bad bool
}

// uvarint reads one uvarint; one of a byte, most of a layout's, costs no
// call.
func (r *layoutReader) uvarint() uint64 {
	if b := r.b; len(b) > 0 && b[0] < 0x80 {
		r.b = b[1:]
		return uint64(b[0])
	}
	return r.long()
}

func (r *layoutReader) long() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *layoutReader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}
