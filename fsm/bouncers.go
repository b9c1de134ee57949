package fsm

import (
	"fmt"
	"time"

	"github.com/wardenhq/warden/detect"
)

// Bouncer stream positions. Each bouncer instance (an API key with a user
// agent, an address and an optional name, hashed by the node into an id)
// has its recent answers recorded here, through Raft, so that whichever
// node it pulls from next answers from the same place.
const (
	// MaxBouncers bounds the instances kept; a new one past it evicts the
	// one seen longest ago (ties by id).
	MaxBouncers = 10000
	// BouncerIdle: an instance not seen for this long is forgotten (its
	// next pull is answered in full, which is safe).
	BouncerIdle = 7 * 24 * time.Hour
	// BouncerOverlap: an answer resends every change of the answers
	// recorded in the last BouncerOverlap, and always those of the newest
	// answer, so that a lost answer, or two bouncers that share an identity,
	// lose nothing.
	BouncerOverlap = time.Minute
	// BouncerRefresh: a node records an empty answer only when the
	// instance's record is older than this, to keep it from being
	// forgotten as idle.
	BouncerRefresh = time.Hour
	// maxBouncerHistory bounds the answers recorded per instance.
	maxBouncerHistory = 16
	// Limits on the descriptive fields, refused in apply past them.
	maxBouncerID    = 64
	maxBouncerField = 512
	// bouncerPruneEvery spaces the scans for idle instances in command time.
	bouncerPruneEvery = time.Hour
)

// KindBouncerPull records an answer a node wrote to a bouncer instance.
const KindBouncerPull Kind = "bouncer_pull"

// BouncerPull is the body of a bouncer_pull command: the position of an
// answer written in full to Instance, the proposer's clock, and what the
// node saw of the bouncer (for operators).
type BouncerPull struct {
	Instance  string          `json:"instance"`
	At        detect.Position `json:"at"`
	Now       int64           `json:"now"`
	UserAgent string          `json:"user_agent,omitempty"`
	Addr      string          `json:"addr,omitempty"`
	Name      string          `json:"name,omitempty"`
}

// Bouncer is the replicated record of one bouncer instance.
type Bouncer struct {
	UserAgent string `json:"user_agent,omitempty"`
	Addr      string `json:"addr,omitempty"`
	Name      string `json:"name,omitempty"`
	// History is the positions of its recorded answers, oldest first.
	History []detect.Position `json:"history"`
	// SeenAt is the proposer's clock of the last recorded pull (Unix ns).
	SeenAt int64 `json:"seen_at"`
	// Pulls counts the recorded pulls.
	Pulls uint64 `json:"pulls"`
}

// Last is the position of the newest recorded answer (zero if none).
func (b *Bouncer) Last() detect.Position {
	if b == nil || len(b.History) == 0 {
		return detect.Position{}
	}
	return b.History[len(b.History)-1]
}

// Base is where the next answer to the instance starts at now: at or before
// every position a bouncer of this identity may hold. The newest answer may
// have been lost, so it starts before it, unless that answer was a startup
// one (CrowdSec's bouncers ask startup=true again until one succeeds, so a
// pull without it says the startup answer arrived); and it starts before
// every answer of the last BouncerOverlap, for bouncers that share the
// identity. The zero position means a full answer.
func (b *Bouncer) Base(now time.Time) detect.Position {
	if b == nil {
		return detect.Position{}
	}
	h := b.History
	from := len(h) - 2
	if n := len(h); n > 0 && h[n-1].Startup {
		from = n - 1
	}
	if from < 0 {
		return detect.Position{}
	}
	base := h[from]
	limit := now.Add(-BouncerOverlap).UnixNano()
	for _, p := range h[:from] {
		if p.Time >= limit {
			base.Seq, base.Time = min(base.Seq, p.Seq), min(base.Time, p.Time)
		}
	}
	base.Startup = false
	return base
}

// Pull is a node's plan for answering a bouncer instance: what to send,
// and whether to record the answer (Record) once it is written in full.
type Pull struct {
	Changes detect.Changes
	Record  bool
}

// PlanPull answers instance id at now with filter f; startup asks for
// everything in force (and every tombstone, for bouncers whose enforcement
// outlives them). It reads s and changes nothing.
func (s *State) PlanPull(id string, startup bool, f detect.DecisionFilter, now time.Time) Pull {
	rec := s.Bouncers[id]
	base := rec.Base(now)
	if startup {
		base = detect.Position{}
	}
	ch := s.Book.Changes(base, now, f)
	ch.At.Startup = startup
	// An empty answer changes nothing a later Base depends on; any other
	// is recorded, so that the place the next answer starts from moves on.
	record := rec == nil || startup || !ch.Empty() || now.UnixNano()-rec.SeenAt > int64(BouncerRefresh)
	return Pull{Changes: ch, Record: record}
}

// applyBouncerPull records an answer in the instance's history: appended,
// then trimmed to what Base can still use (the two newest and those of the
// last BouncerOverlap, at most maxBouncerHistory).
func applyBouncerPull(s *State, p *BouncerPull) Result {
	switch {
	case p == nil:
		return Result{Err: "bouncer_pull without body"}
	case p.Instance == "" || len(p.Instance) > maxBouncerID:
		return Result{Err: fmt.Sprintf("bouncer_pull: instance id of %d bytes", len(p.Instance))}
	case len(p.UserAgent) > maxBouncerField || len(p.Addr) > maxBouncerField || len(p.Name) > maxBouncerField:
		return Result{Err: "bouncer_pull: descriptive field too long"}
	case p.At.Seq > s.Book.ChangeSeq:
		return Result{Err: fmt.Sprintf("bouncer_pull: position %d past the book's last change %d", p.At.Seq, s.Book.ChangeSeq)}
	}
	if s.Bouncers == nil {
		s.Bouncers = map[string]*Bouncer{}
	}
	rec := s.Bouncers[p.Instance]
	if rec == nil {
		if len(s.Bouncers) >= MaxBouncers {
			evictOldestBouncer(s.Bouncers)
		}
		rec = &Bouncer{}
		s.Bouncers[p.Instance] = rec
	}
	rec.UserAgent, rec.Addr, rec.Name = p.UserAgent, p.Addr, p.Name
	rec.SeenAt = max(rec.SeenAt, p.Now)
	rec.Pulls++
	h := append(rec.History, p.At)
	limit := p.Now - int64(BouncerOverlap)
	kept := h[:0:0]
	for i, pos := range h {
		if i >= len(h)-2 || pos.Time >= limit {
			kept = append(kept, pos)
		}
	}
	if over := len(kept) - maxBouncerHistory; over > 0 {
		kept = kept[over:]
	}
	rec.History = kept
	if p.Now >= s.BouncersPrunedAt+int64(bouncerPruneEvery) {
		for id, b := range s.Bouncers {
			if b.SeenAt < p.Now-int64(BouncerIdle) {
				delete(s.Bouncers, id)
			}
		}
		s.BouncersPrunedAt = p.Now
	}
	return Result{}
}

// evictOldestBouncer drops the instance seen longest ago, ties by id, so
// every replica drops the same one.
func evictOldestBouncer(m map[string]*Bouncer) {
	oldest := ""
	for id, b := range m {
		if o := m[oldest]; o == nil || b.SeenAt < o.SeenAt || (b.SeenAt == o.SeenAt && id < oldest) {
			oldest = id
		}
	}
	delete(m, oldest)
}

// PlanPull is State.PlanPull on the current state, under the read lock.
func (f *FSM) PlanPull(id string, startup bool, flt detect.DecisionFilter, now time.Time) Pull {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.PlanPull(id, startup, flt, now)
}

// Bouncer returns a copy of instance id's record.
func (f *FSM) Bouncer(id string) (Bouncer, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b := f.state.Bouncers[id]
	if b == nil {
		return Bouncer{}, false
	}
	c := *b
	c.History = append([]detect.Position(nil), b.History...)
	return c, true
}

// LiveDecisions answers a bouncer's live-mode query from the current state.
func (f *FSM) LiveDecisions(q detect.LiveQuery, now time.Time) []detect.Decision {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Book.Live(q, now)
}
