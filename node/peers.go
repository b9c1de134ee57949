package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A node remembers the gossip addresses of the peers it last knew, in
// peers.json in its data dir, as Consul's agents keep a serf snapshot. A
// node restarted with its data dir joins them as well as --join, so it
// finds its cluster whatever --join says: the README's own command names
// the node's own address for the first node, and a node that was reaped
// while down needs the others to be added back.

const peersFile = "peers.json"

type peersDoc struct {
	Gossip  []string `json:"gossip"`
	Updated string   `json:"updated"`
}

// rememberedPeers reads the peers a previous run of this node knew.
func (n *Node) rememberedPeers() []string {
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, peersFile))
	if err != nil {
		return nil
	}
	var d peersDoc
	if json.Unmarshal(b, &d) != nil {
		return nil
	}
	return d.Gossip
}

// joinTargets is --join and the remembered peers, without this node.
func (n *Node) joinTargets() []string {
	var out []string
	for _, a := range append(append([]string(nil), n.cfg.Join...), n.rememberedPeers()...) {
		if a != n.gossipAddr && a != n.cfg.GossipAddr && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// rememberPeers writes the gossip addresses of the members alive now, when
// they change, every few seconds.
func (n *Node) rememberPeers() {
	var last []string
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		var addrs []string
		for _, m := range n.gossipMembers() {
			if m.id != n.cfg.ID && m.gossip != "" {
				addrs = append(addrs, m.gossip)
			}
		}
		slices.Sort(addrs)
		if len(addrs) == 0 || slices.Equal(addrs, last) {
			continue
		}
		b, _ := json.Marshal(peersDoc{Gossip: addrs, Updated: time.Now().UTC().Format(time.RFC3339)})
		tmp := filepath.Join(n.cfg.DataDir, peersFile+".tmp")
		if os.WriteFile(tmp, b, 0o600) == nil && os.Rename(tmp, filepath.Join(n.cfg.DataDir, peersFile)) == nil {
			last = addrs
		}
	}
}
