package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/internal/clustertest"
)

// verify runs the end checks against the settled cluster.
func (c *cluster) verify(ctx context.Context, rep *Report) []Check {
	var checks []Check
	agents := c.Agents()
	add := func(name string, ok bool, detail string, args ...any) {
		checks = append(checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(detail, args...)})
	}
	ends, err := clustertest.EndOffsets(ctx, c.Broker(), c.cfg.Topic, c.cfg.KafkaOpts...)
	if err != nil {
		add("read back the topic", false, "%v", err)
		return checks
	}
	recs, err := clustertest.ReadTopic(ctx, c.Broker(), c.cfg.Topic, ends, false, c.cfg.KafkaOpts...)
	if err != nil {
		add("read back the topic", false, "%v", err)
		return checks
	}
	want := map[int32]fsm.Digest{}
	for p, rs := range recs {
		d := fsm.Digest{}
		for _, r := range rs {
			d.AddRecord(r.Partition, r.Offset, r.Value)
		}
		want[p] = d
	}

	// 1. Nothing lost, nothing applied twice, on every node.
	var lost, dup []string
	views := map[string]partitionsDoc{}
	for _, a := range agents {
		var parts partitionsDoc
		if err := get(a.HTTP, "/v1/partitions", &parts); err != nil {
			add("every node answers", false, "%s: %v", a.ID, err)
			return checks
		}
		views[a.ID] = parts
		for _, p := range parts {
			w := want[p.Partition]
			switch {
			case p.Records < w.Records:
				lost = append(lost, fmt.Sprintf("%s p%d: %d of %d records applied", a.ID, p.Partition, p.Records, w.Records))
			case p.Records > w.Records:
				dup = append(dup, fmt.Sprintf("%s p%d: %d records applied, the topic holds %d", a.ID, p.Partition, p.Records, w.Records))
			case p.Digest != fmt.Sprintf("%016x", w.Sum) || p.Bytes != w.Bytes:
				lost = append(lost, fmt.Sprintf("%s p%d: digest %s, the topic's %016x (records lost and others applied twice)", a.ID, p.Partition, p.Digest, w.Sum))
			}
		}
	}
	var total int64
	for _, d := range want {
		total += d.Records
	}
	// The counts, on the first node.
	rep.PerPartition = map[int32]PartitionCount{}
	for _, p := range views[agents[0].ID] {
		w := want[p.Partition].Records
		pc := PartitionCount{LostRecords: max(0, w-p.Records), DuplicatedRecords: max(0, p.Records-w)}
		rep.PerPartition[p.Partition] = pc
		rep.LostRecords += pc.LostRecords
		rep.DuplicatedRecords += pc.DuplicatedRecords
	}
	switch c.cfg.Semantics {
	case "at-least-once":
		// Repeats are the mode's nature: counted, not a failure. Losses are.
		add("no record lost", rep.LostRecords == 0, "%s", okOr(rep.LostRecords == 0,
			fmt.Sprintf("every record of the topic applied at least once (%d of %d records applied again: at-least-once repeats what followed the last offset commit)", rep.DuplicatedRecords, total),
			fmt.Sprintf("%d records lost", rep.LostRecords)))
	case "at-most-once":
		add("no record applied twice", rep.DuplicatedRecords == 0, "%s", okOr(rep.DuplicatedRecords == 0,
			fmt.Sprintf("no record applied more than once (%d of %d records lost: at-most-once drops what was fetched but not processed)", rep.LostRecords, total),
			fmt.Sprintf("%d records applied twice", rep.DuplicatedRecords)))
	default:
		add("no record lost", len(lost) == 0, "%s", orOK(lost, fmt.Sprintf("all %d records of the topic applied on every node (per-partition digests)", total)))
		add("no record applied twice", len(dup) == 0, "%s", orOK(dup, "no partition holds more records than the topic"))
		if c, ok := detectedOnce(agents, views); ok {
			checks = append(checks, c)
		}
	}

	// 2. Offsets never went back; one node per (partition, epoch).
	var hist []string
	for _, p := range views[agents[0].ID] {
		owners := map[uint64]string{}
		for i, h := range p.History {
			if o, ok := owners[h.Epoch]; ok && o != h.Node {
				hist = append(hist, fmt.Sprintf("p%d epoch %d: commits by %s and %s", p.Partition, h.Epoch, o, h.Node))
			}
			owners[h.Epoch] = h.Node
			if i > 0 {
				prev := p.History[i-1]
				if h.Epoch < prev.Epoch {
					hist = append(hist, fmt.Sprintf("p%d: epoch %d after %d", p.Partition, h.Epoch, prev.Epoch))
				}
				if h.From < prev.Until {
					hist = append(hist, fmt.Sprintf("p%d: commits resumed at %d after reaching %d (offset went back)", p.Partition, h.From, prev.Until))
				} else if h.From > prev.Until {
					hist = append(hist, fmt.Sprintf("p%d: commits resumed at %d after %d (a gap)", p.Partition, h.From, prev.Until))
				}
			}
		}
	}
	add("commit history: offsets never back, one node per (partition, epoch)", len(hist) == 0, "%s",
		orOK(hist, "every partition's runs of commits are contiguous, epochs only grow, each epoch has one committer"))

	// 3. Every replica converged.
	ref := agents[0]
	var diverged []string
	refParts, _ := json.Marshal(stripLag(views[ref.ID]))
	refStats, err1 := getRaw(ref.HTTP, "/v1/stats?top=0")
	refAlerts, err2 := getRaw(ref.HTTP, "/v1/alerts")
	if err1 != nil || err2 != nil {
		add("replicas converge", false, "%s: %v %v", ref.ID, err1, err2)
		return checks
	}
	for _, a := range agents[1:] {
		parts, _ := json.Marshal(stripLag(views[a.ID]))
		stats, _ := getRaw(a.HTTP, "/v1/stats?top=0")
		alerts, _ := getRaw(a.HTTP, "/v1/alerts")
		if !bytes.Equal(parts, refParts) {
			diverged = append(diverged, a.ID+": partitions differ from "+ref.ID)
		}
		if !bytes.Equal(stats, refStats) {
			diverged = append(diverged, a.ID+": /v1/stats differs from "+ref.ID)
		}
		if !bytes.Equal(alerts, refAlerts) {
			diverged = append(diverged, a.ID+": /v1/alerts differs from "+ref.ID)
		}
	}
	add("replicas converge", len(diverged) == 0, "%s", orOK(diverged, fmt.Sprintf("%d nodes serve identical partitions, stats and alerts", len(agents))))
	if c.cfg.Semantics != "exactly-once" {
		// The results hold repeated or missing records by design: the
		// oracle and the alerts topic are exactly-once checks.
		return checks
	}

	// 4. The figures and alerts equal warden analyze on the topic's records.
	var file bytes.Buffer
	parts := make([]int32, 0, len(recs))
	for p := range recs {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, p := range parts {
		for _, r := range recs[p] {
			file.Write(r.Value)
			file.WriteByte('\n')
		}
	}
	path := filepath.Join(c.Dir, "topic.log")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		add("warden analyze oracle", false, "%v", err)
		return checks
	}
	stats, err := exec.Command(c.cfg.Bin, "analyze", "--json", "--top", "0", "--quiet", path).Output()
	if err != nil {
		add("warden analyze oracle", false, "analyze: %v", err)
		return checks
	}
	add("/v1/stats equals warden analyze on the topic", bytes.Equal(stats, refStats), "%s",
		okOr(bytes.Equal(stats, refStats), fmt.Sprintf("byte for byte (%d bytes)", len(stats)), "the documents differ (topic.log in the report dir)"))
	aout, err := exec.Command(c.cfg.Bin, "analyze", "--json", "--doc", "alerts", "--quiet", path).Output()
	if err != nil {
		add("warden analyze oracle", false, "analyze alerts: %v", err)
		return checks
	}
	wantIDs, err1 := alertIDs(aout)
	gotIDs, err2 := alertIDs(refAlerts)
	raised := alertsTotal(ref.HTTP)
	rep.Alerts = int(raised)
	// The cluster serves its most recent alerts (at most detect.MaxAlerts):
	// all of them must be analyze's, and the counts must match.
	subset := err1 == nil && err2 == nil && raised == int64(len(wantIDs)) && contains(wantIDs, gotIDs)
	add("/v1/alerts equals warden analyze on the topic", subset, "%s", okOr(subset,
		fmt.Sprintf("%d alerts raised, as analyze raises; the %d served are analyze's (ids, scenarios, sources)", raised, len(gotIDs)),
		fmt.Sprintf("cluster raised %d alerts (serves %d), analyze %d", raised, len(gotIDs), len(wantIDs))))

	// 5. The alerts topic holds each alert exactly once.
	var inTopic []string
	var dups []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		aends, err := clustertest.EndOffsets(ctx, c.Broker(), c.cfg.Topic+".alerts", c.cfg.KafkaOpts...)
		if err == nil {
			rs, _ := clustertest.ReadTopic(ctx, c.Broker(), c.cfg.Topic+".alerts", aends, true, c.cfg.KafkaOpts...)
			inTopic, dups = nil, nil
			count := map[string]int{}
			for _, list := range rs {
				for _, r := range list {
					var a struct {
						ID string `json:"id"`
					}
					if json.Unmarshal(r.Value, &a) == nil {
						count[a.ID]++
					}
				}
			}
			for id, n := range count {
				inTopic = append(inTopic, id)
				if n > 1 {
					dups = append(dups, fmt.Sprintf("%s ×%d", id, n))
				}
			}
			sort.Strings(inTopic)
		}
		if len(inTopic) >= len(wantIDs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	onceOK := len(dups) == 0 && strings.Join(inTopic, ",") == strings.Join(sortedIDs(wantIDs), ",")
	add("alerts topic holds each alert exactly once", onceOK, "%s", okOr(onceOK, fmt.Sprintf("all %d alerts analyze raises, each once (read_committed)", len(inTopic)),
		fmt.Sprintf("%d distinct in the topic, analyze raises %d, duplicated: %v", len(inTopic), len(wantIDs), dups)))
	return checks
}

func stripLag(p partitionsDoc) partitionsDoc {
	out := append(partitionsDoc(nil), p...)
	for i := range out {
		out[i].LogEnd = 0
	}
	return out
}

func alertIDs(doc []byte) ([]string, error) {
	var as []struct {
		ID       string `json:"id"`
		Scenario string `json:"scenario"`
		Source   string `json:"source_ip"`
	}
	if err := json.Unmarshal(doc, &as); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.ID)
	}
	sort.Strings(out)
	return out, nil
}

func sortedIDs(ids []string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	return out
}

func orOK(problems []string, ok string) string {
	if len(problems) == 0 {
		return ok
	}
	if len(problems) > 5 {
		return fmt.Sprintf("%s (and %d more)", strings.Join(problems[:5], "; "), len(problems)-5)
	}
	return strings.Join(problems, "; ")
}

func okOr(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

// contains reports whether every id of sub (sorted) is in all (sorted).
func contains(all, sub []string) bool {
	set := make(map[string]bool, len(all))
	for _, id := range all {
		set[id] = true
	}
	for _, id := range sub {
		if !set[id] {
			return false
		}
	}
	return true
}

// alertsTotal reads warden_alerts_total from a node's /metrics (-1 if
// absent).
func alertsTotal(addr string) int64 {
	b, err := getRaw(addr, "/metrics")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "warden_alerts_total "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return int64(f)
			}
		}
	}
	return -1
}

// detectedOnce is the repartition stage's exactly-once check, when the
// cluster runs it: every line that reached the first stage's detection
// path (a record neither malformed nor late) reached the second stage's
// detection once, on every node (the sum of by_client.applied).
func detectedOnce(agents []*clustertest.Agent, views map[string]partitionsDoc) (Check, bool) {
	var bad []string
	var want int64
	for _, a := range agents {
		var st struct {
			Malformed int64 `json:"malformed"`
		}
		if err := get(a.HTTP, "/v1/stats", &st); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", a.ID, err))
			continue
		}
		var records, late, applied int64
		for _, p := range views[a.ID] {
			if p.ByClient == nil {
				return Check{}, false
			}
			records, late, applied = records+p.Records, late+p.Late, applied+p.ByClient.Applied
		}
		want = records - st.Malformed - late
		if applied != want {
			bad = append(bad, fmt.Sprintf("%s: %d lines reached the second stage's detection, %d records were neither malformed nor late", a.ID, applied, want))
		}
	}
	return Check{Name: "every line detected once", OK: len(bad) == 0,
		Detail: orOK(bad, fmt.Sprintf("%d lines reached the repartition stage's detection once, on every node", want))}, true
}
