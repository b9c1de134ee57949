//go:build ignore

// Command table prints bench/results.json, written by `make bench`, as one
// table: each figure next to its peer or reference and its target.
//
//	go run bench/table.go [bench/results.json]
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

type results struct {
	Machine struct {
		CPUs      int    `json:"cpus"`
		GoVersion string `json:"go_version"`
	} `json:"machine"`
	Benchmarks map[string]map[string]any `json:"benchmarks"`
}

func main() {
	path := "bench/results.json"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		fmt.Fprintf(os.Stderr, "table: %s: %v\n", path, err)
		os.Exit(1)
	}
	fmt.Printf("\nWarden benchmarks (%d CPUs, %s), from %s\n\n", r.Machine.CPUs, r.Machine.GoVersion, path)
	tw := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tbenchmark\twarden\tpeer or reference\tratio\ttarget\tmet")
	row := func(n, name, w, peer, ratio, target string, met any) {
		m := "-"
		if ok, isBool := met.(bool); isBool {
			m = map[bool]string{true: "yes", false: "no"}[ok]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, name, w, peer, ratio, target, m)
	}
	num := func(m map[string]any, k string) float64 { v, _ := m[k].(float64); return v }
	bm := r.Benchmarks
	if m := bm["analyze_vs_goaccess"]; m != nil {
		row("1", "offline analysis, lines/s", f0(num(m, "warden_lines_per_s")), "GoAccess "+f0(num(m, "goaccess_lines_per_s")),
			fmt.Sprintf("%.1fx", num(m, "ratio")), ">= 25x", num(m, "ratio") >= 25)
	}
	if m := bm["analyze_vs_goaccess"]; m != nil && num(m, "full_lines_per_s") > 0 {
		row("1", "  everything on (terminal report, all detection)", f0(num(m, "full_lines_per_s")), "GoAccess "+f0(num(m, "goaccess_lines_per_s")),
			fmt.Sprintf("%.1fx", num(m, "full_ratio")), ">= 10x", num(m, "full_ratio") >= 10)
	}
	if m := bm["detect_vs_fail2ban"]; m != nil {
		row("2", "detection, lines/s", f0(num(m, "warden_lines_per_s")),
			fmt.Sprintf("fail2ban-regex (%.0f filters) %s", num(m, "fail2ban_filters"), f0(num(m, "fail2ban_lines_per_s"))),
			fmt.Sprintf("%.1fx", num(m, "ratio")), "faster", num(m, "ratio") > 1)
	}
	if m := bm["cluster_throughput"]; m != nil {
		row("3", fmt.Sprintf("cluster throughput, %s lines, lines/s", f0(num(m, "lines"))), f0(num(m, "warden_lines_per_s")),
			"bare franz-go consumer "+f0(num(m, "bare_lines_per_s")), fmt.Sprintf("%.2f", num(m, "ratio")), ">= 1,000,000 and >= 0.5",
			num(m, "warden_lines_per_s") >= 1e6 && num(m, "ratio") >= 0.5)
	}
	if m := bm["cluster_throughput_keyed"]; m != nil {
		row("3", "  input keyed by client (no repartition stage)", f0(num(m, "warden_lines_per_s")),
			"bare franz-go consumer "+f0(num(m, "bare_lines_per_s")), fmt.Sprintf("%.2f", num(m, "ratio")), "", nil)
	}
	if m := bm["repartition_cost"]; m != nil {
		row("3", "  repartition stage: rate with / without", fmt.Sprintf("%.2f", num(m, "ratio")),
			fmt.Sprintf("%.2f vs %.2f agent CPU µs/line", num(m, "agent_cpu_us_per_line_with"), num(m, "agent_cpu_us_per_line_without")), "", "", nil)
	}
	if m := bm["sample_drain"]; m != nil {
		row("3", fmt.Sprintf("real sample, %s lines, steady drain (10-90%%), lines/s", f0(num(m, "lines"))), f0(num(m, "warden_lines_per_s")),
			"kcat "+f0(num(m, "kcat_lines_per_s")), fmt.Sprintf("%.2f", num(m, "ratio")), ">= 1,000,000 and >= 0.5",
			num(m, "warden_lines_per_s") >= 1e6 && num(m, "ratio") >= 0.5)
	}
	if m := bm["sample_drain_keyed"]; m != nil {
		row("3", "  input keyed by client (no repartition stage)", f0(num(m, "warden_lines_per_s")),
			"kcat "+f0(num(m, "kcat_lines_per_s")), fmt.Sprintf("%.2f", num(m, "ratio")), "", nil)
	}
	if m := bm["latency"]; m != nil {
		row("4", fmt.Sprintf("latency at %s lines/s, p50/p99/max", f0(num(m, "achieved_lines_per_s"))),
			fmt.Sprintf("%.0f / %.0f / %.0f ms", num(m, "p50_ms"), num(m, "p99_ms"), num(m, "max_ms")),
			fmt.Sprintf("half of the cluster's max (%s offered)", f0(num(m, "offered_lines_per_s"))), "", "p99 < 250 ms", num(m, "p99_ms") < 250)
	}
	if m := bm["latency_20k"]; m != nil {
		row("4", fmt.Sprintf("  and at %s lines/s", f0(num(m, "achieved_lines_per_s"))),
			fmt.Sprintf("%.0f / %.0f / %.0f ms", num(m, "p50_ms"), num(m, "p99_ms"), num(m, "max_ms")),
			"a fixed live rate", "", "p99 < 100 ms", num(m, "p99_ms") < 100)
	}
	if m := bm["latency_quarter_load"]; m != nil {
		row("4", fmt.Sprintf("  and at %s lines/s", f0(num(m, "achieved_lines_per_s"))),
			fmt.Sprintf("%.0f / %.0f / %.0f ms", num(m, "p50_ms"), num(m, "p99_ms"), num(m, "max_ms")),
			"a quarter of the cluster's max", "", "", nil)
	}
	if m := bm["failover"]; m != nil {
		for _, t := range []string{"follower", "leader"} {
			row("5", fmt.Sprintf("failover, %s SIGKILL x%.0f, median/worst", t, num(m, "kills")),
				fmt.Sprintf("%.2f / %.2f s", num(m, t+"_median_s"), num(m, t+"_worst_s")), "Kafka consumer group: 45 s session timeout", "",
				"< 0.5 s / < 1 s", num(m, t+"_median_s") < 0.5 && num(m, t+"_worst_s") < 1)
		}
	}
	if m := bm["footprint"]; m != nil {
		rss, _ := m["peak_rss_mib"].(map[string]any)
		row("6", fmt.Sprintf("footprint, %s distinct IPs: peak RSS per agent (largest)", f0(num(m, "distinct_ips"))), fmt.Sprintf("%.0f MiB", num(rss, "max")), "", "",
			"< 300 MiB", num(rss, "max") < 300)
		row("6", "  FSM snapshot size / write time", fmt.Sprintf("%.1f MiB / %.2f s", num(m, "snapshot_bytes")/(1<<20), num(m, "snapshot_seconds")), "", "", "", nil)
		row("6", "  joining node restore time", fmt.Sprintf("%.2f s (%v)", num(m, "restore_seconds"), m["restore_via"]), "", "", "", nil)
	}
	if m := bm["raft_economy"]; m != nil {
		row("7", fmt.Sprintf("Raft at %s lines/s: entries/s, bytes/entry (bytes/line)", f0(num(m, "at_lines_per_s"))),
			fmt.Sprintf("%.1f /s, %s B (%.1f B/line)", num(m, "entries_per_s"), f0(num(m, "bytes_per_entry")), num(m, "bytes_per_line")),
			fmt.Sprintf("keyed %.1f B/line", num(m, "keyed_bytes_per_line")), "", "<= 4 B/line", num(m, "bytes_per_line") <= 4)
	}
	if m := bm["scale_simulation"]; m != nil {
		iv := num(m, "batch_interval_s")
		for _, e := range []struct{ key, what string }{{"join", "a node joins"}, {"death", "a node is killed"}} {
			ev, _ := m[e.key].(map[string]any)
			row("8", fmt.Sprintf("scale, %.0f nodes x %.0f partitions, %s: settle / moved (min) / longest gap", num(m, "nodes"), num(m, "partitions"), e.what),
				fmt.Sprintf("%.2f s / %.0f (%.0f) / %.1f intervals", num(ev, "settle_s"), num(ev, "moved"), num(ev, "min_moves"), num(ev, "max_gap_intervals")),
				fmt.Sprintf("%.0f records/s per partition, %.0f ms batches", num(m, "records_per_s_per_partition"), iv*1000), "",
				"< 5 s / = min / <= 2", ev["settled"] == true && num(ev, "settle_s") < 5 && num(ev, "moved") == num(ev, "min_moves") && num(ev, "max_gap_intervals") <= 2)
		}
	}
	if m := bm["scale_out"]; m != nil {
		for _, e := range []struct{ key, what, owner string }{
			{"keyed", "input keyed by client", "Fold, detect, encode"},
			{"forwarded", "repartition stage", "stage 1 %s + stage 2 %s ns"},
		} {
			c, _ := m[e.key].(map[string]any)
			if c == nil {
				continue
			}
			owner := e.owner
			if strings.Contains(owner, "%s") {
				owner = fmt.Sprintf(owner, f0(num(c, "stage1_ns_per_line")), f0(num(c, "stage2_ns_per_line")))
			}
			row("9", fmt.Sprintf("scale-out, %s, %s-record batches: apply (every replica) / owner, ns/line", e.what, f0(num(m, "batch_records"))),
				fmt.Sprintf("%s / %s", f0(num(c, "replica_ns_per_line")), f0(num(c, "owner_ns_per_line"))),
				"owner: "+owner+"; Kafka fetch not included", fmt.Sprintf("%.3f", num(c, "replica_over_owner")),
				fmt.Sprintf("<= %.2f", num(m, "target_ratio")), c["met_ratio"])
			proj, _ := c["projection"].(map[string]any)
			var rel []string
			var names []string
			var at20 float64
			for _, n := range []int{1, 3, 5, 10, 20, 50} {
				p, _ := proj[strconv.Itoa(n)].(map[string]any)
				if p == nil {
					continue
				}
				names = append(names, strconv.Itoa(n))
				rel = append(rel, fmt.Sprintf("%.2f", num(p, "relative")))
				if n == 20 {
					at20 = num(p, "lines_per_s_per_core")
				}
			}
			row("9", "  projected throughput / linear at "+strings.Join(names, ", ")+" nodes", strings.Join(rel, " / "),
				fmt.Sprintf("20 nodes of 1 core: %s lines/s; never above 1/apply = %s", f0(at20), f0(1e9/num(c, "replica_ns_per_line"))), "",
				fmt.Sprintf(">= %.2f at %.0f nodes", num(m, "target_relative"), num(m, "target_nodes")), c["met_20_nodes"])
		}
	}
	tw.Flush()
	fmt.Println()
}

// f0 formats n with thousands separators.
func f0(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	out := ""
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out += ","
		}
		out += string(c)
	}
	if neg {
		out = "-" + out
	}
	return out
}
