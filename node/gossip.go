package node

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/wardenhq/warden/fsm"
)

// Gossip (memberlist) says who is alive and where to reach them: each node
// publishes its Raft and HTTP addresses and whether it holds Raft state, and
// every change wakes the reconciler.

// nodeMeta is what each node tells the others through gossip.
type nodeMeta struct {
	Raft string `json:"r"`
	HTTP string `json:"h"`
	// InCluster is true once the node holds Raft state: a node that sees a
	// member in a cluster never bootstraps a new one.
	InCluster bool `json:"c"`
	// Leaving is set by a clean stop just before it says goodbye: its
	// peers then tell a leave from a failure (eventDelegate.NotifyLeave).
	Leaving bool `json:"l,omitempty"`
}

type metaDelegate struct {
	mu   sync.Mutex
	meta nodeMeta
}

func (d *metaDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, _ := json.Marshal(d.meta)
	if len(b) > limit {
		return nil
	}
	return b
}
func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

// eventDelegate wakes the reconciler on every gossip change and keeps its
// own copy of the live members. memberlist calls it under its state lock, so
// copying here is safe, whereas the nodes Members() returns are shared with
// memberlist and change under the reader.
type eventDelegate struct {
	ch   chan struct{}
	mu   sync.Mutex
	live map[string]gossipMember
	// left remembers nodes that said goodbye (as opposed to failing).
	left map[string]bool
}

func (e *eventDelegate) signal() {
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

func (e *eventDelegate) record(m *memberlist.Node) {
	var meta nodeMeta
	if err := json.Unmarshal(m.Meta, &meta); err != nil || meta.Raft == "" {
		return
	}
	e.live[m.Name] = gossipMember{id: m.Name, gossip: m.Address(), meta: meta}
}

func (e *eventDelegate) NotifyJoin(m *memberlist.Node) {
	e.mu.Lock()
	delete(e.left, m.Name)
	e.record(m)
	e.mu.Unlock()
	e.signal()
}

// NotifyLeave tells a leave from a failure by the node's last metadata:
// memberlist's own verdict does not reach a delegate (it records "left" in
// its private node state, and the Node it passes always says alive), so a
// clean stop marks itself Leaving before its goodbye.
func (e *eventDelegate) NotifyLeave(m *memberlist.Node) {
	var meta nodeMeta
	leaving := json.Unmarshal(m.Meta, &meta) == nil && meta.Leaving
	e.mu.Lock()
	delete(e.live, m.Name)
	if leaving {
		e.left[m.Name] = true
	}
	e.mu.Unlock()
	e.signal()
}

func (e *eventDelegate) NotifyUpdate(m *memberlist.Node) {
	e.mu.Lock()
	e.record(m)
	e.mu.Unlock()
	e.signal()
}

func (e *eventDelegate) leftNodes() map[string]bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]bool, len(e.left))
	for k := range e.left {
		out[k] = true
	}
	return out
}

// gossipMember is a live gossip member with its metadata.
type gossipMember struct {
	id, gossip string
	meta       nodeMeta
}

// gossipMembers returns the live members, sorted by id.
func (n *Node) gossipMembers() []gossipMember {
	n.gev.mu.Lock()
	out := make([]gossipMember, 0, len(n.gev.live))
	for _, m := range n.gev.live {
		out = append(out, m)
	}
	n.gev.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// reconnect heals gossip after a network partition. Once both sides of a
// cut have declared each other dead, memberlist on its own never talks to
// the other side again; so every few seconds a node tries to join the
// cluster members (as the FSM records them) that its gossip does not see
// alive. A member that left or was removed is not in the FSM and is left
// alone.
func (n *Node) reconnect() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
		live := map[string]bool{}
		for _, m := range n.gossipMembers() {
			live[m.id] = true
		}
		var addrs []string
		for _, m := range n.State().MemberList() {
			if m.ID != n.cfg.ID && !live[m.ID] && m.GossipAddr != "" && m.Status != fsm.StatusLeft {
				addrs = append(addrs, m.GossipAddr)
			}
		}
		if len(addrs) > 0 {
			if k, err := n.ml.Join(addrs); err == nil && k > 0 {
				n.log.Info("reconnected to members gossip did not see", "subsystem", "gossip", "joined", k)
			}
		}
	}
}

// watchInCluster announces through gossip once this node holds Raft state.
func (n *Node) watchInCluster() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.meta.mu.Lock()
		already := n.meta.meta.InCluster
		n.meta.mu.Unlock()
		if already || !n.inCluster() {
			continue
		}
		n.meta.mu.Lock()
		n.meta.meta.InCluster = true
		n.meta.mu.Unlock()
		_ = n.ml.UpdateNode(time.Second)
		return
	}
}
