package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/broker"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/transport"
)

func runBroker(args []string) error {
	fs := newFlags("broker", "--listen ADDR --data-dir DIR [--topic T --partitions N]")
	cfg := broker.DefaultConfig()
	var topics listFlag = []string{"access-logs"}
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:9092", "host:port to serve the Kafka protocol on")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory holding the broker's records and offsets (required)")
	fs.Var(&topics, "topic", "topics to create if missing (comma-separated)")
	partitions := fs.Int("partitions", 12, "partitions of each created topic (an existing topic grows to this, never shrinks)")
	fs.BoolVar(&cfg.SyncWrites, "sync-writes", false, "fsync every produced batch (slower, survives power loss)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	lg, err := newLogger(*level)
	if err != nil {
		return err
	}
	cfg.Topics, cfg.Partitions, cfg.Logger = topics, int32(*partitions), lg
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		return err
	}
	lg.Info("broker serving", "addr", b.Addr(), "data_dir", cfg.DataDir, "topics", cfg.Topics, "partitions", cfg.Partitions)
	<-ctx.Done()
	lg.Info("broker stopping")
	return b.Close()
}

func runAgent(args []string) error {
	fs := newFlags("agent", "--id ID --data-dir DIR --raft ADDR --gossip ADDR --http ADDR --brokers LIST --topic T [--join ADDR[,ADDR]] [--bootstrap-expect N]")
	cfg := node.DefaultConfig()
	var brokers, join listFlag = []string{"127.0.0.1:9092"}, nil
	fs.StringVar(&cfg.ID, "id", "", "node id, stable across restarts (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the Raft log and snapshots (required)")
	fs.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:7001", "host:port for Raft and proposal forwarding")
	fs.StringVar(&cfg.GossipAddr, "gossip", "127.0.0.1:7946", "host:port for gossip membership (UDP and TCP)")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "host:port for the HTTP API")
	fs.Var(&brokers, "brokers", "Kafka seed brokers, comma-separated")
	fs.StringVar(&cfg.Topic, "topic", "access-logs", "input topic")
	fs.Var(&join, "join", "gossip address(es) of existing members, comma-separated")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "number of nodes that form the first cluster together (0: alone, or join with --join)")
	fs.IntVar(&cfg.Voters, "voters", cfg.Voters, "Raft voters (1, 3 or 5); further nodes join as non-voters")
	durationFlag(fs, &cfg.ReapAfter, "reap-after", cfg.ReapAfter, "remove a failed node from Raft after this long")
	durationFlag(fs, &cfg.BatchInterval, "batch-interval", cfg.BatchInterval, "longest time a worker gathers records before committing a batch")
	fs.IntVar(&cfg.MaxBatchRecords, "max-batch-records", cfg.MaxBatchRecords, "most records in one batch")
	fs.Float64Var(&cfg.MaxRatePerPartition, "max-rate-per-partition", 0, "records per second cap per partition (0: none)")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "how to parse records: auto (each line by the first format that reads it), a preset ("+strings.Join(accesslog.PresetNames, ", ")+"), json:FIELD=KEY,..., or an Apache LogFormat string; the leader's value applies cluster-wide")
	fs.DurationVar(&cfg.Retention, "retention", cfg.Retention, "event time the load figures keep, back from the newest request (0: all); the leader's value applies cluster-wide")
	fs.StringVar(&cfg.DLQTopic, "dlq-topic", "", "dead-letter topic for lines that do not parse (default: <topic>.dlq)")
	fs.BoolVar(&cfg.NoDLQ, "no-dlq", false, "do not copy lines that do not parse to a dead-letter topic")
	durationFlag(fs, &cfg.RaftHeartbeat, "raft-heartbeat", cfg.RaftHeartbeat, "Raft heartbeat and election timeout (LAN default)")
	fs.IntVar(&cfg.SnapshotEntries, "raft-snapshot-entries", cfg.SnapshotEntries, "Raft log entries since the last snapshot that make a new one")
	fs.IntVar(&cfg.TrailingLogs, "raft-trailing-logs", cfg.TrailingLogs, "Raft log entries a snapshot leaves in the log (followers further behind get the snapshot)")
	durationFlag(fs, &cfg.GossipProbeInterval, "gossip-probe-interval", cfg.GossipProbeInterval, "gossip failure-detection probe interval")
	tlsCert := fs.String("tls-cert", "", "PEM certificate for the Raft port (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM key for --tls-cert")
	tlsCA := fs.String("tls-ca", "", "PEM CA; when given, TLS is mutual and peers must hold a certificate it signed")
	gossipKey := fs.String("gossip-key", os.Getenv("WARDEN_GOSSIP_KEY"), "base64 key (16, 24 or 32 bytes) encrypting gossip; default $WARDEN_GOSSIP_KEY")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	rulesFile := fs.String("rules", "", "a YAML rule file applied over the built-in scenarios (the leader's applies cluster-wide)")
	var allow listFlag
	fs.Var(&allow, "allow", "addresses or CIDR ranges never to ban, comma-separated (the leader's apply cluster-wide)")
	fs.StringVar(&cfg.AdminToken, "admin-token", os.Getenv("WARDEN_ADMIN_TOKEN"), "bearer token for POST and DELETE /v1/decisions; default $WARDEN_ADMIN_TOKEN")
	bouncerKeys := listFlag(splitList(os.Getenv("WARDEN_BOUNCER_KEYS")))
	fs.Var(&bouncerKeys, "bouncer-keys", "API keys bouncers present to /v1/decisions/stream, comma-separated; default $WARDEN_BOUNCER_KEYS")
	fs.StringVar(&cfg.AlertsTopic, "alerts-topic", "", "Kafka topic receiving each alert exactly once (default: <topic>.alerts)")
	fs.BoolVar(&cfg.NoAlertsTopic, "no-alerts-topic", false, "do not publish alerts to Kafka")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.Allow, cfg.BouncerKeys = allow, bouncerKeys
	if *rulesFile != "" {
		b, err := os.ReadFile(*rulesFile)
		if err != nil {
			return fmt.Errorf("--rules: %w", err)
		}
		cfg.Rules = string(b)
	}
	// A test-only switch; see fsm.TestFault.
	fsm.TestFault = os.Getenv("WARDEN_TEST_FAULT")
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "warden agent: unexpected argument %q (run 'warden agent -h' for usage)\n", fs.Arg(0))
		return errUsage
	}
	lg, err := newLogger(*level)
	if err != nil {
		return err
	}
	cfg.Brokers, cfg.Join, cfg.Logger = brokers, join, lg
	if cfg.GossipKey, err = transport.ParseGossipKey(*gossipKey); err != nil {
		return err
	}
	if *tlsCert != "" || *tlsKey != "" || *tlsCA != "" {
		if cfg.TLS, err = transport.LoadTLS(*tlsCert, *tlsKey, *tlsCA); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	lg.Info("leaving the cluster")
	return n.Shutdown()
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
