package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wardenhq/warden/internal/config"
)

func newConfigCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Check configuration files",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_ = c.Help()
			return errQuietUsage
		},
	}
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
	c.AddCommand(check)
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
		RunE: func(c *cobra.Command, _ []string) error {
			k := make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), base64.StdEncoding.EncodeToString(k))
			return nil
		},
	}
}
