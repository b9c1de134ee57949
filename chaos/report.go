package chaos

import (
	"fmt"
	"io"
	"strings"
)

// Text writes the report for a terminal.
func (r *Report) Text(w io.Writer) {
	fmt.Fprintf(w, "Warden chaos run: seed %d, %d nodes, %d partitions, %.0fs of faults at %d records/s\n\n", r.Seed, r.Nodes, r.Partitions, r.DurationS, r.Rate)
	fmt.Fprintf(w, "Timeline (%d faults):\n", len(r.Faults))
	for _, f := range r.Faults {
		rec := "-"
		if len(f.Affected) > 0 {
			if f.Recovered {
				rec = fmt.Sprintf("%.2fs", f.RecoveryS)
			} else {
				rec = "NOT RECOVERED"
			}
		}
		fmt.Fprintf(w, "  %6.1fs  %-14s %-14s %-12s hold %.1fs  partitions %-3d recovery %s", f.AtS, f.Kind, f.Variant, strings.Join(f.Targets, ","), f.HoldS, len(f.Affected), rec)
		if f.Note != "" {
			fmt.Fprintf(w, "  (%s)", f.Note)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nRecovery (node faults: from the fault until the victims' partitions commit again under a new epoch): median %.2fs, worst %.2fs\n", r.RecoveryMedian, r.RecoveryWorst)
	fmt.Fprintf(w, "Throughput during faults: %.0f records/s committed; %d produced, %d in the topic; %d alerts\n", r.ThroughputRPS, r.Produced, r.InTopic, r.Alerts)
	fmt.Fprintf(w, "Semantics %s: %d records lost, %d duplicated\n", r.Semantics, r.LostRecords, r.DuplicatedRecords)
	fmt.Fprintf(w, "Settled %.1fs after healing\n\nChecks:\n", r.SettleS)
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s  %s: %s\n", mark, c.Name, c.Detail)
	}
	fmt.Fprintf(w, "\nVerdict: %s", strings.ToUpper(r.Verdict))
	if r.Dir != "" {
		fmt.Fprintf(w, " (logs and data in %s)", r.Dir)
	}
	fmt.Fprintln(w)
}
