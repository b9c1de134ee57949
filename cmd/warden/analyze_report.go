package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// The terminal report of warden analyze: totals, status table, top lists,
// requests per hour, alerts and decisions.

// printReport writes the terminal report.
func printReport(w io.Writer, files []string, an *analyzer, st *analytics.Stats) {
	fmt.Fprintf(w, "Warden analysis of %s (log format %s)\n\n", strings.Join(files, ", "), an.format.Name())
	if st.From != "" {
		fmt.Fprintf(w, "  Period       %s  to  %s\n", st.From, st.To)
	}
	fmt.Fprintf(w, "  Requests     %s", commas(st.Requests))
	if st.Malformed > 0 {
		fmt.Fprintf(w, "   (malformed lines: %s)", commas(st.Malformed))
	}
	fmt.Fprintln(w)
	if st.ExpiredRequests > 0 {
		fmt.Fprintf(w, "  Expired      %s requests before %s (outside --retention)\n", commas(st.ExpiredRequests), st.RetainedFrom)
	}
	fmt.Fprintf(w, "  Bandwidth    %s (%s bytes)\n", human(st.Bytes), commas(st.Bytes))
	fmt.Fprintf(w, "  Unique IPs   %s (HyperLogLog estimate)\n", commas(int64(st.UniqueIPs)))
	if l := st.LatencyMs; l != nil {
		fmt.Fprintf(w, "  Latency ms   p50 %.1f   p90 %.1f   p99 %.1f   max %.1f\n", l.P50, l.P90, l.P99, l.Max)
	} else {
		fmt.Fprintf(w, "  Latency      not in this log format (add %%D to log it)\n")
	}
	fmt.Fprintf(w, "\n  Status       ")
	for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
		if n := st.StatusClass[c]; n > 0 {
			fmt.Fprintf(w, "%s %s (%.1f%%)   ", c, commas(n), pct(n, st.Requests))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "               ")
	for i, k := range sortedKeys(st.Status) {
		if i > 0 && i%6 == 0 {
			fmt.Fprintf(w, "\n               ")
		}
		fmt.Fprintf(w, "%s %-9s", k, commas(st.Status[k]))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  Methods      ")
	for _, k := range sortedKeys(st.Methods) {
		fmt.Fprintf(w, "%s %s   ", k, commas(st.Methods[k]))
	}
	fmt.Fprintln(w)
	for _, l := range []struct {
		title string
		rows  []analytics.KeyCount
	}{{"Top paths", st.TopPaths}, {"Top 404 paths", st.Top404Paths}, {"Top client IPs", st.TopIPs},
		{"Top user agents", st.TopUserAgents}, {"Top referrers", st.TopReferrers}} {
		fmt.Fprintf(w, "\n  %s\n", l.title)
		if len(l.rows) == 0 {
			fmt.Fprintf(w, "    (none)\n")
		}
		for _, r := range l.rows {
			k := r.Key
			if len(k) > 90 {
				k = k[:87] + "..."
			}
			fmt.Fprintf(w, "    %10s  %5.1f%%  %s\n", commas(r.Count), pct(r.Count, st.Requests), k)
		}
	}
	printHours(w, st)
	if an.badCount > 0 {
		fmt.Fprintf(w, "\n  Malformed lines: %s; the first ones:\n", commas(an.badCount))
		for _, b := range an.bad {
			fmt.Fprintf(w, "    %s:%d: %s: %s\n", b.file, b.line, b.reason, b.text)
		}
	}
}

// printHours prints requests per hour with a bar each.
func printHours(w io.Writer, st *analytics.Stats) {
	type hour struct {
		t       string
		n, errs int64
	}
	var hours []hour
	for _, p := range st.Series {
		h := p.T[:13] + ":00"
		if len(hours) == 0 || hours[len(hours)-1].t != h {
			hours = append(hours, hour{t: h})
		}
		hours[len(hours)-1].n += p.Requests
		hours[len(hours)-1].errs += p.StatusClass["5xx"]
	}
	if len(hours) == 0 {
		return
	}
	var peak int64
	for _, h := range hours {
		peak = max(peak, h.n)
	}
	fmt.Fprintf(w, "\n  Requests per hour (UTC)\n")
	const width = 40
	for _, h := range hours {
		n := int(float64(h.n) / float64(peak) * width)
		if n == 0 && h.n > 0 {
			n = 1
		}
		fmt.Fprintf(w, "    %s  %-*s %8s", strings.Replace(h.t, "T", " ", 1), width, strings.Repeat("█", n), commas(h.n))
		if h.errs > 0 {
			fmt.Fprintf(w, "  (5xx %s)", commas(h.errs))
		}
		fmt.Fprintln(w)
	}
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func pct(n, total int64) float64 {
	if total == 0 {
		return 0
	}
	return float64(n) * 100 / float64(total)
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// printDetections writes the alerts and decisions part of the report.
func printDetections(w io.Writer, b *detect.Book) {
	alerts := b.AlertsSince(time.Time{})
	fmt.Fprintf(w, "\n  Alerts: %d\n", len(alerts))
	by := map[string]int{}
	for _, a := range alerts {
		by[a.Scenario]++
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return by[names[i]] > by[names[j]] || by[names[i]] == by[names[j]] && names[i] < names[j]
	})
	for _, n := range names {
		fmt.Fprintf(w, "    %6d  %s\n", by[n], n)
	}
	const show = 20
	if len(alerts) > 0 {
		fmt.Fprintf(w, "\n    %-20s  %-30s  %-16s  %6s  %s\n", "LAST SEEN", "SCENARIO", "SOURCE", "EVENTS", "ID")
		for i, a := range alerts {
			if i == show {
				fmt.Fprintf(w, "    ... %d more (warden analyze --json --doc alerts)\n", len(alerts)-show)
				break
			}
			fmt.Fprintf(w, "    %-20s  %-30s  %-16s  %6d  %s\n", a.LastSeen, a.Scenario, a.SourceIP, a.Events, a.ID)
		}
	}
	ds := b.AllDecisions()
	fmt.Fprintf(w, "\n  Decisions: %d\n", len(ds))
	if len(ds) > 0 {
		fmt.Fprintf(w, "    %-5s  %-7s  %-18s  %-30s  %-20s  %s\n", "ID", "TYPE", "VALUE", "SCENARIO", "UNTIL", "")
		for i, d := range ds {
			if i == show {
				fmt.Fprintf(w, "    ... %d more (warden analyze --json --doc decisions)\n", len(ds)-show)
				break
			}
			state := "expired"
			if d.Active(time.Now()) {
				state = "active"
			} else if d.Simulated {
				state = "simulated"
			}
			fmt.Fprintf(w, "    %-5d  %-7s  %-18s  %-30s  %-20s  %s\n", d.ID, d.Type, d.Value, d.Scenario, time.Unix(0, d.Until).UTC().Format(time.RFC3339), state)
		}
	}
}
