package analytics

import (
	"encoding/json"
	"hash/maphash"
	"math"
	"sort"
	"unicode/utf8"
	"unsafe"
)

// Counts is an exact count per key. Lookups by []byte do not allocate, and a
// key is copied once, when first seen. Keys are only ever appended, never
// changed or removed: Store.Freeze shares them with a snapshot being written.
//
// The keys are packed: their bytes one after another in one slice, where
// each ends, and an open-addressing index of their positions. That is about
// 43 bytes per key for a client address and nothing for the collector to
// trace, where a map of strings took 98 and two pointers per key
// (BenchmarkCountsInsert). The strings Each and Top give alias the packed
// bytes, which are never written twice, unless an Aggregate nobody reads
// any more is Reset for reuse.
//
// One Counts holds at most 4 GiB of key bytes (a minute of 16 million
// distinct keys of the longest length kept); a key past that is counted
// under the empty key.
type Counts struct {
	data []byte   // the keys, in insertion order
	ends []uint32 // key i is data[ends[i-1]:ends[i]] (from 0 for the first)
	n    []int64
	// table holds, per key, its hash's top 32 bits and its index + 1
	// (0: an empty slot), probed linearly from the hash's low bits; at
	// most three quarters of it is used. It is nil up to smallCounts keys
	// (and for a frozen copy), which are scanned instead.
	table []uint64
	// last is the index + 1 of the key counted last (0: none): logs
	// repeat a client, its agent and its referer line after line (a page
	// and its assets), and comparing with the last key costs less than
	// hashing.
	last int32
}

// countsSeed keys the index's hash: random per process, so that no one can
// craft keys that collide (the order of the slots shows nowhere).
var countsSeed = maphash.MakeSeed()

// Add adds n to key k.
func (c *Counts) Add(k []byte, n int64) { c.addNew(k, n) }

// AddString adds n to key k.
func (c *Counts) AddString(k string, n int64) { c.addNew(stringBytes(k), n) }

// stringBytes is s's bytes, for reading only: a Counts copies a key's bytes
// when it keeps them, so a string key needs no copy of its own to be looked
// up.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// addNew adds n to key k and reports whether k was new.
func (c *Counts) addNew(k []byte, n int64) bool {
	if len(c.data)+len(k) > math.MaxUint32 {
		k = nil
	}
	if i := int(c.last) - 1; i >= 0 && string(c.key(i)) == string(k) {
		c.n[i] += n
		return false
	}
	if c.table == nil && len(c.ends) > smallCounts {
		c.index(indexSize(len(c.ends) + 1)) // dropped while idle (dropIndex)
	}
	if c.table == nil {
		if i := c.scan(k); i >= 0 {
			c.n[i] += n
			c.last = int32(i + 1)
			return false
		}
		c.push(k, n)
		if len(c.ends) > smallCounts {
			c.grow()
		}
		return true
	}
	return c.addHashed(k, maphash.Bytes(countsSeed, k), n)
}

// addHashed is addNew in a Counts with an index, k hashed to h.
func (c *Counts) addHashed(k []byte, h uint64, n int64) bool {
	slot, i := c.find(k, h)
	if i >= 0 {
		c.n[i] += n
		c.last = int32(i + 1)
		return false
	}
	c.push(k, n)
	if (len(c.ends)+1)*4 > len(c.table)*3 {
		c.grow() // places the new key too
	} else {
		c.table[slot] = h&^0xFFFFFFFF | uint64(len(c.ends))
	}
	return true
}

// push appends k, a new key, with count n.
func (c *Counts) push(k []byte, n int64) {
	c.data = append(c.data, k...)
	c.ends = append(c.ends, uint32(len(c.data)))
	c.n = append(c.n, n)
	c.last = int32(len(c.ends))
}

// smallCounts is how many keys a Counts holds before it has an index:
// comparing a few short keys (statuses, methods) costs less than hashing.
const smallCounts = 8

// scan finds k by comparing it with every key: the length, then the last
// byte (where numbered and similar keys differ), then the rest.
func (c *Counts) scan(k []byte) int {
	from := uint32(0)
	for i, end := range c.ends {
		if int(end-from) == len(k) && (len(k) == 0 || c.data[end-1] == k[len(k)-1]) && string(c.data[from:end]) == string(k) {
			return i
		}
		from = end
	}
	return -1
}

// find returns the index of k (hashed to h) in the index, or -1 and the
// free slot where it goes.
func (c *Counts) find(k []byte, h uint64) (slot, i int) {
	mask := len(c.table) - 1
	for s := int(h) & mask; ; s = (s + 1) & mask {
		e := c.table[s]
		if e == 0 {
			return s, -1
		}
		if e>>32 == h>>32 {
			if i := int(uint32(e)) - 1; string(c.key(i)) == string(k) {
				return s, i
			}
		}
	}
}

// grow doubles the index (or starts it) and places every key again.
func (c *Counts) grow() { c.index(max(4*smallCounts, 2*len(c.table))) }

// indexSize is the size of an index that holds n keys at most three
// quarters full.
func indexSize(n int) int {
	size := 4 * smallCounts
	for size*3 < n*4 {
		size *= 2
	}
	return size
}

// index builds an index of size slots (a power of two) over c's keys.
func (c *Counts) index(size int) {
	c.table = make([]uint64, size)
	mask := size - 1
	for i := range c.ends {
		h := maphash.Bytes(countsSeed, c.key(i))
		s := int(h) & mask
		for c.table[s] != 0 {
			s = (s + 1) & mask
		}
		c.table[s] = h&^0xFFFFFFFF | uint64(i+1)
	}
}

// dropIndex frees c's index (8 bytes a slot, 1.3 to 2.7 slots a key): a
// Store drops those of windows no merge has touched for a while, which
// queries read by scanning. The next add builds it again, in one pass over
// the keys; Get scans meanwhile.
func (c *Counts) dropIndex() {
	if len(c.ends) > smallCounts {
		c.table = nil
	}
}

// key returns key i's bytes, which are never written again.
func (c *Counts) key(i int) []byte {
	from := uint32(0)
	if i > 0 {
		from = c.ends[i-1]
	}
	return c.data[from:c.ends[i]:c.ends[i]]
}

// keyString returns key i as a string that aliases the packed bytes.
func (c *Counts) keyString(i int) string {
	k := c.key(i)
	if len(k) == 0 {
		return ""
	}
	return unsafe.String(&k[0], len(k))
}

// reset empties c, keeping its memory; the keys are written over, so this
// is only for a Counts whose keys nobody else holds (Aggregate.Reset).
func (c *Counts) reset() {
	c.data, c.ends, c.n, c.last = c.data[:0], c.ends[:0], c.n[:0], 0
	clear(c.table)
}

// Get returns the count of k.
func (c *Counts) Get(k string) int64 {
	kb := stringBytes(k)
	i := -1
	if c.table == nil {
		i = c.scan(kb)
	} else {
		_, i = c.find(kb, maphash.Bytes(countsSeed, kb))
	}
	if i < 0 {
		return 0
	}
	return c.n[i]
}

// Len is the number of distinct keys.
func (c *Counts) Len() int { return len(c.ends) }

// Each calls f for every key, in insertion order.
func (c *Counts) Each(f func(k string, n int64)) {
	for i := range c.ends {
		f(c.keyString(i), c.n[i])
	}
}

// Merge adds all of o's counts.
func (c *Counts) Merge(o *Counts) {
	for i := range o.ends {
		c.addNew(o.key(i), o.n[i])
	}
}

// KeyCount is one row of a top list.
type KeyCount struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// Top returns the n largest counts (all when n <= 0), largest first, ties by
// key: a deterministic order whatever the insertion order was.
func Top(c *Counts, n int) []KeyCount {
	rows := make([]KeyCount, 0, c.Len())
	c.Each(func(k string, v int64) { rows = append(rows, KeyCount{k, v}) })
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Count != rows[j].Count {
			return rows[i].Count > rows[j].Count
		}
		return rows[i].Key < rows[j].Key
	})
	if n > 0 && len(rows) > n {
		rows = rows[:n]
	}
	return rows
}

// MarshalJSON writes {"key":count,...} in insertion order (cheap; a Counts
// is decoded into the same counts whatever the order).
func (c *Counts) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(c.ends)*24)
	b = append(b, '{')
	for i := range c.ends {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, c.keyString(i))
		b = append(b, ':')
		b = appendInt(b, c.n[i])
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (c *Counts) UnmarshalJSON(data []byte) error {
	var m map[string]int64
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	*c = Counts{}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.AddString(k, m[k])
	}
	return nil
}

func appendInt(b []byte, n int64) []byte {
	if n < 0 {
		b = append(b, '-')
		n = -n
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x80 {
			b = append(b, c)
			i++
			continue
		}
		if c < 0x80 {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\t':
				b = append(b, '\\', 't')
			case '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
