// Package detect finds attacks in parsed access-log entries: scenarios
// (filters plus a trigger: a single match, a leaky bucket or a bucket of
// distinct values) grouped by client IP, the alerts they raise and the timed
// decisions (bans) alerts lead to.
//
// Detector state is deterministic: buckets are kept per (partition, client
// IP, scenario) and evolve only with that partition's records, in offset
// order, by their event time. So the same records give the same alerts, with
// the same ids, whatever the batching, the node or the crashes.
package detect

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wardenhq/warden/accesslog"
)

//go:embed builtin.yaml
var builtinYAML []byte

// BuiltinYAML returns the built-in rule file.
func BuiltinYAML() []byte { return builtinYAML }

// Trigger kinds.
const (
	TriggerMatch    = "match"
	TriggerLeaky    = "leaky"
	TriggerDistinct = "distinct"
	TriggerWindow   = "window"
)

// Scopes: what a scenario counts per, and what its decision bans.
const (
	ScopeIP    = "ip"
	ScopeRange = "range"
)

// RangeBitsV4 and RangeBitsV6 are the networks a range scope counts per: a
// /24 of IPv4, a /64 of IPv6 (one site or household).
const (
	RangeBitsV4 = 24
	RangeBitsV6 = 64
)

// Filter is the condition a request must meet to count for a scenario. Every
// condition given must hold.
type Filter struct {
	Status          []int    `yaml:"status"`
	Methods         []string `yaml:"methods"`
	NotStatic       bool     `yaml:"not_static"`
	PathContains    []string `yaml:"path_contains"`
	URIContains     []string `yaml:"uri_contains"`
	RawURIContains  []string `yaml:"raw_uri_contains"`
	QueryContains   []string `yaml:"query_contains"`
	UAContains      []string `yaml:"ua_contains"`
	RefererContains []string `yaml:"referer_contains"`
	AnyContains     []string `yaml:"any_contains"`
	PathSuffix      []string `yaml:"path_suffix"`
	PathPrefix      []string `yaml:"path_prefix"`
	PathRegex       []string `yaml:"path_regex"`
	URIRegex        []string `yaml:"uri_regex"`
	QueryRegex      []string `yaml:"query_regex"`
	AnyRegex        []string `yaml:"any_regex"`
	ProtocolNot     []string `yaml:"protocol_not"`
	URIAbsolute     bool     `yaml:"uri_absolute"`
	NoReferer       bool     `yaml:"no_referer"`
	// SQLi, XSS and Log4Shell ask for the per-request analysis (inject.go).
	SQLi      bool `yaml:"sqli"`
	XSS       bool `yaml:"xss"`
	Log4Shell bool `yaml:"log4shell"`
	// Evidence holds if the request passes the filter of one of these
	// scenarios (which may not use evidence themselves).
	Evidence []string `yaml:"evidence"`
}

// Rule is one scenario as written in YAML.
type Rule struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	CrowdSec    string `yaml:"crowdsec"`
	Filter      Filter `yaml:"filter"`
	Trigger     string `yaml:"trigger"`
	Distinct    string `yaml:"distinct"`
	GroupBy     string `yaml:"groupby"`
	Capacity    int    `yaml:"capacity"`
	Leak        string `yaml:"leak"`
	Blackhole   string `yaml:"blackhole"`
	Ban         string `yaml:"ban"`
	Decision    string `yaml:"decision"`
	Disabled    bool   `yaml:"disabled"`
	// Window is the span of a window trigger.
	Window string `yaml:"window"`
	// DistinctRatio, for a distinct window, also asks that distinct values
	// be at least this share of the events (0 to 1): one new user agent
	// per request, not many users behind one address.
	DistinctRatio float64 `yaml:"distinct_ratio"`
	// Scope is ip (the default) or range: count per /24 (IPv4) or /64
	// (IPv6) network, and decide against the network.
	Scope string `yaml:"scope"`
	// Simulate: alerts are raised, their decisions are marked simulated
	// and reach no bouncer.
	Simulate bool `yaml:"simulate"`
	// Signal false marks a volumetric scenario: one request passing its
	// filter says nothing hostile alone (a 404, any request).
	Signal *bool `yaml:"signal"`
}

// RuleFile is the YAML document: a list of scenarios and allow rules.
type RuleFile struct {
	Scenarios []Rule      `yaml:"scenarios"`
	Allow     []AllowRule `yaml:"allow"`
}

// Scenario is a compiled rule.
type Scenario struct {
	Name, Description, CrowdSec string
	Trigger                     string
	Distinct                    string
	GroupBy                     string
	Capacity                    int
	Leak, Blackhole, Ban        time.Duration
	Decision                    string
	Window                      time.Duration
	Scope                       string
	Simulate                    bool
	// ratio is DistinctRatio in thousandths.
	ratio int

	hasStatus                                   bool
	statusBits                                  [16]uint64
	methods                                     []string
	notStatic, uriAbsolute, noReferer           bool
	sqli, xss, log4shell                        bool
	evidenceNames                               []string
	evidence                                    []int // scenario indexes, set by Parse
	path, uri, rawURI, query, ua, referer, anyM *matcher
	suffix, prefix                              []string
	pathRe, uriRe, queryRe, anyRe               regexps
	protocolNot                                 []string // upper case
	signal                                      bool
	index                                       int // in the rules
}

// Rules is a compiled, ordered rule set.
type Rules struct {
	Scenarios []*Scenario
	byName    map[string]int
	// multi is the substring filters of all scenarios by field (nil when
	// there are too many scenarios to index together).
	multi []*multi
	// allow is the allow rules: a request passing one feeds no scenario.
	allow []*allowRule
	// hasEvidence says some scenario counts evidence; hasLog4shell and
	// hasInject, that some asks for those analyses (which the memo then
	// keeps the results of).
	hasEvidence, hasLog4shell, hasInject bool
	// prune rules scenarios out before their filters run (prune.go);
	// nil without multi.
	prune *prune
}

// Builtin returns the compiled built-in rules.
func Builtin() (*Rules, error) { return Parse(builtinYAML, nil) }

// Load returns the built-in rules extended or overridden by the rule file at
// path ("" for the built-in rules alone).
func Load(path string) (*Rules, error) {
	if path == "" {
		return Builtin()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	r, err := Parse(builtinYAML, b)
	if err != nil {
		return nil, fmt.Errorf("rules %s: %w", path, err)
	}
	return r, nil
}

// Parse compiles the base rule file, then the override file (if any) on top:
// a scenario of the same name replaces the base one, a new name is added.
func Parse(base, override []byte) (*Rules, error) {
	var all []Rule
	var allows []AllowRule
	for i, doc := range [][]byte{base, override} {
		if doc == nil {
			continue
		}
		var f RuleFile
		dec := yaml.NewDecoder(strings.NewReader(string(doc)))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			// yaml lists problems on several lines; one line reads better.
			msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
			return nil, fmt.Errorf("%s", strings.ReplaceAll(msg, ":;", ":"))
		}
		for _, r := range f.Scenarios {
			replaced := false
			if i == 1 {
				for j := range all {
					if all[j].Name == r.Name {
						all[j], replaced = r, true
					}
				}
			}
			if !replaced {
				all = append(all, r)
			}
		}
		for _, a := range f.Allow {
			replaced := false
			for j := range allows {
				if allows[j].Name == a.Name {
					allows[j], replaced = a, true
				}
			}
			if !replaced {
				allows = append(allows, a)
			}
		}
	}
	rs := &Rules{byName: map[string]int{}}
	for _, r := range all {
		if r.Disabled {
			continue
		}
		s, err := compile(r)
		if err != nil {
			return nil, err
		}
		if _, dup := rs.byName[s.Name]; dup {
			return nil, fmt.Errorf("scenario %q is defined twice", s.Name)
		}
		rs.byName[s.Name] = len(rs.Scenarios)
		rs.Scenarios = append(rs.Scenarios, s)
	}
	if len(rs.Scenarios) == 0 {
		return nil, errors.New("no scenario enabled")
	}
	for _, s := range rs.Scenarios {
		for _, n := range s.evidenceNames {
			i, ok := rs.byName[n]
			if !ok {
				return nil, fmt.Errorf("scenario %q: evidence %q is not an enabled scenario", s.Name, n)
			}
			if len(rs.Scenarios[i].evidenceNames) > 0 {
				return nil, fmt.Errorf("scenario %q: evidence %q itself counts evidence; name the scenarios it names", s.Name, n)
			}
			s.evidence = append(s.evidence, i)
		}
		rs.hasEvidence = rs.hasEvidence || len(s.evidence) > 0
		rs.hasLog4shell = rs.hasLog4shell || s.log4shell
		rs.hasInject = rs.hasInject || s.sqli || s.xss
	}
	for _, a := range allows {
		if a.Disabled {
			continue
		}
		c, err := compileAllow(a)
		if err != nil {
			return nil, err
		}
		rs.allow = append(rs.allow, c)
	}
	rs.buildMulti()
	rs.buildPrune()
	return rs, nil
}

// Scenario returns the scenario called name, or nil.
func (r *Rules) Scenario(name string) *Scenario {
	if i, ok := r.byName[name]; ok {
		return r.Scenarios[i]
	}
	return nil
}

func duration(name, field, v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("scenario %q: %s %q is not a duration such as 10s or 4h", name, field, v)
	}
	return d, nil
}

func compile(r Rule) (*Scenario, error) {
	if r.Name == "" {
		return nil, errors.New("a scenario has no name")
	}
	s := &Scenario{Name: r.Name, Description: r.Description, CrowdSec: r.CrowdSec, Trigger: r.Trigger, Distinct: r.Distinct,
		Capacity: r.Capacity, Decision: r.Decision, GroupBy: r.GroupBy, Scope: r.Scope, Simulate: r.Simulate}
	switch s.Scope {
	case "":
		s.Scope = ScopeIP
	case ScopeIP, ScopeRange:
	default:
		return nil, fmt.Errorf("scenario %q: scope %q: want ip or range", r.Name, r.Scope)
	}
	if s.Scope == ScopeRange && r.GroupBy != "" && r.GroupBy != "ip" {
		return nil, fmt.Errorf("scenario %q: a range scope counts per network; groupby %q does not apply", r.Name, r.GroupBy)
	}
	switch s.GroupBy {
	case "":
		s.GroupBy = "ip"
	case "ip", "ip_vhost", "ip_path", "ip_user_agent":
	default:
		return nil, fmt.Errorf("scenario %q: groupby %q: want ip, ip_vhost, ip_path or ip_user_agent", r.Name, r.GroupBy)
	}
	var err error
	if s.Leak, err = duration(r.Name, "leak", r.Leak, 10*time.Second); err != nil {
		return nil, err
	}
	if s.Blackhole, err = duration(r.Name, "blackhole", r.Blackhole, time.Minute); err != nil {
		return nil, err
	}
	if s.Ban, err = duration(r.Name, "ban", r.Ban, 4*time.Hour); err != nil {
		return nil, err
	}
	switch s.Decision {
	case "":
		s.Decision = "ban"
	case "ban", "captcha":
	default:
		return nil, fmt.Errorf("scenario %q: decision %q: want ban or captcha", r.Name, r.Decision)
	}
	validDistinct := func() bool {
		return s.Distinct == "path" || s.Distinct == "uri" || s.Distinct == "user_agent" || s.Distinct == "ip" ||
			s.Distinct == "payload" && (r.Filter.SQLi || r.Filter.XSS || r.Filter.Log4Shell)
	}
	switch s.Trigger {
	case TriggerMatch:
		s.Capacity = 0
	case TriggerLeaky:
	case TriggerDistinct:
		if !validDistinct() {
			return nil, fmt.Errorf("scenario %q: distinct %q: want path, uri, user_agent, ip, or payload with sqli, xss or log4shell", r.Name, r.Distinct)
		}
	case TriggerWindow:
		if s.Distinct != "" && !validDistinct() {
			return nil, fmt.Errorf("scenario %q: distinct %q: want path, uri, user_agent, ip, payload or none", r.Name, r.Distinct)
		}
		if s.Window, err = duration(r.Name, "window", r.Window, time.Hour); err != nil {
			return nil, err
		}
		if s.Window < time.Minute {
			return nil, fmt.Errorf("scenario %q: window %s: want a minute or more", r.Name, s.Window)
		}
		if r.DistinctRatio < 0 || r.DistinctRatio > 1 || r.DistinctRatio > 0 && s.Distinct == "" {
			return nil, fmt.Errorf("scenario %q: distinct_ratio %v: want 0 to 1, with distinct", r.Name, r.DistinctRatio)
		}
		s.ratio = int(r.DistinctRatio*1000 + 0.5)
		s.Leak = s.Window // unused by the trigger; a drained bucket's age is its window
	default:
		return nil, fmt.Errorf("scenario %q: trigger %q: want match, leaky, distinct or window", r.Name, r.Trigger)
	}
	if s.Trigger != TriggerWindow && (r.Window != "" || r.DistinctRatio != 0) {
		return nil, fmt.Errorf("scenario %q: window and distinct_ratio are for a window trigger", r.Name)
	}
	if s.Trigger != TriggerMatch && s.Capacity < 1 {
		return nil, fmt.Errorf("scenario %q: capacity must be at least 1 for a %s trigger", r.Name, s.Trigger)
	}
	if s.Trigger != TriggerMatch && s.Leak <= 0 {
		return nil, fmt.Errorf("scenario %q: leak must be positive", r.Name)
	}
	f := r.Filter
	for _, c := range f.Status {
		if c < 0 || c >= 1024 {
			return nil, fmt.Errorf("scenario %q: status %d out of range", r.Name, c)
		}
		s.hasStatus = true
		s.statusBits[c>>6] |= 1 << (c & 63)
	}
	for _, m := range f.Methods {
		s.methods = append(s.methods, strings.ToUpper(m))
	}
	if len(f.ProtocolNot) > 0 {
		for _, p := range f.ProtocolNot {
			s.protocolNot = append(s.protocolNot, strings.ToUpper(p))
		}
	}
	s.notStatic, s.uriAbsolute, s.noReferer = f.NotStatic, f.URIAbsolute, f.NoReferer
	s.sqli, s.xss, s.log4shell, s.evidenceNames = f.SQLi, f.XSS, f.Log4Shell, f.Evidence
	s.signal = r.Signal == nil || *r.Signal
	mk := func(l []string) *matcher {
		if len(l) == 0 {
			return nil
		}
		return newMatcher(l)
	}
	s.path, s.uri, s.rawURI, s.query = mk(f.PathContains), mk(f.URIContains), mk(f.RawURIContains), mk(f.QueryContains)
	s.ua, s.referer, s.anyM = mk(f.UAContains), mk(f.RefererContains), mk(f.AnyContains)
	for _, x := range f.PathSuffix {
		s.suffix = append(s.suffix, strings.ToLower(x))
	}
	for _, x := range f.PathPrefix {
		s.prefix = append(s.prefix, strings.ToLower(x))
	}
	for _, set := range []struct {
		src []string
		dst *regexps
	}{{f.PathRegex, &s.pathRe}, {f.URIRegex, &s.uriRe}, {f.QueryRegex, &s.queryRe}, {f.AnyRegex, &s.anyRe}} {
		for _, expr := range set.src {
			re, err := regexp.Compile("(?i)" + expr)
			if err != nil {
				return nil, fmt.Errorf("scenario %q: regex %q: %v", r.Name, expr, err)
			}
			set.dst.res = append(set.dst.res, re)
			set.dst.empty = set.dst.empty || re.MatchString("")
		}
	}
	return s, nil
}

// Signals returns the scenarios, volumetric ones aside, whose filter e
// passes: what marks this one request as hostile, before any bucket decides
// whether its source is attacking.
func (r *Rules) Signals(e *accesslog.Entry) []*Scenario {
	var req request
	req.reset(e, r)
	var out []*Scenario
	r.match(&req, func(_ int, s *Scenario) {
		if s.signal {
			out = append(out, s)
		}
	})
	return out
}

// match calls fn, in scenario order, for each scenario whose filter the
// request passes; none for a request an allow rule lets through. Scenarios
// that count evidence are judged after the others, on what those passed.
func (r *Rules) match(req *request, fn func(i int, s *Scenario)) {
	if len(r.allow) > 0 && r.allowedBy(req) != nil {
		return
	}
	if r.prune != nil && r.multi != nil {
		r.matchPruned(req, fn)
		return
	}
	if !r.hasEvidence {
		for i, s := range r.Scenarios {
			if s.matches(req) {
				fn(i, s)
			}
		}
		return
	}
	var small [maxMulti]bool
	passed := small[:0]
	if len(r.Scenarios) > maxMulti {
		passed = make([]bool, 0, len(r.Scenarios))
	}
	passed = passed[:len(r.Scenarios)]
	for i, s := range r.Scenarios {
		passed[i] = len(s.evidence) == 0 && s.matches(req)
	}
	for i, s := range r.Scenarios {
		if len(s.evidence) == 0 {
			continue
		}
		any := false
		for _, j := range s.evidence {
			any = any || passed[j]
		}
		passed[i] = any && s.matches(req)
	}
	for i, s := range r.Scenarios {
		if passed[i] {
			fn(i, s)
		}
	}
}
