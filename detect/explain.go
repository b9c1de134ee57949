package detect

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/wardenhq/warden/accesslog"
)

// What `warden analyze --explain IP` shows, as cscli explain does for
// CrowdSec: for one client, each request that fed a scenario (and why its
// filter passed), what the bucket did with it, and for each scenario
// whether it fired and, if not, how far it got.

// Step outcomes.
const (
	StepCounted   = "counted"   // poured into the bucket
	StepRepeat    = "repeat"    // a distinct value the bucket already holds
	StepBlackhole = "blackhole" // after an alert, ignored until the blackhole ends
	StepLate      = "late"      // older than the window
	StepAlert     = "alert"     // the bucket overflowed
)

// Step is one request poured into one bucket.
type Step struct {
	Scenario *Scenario
	Source   string // the bucket's source: the address, or its network
	Offset   int64
	Time     int64
	Line     string
	Outcome  string
	Level    int // the bucket's level after the pour (the alert's count for StepAlert)
}

func (d *Detector) step(s *Scenario, source string, ev *Event, b *Bucket, outcome string) {
	d.trace(Step{Scenario: s, Source: source, Offset: ev.Offset, Time: ev.Time, Line: string(ev.Line), Outcome: outcome, Level: b.Level})
}

// Reason is why a request passed one scenario's filter, or was let
// through by an allow rule.
type Reason struct {
	Scenario string
	Why      string
}

// Explain says, for one request, which allow rule lets it through or which
// scenarios' filters it passes and why.
func (r *Rules) Explain(e *accesslog.Entry) (allowedBy string, reasons []Reason) {
	var req request
	req.reset(e, r)
	if a := r.allowedBy(&req); a != nil {
		why := a.name
		if a.spoofable {
			why += " (on what the client says about itself: spoofable)"
		}
		return why, nil
	}
	var passed []string
	r.match(&req, func(_ int, s *Scenario) {
		why := s.why(&req)
		if len(s.evidence) > 0 {
			var of []string
			for _, j := range s.evidence {
				for _, p := range passed {
					if p == r.Scenarios[j].Name {
						of = append(of, p)
					}
				}
			}
			why = "evidence: " + strings.Join(of, ", ")
		}
		passed = append(passed, s.Name)
		reasons = append(reasons, Reason{Scenario: s.Name, Why: why})
	})
	return "", reasons
}

// why says what in the request made s's filter pass, as far as one thing
// does.
func (s *Scenario) why(r *request) string {
	var parts []string
	for _, f := range []struct {
		on   bool
		find func() (Finding, bool)
	}{{s.sqli, r.sqli}, {s.xss, r.xss}, {s.log4shell, r.log4shell}} {
		if f.on {
			if x, ok := f.find(); ok {
				parts = append(parts, fmt.Sprintf("%s in %s (%s)", x.Kind, x.Where, x.Why))
			}
		}
	}
	for f, m := range s.substrings() {
		if m == nil {
			continue
		}
		texts := []int{f}
		if f == fieldAny {
			texts = anyTexts
		}
		for _, t := range texts {
			if p := m.first(r.text(t)); p != "" {
				parts = append(parts, fmt.Sprintf("%s contains %q", fieldNames[t], p))
				break
			}
		}
	}
	for _, x := range s.suffix {
		if hasSuffixFold(r.Path(), x) {
			parts = append(parts, fmt.Sprintf("path ends with %q", x))
			break
		}
	}
	for _, x := range s.prefix {
		if hasPrefixFold(r.Path(), x) {
			parts = append(parts, fmt.Sprintf("path starts with %q", x))
			break
		}
	}
	if len(s.pathRe.res)+len(s.uriRe.res)+len(s.queryRe.res)+len(s.anyRe.res) > 0 {
		parts = append(parts, "a regular expression matched")
	}
	if s.hasStatus {
		parts = append(parts, fmt.Sprintf("status %d", r.e.Status))
	}
	if len(parts) == 0 {
		return "every request"
	}
	return strings.Join(parts, ", ")
}

var fieldNames = [numFields]string{"path", "URI", "raw URI", "query", "user agent", "referer", "request"}

// first returns the first of m's patterns in text, or "".
func (m *matcher) first(text string) string {
	for _, p := range m.all {
		if p != "" && containsAnyFold(text, []string{strings.ToLower(p)}) {
			return p
		}
	}
	return ""
}

// Explainer collects the steps of one client and writes them out.
type Explainer struct {
	IP    string
	Rules *Rules
	// Parse reparses a line for its reasons (nil: no reasons shown).
	Parse func(line []byte, e *accesslog.Entry) error
	steps []Step
}

// Step records one step; give it to Detector.Trace.
func (x *Explainer) Step(s Step) { x.steps = append(x.steps, s) }

// Write prints what the client's requests did, then per scenario whether
// it fired, and the alerts and decisions of the book against the client.
func (x *Explainer) Write(w io.Writer, b *Book) {
	fmt.Fprintf(w, "Explain %s\n", x.IP)
	if len(x.steps) == 0 {
		fmt.Fprintf(w, "\n  No request from %s fed any scenario.\n", x.IP)
	}
	var e accesslog.Entry
	lastOff := int64(-1)
	type summary struct {
		s        *Scenario
		source   string
		counted  int
		maxLevel int
		alerts   int
		shown    int
	}
	var order []string
	sums := map[string]*summary{}
	var why map[string]string
	headed := false
	for _, st := range x.steps {
		if st.Offset != lastOff {
			lastOff, headed = st.Offset, false
			why = map[string]string{}
			if x.Parse != nil && x.Parse([]byte(st.Line), &e) == nil {
				_, reasons := x.Rules.Explain(&e)
				for _, r := range reasons {
					why[r.Scenario] = r.Why
				}
			}
		}
		key := st.Scenario.Name + "|" + st.Source
		sm := sums[key]
		if sm == nil {
			sm = &summary{s: st.Scenario, source: st.Source}
			sums[key] = sm
			order = append(order, key)
		}
		switch st.Outcome {
		case StepCounted:
			sm.counted++
			sm.maxLevel = max(sm.maxLevel, st.Level)
		case StepAlert:
			sm.alerts++
			sm.maxLevel = max(sm.maxLevel, st.Level)
		}
		// Scenarios every request feeds (floods) are shown only near firing.
		if why[st.Scenario.Name] == "every request" && st.Outcome != StepAlert && st.Level*2 <= st.Scenario.Capacity {
			continue
		}
		if !headed {
			headed = true
			fmt.Fprintf(w, "\n  %s  line %d\n    %s\n", rfc3339(st.Time), st.Offset+1, clip(st.Line, 200))
		}
		sm.shown++
		net := ""
		if st.Source != x.IP {
			net = " (network " + st.Source + ")"
		}
		fmt.Fprintf(w, "    -> %-28s %s%s\n", st.Scenario.Name, describe(st), net)
		if r := why[st.Scenario.Name]; r != "" {
			fmt.Fprintf(w, "       %-28s because: %s\n", "", r)
		}
	}
	if len(order) > 0 {
		fmt.Fprintf(w, "\n  Scenarios\n")
	}
	sort.Strings(order)
	for _, k := range order {
		sm := sums[k]
		if sm.shown == 0 {
			continue // fed by every request, and far from firing
		}
		if sm.source != x.IP {
			fmt.Fprintf(w, "    %-30s network %s: %d of the %d it fires at when this address's requests came (%s); the network's alerts are below\n",
				sm.s.Name, sm.source, sm.maxLevel, sm.s.Capacity+1, sm.s.rule())
			continue
		}
		who := ""
		if sm.alerts > 0 {
			fmt.Fprintf(w, "    %-30s fired %d time(s)%s: %s\n", sm.s.Name, sm.alerts, who, sm.s.rule())
		} else if sm.maxLevel > sm.s.Capacity && sm.s.ratio > 0 {
			fmt.Fprintf(w, "    %-30s did not fire%s: %d distinct, but too small a share of the requests (%s)\n", sm.s.Name, who, sm.maxLevel, sm.s.rule())
		} else {
			fmt.Fprintf(w, "    %-30s did not fire%s: reached %d of the %d it fires at (%s)\n", sm.s.Name, who, sm.maxLevel, sm.s.Capacity+1, sm.s.rule())
		}
	}
	if b == nil {
		return
	}
	rng := RangeOf(x.IP)
	var alerts []Alert
	for _, a := range b.AlertsSince(time.Time{}) {
		if a.SourceIP == x.IP || rng != "" && a.SourceIP == rng {
			alerts = append(alerts, a)
		}
	}
	fmt.Fprintf(w, "\n  Alerts: %d\n", len(alerts))
	for _, a := range alerts {
		sim := ""
		if a.Simulated {
			sim = "  (simulated)"
		}
		fmt.Fprintf(w, "    %s  %-30s %-18s %d events%s\n", a.LastSeen, a.Scenario, a.SourceIP, a.Events, sim)
	}
	var ds []Decision
	for _, d := range b.AllDecisions() {
		if d.Value == x.IP || rng != "" && d.Value == rng {
			ds = append(ds, d)
		}
	}
	fmt.Fprintf(w, "\n  Decisions: %d\n", len(ds))
	for _, d := range ds {
		state := ""
		if d.Simulated {
			state = "  (simulated: not sent to bouncers)"
		}
		fmt.Fprintf(w, "    %s %s %s for %s (%s)%s\n", d.Type, d.Scope, d.Value, time.Duration(d.Until-d.Created), d.Scenario, state)
	}
	if b.Allowed(x.IP) {
		fmt.Fprintf(w, "\n  %s is on the allow-list: no decision is made against it.\n", x.IP)
	}
}

// describe says what one step did to its bucket.
func describe(st Step) string {
	s := st.Scenario
	switch st.Outcome {
	case StepAlert:
		return fmt.Sprintf("ALERT: %d, more than %d (%s)", st.Level, s.Capacity, s.rule())
	case StepRepeat:
		what := strings.ReplaceAll(s.Distinct, "_", " ")
		if s.Distinct == "ip" {
			what = "address"
		}
		return fmt.Sprintf("%s already counted (%d of the %d it fires at)", what, st.Level, s.Capacity+1)
	case StepBlackhole:
		return fmt.Sprintf("ignored: alerted less than %s ago", s.Blackhole)
	case StepLate:
		return fmt.Sprintf("ignored: older than the %s window", s.Window)
	}
	if s.Trigger == TriggerMatch {
		return "counted"
	}
	return fmt.Sprintf("counted: %d of the %d it fires at", st.Level, s.Capacity+1)
}

// rule says in words when s fires.
func (s *Scenario) rule() string {
	what := "requests"
	switch s.Distinct {
	case "":
	case "ip":
		what = "distinct addresses"
	case "payload":
		what = "distinct injections"
	default:
		what = "distinct " + strings.ReplaceAll(s.Distinct, "_", " ") + "s"
	}
	per := ""
	if s.Scope == ScopeRange {
		per = " per network"
	}
	switch s.Trigger {
	case TriggerMatch:
		return "fires on one request"
	case TriggerWindow:
		r := fmt.Sprintf("more than %d %s within %s%s", s.Capacity, what, s.Window, per)
		if s.ratio > 0 {
			r += fmt.Sprintf(", at least %d%% of them distinct", s.ratio/10)
		}
		return r
	}
	return fmt.Sprintf("more than %d %s, one leaking every %s%s", s.Capacity, what, s.Leak, per)
}
