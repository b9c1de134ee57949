package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/node"
)

// apiClient is how status talks to a node: its token and the CA of its
// TLS certificate, if any.
var apiClient = struct {
	token string
	http  *http.Client
}{http: http.DefaultClient}

func newStatusCmd() *cobra.Command {
	var addr, caFile string
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [--addr URL] [--json]",
		Short: "Show members, leader and partitions of a cluster",
		Long: `Show members (leader starred), and per partition the owner, epoch,
committed offset, log-end offset, lag and records applied, like
kafka-consumer-groups --describe; then a load and detection summary.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--http-tls-ca: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--http-tls-ca %s: no PEM certificate in it", caFile)
				}
				apiClient.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			}
			return runStatus(addr, asJSON)
		},
	}
	c.Flags().StringVar(&addr, "addr", "http://127.0.0.1:8080", "HTTP address of any node (https:// for a node serving TLS)")
	c.Flags().StringVar(&apiClient.token, "http-token", "", "the nodes' --http-token (or the admin token), if they have one ($WARDEN_HTTP_TOKEN)")
	c.Flags().StringVar(&caFile, "http-tls-ca", "", "PEM CA that signed the nodes' HTTP certificate (default: the system's)")
	config.MarkSecret(c.Flags(), "http-token")
	c.Flags().BoolVar(&asJSON, "json", false, "print the raw /v1/cluster and /v1/partitions documents")
	return c
}

func runStatus(addr string, asJSON bool) error {
	base := strings.TrimRight(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ci node.ClusterInfo
	var parts []node.PartitionInfo
	if err := getJSON(ctx, base+"/v1/cluster", &ci); err != nil {
		return err
	}
	if err := getJSON(ctx, base+"/v1/partitions", &parts); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"cluster": ci, "partitions": parts})
	}
	fmt.Printf("Dashboard: %s/\n", base)
	printStatus(os.Stdout, ci, parts)
	var st analytics.Stats
	if err := getJSON(ctx, base+"/v1/stats?top=1", &st); err == nil {
		printLoad(os.Stdout, &st)
	}
	var ops []fsm.OperatorAlert
	if getJSON(ctx, base+"/v1/operator-alerts", &ops) == nil && len(ops) > 0 {
		fmt.Fprintln(os.Stdout, "\nOperator alerts (latest last):")
		for _, a := range ops[max(0, len(ops)-10):] {
			fmt.Fprintf(os.Stdout, "  %s  %s  %s\n", time.Unix(0, a.At).UTC().Format(time.RFC3339), a.Kind, a.Message)
		}
	}
	var alerts []detect.Alert
	var decisions []detect.DecisionView
	if getJSON(ctx, base+"/v1/alerts", &alerts) == nil && getJSON(ctx, base+"/v1/decisions", &decisions) == nil {
		printDetectSummary(os.Stdout, alerts, decisions)
	}
	return nil
}

// printLoad prints a short summary of the load figures.
func printLoad(w io.Writer, st *analytics.Stats) {
	fmt.Fprintf(w, "\nLoad: %s requests (%s malformed), %s, %s unique IPs", commas(st.Requests), commas(st.Malformed), human(st.Bytes), commas(int64(st.UniqueIPs)))
	if st.From != "" {
		fmt.Fprintf(w, ", %s to %s", st.From, st.To)
	}
	fmt.Fprintln(w)
	if n := len(st.Series); n > 0 {
		// The minute before the newest one, which is still filling.
		last, err := time.Parse(time.RFC3339, st.Series[n-1].T)
		if err != nil {
			return
		}
		prev := last.Add(-time.Minute).Format(time.RFC3339)
		var p analytics.Point
		if n > 1 && st.Series[n-2].T == prev {
			p = st.Series[n-2]
		}
		fmt.Fprintf(w, "Last complete minute %s: %.1f req/s, %s/s, 5xx %s\n", prev, float64(p.Requests)/60, human(p.Bytes/60), commas(p.StatusClass["5xx"]))
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if apiClient.token != "" {
		req.Header.Set("Authorization", "Bearer "+apiClient.token)
	}
	resp, err := apiClient.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: bad JSON: %w", url, err)
	}
	return nil
}

// printStatus renders members and partitions the way kafka-consumer-groups
// --describe would.
func printStatus(w io.Writer, ci node.ClusterInfo, parts []node.PartitionInfo) {
	leader := ci.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(w, "Leader: %s   Term: %d   Applied index: %d   (answered by %s)\n\n", leader, ci.Term, ci.AppliedIndex, ci.ID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATUS\tVOTER\tRAFT\tGOSSIP\tHTTP")
	for _, m := range ci.Members {
		id := m.ID
		if m.ID == ci.Leader {
			id += "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", id, m.Status, m.Voter, m.RaftAddr, m.GossipAddr, m.HTTPAddr)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tOWNER\tEPOCH\tCOMMITTED-OFFSET\tLOG-END-OFFSET\tLAG\tRECORDS\tLOST\tDETECTED\t")
	var lag, records, lost, detected int64
	twoStage := false
	for _, p := range parts {
		end, l := fmt.Sprint(p.LogEnd), fmt.Sprint(p.Lag)
		if p.LogEnd < 0 {
			end, l = "?", "?"
		} else {
			lag += p.Lag
		}
		owner := p.Owner
		if owner == "" {
			owner = "-"
		}
		records += p.Records
		lost += p.Lost
		// DETECTED: the lines the repartition stage of this partition
		// number took into detection ("-": detection on the input's
		// partitions, input keyed by client).
		det := "-"
		if bc := p.ByClient; bc != nil {
			det, twoStage = fmt.Sprint(bc.Applied), true
			detected += bc.Applied
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t\n", p.Topic, p.Partition, owner, p.Epoch, p.Committed, end, l, p.Records, p.Lost, det)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d partitions, %d records applied, total lag %d", len(parts), records, lag)
	if twoStage {
		fmt.Fprintf(w, ", %d lines through the repartition stage into detection", detected)
	}
	if lost > 0 {
		fmt.Fprintf(w, ", %d records LOST to retention (deleted before they were read)", lost)
	}
	fmt.Fprintln(w)
	printResets(w, parts)
}

// printResets lists the operators' recent resets, newest last.
func printResets(w io.Writer, parts []node.PartitionInfo) {
	type row struct {
		p int32
		r fsm.ResetRecord
	}
	var rows []row
	for _, p := range parts {
		for _, r := range p.Resets {
			rows = append(rows, row{p.Partition, r})
		}
	}
	if len(rows) == 0 {
		return
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].r.At != rows[j].r.At {
			return rows[i].r.At < rows[j].r.At
		}
		return rows[i].p < rows[j].p
	})
	fmt.Fprintln(w, "\nOffset resets:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  WHEN	PARTITION	FROM	TO	KIND	BY")
	for _, r := range rows {
		kind := "skip"
		switch {
		case r.r.Replay:
			kind = "replay"
		case r.r.To < r.r.From:
			kind = "back (double count)"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t%s\n", time.Unix(0, r.r.At).UTC().Format(time.RFC3339), r.p, r.r.From, r.r.To, kind, r.r.By)
	}
	tw.Flush()
}

// printDetectSummary prints the alert and decision counts and the latest
// alerts.
func printDetectSummary(w io.Writer, alerts []detect.Alert, decisions []detect.DecisionView) {
	fmt.Fprintf(w, "Detection: %d alerts, %d decisions in force\n", len(alerts), len(decisions))
	for i := max(0, len(alerts)-3); i < len(alerts); i++ {
		a := alerts[i]
		fmt.Fprintf(w, "  %s  %-28s %-16s %d events\n", a.LastSeen, a.Scenario, a.SourceIP, a.Events)
	}
}
