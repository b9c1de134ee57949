package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/detect"
)

var tb0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func pos(seq uint64, sec int, startup bool) detect.Position {
	return detect.Position{Seq: seq, Time: tb0.Add(time.Duration(sec) * time.Second).UnixNano(), Startup: startup}
}

func TestBouncer_BaseStartsBeforeAnyAnswerThatMayBeLost(t *testing.T) {
	at := func(sec int) time.Time { return tb0.Add(time.Duration(sec) * time.Second) }
	for _, c := range []struct {
		name    string
		history []detect.Position
		now     time.Time
		want    detect.Position
	}{
		{"none", nil, at(0), detect.Position{}},
		{"one answer, maybe lost: full", []detect.Position{pos(5, 0, false)}, at(10), detect.Position{}},
		{"a startup answer is taken as received", []detect.Position{pos(5, 0, true)}, at(10), pos(5, 0, false)},
		{"before the newest", []detect.Position{pos(3, 0, false), pos(5, 100, false), pos(9, 200, false)}, at(300), pos(5, 100, false)},
		{"and every answer of the last minute", []detect.Position{pos(3, 0, false), pos(5, 250, false), pos(7, 260, false), pos(9, 270, false)}, at(300),
			pos(5, 250, false)},
		{"startup newest, older ones of the last minute still count", []detect.Position{pos(4, 290, false), pos(9, 295, true)}, at(300),
			pos(4, 290, false)},
	} {
		b := &Bouncer{History: c.history}
		if got := b.Base(c.now); got != c.want {
			t.Errorf("%s: base %+v, want %+v", c.name, got, c.want)
		}
	}
	var none *Bouncer
	if !none.Base(at(0)).IsZero() || !none.Last().IsZero() {
		t.Error("an unknown instance does not start from scratch")
	}
}

// pull plans an answer to instance id and, as a node does once the answer
// is written, records it through Apply.
func pull(t *testing.T, s *State, id string, startup bool, now time.Time) detect.Changes {
	t.Helper()
	p := s.PlanPull(id, startup, detect.DecisionFilter{}, now)
	if p.Record {
		res := Apply(s, Command{Kind: KindBouncerPull, Bouncer: &BouncerPull{Instance: id, At: p.Changes.At, Now: now.UnixNano(), UserAgent: "test"}})
		if res.Err != "" {
			t.Fatal(res.Err)
		}
	}
	return p.Changes
}

func manual(t *testing.T, s *State, value string, now time.Time, dur string) int64 {
	t.Helper()
	res := Apply(s, Command{Kind: KindDecisionAdd, Decision: &ManualDecision{Value: value, Type: "ban", Duration: dur, Now: now.UnixNano()}})
	if res.Err != "" {
		t.Fatal(res.Err)
	}
	return res.DecisionID
}

func vals(ds []detect.Decision) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.Value)
	}
	return strings.Join(s, ",")
}

// TestPlanPull_LostAnswersAreSentAgain: answers that carried a deletion
// and never arrived (or arrived and were dropped) do not lose it, as long
// as one answer of the next minute arrives; past that minute the bouncer
// stops hearing of it.
func TestPlanPull_LostAnswersAreSentAgain(t *testing.T) {
	s := NewState("t")
	at := func(sec int) time.Time { return tb0.Add(time.Duration(sec) * time.Second) }
	d := manual(t, s, "192.0.2.1", at(0), "4h")
	manual(t, s, "192.0.2.2", at(0), "4h")
	if c := pull(t, s, "b", true, at(1)); vals(c.New) != "192.0.2.1,192.0.2.2" {
		t.Fatalf("startup: %s", vals(c.New))
	}
	if c := pull(t, s, "b", false, at(11)); !c.Empty() {
		t.Fatalf("second pull resent %s %s", vals(c.New), vals(c.Deleted))
	}
	Apply(s, Command{Kind: KindDecisionDelete, ID: d})
	// Every answer of the minute after the first one that carried the
	// deletion (+21s) carries it again: any of them may be lost.
	for sec := 21; sec <= 61; sec += 10 {
		if c := pull(t, s, "b", false, at(sec)); vals(c.Deleted) != "192.0.2.1" || len(c.New) != 0 {
			t.Fatalf("+%ds: new %s deleted %s", sec, vals(c.New), vals(c.Deleted))
		}
	}
	// Past that minute, one of them is taken to have arrived.
	for sec := 71; sec <= 101; sec += 10 {
		if c := pull(t, s, "b", false, at(sec)); !c.Empty() {
			t.Fatalf("+%ds: still sending new %s deleted %s", sec, vals(c.New), vals(c.Deleted))
		}
	}
	// Bouncers that pull rarely still get the newest answer twice.
	manual(t, s, "192.0.2.3", at(200), "4h")
	for i, want := range []string{"192.0.2.3", "192.0.2.3", ""} {
		if c := pull(t, s, "b", false, at(300+i*300)); vals(c.New) != want {
			t.Errorf("rare pull %d: new %q, want %q", i, vals(c.New), want)
		}
	}
}

// TestPlanPull_ExpiryIsADeletion: a decision that runs out between two
// pulls is in the second one's deleted list.
func TestPlanPull_ExpiryIsADeletion(t *testing.T) {
	s := NewState("t")
	at := func(sec int) time.Time { return tb0.Add(time.Duration(sec) * time.Second) }
	manual(t, s, "192.0.2.1", at(0), "30s")
	pull(t, s, "b", true, at(1))
	if c := pull(t, s, "b", false, at(11)); !c.Empty() {
		t.Fatal("changes before the expiry")
	}
	if c := pull(t, s, "b", false, at(41)); vals(c.Deleted) != "192.0.2.1" {
		t.Fatalf("after the expiry: deleted %q", vals(c.Deleted))
	}
}

// TestPlanPull_SharedIdentityLosesNothing: two bouncers that the node
// cannot tell apart (one key, one user agent, one address), pulling at
// their own pace, both get every change.
func TestPlanPull_SharedIdentityLosesNothing(t *testing.T) {
	s := NewState("t")
	at := func(ms int) time.Time { return tb0.Add(time.Duration(ms) * time.Millisecond) }
	held := map[string]map[string]bool{"x": {}, "y": {}}
	apply := func(who string, c detect.Changes) {
		for _, d := range c.Deleted {
			delete(held[who], d.Value)
		}
		for _, d := range c.New {
			held[who][d.Value] = true
		}
	}
	apply("x", pull(t, s, "one-identity", true, at(0)))
	apply("y", pull(t, s, "one-identity", true, at(300)))
	var ids []int64
	for ms := 1000; ms < 120000; ms += 1000 {
		switch ms % 7000 {
		case 0:
			ids = append(ids, manual(t, s, fmt.Sprintf("192.0.2.%d", len(ids)+1), at(ms), "1h"))
		case 3000:
			if len(ids) > 1 {
				Apply(s, Command{Kind: KindDecisionDelete, ID: ids[len(ids)-2]})
			}
		}
		// x pulls every 5 s, y every 7 s (sometimes twice in a row).
		if ms%5000 == 0 {
			apply("x", pull(t, s, "one-identity", false, at(ms+10)))
		}
		if ms%7000 == 0 {
			apply("y", pull(t, s, "one-identity", false, at(ms+20)))
		}
	}
	end := at(130000)
	apply("x", pull(t, s, "one-identity", false, end))
	apply("y", pull(t, s, "one-identity", false, end.Add(time.Millisecond)))
	want := map[string]bool{}
	for _, d := range s.Book.ActiveDecisions(end) {
		want[d.Value] = true
	}
	for who, h := range held {
		if fmt.Sprint(h) != fmt.Sprint(want) {
			t.Errorf("%s holds %v, in force %v", who, h, want)
		}
	}
}

func TestApply_BouncerPullBoundsAndRefusals(t *testing.T) {
	s := NewState("t")
	now := tb0.UnixNano()
	manual(t, s, "192.0.2.1", tb0, "1h")
	for _, c := range []struct {
		name string
		p    *BouncerPull
	}{
		{"no body", nil},
		{"no instance", &BouncerPull{Now: now}},
		{"long instance", &BouncerPull{Instance: strings.Repeat("a", 65), Now: now}},
		{"long user agent", &BouncerPull{Instance: "a", UserAgent: strings.Repeat("u", 600), Now: now}},
		{"past the last change", &BouncerPull{Instance: "a", At: detect.Position{Seq: 2, Time: now}, Now: now}},
	} {
		if res := Apply(s, Command{Kind: KindBouncerPull, Bouncer: c.p}); res.Err == "" {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if len(s.Bouncers) != 0 {
		t.Fatal("a refused pull left a record")
	}
	// History: the two newest and those of the last minute, at most 16.
	for i := 0; i < 40; i++ {
		Apply(s, Command{Kind: KindBouncerPull, Bouncer: &BouncerPull{Instance: "a", At: detect.Position{Seq: 1, Time: now + int64(i)}, Now: now + int64(i)*int64(time.Second)}})
	}
	if h := s.Bouncers["a"].History; len(h) != maxBouncerHistory || h[len(h)-1].Time != now+39 || s.Bouncers["a"].Pulls != 40 {
		t.Errorf("history of %d, newest %d, pulls %d", len(h), h[len(h)-1].Time, s.Bouncers["a"].Pulls)
	}
	Apply(s, Command{Kind: KindBouncerPull, Bouncer: &BouncerPull{Instance: "a", At: detect.Position{Seq: 1, Time: 1}, Now: now + int64(10*time.Minute)}})
	if h := s.Bouncers["a"].History; len(h) != 2 {
		t.Errorf("after ten quiet minutes, %d answers kept, want the 2 newest", len(h))
	}
	// At most MaxBouncers; the one seen longest ago leaves first.
	s2 := NewState("t")
	for i := 0; i <= MaxBouncers; i++ {
		Apply(s2, Command{Kind: KindBouncerPull, Bouncer: &BouncerPull{Instance: fmt.Sprintf("i%05d", i), Now: now + int64(i)}})
	}
	if len(s2.Bouncers) != MaxBouncers || s2.Bouncers["i00000"] != nil || s2.Bouncers["i00001"] == nil {
		t.Errorf("%d instances kept; first kept %v", len(s2.Bouncers), s2.Bouncers["i00000"] == nil)
	}
	// Idle ones are forgotten.
	Apply(s2, Command{Kind: KindBouncerPull, Bouncer: &BouncerPull{Instance: "late", Now: now + int64(BouncerIdle) + int64(time.Hour)}})
	if len(s2.Bouncers) != 1 || s2.Bouncers["late"] == nil {
		t.Errorf("after a week, %d instances kept", len(s2.Bouncers))
	}
}

// TestReplay_BouncerPositionsDeterministic: the same log gives the same
// state (positions included), replayed or restored from a snapshot, and
// a restored replica plans the same answers.
func TestReplay_BouncerPositionsDeterministic(t *testing.T) {
	at := func(sec int) time.Time { return tb0.Add(time.Duration(sec) * time.Second) }
	s := NewState("t")
	var log []Command
	record := func(c Command) Result {
		log = append(log, c)
		return Apply(s, c)
	}
	for i := 0; i < 30; i++ {
		res := record(Command{Kind: KindDecisionAdd, Decision: &ManualDecision{Value: fmt.Sprintf("198.51.100.%d", i), Type: "ban", Duration: "90s", Now: at(i * 5).UnixNano()}})
		if i%4 == 1 {
			record(Command{Kind: KindDecisionDelete, ID: res.DecisionID})
		}
		for _, id := range []string{"x", "y"} {
			p := s.PlanPull(id, i == 0, detect.DecisionFilter{}, at(i*5+1))
			if p.Record {
				record(Command{Kind: KindBouncerPull, Bouncer: &BouncerPull{Instance: id, At: p.Changes.At, Now: at(i*5 + 1).UnixNano()}})
			}
		}
	}
	enc := func(s *State) []byte {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	replayed := Replay("t", log)
	if !bytes.Equal(enc(s), enc(replayed)) {
		t.Fatal("replaying the log gave another state")
	}
	restored, err := ReadSnapshot(bytes.NewReader(enc(s)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc(s), enc(restored)) {
		t.Fatal("a snapshot round trip changed the state")
	}
	if len(s.Bouncers) != 2 || s.Book.ChangeSeq != 30+8 {
		t.Fatalf("%d instances, change seq %d", len(s.Bouncers), s.Book.ChangeSeq)
	}
	for _, id := range []string{"x", "y", "unknown"} {
		a := s.PlanPull(id, false, detect.DecisionFilter{}, at(200))
		b := restored.PlanPull(id, false, detect.DecisionFilter{}, at(200))
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: a restored replica plans another answer", id)
		}
	}
}
