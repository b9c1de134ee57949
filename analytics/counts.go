package analytics

import (
	"encoding/json"
	"sort"
	"unicode/utf8"
)

// Counts is an exact count per key. Lookups by []byte do not allocate, and a
// key is copied once, when first seen. Keys are only ever appended, never
// changed or removed: Store.Freeze shares them with a snapshot being written.
type Counts struct {
	idx  map[string]int32
	keys []string
	n    []int64
}

// Add adds n to key k.
func (c *Counts) Add(k []byte, n int64) {
	if i, ok := c.idx[string(k)]; ok {
		c.n[i] += n
		return
	}
	c.AddString(string(k), n)
}

// addNew adds n to key k and reports whether k was new.
func (c *Counts) addNew(k []byte, n int64) bool {
	if i, ok := c.idx[string(k)]; ok {
		c.n[i] += n
		return false
	}
	c.AddString(string(k), n)
	return true
}

// AddString adds n to key k.
func (c *Counts) AddString(k string, n int64) {
	if c.idx == nil {
		c.idx = make(map[string]int32)
	}
	if i, ok := c.idx[k]; ok {
		c.n[i] += n
		return
	}
	c.idx[k] = int32(len(c.keys))
	c.keys = append(c.keys, k)
	c.n = append(c.n, n)
}

// Get returns the count of k.
func (c *Counts) Get(k string) int64 {
	if i, ok := c.idx[k]; ok {
		return c.n[i]
	}
	return 0
}

// Len is the number of distinct keys.
func (c *Counts) Len() int { return len(c.keys) }

// Each calls f for every key, in no particular order.
func (c *Counts) Each(f func(k string, n int64)) {
	for i, k := range c.keys {
		f(k, c.n[i])
	}
}

// Merge adds all of o's counts.
func (c *Counts) Merge(o *Counts) {
	for i, k := range o.keys {
		c.AddString(k, o.n[i])
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
	b := make([]byte, 0, 2+len(c.keys)*24)
	b = append(b, '{')
	for i, k := range c.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
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
