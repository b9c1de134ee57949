package detect

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestDecidedByPrune_NamesEveryCondition: a scenario whose filter holds
// any condition other than a status or a substring filter runs its filter
// after pruning; one holding only those does not. Every key of Filter is
// tried alone, so a key added to Filter without a thought for prune fails
// here.
func TestDecidedByPrune_NamesEveryCondition(t *testing.T) {
	decidedKeys := map[string]bool{"status": true, "path_contains": true, "uri_contains": true, "raw_uri_contains": true,
		"query_contains": true, "ua_contains": true, "referer_contains": true, "any_contains": true}
	parse := func(filter, extra string) *Scenario {
		t.Helper()
		y := fmt.Sprintf("scenarios:\n  - name: other\n    trigger: match\n    filter: {ua_contains: [zz]}\n  - name: s\n    trigger: match\n    filter: {%s}\n%s", filter, extra)
		rs, err := Parse([]byte(y), nil)
		if err != nil {
			t.Fatalf("%s: %v", filter, err)
		}
		return rs.Scenario("s")
	}
	ft := reflect.TypeOf(Filter{})
	for i := range ft.NumField() {
		key := strings.Split(ft.Field(i).Tag.Get("yaml"), ",")[0]
		var v string
		switch ft.Field(i).Type.String() {
		case "[]int":
			v = "[404]"
		case "[]string":
			v = map[string]string{"methods": "[POST]", "protocol_not": "[HTTP/1.1]", "evidence": "[other]"}[key]
			if v == "" {
				v = "[x]"
			}
		case "bool":
			v = "true"
		default:
			t.Fatalf("filter key %s of type %s: give it a value here", key, ft.Field(i).Type)
		}
		if got := parse(key+": "+v, "").decidedByPrune(); got != decidedKeys[key] {
			t.Errorf("filter {%s: %s}: decided by prune %v, want %v", key, v, got, decidedKeys[key])
		}
	}
	if !parse("", "").decidedByPrune() {
		t.Error("an empty filter is not decided by prune")
	}
	if parse("", "    scope: range\n").decidedByPrune() {
		t.Error("a range-scoped scenario (which needs a network) is decided by prune")
	}
}

// TestPrune_SameVerdictsAsEveryFilterRun: rules mixing every kind of
// condition with statuses, substrings and query expressions (some of
// which pass an empty query), on requests with and without a query, give
// the verdicts they give with every scenario's filter run.
func TestPrune_SameVerdictsAsEveryFilterRun(t *testing.T) {
	y := `scenarios:
  - {name: q-empty, trigger: match, filter: {query_regex: ['^$', 'a=1']}}
  - {name: q-star, trigger: match, filter: {query_regex: ['x*']}}
  - {name: q-some, trigger: match, filter: {query_regex: ['^id=[0-9]+$']}}
  - {name: st-404, trigger: match, filter: {status: [404]}}
  - {name: st-sub, trigger: match, filter: {status: [200, 404], path_contains: [admin]}}
  - {name: ua, trigger: match, filter: {ua_contains: [curl]}}
  - {name: ua-post, trigger: match, filter: {ua_contains: [curl], methods: [POST]}}
  - {name: sqli, trigger: match, filter: {sqli: true}}
  - {name: none, trigger: match, filter: {}}
  - {name: ev, trigger: match, filter: {evidence: [st-sub, ua, sqli]}}
  - {name: ev-range, trigger: match, scope: range, filter: {evidence: [q-some, st-404]}}
`
	// And past 64 scenarios, whose sets take more than one word: the
	// same kinds of filter again, each repeated under other names.
	var many strings.Builder
	many.WriteString("scenarios:\n")
	for i := range 140 {
		f := []string{"{status: [404]}", "{path_contains: [admin]}", "{ua_contains: [curl], methods: [POST]}", "{query_regex: ['^$']}",
			"{query_regex: ['^id=[0-9]+$']}", "{}", "{sqli: true}"}[i%7]
		fmt.Fprintf(&many, "  - {name: m%d, trigger: match, filter: %s}\n", i, f)
	}
	many.WriteString("  - {name: ev-many, trigger: match, filter: {evidence: [m0, m71, m139]}}\n")
	for _, doc := range []string{y, many.String()} {
		pruneSameVerdicts(t, doc)
	}
}

func pruneSameVerdicts(t *testing.T, doc string) {
	t.Helper()
	rules, err := Parse([]byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rules.prune == nil {
		t.Fatal("rules not pruned")
	}
	all := *rules
	all.prune = nil
	n := 0
	for _, status := range []int{200, 404, 500} {
		for _, method := range []string{"GET", "POST"} {
			for _, target := range []string{"/", "/admin", "/?", "/?a=1", "/?id=7", "/admin?id=1%27%20or%201=1--", "/x?xx"} {
				for _, ua := range []string{"Mozilla", "curl/8"} {
					for _, client := range []string{"192.0.2.1", "2001:db8::1"} {
						e, _ := entry(client, method, target, status, 0, ua)
						var a, b Event
						rules.Evaluate(&e, nil, 0, &a)
						all.Evaluate(&e, nil, 0, &b)
						if got, want := fmt.Sprint(a.Matches), fmt.Sprint(b.Matches); got != want {
							t.Fatalf("%s %s %d %s %s: pruned %s, every filter run %s", method, target, status, ua, client, got, want)
						}
						n += len(a.Matches)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no scenario passed any request")
	}
}
