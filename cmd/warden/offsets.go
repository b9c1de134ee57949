package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/node"
)

func newOffsetsCmd() *cobra.Command {
	c := groupCmd("offsets", "Replay or skip records: move the cluster's committed offsets")
	var o struct {
		to, addr, token                         string
		partitions                              *listFlag
		execute, allowDoubleCount, clearDecided bool
	}
	o.partitions = newList()
	reset := &cobra.Command{
		Use:   "reset --to earliest|latest|offset=N|time=RFC3339|shift=±N [--partition P,...] [--execute]",
		Short: "Move committed offsets through Raft (a dry run unless --execute)",
		Long: `Move the cluster's committed offsets, as kafka-consumer-groups --reset-offsets
does for a consumer group: prints, per partition, the current and the new
offset and how many records that replays or skips; --execute applies it
through Raft, fencing the partitions' workers with a new epoch.

What it does to the results:
  - the whole topic moved back is a replay: the load figures, detector state
    and alerts are cleared in the same Raft entry and rebuilt from the new
    offsets, so they again equal 'warden analyze' over the records from there
    on; decisions already made stay until they expire (--clear-decisions
    deletes them, and bouncers receive the deletions);
  - partitions moved forward skip records; the skipped ranges are recorded;
  - some partitions moved back is refused unless --allow-double-count: the
    load figures are merged across partitions, so their records would count
    twice.
Every reset is recorded per partition (who, when, from, to): warden status
and /v1/partitions show it.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.to == "" {
				return usagef(c, "--to is required (earliest, latest, offset=N, time=RFC3339 or shift=±N)")
			}
			req := node.OffsetsResetRequest{To: o.to, Execute: o.execute, AllowDoubleCount: o.allowDoubleCount, ClearDecisions: o.clearDecided}
			for _, p := range o.partitions.vals {
				v, err := strconv.ParseInt(p, 10, 32)
				if err != nil || v < 0 {
					return usagef(c, "--partition %q: want partition numbers such as 0,3,7", p)
				}
				req.Partitions = append(req.Partitions, int32(v))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var ans node.OffsetsResetAnswer
			if err := postJSON(ctx, apiBase(o.addr)+"/v1/offsets/reset", o.token, req, &ans); err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "PARTITION\tCURRENT\tNEW\tREPLAYED\tSKIPPED")
			var replayed, skipped int64
			for _, r := range ans.Rows {
				fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\n", r.Partition, r.Current, r.New, r.Replayed, r.Skipped)
				replayed += r.Replayed
				skipped += r.Skipped
			}
			fmt.Fprintf(w, "total\t\t\t%d\t%d\n", replayed, skipped)
			w.Flush()
			fmt.Fprintln(c.OutOrStdout(), ans.Effect)
			switch {
			case ans.Applied:
				fmt.Fprintln(c.OutOrStdout(), "applied")
			case o.execute:
				fmt.Fprintln(c.OutOrStdout(), "nothing applied")
			default:
				fmt.Fprintln(c.OutOrStdout(), "dry run: run again with --execute to apply")
			}
			return nil
		},
	}
	fs := reset.Flags()
	fs.StringVar(&o.to, "to", "", "earliest, latest, offset=N, time=RFC3339 (the first record at or after it) or shift=±N (from the committed offset)")
	fs.Var(o.partitions, "partition", "only these partitions, comma-separated (default: all)")
	fs.StringVar(&o.addr, "addr", "http://127.0.0.1:8080", "HTTP address of any node")
	fs.StringVar(&o.token, "admin-token", "", "the nodes' admin token ($WARDEN_ADMIN_TOKEN)")
	fs.BoolVar(&o.execute, "execute", false, "apply the reset (without it: show what it would do)")
	fs.BoolVar(&o.allowDoubleCount, "allow-double-count", false, "allow moving some partitions back, counting their records again")
	fs.BoolVar(&o.clearDecided, "clear-decisions", false, "with a replay, delete every decision too")
	config.MarkSecret(fs, "admin-token")
	c.AddCommand(reset)
	return c
}
