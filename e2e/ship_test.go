package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/wardenhq/warden/broker"
	"github.com/wardenhq/warden/internal/testenv"
)

func TestProcesses_ShipAFileThenGrowTheTopic(t *testing.T) {
	sample := testenv.Data(t, "elastic-apache/apache_logs")
	c := newProcCluster(t, 3, 4)
	out, err := exec.Command(wardenBin(t), "ship", "--brokers", c.broker, "--topic", c.topic, sample).CombinedOutput()
	if err != nil {
		t.Fatalf("warden ship: %v\n%s", err, out)
	}
	total := func(id string) (records int64, parts int, owned int) {
		ps, err := c.partitions(id)
		if err != nil {
			return 0, 0, 0
		}
		for _, p := range ps {
			records += p.Records
			if p.Owner != "" && p.Lag == 0 {
				owned++
			}
		}
		return records, len(ps), owned
	}
	waitFor(t, 30*time.Second, "the 10,000 shipped lines applied", func() bool {
		r, _, _ := total("n2")
		return r == 10000
	})
	// Partitions added to the topic later are picked up and assigned.
	if err := broker.EnsureTopic(context.Background(), []string{c.broker}, c.topic, 6); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "6 partitions owned and caught up", func() bool {
		_, n, owned := total("n3")
		return n == 6 && owned == 6
	})
	if r, _, _ := total("n1"); r != 10000 {
		t.Fatalf("records after growth = %d, want 10000", r)
	}
}
