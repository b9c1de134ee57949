package detect

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func values(ds []Decision) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.Value)
	}
	return strings.Join(s, ",")
}

func TestBook_ChangeSequence(t *testing.T) {
	rules, _ := Builtin()
	s := rules.Scenario("http-sensitive-files")
	b := NewBook(DefaultBookConfig())
	at := func(h int) int64 { return t0.Add(time.Duration(h) * time.Hour).UnixNano() }
	d1 := b.AddAlert(Alert{ID: "a1", SourceIP: "10.0.0.1", Time: at(0)}, s)
	m, err := b.AddManual("198.51.100.0/24", "ban", "", at(0), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// An allow-listed source or an alert without a scenario takes no seq.
	b.AddAlert(Alert{ID: "a2", SourceIP: "10.0.0.2", Time: at(0)}, nil)
	if d1.Seq != 1 || m.Seq != 2 || b.ChangeSeq != 2 {
		t.Fatalf("creation seqs %d %d, book at %d", d1.Seq, m.Seq, b.ChangeSeq)
	}
	if !b.Delete(m.ID) || m.DeletedSeq != 3 || b.ChangeSeq != 3 {
		t.Fatalf("deletion seq %d, book at %d", m.DeletedSeq, b.ChangeSeq)
	}
	if b.Delete(m.ID) || b.ChangeSeq != 3 {
		t.Error("a second delete took a seq")
	}
	d3 := b.AddAlert(Alert{ID: "a3", SourceIP: "10.0.0.3", Time: at(1)}, s)
	if d3.Seq != 4 {
		t.Errorf("seq after a deletion: %d", d3.Seq)
	}
	// The tombstone stays until a day past the decision's original end.
	if b.Decisions[m.ID] == nil {
		t.Error("the deleted decision was dropped at once")
	}
	b.prune(at(26))
	if b.Decisions[m.ID] != nil {
		t.Error("tombstone kept past a day after its end")
	}
}

func TestBook_ChangesPerValueAndExpiry(t *testing.T) {
	rules, _ := Builtin()
	s := rules.Scenario("http-sensitive-files") // 4h, doubled per repeat
	b := NewBook(DefaultBookConfig())
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	b.AddAlert(Alert{ID: "a1", SourceIP: "10.0.0.1", Time: at(0).UnixNano()}, s)          // until +4h
	long := b.AddAlert(Alert{ID: "a2", SourceIP: "10.0.0.1", Time: at(1).UnixNano()}, s)  // until +9h
	other := b.AddAlert(Alert{ID: "a3", SourceIP: "10.0.0.9", Time: at(1).UnixNano()}, s) // until +5h
	all := DecisionFilter{}

	full := b.Changes(Position{}, at(2), all)
	if !full.Full || values(full.New) != "10.0.0.1,10.0.0.9" || len(full.Deleted) != 0 {
		t.Fatalf("full answer: new %s deleted %s", values(full.New), values(full.Deleted))
	}
	if full.New[0].ID != long.ID {
		t.Errorf("10.0.0.1 answered with decision %d, want the longest (%d)", full.New[0].ID, long.ID)
	}
	pos := full.At
	if pos.Seq != 3 || pos.Time != at(2).UnixNano() {
		t.Errorf("position %+v", pos)
	}
	if c := b.Changes(pos, at(3), all); !c.Empty() {
		t.Errorf("nothing changed, yet new %s deleted %s", values(c.New), values(c.Deleted))
	}
	// At +4h30 the short ban on 10.0.0.1 has expired but the long one
	// holds: no deletion of 10.0.0.1 (a bouncer would lift the ban), the
	// long one again at most.
	c := b.Changes(pos, at(4).Add(30*time.Minute), all)
	if len(c.Deleted) != 0 || values(c.New) != "10.0.0.1" || c.New[0].ID != long.ID {
		t.Errorf("+4h30: new %s deleted %s", values(c.New), values(c.Deleted))
	}
	// At +6h the ban on 10.0.0.9 has expired: it is deleted as an operator's
	// deletion would be.
	c = b.Changes(pos, at(6), all)
	if values(c.Deleted) != "10.0.0.9" || c.Deleted[0].ID != other.ID {
		t.Errorf("+6h: deleted %s, want 10.0.0.9", values(c.Deleted))
	}
	// Deleting the long ban ends 10.0.0.1 too (the short one expired).
	b.Delete(long.ID)
	c = b.Changes(pos, at(6), all)
	if values(c.Deleted) != "10.0.0.1,10.0.0.9" || len(c.New) != 0 {
		t.Errorf("after delete: new %s deleted %s", values(c.New), values(c.Deleted))
	}
	// A startup answer at +6h carries the tombstones too.
	if c := b.Changes(Position{}, at(6), all); values(c.Deleted) != "10.0.0.1,10.0.0.9" || !c.Full {
		t.Errorf("startup: deleted %s", values(c.Deleted))
	}
}

func TestBook_TombstonesBounded(t *testing.T) {
	b := NewBook(DefaultBookConfig())
	now := t0.UnixNano()
	var ids []int64
	for _, v := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"} {
		d, err := b.AddManual(v, "ban", "", now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	pos := b.Changes(Position{}, t0, DecisionFilter{}).At // seq 4
	for _, id := range ids[:3] {
		b.Delete(id) // seqs 5, 6, 7
	}
	b.boundTombstones(2)
	if len(b.Decisions) != 3 || b.Decisions[ids[0]] != nil || b.TombstoneFloor != 5 {
		t.Fatalf("after bounding to 2: %d kept, floor %d", len(b.Decisions), b.TombstoneFloor)
	}
	// Above the floor the answer is exact; below it, full.
	if c := b.Changes(Position{Seq: 5, Time: now}, t0, DecisionFilter{}); c.Full || values(c.Deleted) != "192.0.2.2,192.0.2.3" {
		t.Errorf("from seq 5: full %v deleted %s", c.Full, values(c.Deleted))
	}
	if c := b.Changes(pos, t0, DecisionFilter{}); !c.Full || values(c.New) != "192.0.2.4" {
		t.Errorf("from below the floor: full %v new %s", c.Full, values(c.New))
	}
	// A position past the book's last change (another lineage) is full too.
	if c := b.Changes(Position{Seq: 99, Time: now}, t0, DecisionFilter{}); !c.Full {
		t.Error("a position past the last change was answered as exact")
	}
}

func TestBook_ChangesFilters(t *testing.T) {
	rules, _ := Builtin()
	b := NewBook(DefaultBookConfig())
	now := t0.UnixNano()
	b.AddAlert(Alert{ID: "a1", SourceIP: "10.0.0.1", Time: now, CrowdSec: "crowdsecurity/http-sqli-probbing-detection"}, rules.Scenario("http-sqli-probing"))
	b.AddAlert(Alert{ID: "a2", SourceIP: "10.0.0.2", Time: now}, rules.Scenario("http-flood"))
	b.AddManual("192.0.2.0/24", "ban", "abuse desk ticket 7", now, time.Hour)
	b.AddManual("192.0.2.9", "captcha", "", now, time.Hour)
	for _, c := range []struct {
		name string
		f    DecisionFilter
		want string
	}{
		{"all", DecisionFilter{}, "10.0.0.1,10.0.0.2,192.0.2.0/24,192.0.2.9"},
		{"scope ip", DecisionFilter{Scopes: []string{"ip"}}, "10.0.0.1,10.0.0.2,192.0.2.9"},
		{"scope range", DecisionFilter{Scopes: []string{"Range"}}, "192.0.2.0/24"},
		{"origin warden", DecisionFilter{Origins: []string{"warden"}}, "10.0.0.1,10.0.0.2"},
		{"origins manual,x", DecisionFilter{Origins: []string{"x", "Manual"}}, "192.0.2.0/24,192.0.2.9"},
		{"crowdsec name, typo and all", DecisionFilter{ScenariosContaining: []string{"SQLI-PROBBING"}}, "10.0.0.1"},
		{"warden name", DecisionFilter{ScenariosContaining: []string{"http-flood", "ticket"}}, "10.0.0.2,192.0.2.0/24"},
		{"not containing", DecisionFilter{ScenariosNotContaining: []string{"crowdsecurity/", "manual"}}, "10.0.0.2,192.0.2.0/24"},
	} {
		if got := values(b.Changes(Position{}, t0, c.f).New); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestBook_BouncerScenarioIsCrowdSecName(t *testing.T) {
	rules, _ := Builtin()
	for name, want := range map[string]string{
		"http-sqli-probing":     "crowdsecurity/http-sqli-probbing-detection",
		"http-xss-probing":      "crowdsecurity/http-xss-probbing",
		"http-dos-switching-ua": "crowdsecurity/http-dos-swithcing-ua",
		"http-probing":          "crowdsecurity/http-probing",
		"http-flood":            "http-flood", // no CrowdSec equivalent
	} {
		s := rules.Scenario(name)
		if s == nil {
			t.Fatalf("no built-in %s", name)
		}
		b := NewBook(DefaultBookConfig())
		d := b.AddAlert(Alert{ID: "a", SourceIP: "10.0.0.1", Time: t0.UnixNano(), CrowdSec: s.CrowdSec}, s)
		if got := d.BouncerScenario(); got != want {
			t.Errorf("%s: bouncers told %q, want %q", name, got, want)
		}
		if d.CrowdSec != s.CrowdSec || d.View(t0).CrowdSec != s.CrowdSec {
			t.Errorf("%s: decision's crowdsec_scenario %q", name, d.CrowdSec)
		}
	}
	b := NewBook(DefaultBookConfig())
	m, _ := b.AddManual("192.0.2.1", "ban", "", t0.UnixNano(), time.Hour)
	r, _ := b.AddManual("192.0.2.2", "ban", "spam run", t0.UnixNano(), time.Hour)
	if m.BouncerScenario() != "manual 'ban' from 'warden'" || r.BouncerScenario() != "spam run" {
		t.Errorf("manual: %q, %q", m.BouncerScenario(), r.BouncerScenario())
	}
}

func TestBook_LiveQuery(t *testing.T) {
	b := NewBook(DefaultBookConfig())
	now := t0.UnixNano()
	b.AddManual("192.0.2.0/24", "ban", "", now, time.Hour)
	b.AddManual("198.51.100.7", "captcha", "", now, time.Hour)
	b.AddManual("2001:db8::/48", "ban", "", now, time.Hour)
	gone, _ := b.AddManual("203.0.113.5", "ban", "", now, time.Hour)
	b.Delete(gone.ID)
	pfx := func(s string) LiveQuery {
		p, err := ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		return LiveQuery{Prefix: p, Contains: true}
	}
	within := pfx("192.0.0.0/16")
	within.Contains = false
	for _, c := range []struct {
		name string
		q    LiveQuery
		want string
	}{
		{"ip in a banned range", pfx("192.0.2.7"), "192.0.2.0/24"},
		{"ip-mapped ip in a banned range", pfx("::ffff:192.0.2.7"), "192.0.2.0/24"},
		{"an address alone", pfx("198.51.100.7"), "198.51.100.7"},
		{"nothing", pfx("198.51.100.8"), ""},
		{"deleted", pfx("203.0.113.5"), ""},
		{"a range inside a banned one", pfx("192.0.2.128/25"), "192.0.2.0/24"},
		{"a range wider than the ban", pfx("192.0.0.0/16"), ""},
		{"contains=false: bans within", within, "192.0.2.0/24"},
		{"ipv6", pfx("2001:db8::1"), "2001:db8::/48"},
		{"type", LiveQuery{Type: "captcha"}, "198.51.100.7"},
		{"value", LiveQuery{Value: "2001:db8::/48"}, "2001:db8::/48"},
		{"scope", LiveQuery{DecisionFilter: DecisionFilter{Scopes: []string{"ip"}}}, "198.51.100.7"},
	} {
		if got := values(b.Live(c.q, t0)); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if got := b.Live(pfx("192.0.2.7"), t0.Add(2*time.Hour)); len(got) != 0 {
		t.Errorf("expired decisions answered: %s", values(got))
	}
	if _, err := ParsePrefix("192.0.2.300"); err == nil {
		t.Error("a bad address parsed")
	}
}

// TestBook_ChangesDeterministic builds two books with the same alerts and
// commands and checks they agree, field for field, through JSON too.
func TestBook_ChangesDeterministic(t *testing.T) {
	rules, _ := Builtin()
	s := rules.Scenario("http-sensitive-files")
	build := func() *Book {
		b := NewBook(DefaultBookConfig())
		for i := 0; i < 50; i++ {
			ts := t0.Add(time.Duration(i) * time.Minute).UnixNano()
			d := b.AddAlert(Alert{ID: "a", SourceIP: "10.0.0." + string(rune('1'+i%9)), Time: ts}, s)
			if i%3 == 0 {
				b.Delete(d.ID)
			}
			if i%7 == 0 {
				b.AddManual("192.0.2.0/28", "ban", "x", ts, time.Minute)
			}
		}
		return b
	}
	b1, b2 := build(), build()
	j1, _ := json.Marshal(b1)
	j2, _ := json.Marshal(b2)
	if string(j1) != string(j2) {
		t.Fatal("the same commands gave two books")
	}
	var r Book
	if err := json.Unmarshal(j1, &r); err != nil {
		t.Fatal(err)
	}
	r.Restore()
	p := Position{Seq: 20, Time: t0.Add(30 * time.Minute).UnixNano()}
	now := t0.Add(40 * time.Minute)
	if !reflect.DeepEqual(b1.Changes(p, now, DecisionFilter{}), r.Changes(p, now, DecisionFilter{})) {
		t.Error("a restored book answers a bouncer differently")
	}
}

// BenchmarkBookChanges is a bouncer's pull of a book of 100,000 decisions:
// nothing changed (most pulls), and a full (startup) answer.
func BenchmarkBookChanges(b *testing.B) {
	rules, _ := Builtin()
	s := rules.Scenario("http-sensitive-files")
	book := NewBook(DefaultBookConfig())
	for i := 0; i < 100000; i++ {
		book.AddAlert(Alert{ID: "a", SourceIP: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), Time: t0.UnixNano() + int64(i)}, s)
	}
	pos := book.Changes(Position{}, t0, DecisionFilter{}).At
	b.Run("empty", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if c := book.Changes(pos, t0.Add(time.Second), DecisionFilter{}); !c.Empty() {
				b.Fatal("changes")
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			book.Changes(Position{}, t0.Add(time.Second), DecisionFilter{})
		}
	})
}
