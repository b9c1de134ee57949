package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/fsm"
)

// Records that retention deletes before the cluster reads them are never
// skipped silently: with the cluster stopped, DeleteRecords removes part of
// what it has not read; restarted, it counts exactly those as lost (per
// partition, in /v1/partitions, /metrics and an operator alert) and reads
// the rest.
func TestProcesses_RecordsLostToRetentionAreCountedExactly(t *testing.T) {
	c := newProcCluster(t, 2, 3)
	c.waitOwned(3, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 41)
	p.produce(600)
	c.waitApplied(p, 30*time.Second, "n1", "n2")
	before, err := c.partitions("n1")
	if err != nil {
		t.Fatal(err)
	}
	c.killAgent("n1")
	c.killAgent("n2")
	p.produce(900)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, c.topic)
	if err != nil {
		t.Fatal(err)
	}
	var del kadm.Offsets
	wantLost := map[int32]int64{}
	var total int64
	for _, pi := range before {
		end, _ := ends.Lookup(c.topic, pi.Partition)
		to := pi.Committed + (end.Offset-pi.Committed)/2 // half of what was not read yet
		del.AddOffset(c.topic, pi.Partition, to, -1)
		wantLost[pi.Partition] = to - pi.Committed
		total += to - pi.Committed
	}
	if total == 0 {
		t.Fatal("nothing to delete: the test produced too little")
	}
	resp, err := adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}

	c.startAgent("n1", 2)
	c.startAgent("n2", 2)
	for _, id := range []string{"n1", "n2"} {
		waitFor(t, 40*time.Second, id+": every partition read to its end, the gap recorded", func() bool {
			return readToEnd(c, id, ends, wantLost)
		})
	}
	parts, _ := c.partitions("n1")

	var applied int64
	for _, pi := range parts {
		applied += pi.Records
		if len(pi.LostRanges) != 1 || pi.LostRanges[0].Until-pi.LostRanges[0].From != wantLost[pi.Partition] {
			t.Errorf("partition %d: lost ranges %+v, want one of %d", pi.Partition, pi.LostRanges, wantLost[pi.Partition])
		}
	}
	if applied != 1500-total {
		t.Errorf("%d records applied, want %d (1,500 produced, %d lost)", applied, 1500-total, total)
	}
	metrics := string(httpGet(t, "http://"+c.specs["n1"].http+"/metrics"))
	for part, n := range wantLost {
		want := `warden_records_lost_to_retention_total{partition="` + strconv.Itoa(int(part)) + `"} ` + strconv.FormatInt(n, 10)
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var ops []fsm.OperatorAlert
	if err := getJSON("http://"+c.specs["n2"].http+"/v1/operator-alerts", &ops); err != nil {
		t.Fatal(err)
	}
	var alerted int64
	for _, a := range ops {
		if a.Kind == "records-lost-to-retention" {
			alerted += a.Count
		}
	}
	if alerted != total {
		t.Errorf("operator alerts count %d lost records, want %d: %+v", alerted, total, ops)
	}
	status, _, _ := runCLI(t, nil, "status", "--addr", "http://"+c.specs["n1"].http)
	if !strings.Contains(status, strconv.FormatInt(total, 10)+" records LOST to retention") {
		t.Errorf("status does not report the loss:\n%s", status)
	}
}

func readToEnd(c *procCluster, id string, ends kadm.ListedOffsets, wantLost map[int32]int64) bool {
	parts, err := c.partitions(id)
	if err != nil || len(parts) == 0 {
		return false
	}
	for _, pi := range parts {
		end, _ := ends.Lookup(c.topic, pi.Partition)
		if pi.Committed != end.Offset || pi.Lost != wantLost[pi.Partition] {
			return false
		}
	}
	return true
}
