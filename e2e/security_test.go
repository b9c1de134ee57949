package e2e

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
)

// The bar of the security work, with real processes: on a cluster started
// with --cluster-key (from a file, made by warden keygen), a forwarded
// decision_add written to the leader's Raft port by a process without the
// key is refused and leaves no decision, while the cluster goes on
// committing.
func TestProcesses_ForgedForwardRefusedWithClusterKey(t *testing.T) {
	dir := t.TempDir()
	key, _, code := runCLI(t, nil, "keygen")
	if code != 0 || len(strings.TrimSpace(key)) != 44 {
		t.Fatalf("warden keygen: exit %d, %q", code, key)
	}
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--cluster-key-file", keyFile}
	c := newProcClusterWith(t, 3, 4, map[string][]string{"n1": flags, "n2": flags, "n3": flags})
	c.waitOwned(4, 30*time.Second)

	data, err := fsm.Encode(fsm.Command{Kind: fsm.KindDecisionAdd, Decision: &fsm.ManualDecision{
		Value: "198.51.100.7", Type: "ban", Reason: "forged", Duration: "8760h", Now: time.Now().UnixNano()}})
	if err != nil {
		t.Fatal(err)
	}
	frame := append(binary.BigEndian.AppendUint32([]byte{'F'}, uint32(len(data))), data...)
	for id, s := range c.specs {
		conn, err := net.Dial("tcp", s.raft)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		_, _ = conn.Write(frame)
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		var b [1]byte
		if n, _ := conn.Read(b[:]); n > 0 && b[0] == 0 {
			t.Errorf("%s answered the forged frame with success", id)
		}
		conn.Close()
	}
	p := newProducer(t, c.broker, c.topic, 5)
	p.produce(300)
	c.waitApplied(p, 30*time.Second, "n1", "n2", "n3")
	for id, s := range c.specs {
		var ds []detect.DecisionView
		if err := getJSON("http://"+s.http+"/v1/decisions?all=1", &ds); err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Value == "198.51.100.7" {
				t.Errorf("%s holds the forged decision %+v", id, d)
			}
		}
	}
	// The nodes said so in their logs.
	seen := false
	for id := range c.specs {
		b, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
		seen = seen || strings.Contains(string(b), "handshake")
	}
	if !seen {
		t.Errorf("no node logged the refused handshake")
	}
}
