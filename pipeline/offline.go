package pipeline

import (
	"fmt"

	"github.com/wardenhq/warden/fsm"
)

// OfflineNode is the owner `warden analyze` commits its batches as.
const OfflineNode = "analyze"

// Offline is the replicated state of one process over files: a State
// configured as a cluster would be, to which `warden analyze` commits its
// batches through the FSM's own encoding and apply, so that its figures,
// alerts and decisions are the cluster's by construction, not by a second
// implementation kept in step. The files are laid out as a round-robin
// producer would lay them out over a topic: each parsing goroutine's chunks
// are one partition, whose figures it folds into large batches of its own
// (figures are sums: where a line went does not change them). Detection
// takes the files as one source, in order (one clock), and shards it by
// client network as the cluster's second stages do: shard s's detector
// deltas are partition s's second-stage batches.
type Offline struct {
	State *fsm.State
}

// NewOffline returns the state for configuration c (see Defaults for what
// differs from an agent's, and why).
func NewOffline(c fsm.Config, partitions int32) (*Offline, error) {
	s := fsm.NewState(OfflineNode)
	if res := fsm.Apply(s, fsm.Command{Kind: fsm.KindConfigure, Config: &c}); res.Err != "" {
		return nil, fmt.Errorf("%s", res.Err)
	}
	a := &fsm.Assign{Partitions: max(1, partitions)}
	for p := range a.Partitions {
		a.Moves = append(a.Moves, fsm.Move{Partition: p, Owner: OfflineNode})
	}
	res := fsm.Apply(s, fsm.Command{Kind: fsm.KindAssign, Assign: a})
	if res.Err != "" {
		return nil, fmt.Errorf("%s", res.Err)
	}
	// Nothing publishes alerts here, and a report wants all of them: the
	// book keeps every alert rather than the latest MaxAlerts.
	s.Book.Keep = -1
	return &Offline{State: s}, nil
}

// Commit applies batch b (records [b.From, b.Until) of its partition) as a
// node's committer would: encoded, decoded from the bytes, applied.
func (o *Offline) Commit(b *fsm.Batch) error {
	cmd, err := o.Prepare(b)
	if err != nil {
		return err
	}
	return o.Apply(cmd)
}

// Prepare encodes batch b as the single batch of a commit entry and
// decodes it back, checked, as every replica does: the part of a commit
// that needs no state, so `warden analyze` runs it on its parsing
// goroutines. The owner and epoch are the offline partitions', which never
// change.
func (o *Offline) Prepare(b *fsm.Batch) (fsm.Command, error) {
	b.Node, b.Epoch = OfflineNode, 1
	return fsm.Decode(fsm.CommitEntry([][]byte{fsm.EncodeLocalBatch(b)}))
}

// Apply applies a prepared commit, in the files' order.
func (o *Offline) Apply(cmd fsm.Command) error {
	res := fsm.Apply(o.State, cmd)
	if len(res.Rejected) != 1 || res.Rejected[0] != "" {
		b := cmd.Commit[0]
		return fmt.Errorf("batch [%d, %d) rejected: %v %s", b.From, b.Until, res.Rejected, res.Err)
	}
	return nil
}
