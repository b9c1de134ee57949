package shipper

import (
	"testing"

	"github.com/wardenhq/warden/detect"
)

func TestKeyer_ClientOfTheParsedLine(t *testing.T) {
	k, err := NewKeyer("auto")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, line, want string }{
		{"combined", `203.0.113.7 - - [02/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"`, "203.0.113.7"},
		{"vhost_combined", `www.example.com:443 198.51.100.2 - - [02/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"`, "198.51.100.2"},
		{"json", `{"remote_addr":"192.0.2.44","time_local":"02/Nov/2026:10:00:00 +0000","request":"GET /x HTTP/1.1","status":"404","body_bytes_sent":"12","http_user_agent":"curl/8"}`, "192.0.2.44"},
		{"json escaped", `{"remote_addr":"2001:db8::\u0031","time_iso8601":"2026-11-02T10:00:00+00:00","request":"GET / HTTP/1.1","status":200,"body_bytes_sent":1}`, "2001:db8::1"},
		{"syslog 3164", `<190>Nov  2 10:00:00 web1 nginx: 203.0.113.9 - - [02/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"`, "203.0.113.9"},
		{"syslog 5424", `<190>1 2026-11-02T10:00:00Z web1 nginx - - - 203.0.113.10 - - [02/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"`, "203.0.113.10"},
		{"junk", `not a log line at all`, ""},
	} {
		want := tc.want
		if want != "" {
			want = detect.PartitionKey(want)
		}
		if got := string(k.Key([]byte(tc.line))); got != want {
			t.Errorf("%s: key %q, want %q", tc.name, got, tc.want)
		}
	}
	if _, err := NewKeyer("%Z"); err == nil {
		t.Fatal("a bad format compiled")
	}
}
