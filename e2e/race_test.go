package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// One multi-process run with race-enabled agents: records flow, a node is
// SIGKILLed and restarted, and every node's HTTP API is read all along
// (/v1/partitions, /v1/stats, /v1/alerts, /metrics), so that a data race
// between Apply and the readers, which the other multi-process tests (built
// without -race) cannot see, stops an agent (GORACE halt_on_error) and
// fails the test.
func TestProcesses_RaceEnabledAgents(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "warden-race")
	start := time.Now()
	if out, err := exec.Command("go", "build", "-race", "-o", bin, "../cmd/warden").CombinedOutput(); err != nil {
		t.Fatalf("go build -race: %v\n%s", err, out)
	}
	t.Logf("race build: %s", time.Since(start).Round(time.Second))
	t.Setenv("GORACE", "halt_on_error=1 exitcode=66")
	c := newProcClusterIdle(t, 3, 4, nil)
	c.bin = bin
	for _, id := range []string{"n1", "n2", "n3"} {
		c.startAgent(id, 3)
	}
	c.waitOwned(4, 60*time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range append(specList(c), specList(c)...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, path := range []string{"/v1/partitions", "/v1/stats", "/v1/alerts", "/v1/cluster", "/metrics", "/v1/decisions"} {
					if resp, err := httpClient.Get("http://" + s.http + path); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}
		}()
	}
	p := newProducer(t, c.broker, c.topic, 9)
	for i := 0; i < 20; i++ {
		p.produce(300)
		time.Sleep(200 * time.Millisecond)
		if i == 8 {
			c.killAgent("n2")
			c.startAgent("n2", 3)
		}
	}
	// Until every node holds every record, or an agent stopped (the race
	// detector halts it): the logs below say which.
	applied := func() bool {
		for _, id := range []string{"n1", "n2", "n3"} {
			parts, err := c.partitions(id)
			if ok, _ := p.matches(parts); err != nil || !ok {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !applied() && time.Now().Before(deadline) && c.agents["n1"].alive() && c.agents["n2"].alive() && c.agents["n3"].alive() {
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for id := range c.specs {
		b, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
		if bytes.Contains(b, []byte("DATA RACE")) {
			i := bytes.Index(b, []byte("WARNING: DATA RACE"))
			t.Errorf("%s: %s", id, fmt.Sprintf("%.4000s", b[max(0, i):]))
		}
	}
	for id, a := range c.agents {
		if !a.alive() {
			t.Errorf("%s exited (exit code 66 is the race detector)", id)
		}
	}
	if !t.Failed() && !applied() {
		t.Errorf("not every node applied every record within 60 s")
	}
}

func specList(c *procCluster) []agentSpec {
	var out []agentSpec
	for _, s := range c.specs {
		out = append(out, s)
	}
	return out
}
