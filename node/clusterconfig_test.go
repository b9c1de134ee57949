package node

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/fsm"
)

// A leader elected among nodes started without --allow keeps the cluster's
// allow-list: only an explicit, newer configuration changes it.
func TestClusterConfig_ElectionKeepsTheAllowList(t *testing.T) {
	c := newCluster(t, 4)
	n1 := c.startEdit("n1", 0, func(cfg *Config) { cfg.Allow = []string{"192.0.2.0/24"}; cfg.AdminToken = "boss" })
	waitFor(t, 15*time.Second, "n1 bootstraps the configuration", func() bool {
		cc := n1.fsm.Config()
		return cc != nil && len(cc.Allow) == 1
	})
	bare := func(cfg *Config) { cfg.AdminToken = "boss" }
	n2 := c.startEdit("n2", 0, bare, n1.GossipAddr())
	n3 := c.startEdit("n3", 0, bare, n1.GossipAddr())
	waitFor(t, 20*time.Second, "three voters", func() bool {
		f := n1.raft.GetConfiguration()
		return f.Error() == nil && len(f.Configuration().Servers) == 3
	})
	c.kill("n1")
	waitFor(t, 20*time.Second, "a new leader", func() bool {
		l2, l3 := n2.Leader(), n3.Leader()
		return l2 != "" && l2 != "n1" && l2 == l3
	})
	// Several reconcile rounds of the new leader.
	time.Sleep(3 * time.Second)
	for _, n := range []*Node{n2, n3} {
		cc := n.fsm.Config()
		if cc == nil || len(cc.Allow) != 1 || cc.Allow[0] != "192.0.2.0/24" || cc.Version != 1 {
			t.Fatalf("%s: cluster configuration after the election: %+v", n.ID(), cc)
		}
	}

	// An operator changes it explicitly, through any node.
	post := func(n *Node, body string) (int, fsm.Config) {
		req, _ := http.NewRequest("POST", "http://"+n.HTTPAddr()+"/v1/config", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer boss")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var cc fsm.Config
		_ = json.NewDecoder(resp.Body).Decode(&cc)
		return resp.StatusCode, cc
	}
	code, cc := post(n3, `{"log_format":"combined","retention":"2h","allow":["198.51.100.0/24","192.0.2.0/24"]}`)
	if code != http.StatusOK || cc.Version != 2 || len(cc.Allow) != 2 || cc.LogFormat != "combined" {
		t.Fatalf("POST /v1/config: %d %+v", code, cc)
	}
	waitFor(t, 10*time.Second, "n2 applies version 2", func() bool {
		cc := n2.fsm.Config()
		return cc != nil && cc.Version == 2 && cc.Retention == "2h0m0s"
	})
	// A stale version is refused; a bad value too, naming it.
	if code, _ := post(n2, `{"version":2,"log_format":"auto","retention":"24h"}`); code != http.StatusConflict {
		t.Errorf("stale version: %d, want 409", code)
	}
	if code, _ := post(n2, `{"log_format":"auto","retention":"24h","allow":["10.0.0.0/99"]}`); code != http.StatusBadRequest {
		t.Errorf("bad allow: %d, want 400", code)
	}
	if code, _ := post(n2, `{"log_format":"auto","retention":"24h","frob":1}`); code != http.StatusBadRequest {
		t.Errorf("unknown field: %d, want 400", code)
	}

	// A node restarted with a higher --config-version brings its flags in.
	n4 := c.startEdit("n4", 0, func(cfg *Config) { cfg.ConfigVersion, cfg.Retention = 7, time.Hour }, n2.GossipAddr())
	waitFor(t, 20*time.Second, "version 7 from n4's flags", func() bool {
		cc := n2.fsm.Config()
		return cc != nil && cc.Version == 7 && cc.Retention == "1h0m0s" && strings.Contains(cc.SetBy, "n4")
	})
	_ = n4
}
