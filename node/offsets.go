package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/wardenhq/warden/fsm"
)

// OffsetsResetRequest is the body of POST /v1/offsets/reset.
type OffsetsResetRequest struct {
	// To is earliest, latest, offset=N, time=RFC3339 or shift=±N.
	To string `json:"to"`
	// Partitions limits the reset (default: every partition).
	Partitions []int32 `json:"partitions,omitempty"`
	// Execute applies it; without, the answer says what it would do.
	Execute          bool `json:"execute,omitempty"`
	AllowDoubleCount bool `json:"allow_double_count,omitempty"`
	ClearDecisions   bool `json:"clear_decisions,omitempty"`
}

// OffsetsResetRow is one partition of the answer.
type OffsetsResetRow struct {
	Partition int32 `json:"partition"`
	Current   int64 `json:"current"`
	New       int64 `json:"new"`
	// Replayed and Skipped count the records read again and never read.
	Replayed int64 `json:"replayed"`
	Skipped  int64 `json:"skipped"`
}

// OffsetsResetAnswer is the answer of POST /v1/offsets/reset.
type OffsetsResetAnswer struct {
	Rows    []OffsetsResetRow `json:"partitions"`
	Replay  bool              `json:"replay"`
	Applied bool              `json:"applied"`
	// Effect says, in words, what the reset does to the results.
	Effect string `json:"effect"`
}

// handleOffsetsReset serves POST /v1/offsets/reset (admin): a dry run by
// default, through Raft with execute.
func (n *Node) handleOffsetsReset(w http.ResponseWriter, r *http.Request) {
	var req OffsetsResetRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	ans, cmd, err := n.planReset(ctx, req)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if !req.Execute || len(cmd.Resets) == 0 {
		writeJSON(w, http.StatusOK, ans)
		return
	}
	cmd.By = "operator via " + n.cfg.ID + " (POST /v1/offsets/reset from " + r.RemoteAddr + ")"
	cmd.At = time.Now().UnixNano()
	res, err := n.proposeOperator(ctx, fsm.Command{Kind: fsm.KindResetOffsets, ResetOffsets: &cmd})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	if res.Err != "" {
		writeJSON(w, http.StatusConflict, map[string]string{"error": res.Err})
		return
	}
	ans.Applied = true
	writeJSON(w, http.StatusOK, ans)
}

// planReset computes the new offsets and what they mean.
func (n *Node) planReset(ctx context.Context, req OffsetsResetRequest) (OffsetsResetAnswer, fsm.ResetOffsets, error) {
	var ans OffsetsResetAnswer
	cmd := fsm.ResetOffsets{AllowDoubleCount: req.AllowDoubleCount, ClearDecisions: req.ClearDecisions}
	state := n.State()
	if len(state.Partitions) == 0 {
		return ans, cmd, fmt.Errorf("the cluster reads no partition yet")
	}
	want := map[int32]bool{}
	for _, p := range req.Partitions {
		if p < 0 || int(p) >= len(state.Partitions) {
			return ans, cmd, fmt.Errorf("partition %d: the topic has partitions 0 to %d", p, len(state.Partitions)-1)
		}
		want[p] = true
	}
	if len(want) == 0 {
		for _, p := range state.Partitions {
			want[p.Partition] = true
		}
	}
	starts, err := n.listed(ctx, n.admin.ListStartOffsets)
	if err != nil {
		return ans, cmd, err
	}
	ends, err := n.listed(ctx, n.admin.ListEndOffsets)
	if err != nil {
		return ans, cmd, err
	}
	target, err := n.resetTargets(ctx, req.To, state, starts, ends)
	if err != nil {
		return ans, cmd, err
	}
	back := false
	for _, p := range state.Partitions {
		if !want[p.Partition] {
			continue
		}
		to := min(max(target[p.Partition], starts[p.Partition]), ends[p.Partition])
		row := OffsetsResetRow{Partition: p.Partition, Current: p.Committed, New: to}
		if to < p.Committed {
			row.Replayed, back = p.Committed-to, true
		} else {
			row.Skipped = to - p.Committed
		}
		ans.Rows = append(ans.Rows, row)
		if to != p.Committed {
			cmd.Resets = append(cmd.Resets, fsm.ResetBatch{Partition: p.Partition, Offset: to})
		}
	}
	sort.Slice(ans.Rows, func(i, j int) bool { return ans.Rows[i].Partition < ans.Rows[j].Partition })
	whole := len(want) == len(state.Partitions)
	switch {
	case len(cmd.Resets) == 0:
		ans.Effect = "nothing to do: every partition is already there"
	case back && whole:
		// A replay names every partition, the unmoved ones too.
		cmd.Resets = cmd.Resets[:0]
		for _, row := range ans.Rows {
			cmd.Resets = append(cmd.Resets, fsm.ResetBatch{Partition: row.Partition, Offset: row.New})
		}
		cmd.Replay, ans.Replay = true, true
		ans.Effect = "replay of the whole topic: the load figures, detector state and alerts are cleared in the same Raft entry and rebuilt from the new offsets, so they again equal warden analyze over the records from there on; "
		if req.ClearDecisions {
			ans.Effect += "every decision is deleted (bouncers receive the deletions)"
		} else {
			ans.Effect += "decisions already made stay until they expire (--clear-decisions deletes them)"
		}
	case back && !req.AllowDoubleCount:
		return ans, cmd, fmt.Errorf("moving some partitions back counts their records twice in the load figures, which are merged across partitions: reset the whole topic (a replay), or give --allow-double-count")
	case back:
		ans.Effect = "partitions moved back with double counting allowed: their records are counted again on top of the figures"
	default:
		ans.Effect = "skip: the records between the current and the new offsets are never read; the ranges are recorded"
	}
	return ans, cmd, nil
}

// listed runs an offsets listing of the input topic.
func (n *Node) listed(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
	lo, err := list(ctx, n.cfg.Topic)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// resetTargets turns --to into an offset per partition.
func (n *Node) resetTargets(ctx context.Context, to string, state *fsm.State, starts, ends map[int32]int64) (map[int32]int64, error) {
	out := map[int32]int64{}
	kind, arg, _ := strings.Cut(to, "=")
	switch kind {
	case "earliest":
		return starts, nil
	case "latest":
		return ends, nil
	case "offset":
		v, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--to offset=%q: want a whole number", arg)
		}
		for _, p := range state.Partitions {
			out[p.Partition] = v
		}
	case "shift":
		v, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--to shift=%q: want a whole number such as -1000 or +500", arg)
		}
		for _, p := range state.Partitions {
			out[p.Partition] = p.Committed + v
		}
	case "time":
		t, err := time.Parse(time.RFC3339, arg)
		if err != nil {
			return nil, fmt.Errorf("--to time=%q: want an RFC 3339 time such as 2026-11-27T10:00:00Z", arg)
		}
		lo, err := n.admin.ListOffsetsAfterMilli(ctx, t.UnixMilli(), n.cfg.Topic)
		if err == nil {
			err = lo.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	default:
		return nil, fmt.Errorf("--to %q: want earliest, latest, offset=N, time=RFC3339 or shift=±N", to)
	}
	return out, nil
}
