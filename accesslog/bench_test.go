package accesslog

import (
	"bytes"
	"os"
	"testing"

	"github.com/wardenhq/warden/internal/testenv"
)

var benchLines = map[string]string{
	"auto":            `83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"`,
	"common":          `83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023`,
	"combined":        `83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"`,
	"vhost_combined":  `semicomplete.com:443 83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"`,
	"nginx_combined":  `83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"`,
	"json":            `{"time_local":"17/May/2015:10:05:03 +0000","remote_addr":"83.149.9.216","request":"GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1","status":"200","body_bytes_sent":"203023","http_referer":"http://semicomplete.com/presentations/logstash-monitorama-2013/","http_user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36","request_time":"0.012"}`,
	"syslog+combined": `<134>May 17 10:05:03 web1 nginx[42]: 83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"`,
	`%a %{%Y-%m-%dT%H:%M:%S}t%{%z}t "%r" %>s %B %D "%{User-agent}i"`: `83.149.9.216 2015-05-17T10:05:03+0000 "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 1234 "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"`,
}

func benchFormat(b *testing.B, spec string) { benchLine(b, spec, benchLines[spec]) }

func benchLine(b *testing.B, spec, l string) {
	f := mustLookup(b, spec)
	line := []byte(l)
	var e Entry
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Parse(line, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCommon(b *testing.B)        { benchFormat(b, "common") }
func BenchmarkParseCombined(b *testing.B)      { benchFormat(b, "combined") }
func BenchmarkParseVhostCombined(b *testing.B) { benchFormat(b, "vhost_combined") }
func BenchmarkParseNginxCombined(b *testing.B) { benchFormat(b, "nginx_combined") }
func BenchmarkParseJSON(b *testing.B)          { benchFormat(b, "json") }
func BenchmarkParseSyslog(b *testing.B)        { benchFormat(b, "syslog+combined") }
func BenchmarkParseCustom(b *testing.B) {
	benchFormat(b, `%a %{%Y-%m-%dT%H:%M:%S}t%{%z}t "%r" %>s %B %D "%{User-agent}i"`)
}

func BenchmarkParseAuto(b *testing.B) { benchFormat(b, "auto") }

// BenchmarkParseAutoJSON and BenchmarkParseAutoSyslog read a stream of
// JSON or syslog+combined lines with auto.
func BenchmarkParseAutoJSON(b *testing.B)   { benchLine(b, "auto", benchLines["json"]) }
func BenchmarkParseAutoSyslog(b *testing.B) { benchLine(b, "auto", benchLines["syslog+combined"]) }

// BenchmarkParseReal reads the elastic sample's first 1,000 lines (real
// traffic, 237 bytes a line; small enough to stay in cache), one line per
// op, with combined and with auto.
func BenchmarkParseReal(b *testing.B) {
	src, err := os.ReadFile(testenv.Data(b, "elastic-apache/apache_logs"))
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(src, []byte("\n"))[:1000]
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	for _, spec := range []string{"combined", "auto"} {
		b.Run(spec, func(b *testing.B) {
			f := mustLookup(b, spec)
			var e Entry
			b.SetBytes(int64(size / len(lines)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := f.Parse(lines[i], &e); err != nil {
					b.Fatal(err)
				}
				i = (i + 1) % len(lines)
			}
		})
	}
}
