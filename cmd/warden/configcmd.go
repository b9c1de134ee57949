package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/transport"
)

func newConfigCmd() *cobra.Command {
	c := groupCmd("config", "Check configuration files; show or change the cluster-wide settings")
	var file, target string
	check := &cobra.Command{
		Use:   "check --config FILE [--for agent|broker|ship]",
		Short: "Validate a configuration file (with the $WARDEN_* environment) without starting anything",
		Long: `Load FILE exactly as 'warden agent --config FILE' would (the $WARDEN_*
environment applied over it), check every key and value, read the files it
names (rules, certificates, secrets), and print the result. Nothing starts,
nothing is written.`,
		Args:        noArgs,
		Annotations: map[string]string{annNoConfigFile: "yes"},
		RunE: func(c *cobra.Command, _ []string) error {
			if file == "" {
				return usagef(c, "--config FILE is required")
			}
			return checkConfig(c, target, file)
		},
	}
	check.Flags().StringVar(&file, "config", "", "the YAML file to check")
	check.Flags().StringVar(&target, "for", "agent", "the command the file is for: agent, broker or ship")
	c.AddCommand(check, newConfigShowCmd(), newConfigApplyCmd())
	return c
}

func checkConfig(c *cobra.Command, target, file string) error {
	var cmd *cobra.Command
	var build func() error
	switch target {
	case "agent":
		cmd = newAgentCmd()
	case "broker":
		cmd = newBrokerCmd()
	case "ship":
		cmd = newShipCmd()
	default:
		return usagef(c, "--for %q: want agent, broker or ship", target)
	}
	fs := cmd.Flags()
	if err := fs.Set(config.ConfigFlag, file); err != nil {
		return err
	}
	l, err := config.Load(fs, lookupEnv, true)
	if err != nil {
		return err
	}
	switch target {
	case "agent":
		o := agentOf[cmd]
		build = func() error { _, err := o.build(); return err }
	case "broker":
		o := brokerOf[cmd]
		build = func() error { _, _, err := o.build(); return err }
	case "ship":
		o := shipOf[cmd]
		build = func() error { return o.check() }
	}
	if err := build(); err != nil {
		return fmt.Errorf("config %s: %w", file, err)
	}
	n := 0
	for _, s := range config.Effective(fs, l) {
		if s.Source == config.FromFile {
			n++
		}
	}
	fmt.Fprintf(c.OutOrStdout(), "config %s: ok for warden %s (%d keys from the file)\n", file, target, n)
	return nil
}

func newKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new random 32-byte key (base64) for --cluster-key or --gossip-key",
		Args:  noArgs,
		Long: `Print a new random 32-byte key, base64: give the same one to every node as
--cluster-key (or --cluster-key-file, or $WARDEN_CLUSTER_KEY). It also works
as a --gossip-key.`,
		RunE: func(c *cobra.Command, _ []string) error {
			k, err := transport.GenerateClusterKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), k)
			return nil
		},
	}
}

// clusterSettings is the file 'warden config apply' reads: the cluster-wide
// settings under their agent flag names.
type clusterSettings struct {
	LogFormat string   `yaml:"log-format"`
	Retention string   `yaml:"retention"`
	Rules     string   `yaml:"rules"`
	RulesFile string   `yaml:"rules-file"`
	Allow     []string `yaml:"allow"`
	// MaxUnpublished is --max-unpublished-alerts.
	MaxUnpublished int `yaml:"max-unpublished-alerts"`
	// StartOffset is --start-offset.
	StartOffset string `yaml:"start-offset"`
	// Simulate is --simulate.
	Simulate bool `yaml:"simulate"`
	// InputKeyedByClient is --input-keyed-by-client; MaxLateness
	// --max-lateness.
	InputKeyedByClient bool   `yaml:"input-keyed-by-client"`
	MaxLateness        string `yaml:"max-lateness"`
}

func newConfigShowCmd() *cobra.Command {
	var addr string
	c := &cobra.Command{
		Use:   "show [--addr URL]",
		Short: "Print the cluster configuration in force (version, who set it, settings)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var cc fsm.Config
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := getJSON(ctx, apiBase(addr)+"/v1/config", &cc); err != nil {
				return err
			}
			printClusterConfig(c.OutOrStdout(), cc)
			return nil
		},
	}
	c.Flags().StringVar(&addr, "addr", "http://127.0.0.1:8080", "HTTP address of any node")
	c.Flags().StringVar(&apiClient.token, "http-token", "", "the nodes' --http-token, if they have one ($WARDEN_HTTP_TOKEN)")
	config.MarkSecret(c.Flags(), "http-token")
	return c
}

func newConfigApplyCmd() *cobra.Command {
	var addr, token string
	var version uint64
	var execute bool
	c := &cobra.Command{
		Use:   "apply FILE [--addr URL] [--execute]",
		Short: "Change the cluster-wide settings (log format, retention, rules, allow-list) through Raft",
		Long: `Read the cluster-wide settings from FILE (YAML with the agent's flag names:
log-format, retention, rules-file or rules, allow), show what changes against
the configuration in force, and with --execute make them the cluster's next
configuration version, through any node (admin token). Without --execute
nothing changes. Settings left out take their defaults (log-format auto,
retention 24h, built-in rules only, empty allow-list).`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef(c, "name one settings file")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			req, err := readClusterSettings(args[0])
			if err != nil {
				return err
			}
			req.Version, req.DryRun = version, !execute
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			base := apiBase(addr)
			var cur fsm.Config
			if err := getJSON(ctx, base+"/v1/config", &cur); err != nil {
				return err
			}
			var next fsm.Config
			if err := postJSON(ctx, base+"/v1/config", token, req, &next); err != nil {
				return err
			}
			w := c.OutOrStdout()
			changed := clusterDiff(cur, next)
			if len(changed) == 0 {
				fmt.Fprintf(w, "no change: the cluster's configuration (version %d) already has these settings\n", cur.Version)
				return nil
			}
			for _, line := range changed {
				fmt.Fprintln(w, line)
			}
			if !execute {
				fmt.Fprintf(w, "dry run: would apply version %d; run again with --execute to apply\n", next.Version)
				return nil
			}
			fmt.Fprintf(w, "applied: cluster configuration version %d (was %d)\n", next.Version, cur.Version)
			return nil
		},
	}
	fs := c.Flags()
	fs.StringVar(&addr, "addr", "http://127.0.0.1:8080", "HTTP address of any node")
	fs.StringVar(&token, "admin-token", "", "the nodes' admin token ($WARDEN_ADMIN_TOKEN)")
	fs.Uint64Var(&version, "version", 0, "the version to apply (default: the cluster's plus one); refused unless above the cluster's")
	fs.BoolVar(&execute, "execute", false, "apply the change (without it: show what would change)")
	fs.StringVar(&apiClient.token, "http-token", "", "the nodes' --http-token, if they have one ($WARDEN_HTTP_TOKEN)")
	config.MarkSecret(fs, "admin-token")
	config.MarkSecret(fs, "http-token")
	return c
}

// readClusterSettings reads a settings file for 'warden config apply'.
func readClusterSettings(file string) (node.ConfigRequest, error) {
	var req node.ConfigRequest
	b, err := os.ReadFile(file)
	if err != nil {
		return req, &config.Error{File: file, Msg: "cannot read: " + err.Error()}
	}
	var cs clusterSettings
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cs); err != nil && !errors.Is(err, io.EOF) {
		return req, &config.Error{File: file, Msg: "want the keys log-format, retention, rules-file or rules, allow, max-unpublished-alerts, start-offset, simulate, input-keyed-by-client, max-lateness: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if cs.Rules != "" && cs.RulesFile != "" {
		return req, &config.Error{File: file, Msg: "give rules or rules-file, not both"}
	}
	if cs.RulesFile != "" {
		p := cs.RulesFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(file), p)
		}
		rb, err := os.ReadFile(p)
		if err != nil {
			return req, &config.Error{File: file, Key: "rules-file", Msg: "cannot read: " + err.Error()}
		}
		cs.Rules = string(rb)
	}
	if cs.LogFormat == "" {
		cs.LogFormat = "auto"
	}
	if cs.Retention == "" {
		cs.Retention = "24h"
	}
	return node.ConfigRequest{LogFormat: cs.LogFormat, Retention: cs.Retention, Rules: cs.Rules, Allow: cs.Allow,
		MaxUnpublishedAlerts: cs.MaxUnpublished, StartOffset: cs.StartOffset, Simulate: cs.Simulate,
		InputKeyedByClient: cs.InputKeyedByClient, MaxLateness: cs.MaxLateness}, nil
}

// clusterDiff describes, line by line, what changes from a to b.
func clusterDiff(a, b fsm.Config) []string {
	var out []string
	add := func(key, from, to string) {
		if from != to {
			out = append(out, fmt.Sprintf("  %-11s %s -> %s", key+":", orDash(from), orDash(to)))
		}
	}
	add("log-format", a.LogFormat, b.LogFormat)
	add("retention", a.Retention, b.Retention)
	if a.Rules != b.Rules {
		out = append(out, fmt.Sprintf("  %-11s %d bytes -> %d bytes", "rules:", len(a.Rules), len(b.Rules)))
	}
	add("allow", strings.Join(a.Allow, ","), strings.Join(b.Allow, ","))
	add("start-offset", a.StartOffset, b.StartOffset)
	add("simulate", strconv.FormatBool(a.Simulate), strconv.FormatBool(b.Simulate))
	add("max-unpublished-alerts", strconv.Itoa(a.MaxUnpublishedAlerts), strconv.Itoa(b.MaxUnpublishedAlerts))
	add("input-keyed-by-client", strconv.FormatBool(a.InputKeyedByClient), strconv.FormatBool(b.InputKeyedByClient))
	add("max-lateness", a.MaxLateness, b.MaxLateness)
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printClusterConfig(w io.Writer, c fsm.Config) {
	fmt.Fprintf(w, "version:    %d\nset by:     %s\nset at:     %s\nlog-format: %s\nretention:  %s\nrules:      %s\nallow:      %s\n",
		c.Version, orDash(c.SetBy), orDash(c.SetAt), c.LogFormat, c.Retention, rulesSummary(c.Rules), orDash(strings.Join(c.Allow, ",")))
}

func rulesSummary(r string) string {
	if r == "" {
		return "built-in scenarios only"
	}
	return fmt.Sprintf("built-in scenarios and a rule file of %d bytes", len(r))
}

// apiBase turns an --addr into a base URL.
func apiBase(addr string) string {
	base := strings.TrimRight(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return base
}

// postJSON posts body as JSON with the admin token and decodes the answer.
func postJSON(ctx context.Context, url, token string, body, v any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := apiClient.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		return fmt.Errorf("%s: %s: %s", url, resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
