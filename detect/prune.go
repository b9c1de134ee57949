package detect

import "math/bits"

// A request passes few of the scenarios, and most of them fail it on its
// status or on a substring filter whose patterns are nowhere in its texts.
// With the substring filters matched together (multi.go), both are known
// for all scenarios at once: the status indexes a table of the scenarios
// it lets through, and each field's scan says which of those needing a
// pattern there still can pass. Only the scenarios left run their filter
// (Scenario.matches, which checks the same conditions again, at the cost
// of a bit test each). Every condition of a filter must hold, none has an
// effect, so leaving a scenario out on one of them changes no verdict.

// statusOther is the row of byStatus for a status outside 0-1023.
const statusOther = 1024

// prune is what rules of at most maxMulti scenarios, with their substring
// filters matched together, rule out before running any filter.
type prune struct {
	// byStatus holds, for each status, the scenarios whose status
	// condition it passes (all those without one).
	byStatus [statusOther + 1]scenarioSet
	// needs holds, by field, the scenarios with patterns for it: they
	// pass only if the field's text holds one of them.
	needs [numFields]scenarioSet
	// evidence holds the scenarios that count others' verdicts; each
	// one's evidenceSet, the scenarios it counts.
	evidence    scenarioSet
	evidenceSet [maxMulti]scenarioSet
	// decided holds the scenarios whose filter is all status and
	// substring conditions: left in, they pass.
	decided scenarioSet
	// needQuery holds the scenarios whose query expressions fail an
	// empty query, which most requests have.
	needQuery scenarioSet
	// words is how many words of a set the scenarios take, fields the
	// fields some scenario has patterns for.
	words  int
	fields []int
}

// buildPrune fills rs.prune; rs.multi must be built.
func (rs *Rules) buildPrune() {
	if rs.multi == nil {
		return
	}
	p := &prune{words: (len(rs.Scenarios) + 63) / 64}
	for i, s := range rs.Scenarios {
		for st := range p.byStatus {
			if !s.hasStatus || st < statusOther && s.statusBits[st>>6]&(1<<(st&63)) != 0 {
				p.byStatus[st].add(i)
			}
		}
		for f, m := range s.substrings() {
			if m != nil {
				p.needs[f].add(i)
			}
		}
		if s.decidedByPrune() {
			p.decided.add(i)
		}
		if len(s.queryRe.res) > 0 && !s.queryRe.empty {
			p.needQuery.add(i)
		}
		if len(s.evidence) > 0 {
			p.evidence.add(i)
			for _, j := range s.evidence {
				p.evidenceSet[i].add(j)
			}
		}
	}
	for f := range p.needs {
		if p.needs[f] != (scenarioSet{}) {
			p.fields = append(p.fields, f)
		}
	}
	rs.prune = p
}

// matchPruned is match with rs.prune: the same scenarios, in the same
// order, passed to fn.
func (rs *Rules) matchPruned(req *request, fn func(i int, s *Scenario)) {
	p := rs.prune
	st := req.e.Status
	if st < 0 || st >= statusOther {
		st = statusOther
	}
	words := p.words
	cand := p.byStatus[st]
	if len(req.e.Query) == 0 {
		for w := range words {
			cand[w] &^= p.needQuery[w]
		}
	}
	for _, f := range p.fields {
		var some uint64
		for w := range words {
			some |= cand[w] & p.needs[f][w]
		}
		if some == 0 {
			continue
		}
		req.scanFor(f)
		for w := range words {
			cand[w] &^= p.needs[f][w] &^ req.hits[f][w]
		}
	}
	var passed scenarioSet
	for w := range words {
		passed[w] = cand[w] & p.decided[w]
		for b := cand[w] &^ p.evidence[w] &^ p.decided[w]; b != 0; b &= b - 1 {
			i := w<<6 | bits.TrailingZeros64(b)
			if rs.Scenarios[i].matches(req) {
				passed.add(i)
			}
		}
	}
	for w := range words {
		for b := cand[w] & p.evidence[w]; b != 0; b &= b - 1 {
			i := w<<6 | bits.TrailingZeros64(b)
			var counted uint64
			for v := range words {
				counted |= passed[v] & p.evidenceSet[i][v]
			}
			if counted != 0 && rs.Scenarios[i].matches(req) {
				passed.add(i)
			}
		}
	}
	for w := range words {
		for b := passed[w]; b != 0; b &= b - 1 {
			i := w<<6 | bits.TrailingZeros64(b)
			fn(i, rs.Scenarios[i])
		}
	}
}
