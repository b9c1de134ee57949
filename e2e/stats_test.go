package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/node"
)

// badLines are records that must be counted as malformed, kept in the
// sample, copied to the dead-letter topic, and never stop their partition.
var badLines = []string{
	`203.0.113.9 - - [02/Nov/2026:00:00:01 +0000] "GET / HTTP/1.1" 200`,                         // truncated
	`203.0.113.9 - - [31/Nov/2026:99:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "x"`,               // bad timestamp
	"203.0.113.9 - - [02/Nov/2026:00:00:01 +0000] \"GET /\xff\xfe HTTP/1.1\" 200 5 \"-\" \"x\"", // invalid UTF-8
	"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",                                              // binary junk
	`{"half": "a json line`,
}

// TestProcesses_StatsEqualAnalyzeByteForByte is the determinism check: the
// same records through a 3-process cluster (batch sizes that differ per
// node, a node SIGKILLed mid-stream) give a /v1/stats document identical,
// byte for byte, to `warden analyze --json` over the records in the topic.
func TestProcesses_StatsEqualAnalyzeByteForByte(t *testing.T) {
	c := newProcClusterWith(t, 3, 6, map[string][]string{
		"n1": {"--max-batch-records", "37", "--batch-interval", "30ms"},
		"n2": {"--max-batch-records", "500", "--batch-interval", "80ms"},
		"n3": {"--max-batch-records", "5000", "--batch-interval", "150ms"},
	})
	c.waitOwned(6, 30*time.Second)
	p := newProducer(t, c.broker, c.topic, 11)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 12; i++ {
			p.produce(1000)
			if i < len(badLines) {
				p.produceRaw("203.0.113.9", badLines[i])
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	waitFor(t, 20*time.Second, "records committing", func() bool {
		parts, err := c.partitions("n1")
		var n int64
		for _, p := range parts {
			n += p.Records
		}
		return err == nil && n > 2000
	})
	c.killAgent("n2")
	time.Sleep(2 * time.Second)
	c.startAgent("n2", 3)
	<-done
	waitFor(t, 60*time.Second, "every record applied exactly once", func() bool {
		parts, err := c.partitions("n3")
		ok, _ := p.matches(parts)
		return err == nil && ok
	})

	want, total := analyzeTopic(t, c.broker, c.topic)
	recs := readTopic(t, c.broker, c.topic)
	for _, id := range []string{"n1", "n2", "n3"} {
		c.waitApplied(p, 30*time.Second, id)
		got := httpGet(t, "http://"+c.specs[id].http+"/v1/stats?top=0")
		if !bytes.Equal(got, want) {
			os.WriteFile(filepath.Join(os.TempDir(), "warden-stats-"+id+".json"), got, 0o644)
			os.WriteFile(filepath.Join(os.TempDir(), "warden-analyze.json"), want, 0o644)
			t.Fatalf("%s: /v1/stats (%d bytes) differs from warden analyze (%d bytes); both written to %s", id, len(got), len(want), os.TempDir())
		}
	}
	if !bytes.Contains(want, []byte(`"malformed": 5,`)) || !bytes.Contains(want, []byte(`"requests": 12000,`)) {
		t.Errorf("analyze document does not count 12000 requests and 5 malformed lines:\n%.400s", want)
	}
	t.Logf("%d records, 6 partitions, 3 nodes with batch caps 37/500/5000, n2 killed mid-stream: /v1/stats on every node equals warden analyze byte for byte (%d bytes)", total, len(want))

	// The load gauges and the malformed counter are on /metrics.
	metrics := string(httpGet(t, "http://"+c.specs["n3"].http+"/metrics"))
	for _, want := range []string{"warden_malformed_lines_total 5", "warden_requests_per_second ", "warden_bytes_per_second ", "warden_5xx_per_second ", "warden_5xx_ratio "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var st struct {
		Series []struct {
			Requests int64 `json:"requests"`
		} `json:"series"`
	}
	if err := json.Unmarshal(want, &st); err != nil || len(st.Series) < 2 {
		t.Fatalf("series: %v", err)
	}
	lastFull := float64(st.Series[len(st.Series)-2].Requests) / 60
	if !strings.Contains(metrics, fmt.Sprintf("warden_requests_per_second %g\n", lastFull)) {
		t.Errorf("warden_requests_per_second is not the last complete minute's %g req/s", lastFull)
	}

	// The malformed sample names each bad record's partition and offset...
	var mal node.MalformedInfo
	if err := getJSON("http://"+c.specs["n1"].http+"/v1/malformed", &mal); err != nil {
		t.Fatal(err)
	}
	if mal.Malformed != int64(len(badLines)) || len(mal.Sample) != len(badLines) {
		t.Fatalf("/v1/malformed: %d counted, %d in sample; want %d", mal.Malformed, len(mal.Sample), len(badLines))
	}
	for _, b := range mal.Sample {
		var found bool
		for _, r := range recs[b.Partition] {
			if r.Offset == b.Offset {
				for _, l := range badLines {
					found = found || string(r.Value) == l
				}
			}
		}
		if !found || b.Reason == "" {
			t.Errorf("sample entry %+v does not point at its record", b)
		}
	}
	// ...and each one reached the dead-letter topic with its source offset.
	dlq := readTopic(t, c.broker, c.topic+".dlq")
	seen := map[string]bool{}
	for _, rs := range dlq {
		for _, r := range rs {
			for _, h := range r.Headers {
				if h.Key == "warden-source-offset" {
					seen[string(h.Value)+"|"+string(r.Value)] = true
				}
			}
		}
	}
	for _, b := range mal.Sample {
		var found bool
		for k := range seen {
			found = found || strings.HasPrefix(k, itoa(b.Offset)+"|")
		}
		if !found {
			t.Errorf("bad record at partition %d offset %d is not in %s.dlq", b.Partition, b.Offset, c.topic)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	return b
}

// analyzeTopic runs warden analyze --json --top 0 over the records the topic
// holds, partition by partition in offset order, and returns its document
// and the number of records.
func analyzeTopic(t *testing.T, broker, topic string) ([]byte, int) {
	t.Helper()
	recs := readTopic(t, broker, topic)
	var parts []int32
	for part := range recs {
		parts = append(parts, part)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	var file bytes.Buffer
	var total int
	for _, part := range parts {
		for _, r := range recs[part] {
			file.Write(r.Value)
			file.WriteByte('\n')
			total++
		}
	}
	path := filepath.Join(t.TempDir(), "topic.log")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wardenBin(t), "analyze", "--json", "--top", "0", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("warden analyze: %v\n%s", err, stderr.String())
	}
	return want, total
}
