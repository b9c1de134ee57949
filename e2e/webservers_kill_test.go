package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The shipping bar: real nginx writes its access log to a file that
// `ship --follow` ships while the file is rotated (rename, then
// `nginx -s reopen`) and ship is SIGKILLed and restarted several times,
// with requests made while it is down; /v1/stats counts exactly the
// requests made. Against the plain embedded broker, and against one that
// serves only TLS and requires SASL/SCRAM.
func TestWebServers_NginxFollowedWhileShipIsKilledAndTheLogRotates(t *testing.T) {
	for _, secure := range []bool{false, true} {
		name := "plain"
		if secure {
			name = "tls-scram"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var broker, statsAddr string
			var kafkaArgs []string
			if secure {
				k, _ := startSecureBroker(t, dir, 4, filepath.Join(dir, "broker-data"))
				_, s := startAgentProc(t, dir, "n1", k.addr, k.clientArgs...)
				broker, statsAddr, kafkaArgs = k.addr, s.http, k.clientArgs
			} else {
				c := oneNode(t)
				broker, statsAddr = c.broker, c.specs["n1"].http
			}
			ndir := filepath.Join(dir, "nginx")
			logs := filepath.Join(ndir, "logs")
			if err := os.MkdirAll(logs, 0o755); err != nil {
				t.Fatal(err)
			}
			log := filepath.Join(logs, "access.log")
			n := startNginx(t, ndir, "access_log "+log+" combined")
			args := append([]string{"ship", "--follow", log + "*", "--brokers", broker, "--topic", "access-logs",
				"--ship-id", "nginx-" + name, "--poll-interval", "50ms"}, kafkaArgs...)
			starts := 0
			start := func() *proc {
				starts++
				p := startProc(t, dir, "ship", args...)
				waitFor(t, 20*time.Second, "ship following (start "+strconv.Itoa(starts)+")", func() bool {
					b, _ := os.ReadFile(filepath.Join(dir, "ship.log"))
					return bytes.Count(b, []byte("position read back from Kafka")) >= starts
				})
				return p
			}
			ship := start()
			defer func() { ship.kill() }()
			w := &webTraffic{t: t, base: "http://" + n.addr}
			w.sent = 1 // nginx's readiness probe
			for round := 0; round < 4; round++ {
				w.normal(25)
				time.Sleep(150 * time.Millisecond) // some shipped, some in flight
				ship.kill()                        // SIGKILL
				w.normal(10)                       // written while ship is down
				if round == 1 {
					// logrotate: rename, requests into the renamed file, reopen.
					if err := os.Rename(log, log+".1"); err != nil {
						t.Fatal(err)
					}
					w.normal(5)
					if out, err := exec.Command(n.bin, "-p", ndir, "-c", n.conf, "-s", "reopen").CombinedOutput(); err != nil {
						t.Fatalf("nginx -s reopen: %v\n%s", err, out)
					}
					waitFor(t, 10*time.Second, "nginx reopening its log", func() bool {
						_, err := os.Stat(log)
						return err == nil
					})
				}
				ship = start()
			}
			w.attacks()
			w.normal(20)
			waitCounted(t, statsAddr, w.sent)
			checkAlerts(t, statsAddr)
			t.Logf("%s: %d requests, ship SIGKILLed 4 times and the log rotated once: /v1/stats counts exactly %d", name, w.sent, w.sent)
		})
	}
}
