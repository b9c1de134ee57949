package shipper

import (
	"context"
	"fmt"
	"github.com/wardenhq/warden/detect"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseSyslog(t *testing.T) {
	line := `203.0.113.5 - - [02/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"`
	for _, tc := range []struct {
		name, in       string
		ok             bool
		host, app, msg string
	}{
		{"nginx 3164", "<190>Nov  2 10:00:00 web1 nginx: " + line, true, "web1", "nginx", line},
		{"3164 pid", "<13>Nov 12 10:00:00 web1 apache[123]: " + line, true, "web1", "apache", line},
		{"3164 no host", "<190>Nov  2 10:00:00 nginx: " + line, true, "", "nginx", line},
		{"3164 no timestamp", "<190>web1 nginx: " + line, true, "web1", "nginx", line},
		{"5424", "<165>1 2026-11-02T10:00:00.123Z web1 nginx 42 ID47 - " + line, true, "web1", "nginx", line},
		{"5424 sd", `<165>1 2026-11-02T10:00:00Z web1 app - - [ex@32473 a="x\]y" b="2"][more@1 c="3"] ` + line, true, "web1", "app", line},
		{"5424 bom", "<165>1 2026-11-02T10:00:00Z - - - - - \xef\xbb\xbf" + line, true, "", "", line},
		{"not syslog", line, false, "", "", line},
		{"bad pri", "<999>Nov  2 10:00:00 web1 nginx: x", false, "", "", "<999>Nov  2 10:00:00 web1 nginx: x"},
	} {
		m := ParseSyslog([]byte(tc.in))
		if m.OK != tc.ok || string(m.Host) != tc.host || string(m.App) != tc.app || string(m.Msg) != tc.msg {
			t.Errorf("%s: got ok=%v host=%q app=%q msg=%q", tc.name, m.OK, m.Host, m.App, m.Msg)
		}
	}
}

func FuzzParseSyslog(f *testing.F) {
	f.Add("<190>Nov  2 10:00:00 web1 nginx: x")
	f.Add(`<165>1 2026-11-02T10:00:00Z web1 app - - [ex@32473 a="x\]y"] msg`)
	f.Fuzz(func(t *testing.T, s string) {
		m := ParseSyslog([]byte(s))
		if len(m.Msg) > len(s) {
			t.Fatal("payload longer than the message")
		}
	})
}

func TestSyslog_UDPAndTCPFramings(t *testing.T) {
	opts := testKafka(t, 2)
	cl := producer(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMetrics()
	udp, err := ListenSyslog(SyslogConfig{URL: "udp://127.0.0.1:0", ShipID: "sys", Metrics: m}, cl)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := ListenSyslog(SyslogConfig{URL: "tcp://127.0.0.1:0", ShipID: "sys", Metrics: m}, cl)
	if err != nil {
		t.Fatal(err)
	}
	go udp.Serve(ctx)
	go tcp.Serve(ctx)
	line := func(i int) string {
		return fmt.Sprintf(`192.0.2.%d - - [02/Nov/2026:10:00:00 +0000] "GET /%d HTTP/1.1" 200 5 "-" "x"`, i, i)
	}
	var want []string
	uc, err := net.Dial("udp", udp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		want = append(want, line(i))
		fmt.Fprintf(uc, "<190>Nov  2 10:00:00 web1 nginx: %s", line(i))
	}
	tc, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := 6; i <= 10; i++ {
		want = append(want, line(i))
		msg := fmt.Sprintf("<165>1 2026-11-02T10:00:00Z web2 httpd - - - %s", line(i))
		if i%2 == 0 {
			fmt.Fprintf(tc, "%d %s", len(msg), msg) // octet counting
		} else {
			fmt.Fprintf(tc, "%s\n", msg) // newline framing
		}
	}
	tc.Close()
	waitValues(t, opts, want)
	for _, r := range readAll(t, opts) {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		client, _, _ := strings.Cut(string(r.Value), " ")
		if string(r.Key) != detect.PartitionKey(client) || h[HeaderShipID] != "sys" || h[HeaderSyslogHost] == "" || h[HeaderSyslogApp] == "" {
			t.Fatalf("record %q key %q headers %v", r.Value, r.Key, h)
		}
	}
}

// TestKernelDropCounter: the counter SO_RXQ_OVFL attaches to datagrams
// counts what a full socket buffer dropped.
func TestKernelDropCounter(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := countKernelDrops(c); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4096)
	s, err := net.Dial("udp", c.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := make([]byte, 1000)
	for i := 0; i < 200; i++ {
		s.Write(msg)
	}
	// The counter rides on datagrams queued after the drops: read what
	// the buffer held, then one more.
	buf, oob := make([]byte, 2000), make([]byte, 128)
	var d uint32
	var ok bool
	read := func() error {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
		if err == nil {
			if v, found := kernelDrops(oob[:oobn]); found {
				d, ok = v, true
			}
		}
		return err
	}
	for read() == nil {
	}
	s.Write(msg)
	if err := read(); err != nil {
		t.Fatal(err)
	}
	if !ok || d == 0 {
		t.Fatalf("kernel drop counter %d (present %v) after flooding a 4 KiB buffer", d, ok)
	}
	t.Logf("the kernel counted %d datagrams dropped", d)
}

var _ Producer = (*kgo.Client)(nil)
