package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/node"
)

// warden offsets reset: the dry run changes nothing; --to earliest
// --execute on a running cluster is a replay, after which /v1/stats equals
// warden analyze over the topic again on every node; a subset moved back
// is refused; a skip forward is recorded and shown by status.
func TestProcesses_OffsetsResetReplaysAndSkips(t *testing.T) {
	// A rate cap, so that records wait long enough to be skipped.
	flags := []string{"--admin-token", "boss", "--retention", "0", "--max-rate-per-partition", "400"}
	c := newProcClusterWith(t, 3, 4, map[string][]string{"n1": flags, "n2": flags, "n3": flags})
	c.waitOwned(4, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 21)
	p.produce(2000)
	c.waitApplied(p, 30*time.Second, "n1", "n2", "n3")
	want, _ := analyzeTopic(t, c.broker, c.topic)
	addr := "http://" + c.specs["n2"].http
	env := []string{"WARDEN_ADMIN_TOKEN=boss"}

	out, errOut, code := runCLI(t, env, "offsets", "reset", "--to", "earliest", "--addr", addr)
	if code != 0 || !strings.Contains(out, "dry run") || !strings.Contains(out, "replay of the whole topic") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "total         2000") && !strings.Contains(out, "2000") {
		t.Errorf("dry run does not count 2000 records to replay:\n%s", out)
	}
	before, _ := c.partitions("n1")

	out, errOut, code = runCLI(t, env, "offsets", "reset", "--to", "earliest", "--addr", addr, "--execute")
	if code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("execute: exit %d\n%s%s", code, out, errOut)
	}
	// Rebuilt from offset 0: the same figures as analyze, every node.
	for _, id := range []string{"n1", "n2", "n3"} {
		waitFor(t, 30*time.Second, id+" replayed", func() bool {
			parts, err := c.partitions(id)
			if err != nil {
				return false
			}
			for i, pi := range parts {
				if pi.Committed != before[i].Committed || pi.Epoch <= before[i].Epoch || len(pi.Resets) != 1 {
					return false
				}
			}
			return bytes.Equal(httpGet(t, "http://"+c.specs[id].http+"/v1/stats?top=0"), want)
		})
	}

	// A subset moved back is refused, saying why.
	_, errOut, code = runCLI(t, env, "offsets", "reset", "--to", "earliest", "--partition", "1", "--addr", addr, "--execute")
	if code == 0 || !strings.Contains(errOut, "counts their records twice") {
		t.Errorf("partial replay: exit %d, %q", code, errOut)
	}
	// A skip forward: records waiting behind the rate cap, partitions 0
	// and 2 moved to their end.
	p.produce(4000)
	out, errOut, code = runCLI(t, env, "offsets", "reset", "--to", "latest", "--partition", "0,2", "--addr", addr, "--execute")
	if code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("skip: exit %d\n%s%s", code, out, errOut)
	}
	var parts []node.PartitionInfo
	waitFor(t, 10*time.Second, "the skip recorded", func() bool {
		var err error
		parts, err = c.partitions("n3")
		return err == nil && len(parts[0].Resets) == 2 && len(parts[0].Skipped) == 1 && len(parts[1].Skipped) == 0
	})
	if sk := parts[0].Skipped[0]; sk.Until <= sk.From {
		t.Errorf("skipped range %+v", sk)
	}
	status, _, _ := runCLI(t, nil, "status", "--addr", addr)
	if !strings.Contains(status, "Offset resets:") || !strings.Contains(status, "replay") {
		t.Errorf("status shows no reset history:\n%s", status)
	}
	if _, _, code := runCLI(t, nil, "offsets", "reset", "--to", "earliest", "--addr", addr, "--execute"); code == 0 {
		t.Errorf("a reset without the admin token was accepted")
	}
	if _, errOut, code := runCLI(t, env, "offsets", "reset", "--to", "yesterday", "--addr", addr); code == 0 || !strings.Contains(errOut, "want earliest, latest") {
		t.Errorf("bad --to: exit %d, %q", code, errOut)
	}
}

// --start-offset latest on a pre-filled topic: the cluster reads only what
// is written after it first sees the partitions, and records where each
// began.
func TestProcesses_StartOffsetLatestSkipsThePreFill(t *testing.T) {
	flags := []string{"--start-offset", "latest", "--retention", "0"}
	c := newProcClusterIdle(t, 2, 4, map[string][]string{"n1": flags, "n2": flags})
	pre := newProducer(t, c.broker, c.topic, 31)
	pre.produce(1000)
	for _, id := range []string{"n1", "n2"} {
		c.startAgent(id, 2)
	}
	c.waitOwned(4, 30*time.Second)
	parts, err := c.partitions("n1")
	if err != nil {
		t.Fatal(err)
	}
	var began int64
	for _, pi := range parts {
		began += pi.Committed
	}
	if began != 1000 {
		t.Fatalf("the partitions begin at %d records in, want the pre-fill's end (1000)", began)
	}
	more := newProducer(t, c.broker, c.topic, 32)
	more.produce(300)
	waitFor(t, 30*time.Second, "the new records counted", func() bool {
		var st struct {
			Requests int64 `json:"requests"`
		}
		return getJSON("http://"+c.specs["n2"].http+"/v1/stats", &st) == nil && st.Requests == 300
	})
	time.Sleep(500 * time.Millisecond)
	var st struct {
		Requests int64 `json:"requests"`
	}
	if err := getJSON("http://"+c.specs["n1"].http+"/v1/stats", &st); err != nil || st.Requests != 300 {
		t.Errorf("requests %d, want exactly the 300 written after the start (%v)", st.Requests, err)
	}
	var cc struct {
		StartOffset string `json:"start_offset"`
	}
	if err := getJSON("http://"+c.specs["n1"].http+"/v1/config", &cc); err != nil || cc.StartOffset != "latest" {
		t.Errorf("cluster configuration start offset %q (%v)", cc.StartOffset, err)
	}
}
