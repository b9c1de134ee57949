package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/broker"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/internal/kafkaopt"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/transport"
)

// brokerFlags are the settings of `warden broker`.
type brokerFlags struct {
	cfg         broker.Config
	topics      *listFlag
	partitions  int
	level       string
	printConfig *bool
}

func newBrokerCmd() *cobra.Command {
	o := &brokerFlags{cfg: broker.DefaultConfig(), topics: newList("access-logs")}
	c := &cobra.Command{
		Use:   "broker --listen ADDR --data-dir DIR [--topic T --partitions N]",
		Short: "Run the embedded Kafka-protocol broker",
		Long: `Run the embedded Kafka-protocol broker (franz-go's kfake), persisted in
--data-dir. It creates the --topic topics if missing and grows them to
--partitions (never shrinks).`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, lg, err := o.build()
			if err != nil {
				return err
			}
			if *o.printConfig {
				printConfig(c)
				return nil
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			b, err := broker.Start(ctx, cfg)
			if err != nil {
				return err
			}
			lg.Info("broker serving", "addr", b.Addr(), "data_dir", cfg.DataDir, "topics", cfg.Topics, "partitions", cfg.Partitions,
				"tls", cfg.TLSCert != "", "client_certs", cfg.TLSClientCA != "", "sasl", saslSummary(cfg))
			<-ctx.Done()
			lg.Info("broker stopping")
			return b.Close()
		},
	}
	fs := c.Flags()
	fs.StringVar(&o.cfg.Listen, "listen", "127.0.0.1:9092", "host:port to serve the Kafka protocol on")
	fs.StringVar(&o.cfg.DataDir, "data-dir", "", "directory holding the broker's records and offsets (required)")
	fs.Var(o.topics, "topic", "topics to create if missing (comma-separated)")
	fs.IntVar(&o.partitions, "partitions", 12, "partitions of each created topic (an existing topic grows to this, never shrinks)")
	fs.BoolVar(&o.cfg.SyncWrites, "sync-writes", false, "fsync every produced batch (slower, survives power loss)")
	fs.StringVar(&o.level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.cfg.TLSCert, "tls-cert", "", "PEM certificate: serve Kafka over TLS only (with --tls-key)")
	fs.StringVar(&o.cfg.TLSKey, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&o.cfg.TLSClientCA, "tls-client-ca", "", "PEM CA: with TLS, require every client to present a certificate it signed")
	fs.StringVar(&o.cfg.SASLMechanism, "sasl-mechanism", o.cfg.SASLMechanism, "SASL mechanism required of clients with --sasl-user: "+strings.Join(kafkaopt.Mechanisms, ", "))
	fs.StringVar(&o.cfg.SASLUser, "sasl-user", "", "require SASL: the one user clients authenticate as (with --sasl-password)")
	fs.StringVar(&o.cfg.SASLPassword, "sasl-password", "", "password of --sasl-user ($WARDEN_SASL_PASSWORD)")
	config.MarkSecret(fs, "sasl-password")
	o.printConfig = addConfigFlags(fs)
	brokerOf[c] = o
	return c
}

// saslSummary says what SASL the broker requires, for its start line.
func saslSummary(cfg broker.Config) string {
	if cfg.SASLUser == "" {
		return "none"
	}
	return strings.ToLower(cfg.SASLMechanism) + " user " + cfg.SASLUser
}

// The flags behind each command built, for 'warden config check'.
var (
	agentOf  = map[*cobra.Command]*agentFlags{}
	brokerOf = map[*cobra.Command]*brokerFlags{}
	shipOf   = map[*cobra.Command]*shipFlags{}
)

// build checks the settings without touching the disk or the network.
func (o *brokerFlags) build() (broker.Config, *slog.Logger, error) {
	lg, err := newLogger(o.level)
	if err != nil {
		return broker.Config{}, nil, err
	}
	cfg := o.cfg
	cfg.Topics, cfg.Partitions, cfg.Logger = o.topics.vals, int32(o.partitions), lg
	return cfg, lg, cfg.Check()
}

// agentFlags are the settings of `warden agent`.
type agentFlags struct {
	cfg                node.Config
	brokers, join      *listFlag
	allow, bouncerKeys *listFlag
	tlsCert, tlsKey    string
	tlsCA, gossipKey   string
	clusterKey         string
	rulesFile, level   string
	kafka              kafkaFlags
	printConfig        *bool
}

func newAgentCmd() *cobra.Command {
	o := &agentFlags{cfg: node.DefaultConfig(), brokers: newList("127.0.0.1:9092"), join: newList(),
		allow: newList(), bouncerKeys: newList()}
	c := &cobra.Command{
		Use:   "agent --id ID --data-dir DIR --raft ADDR --gossip ADDR --http ADDR --brokers LIST --topic T [--join ADDR,...] [--bootstrap-expect N]",
		Short: "Run one cluster node",
		Long: `Run one cluster node: Raft, gossip membership, Kafka workers for the
partitions it owns, and the HTTP API. The first --bootstrap-expect nodes form
the cluster together; later ones --join any member.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := o.build()
			if err != nil {
				return err
			}
			if *o.printConfig {
				printConfig(c)
				return nil
			}
			if fsm.FaultsEnabled && os.Getenv("WARDEN_TEST_FAULT") != "" {
				cfg.Logger.Warn("test build: the FSM will break its rules on purpose", "fault", os.Getenv("WARDEN_TEST_FAULT"))
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := node.Start(ctx, cfg)
			if err != nil {
				return err
			}
			<-ctx.Done()
			cfg.Logger.Info("leaving the cluster")
			return n.Shutdown()
		},
	}
	fs := c.Flags()
	cfg := &o.cfg
	fs.StringVar(&cfg.ID, "id", "", "node id, stable across restarts (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the Raft log and snapshots (required)")
	fs.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:7001", "host:port for Raft and proposal forwarding")
	fs.StringVar(&cfg.GossipAddr, "gossip", "127.0.0.1:7946", "host:port for gossip membership (UDP and TCP)")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "host:port for the HTTP API")
	fs.Var(o.brokers, "brokers", "Kafka seed brokers, comma-separated")
	fs.StringVar(&cfg.Topic, "topic", "access-logs", "input topic")
	fs.Var(o.join, "join", "gossip address(es) of existing members, comma-separated")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "number of nodes that form the first cluster together (0: alone, or join with --join)")
	fs.IntVar(&cfg.Voters, "voters", cfg.Voters, "Raft voters (1, 3 or 5); further nodes join as non-voters")
	fs.DurationVar(&cfg.ReapAfter, "reap-after", cfg.ReapAfter, "remove a failed node from Raft after this long")
	fs.StringVar(&cfg.Semantics, "semantics", cfg.Semantics, "exactly-once (default: offsets and results in one Raft entry, nothing lost or repeated), at-least-once (results with each batch, offsets every --offset-commit-interval: a crash REPEATS everything since the last offset commit) or at-most-once (a batch's offsets commit as soon as it is fetched: a crash LOSES the batches fetched but not yet processed); the last two exist to show the trade-off")
	fs.DurationVar(&cfg.OffsetCommitInterval, "offset-commit-interval", cfg.OffsetCommitInterval, "with --semantics at-least-once, how often offsets commit (as a Kafka consumer's auto-commit)")
	fs.BoolVar(&cfg.Backpressure, "backpressure", cfg.Backpressure, "lower a partition's rate when its batches take longer than --batch-interval to process and commit (a PID estimator, as Spark's spark.streaming.backpressure); --backpressure=false turns it off")
	fs.Float64Var(&cfg.BackpressureInitialRate, "backpressure-initial-rate", 0, "records/s per partition before the first estimate (0: none)")
	fs.Float64Var(&cfg.BackpressureMinRate, "backpressure-min-rate", 100, "the lowest rate backpressure sets, records/s per partition")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "on SIGTERM, how long the batches in flight may take to commit before the node hands its partitions over and leaves")
	fs.DurationVar(&cfg.StallAfter, "stall-after", cfg.StallAfter, "a member whose partitions have records waiting and no commit for this long gets none for a while (they move to the others); 0: never")
	fs.DurationVar(&cfg.BatchInterval, "batch-interval", cfg.BatchInterval, "longest time a worker gathers records before committing a batch")
	fs.IntVar(&cfg.MaxBatchRecords, "max-batch-records", cfg.MaxBatchRecords, "most records in one batch")
	fs.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", cfg.CheckpointInterval, "longest time between two checkpoints of a partition's detector state into Raft (between them batches carry only their alerts; a new owner runs the records since the last checkpoint through detection again); 0 makes every batch a checkpoint")
	fs.IntVar(&cfg.CheckpointRecords, "checkpoint-records", cfg.CheckpointRecords, "most records of a partition between two detector checkpoints: bounds what a new owner runs through detection again (0: no bound)")
	fs.DurationVar(&cfg.MaxClockSkew, "max-clock-skew", cfg.MaxClockSkew, "lines dated more than this past the node's clock are malformed (reason: future time); negative: no check")
	fs.Float64Var(&cfg.MaxRatePerPartition, "max-rate-per-partition", 0, "records per second cap per partition (0: none)")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "how to parse records: auto (each line by the first format that reads it), a preset ("+strings.Join(accesslog.PresetNames, ", ")+"), json:FIELD=KEY,..., or an Apache LogFormat string; a cluster setting (see --config-version)")
	fs.DurationVar(&cfg.Retention, "retention", cfg.Retention, "event time the load figures keep, back from the newest request (0: all); a cluster setting (see --config-version)")
	fs.StringVar(&cfg.DLQTopic, "dlq-topic", "", "dead-letter topic for lines that do not parse (default: <topic>.dlq)")
	fs.BoolVar(&cfg.NoDLQ, "no-dlq", false, "do not copy lines that do not parse to a dead-letter topic")
	fs.DurationVar(&cfg.RaftHeartbeat, "raft-heartbeat", cfg.RaftHeartbeat, "Raft heartbeat and election timeout (LAN default)")
	fs.IntVar(&cfg.SnapshotEntries, "raft-snapshot-entries", cfg.SnapshotEntries, "Raft log entries since the last snapshot that make a new one")
	fs.IntVar(&cfg.TrailingLogs, "raft-trailing-logs", cfg.TrailingLogs, "Raft log entries a snapshot leaves in the log (followers further behind get the snapshot)")
	fs.DurationVar(&cfg.GossipProbeInterval, "gossip-probe-interval", cfg.GossipProbeInterval, "gossip failure-detection probe interval")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for the Raft port (with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM key for --tls-cert")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "PEM CA; when given, TLS is mutual and peers must hold a certificate it signed")
	fs.StringVar(&o.clusterKey, "cluster-key", "", "base64 32-byte secret every node shares (make one with 'warden keygen'): authenticates every Raft and forwarding connection and, without --gossip-key, keys gossip too ($WARDEN_CLUSTER_KEY)")
	fs.BoolVar(&cfg.InsecureNoAuth, "insecure-no-auth", false, "let a node bind non-loopback addresses with no --cluster-key, mutual TLS or gossip key: anyone who reaches its Raft and gossip ports can change the cluster's state")
	fs.IntVar(&cfg.MinDecisionPrefixV4, "min-decision-prefix-v4", cfg.MinDecisionPrefixV4, "widest IPv4 range an operator may ban, as a prefix length (8 to 32)")
	fs.IntVar(&cfg.MinDecisionPrefixV6, "min-decision-prefix-v6", cfg.MinDecisionPrefixV6, "widest IPv6 range an operator may ban, as a prefix length (32 to 128)")
	fs.StringVar(&o.gossipKey, "gossip-key", "", "base64 key (16, 24 or 32 bytes) encrypting gossip ($WARDEN_GOSSIP_KEY)")
	fs.StringVar(&o.level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.rulesFile, "rules", "", "a YAML rule file applied over the built-in scenarios; a cluster setting (see --config-version)")
	fs.Var(o.allow, "allow", "addresses or CIDR ranges never to ban, comma-separated; a cluster setting (see --config-version)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer token for POST and DELETE /v1/decisions and POST /v1/snapshot ($WARDEN_ADMIN_TOKEN)")
	fs.Var(o.bouncerKeys, "bouncer-keys", "API keys bouncers present to /v1/decisions/stream, comma-separated ($WARDEN_BOUNCER_KEYS)")
	fs.StringVar(&cfg.AlertsTopic, "alerts-topic", "", "Kafka topic receiving each alert exactly once (default: <topic>.alerts)")
	fs.BoolVar(&cfg.NoAlertsTopic, "no-alerts-topic", false, "do not publish alerts to Kafka")
	fs.Uint64Var(&cfg.ConfigVersion, "config-version", 0, "version of this node's cluster settings (--log-format, --retention, --rules, --allow): they bootstrap a new cluster, and later replace the cluster's only if this is above its version (0: bootstrap only; 'warden config apply' changes them on a running cluster)")
	fs.BoolVar(&cfg.Simulate, "simulate", false, "raise alerts but make every decision a simulated one, sent to no bouncer and no blocklist (to try rules safely); a cluster setting (see --config-version)")
	fs.BoolVar(&cfg.InputKeyedByClient, "input-keyed-by-client", false, "every client's lines are in one partition of the input (warden ship keys them so): detect on the input's partitions and skip the repartition stage, which costs a second write of each line to Kafka; a node still warns when it sees one client in several partitions; a cluster setting (see --config-version)")
	fs.DurationVar(&cfg.MaxLateness, "max-lateness", 0, "events more than this older than their partition's watermark (its latest event time) are late: counted in the load figures, left out of detection (0: none is late); a cluster setting (see --config-version)")
	fs.StringVar(&cfg.RepartitionTopic, "repartition-topic", "", "the topic the first stage forwards parsed lines to, partitioned by client network, for detection (default: <topic>.by-client; same partition count as the input, created if missing)")
	fs.StringVar(&cfg.StartOffset, "start-offset", cfg.StartOffset, "where partitions the cluster has never read begin (a new topic, or partitions added later): earliest (their log start) or latest (only records written from then on); a cluster setting (see --config-version)")
	fs.IntVar(&cfg.MaxUnpublishedAlerts, "max-unpublished-alerts", 0, "most alerts kept while the alerts topic cannot take them; past it the oldest are dropped and counted (0: 100000); a cluster setting (see --config-version)")
	fs.StringVar(&cfg.HTTPToken, "http-token", "", "when set, every read of the HTTP API (/v1/*, /metrics, the dashboard) needs Authorization: Bearer TOKEN (this or the admin token); /healthz and /readyz stay open ($WARDEN_HTTP_TOKEN)")
	fs.StringVar(&cfg.HTTPTLSCert, "http-tls-cert", "", "PEM certificate: serve the HTTP API over TLS (with --http-tls-key)")
	fs.StringVar(&cfg.HTTPTLSKey, "http-tls-key", "", "PEM key for --http-tls-cert")
	fs.IntVar(&cfg.HTTPMaxConns, "http-max-conns", cfg.HTTPMaxConns, "most simultaneous HTTP connections (0: no cap)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go's profiler under /debug/pprof/ (admin token only)")
	o.kafka.add(fs)
	for _, s := range []string{"admin-token", "bouncer-keys", "gossip-key", "http-token", "cluster-key"} {
		config.MarkSecret(fs, s)
	}
	o.printConfig = addConfigFlags(fs)
	agentOf[c] = o
	return c
}

// build turns the flags into a checked node configuration, reading the
// files they name but starting nothing.
func (o *agentFlags) build() (node.Config, error) {
	cfg := o.cfg
	cfg.Brokers, cfg.Join, cfg.Allow, cfg.BouncerKeys = o.brokers.vals, o.join.vals, o.allow.vals, o.bouncerKeys.vals
	lg, err := newLogger(o.level)
	if err != nil {
		return cfg, err
	}
	cfg.Logger = lg
	if o.rulesFile != "" {
		b, err := os.ReadFile(o.rulesFile)
		if err != nil {
			return cfg, fmt.Errorf("--rules: %w", err)
		}
		cfg.Rules = string(b)
	}
	if cfg.GossipKey, err = transport.ParseGossipKey(o.gossipKey); err != nil {
		return cfg, err
	}
	if o.clusterKey != "" {
		if cfg.ClusterKey, err = transport.ParseClusterKey(o.clusterKey); err != nil {
			return cfg, fmt.Errorf("--cluster-key: %w", err)
		}
	}
	if o.tlsCert != "" || o.tlsKey != "" || o.tlsCA != "" {
		if cfg.TLS, err = transport.LoadTLS(o.tlsCert, o.tlsKey, o.tlsCA); err != nil {
			return cfg, err
		}
	}
	if cfg.KafkaOpts, err = o.kafka.options(func(w string) { lg.Warn(w) }); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}
