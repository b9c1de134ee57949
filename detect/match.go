package detect

import (
	"strings"
)

// matcher finds any of a list of substrings in a text. Patterns are indexed
// by their first two bytes, so a text is scanned once: at each position a
// bitmap says whether any pattern starts with these two bytes, and only
// then are the candidates compared.
type matcher struct {
	all      []string // every pattern as given
	patterns []string
	single   []byte // one-byte patterns
	bits     [1024]uint64
	cands    map[uint16][]int32
}

func newMatcher(patterns []string) *matcher {
	m := &matcher{all: patterns, cands: map[uint16][]int32{}}
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == "" {
			continue
		}
		if len(p) == 1 {
			m.single = append(m.single, p[0])
			continue
		}
		i := int32(len(m.patterns))
		m.patterns = append(m.patterns, p)
		k := uint16(p[0])<<8 | uint16(p[1])
		m.bits[k>>6] |= 1 << (k & 63)
		m.cands[k] = append(m.cands[k], i)
	}
	return m
}

// match reports whether text contains a pattern, ignoring ASCII case.
func (m *matcher) match(text string) bool {
	for _, c := range m.single {
		for i := 0; i < len(text); i++ {
			if lowerByte(text[i]) == c {
				return true
			}
		}
	}
	if len(m.patterns) == 0 {
		return false
	}
	for i := 0; i+1 < len(text); i++ {
		k := uint16(lowerByte(text[i]))<<8 | uint16(lowerByte(text[i+1]))
		if m.bits[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		for _, pi := range m.cands[k] {
			if hasPrefixFold(text[i:], m.patterns[pi]) {
				return true
			}
		}
	}
	return false
}

func lowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// hasPrefixFold reports whether s starts with the lower-case prefix p,
// ignoring ASCII case in s.
func hasPrefixFold(s, p string) bool {
	if len(s) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if lowerByte(s[i]) != p[i] {
			return false
		}
	}
	return true
}

func hasSuffixFold(s, p string) bool {
	return len(s) >= len(p) && hasPrefixFold(s[len(s)-len(p):], p)
}

// decode URL-decodes s until it stops changing (at most three rounds, so
// double and triple encodings are seen through); with plus, a '+' is a space
// (as in a query string). Invalid escapes are kept as they are. Matching
// ignores case, so the case is kept.
func decode(s string, plus bool) string {
	for round := 0; round < 3; round++ {
		if strings.IndexByte(s, '%') < 0 && (!plus || strings.IndexByte(s, '+') < 0) {
			break
		}
		d := unescape(s, plus)
		if d == s {
			break
		}
		s = d
	}
	return s
}

func unescape(s string, plus bool) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+' && plus:
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		case c == '%' && i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') && ishex(s[i+2]) && ishex(s[i+3]) && ishex(s[i+4]) && ishex(s[i+5]):
			r := rune(unhex(s[i+2]))<<12 | rune(unhex(s[i+3]))<<8 | rune(unhex(s[i+4]))<<4 | rune(unhex(s[i+5]))
			b.WriteRune(r)
			i += 5
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func ishex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

var staticExt = []string{".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".svg", ".woff", ".woff2", ".ttf", ".eot",
	".map", ".webp", ".avif", ".bmp", ".mp4", ".webm", ".mp3", ".otf"}

func isStatic(path string) bool {
	dot := strings.LastIndexByte(path, '.')
	if dot < 0 || strings.IndexByte(path[dot:], '/') >= 0 {
		return false
	}
	ext := path[dot:]
	for _, s := range staticExt {
		if len(ext) == len(s) && hasPrefixFold(ext, s) {
			return true
		}
	}
	return false
}
