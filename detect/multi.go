package detect

import "strings"

// Substring filters of all scenarios are matched together: for each field,
// one scan of the request's text finds every scenario whose list has a
// pattern in it, instead of one scan per scenario. Rules with more than
// maxMulti scenarios keep the per-scenario scans.
const maxMulti = 256

// scenarioSet is a set of scenario indexes.
type scenarioSet [maxMulti / 64]uint64

func (s *scenarioSet) add(i int)         { s[i>>6] |= 1 << (i & 63) }
func (s *scenarioSet) has(i int) bool    { return s[i>>6]&(1<<(i&63)) != 0 }
func (s *scenarioSet) or(o *scenarioSet) { s[0] |= o[0]; s[1] |= o[1]; s[2] |= o[2]; s[3] |= o[3] }

// The fields substring filters look at.
const (
	fieldPath = iota
	fieldURI
	fieldRawURI
	fieldQuery
	fieldUA
	fieldReferer
	fieldAny // URI, user agent and referer
	numFields
)

// anyTexts are the texts fieldAny looks at.
var anyTexts = []int{fieldURI, fieldUA, fieldReferer}

// multi finds, in one pass over a text, the scenarios with a pattern in it,
// for each field the text serves. Like matcher, it indexes patterns by their
// first two bytes.
type multi struct {
	patterns []string
	sets     [][numFields]scenarioSet // by pattern
	single   [256]*[numFields]scenarioSet
	bits     [1024]uint64
	slot     []uint16 // by first two bytes: 1 + index into cands, 0 for none
	cands    [][]int32
}

func newMulti() *multi { return &multi{slot: make([]uint16, 1<<16)} }

func (m *multi) add(pattern string, field, scenario int) {
	p := strings.ToLower(pattern)
	if p == "" {
		return
	}
	if len(p) == 1 {
		if m.single[p[0]] == nil {
			m.single[p[0]] = &[numFields]scenarioSet{}
		}
		m.single[p[0]][field].add(scenario)
		return
	}
	for i, q := range m.patterns {
		if q == p {
			m.sets[i][field].add(scenario)
			return
		}
	}
	i := int32(len(m.patterns))
	m.patterns = append(m.patterns, p)
	var sets [numFields]scenarioSet
	sets[field].add(scenario)
	m.sets = append(m.sets, sets)
	k := uint16(p[0])<<8 | uint16(p[1])
	m.bits[k>>6] |= 1 << (k & 63)
	if m.slot[k] == 0 {
		m.cands = append(m.cands, nil)
		m.slot[k] = uint16(len(m.cands))
	}
	m.cands[m.slot[k]-1] = append(m.cands[m.slot[k]-1], i)
}

// scan adds to out the scenarios with a pattern in text, by field,
// ignoring ASCII case.
func (m *multi) scan(text string, out *[numFields]scenarioSet) {
	for i := 0; i < len(text); i++ {
		c := lowerByte(text[i])
		if s := m.single[c]; s != nil {
			orAll(out, s)
		}
		if i+1 == len(text) {
			break
		}
		k := uint16(c)<<8 | uint16(lowerByte(text[i+1]))
		if m.bits[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		for _, pi := range m.cands[m.slot[k]-1] {
			if hasPrefixFold(text[i:], m.patterns[pi]) {
				orAll(out, &m.sets[pi])
			}
		}
	}
}

func orAll(out, in *[numFields]scenarioSet) {
	for f := range out {
		out[f].or(&in[f])
	}
}

// buildMulti indexes the substring filters of rs's scenarios by the text
// they look at.
func (rs *Rules) buildMulti() {
	if len(rs.Scenarios) > maxMulti {
		return
	}
	var ms [numFields]*multi
	for i, s := range rs.Scenarios {
		s.index = i
		for f, m := range s.substrings() {
			if m == nil {
				continue
			}
			texts := []int{f}
			if f == fieldAny {
				if strings.Contains(strings.Join(m.all, ""), "\n") {
					return // matched against the joined text only
				}
				texts = anyTexts
			}
			for _, t := range texts {
				if ms[t] == nil {
					ms[t] = newMulti()
				}
				for _, p := range m.all {
					ms[t].add(p, f, i)
				}
			}
		}
	}
	rs.multi = ms[:]
}

// substrings lists s's matchers by field.
func (s *Scenario) substrings() [numFields]*matcher {
	return [numFields]*matcher{s.path, s.uri, s.rawURI, s.query, s.ua, s.referer, s.anyM}
}

// hit reports whether the request's text for field f holds one of
// scenario s's patterns for it. The texts are scanned for all scenarios at
// once, each at most once per request.
func (r *request) hit(f int, s *Scenario) bool {
	if r.multi == nil {
		return s.substrings()[f].match(r.text(f))
	}
	one := [1]int{f}
	ts := one[:]
	if f == fieldAny {
		ts = anyTexts
	}
	for _, t := range ts {
		if r.scanned&(1<<t) == 0 {
			r.scanned |= 1 << t
			if m := r.multi[t]; m != nil {
				m.scan(r.text(t), &r.hits)
			}
		}
	}
	return r.hits[f].has(s.index)
}

// text is the request's text for field f.
func (r *request) text(f int) string {
	switch f {
	case fieldPath:
		return r.Path()
	case fieldURI:
		return r.URI()
	case fieldRawURI:
		return r.RawURI()
	case fieldQuery:
		return r.Query()
	case fieldUA:
		return r.UA()
	case fieldReferer:
		return r.Referer()
	}
	return r.All()
}
