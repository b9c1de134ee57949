package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/accesslog"
	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/pipeline"
	"github.com/wardenhq/warden/transport"
)

// Config is one node's configuration. Zero durations take the defaults of
// DefaultConfig.
type Config struct {
	// ID names the node for its whole life; a node restarted with the same
	// ID and data dir rejoins as itself.
	ID string
	// DataDir holds the Raft log, stable store and snapshots.
	DataDir string
	// RaftAddr is the host:port of the Raft and forwarding port.
	RaftAddr string
	// GossipAddr is the host:port of memberlist (UDP and TCP).
	GossipAddr string
	// HTTPAddr is the host:port of the HTTP API.
	HTTPAddr string
	// Brokers are the Kafka seed brokers.
	Brokers []string
	// Topic is the input topic.
	Topic string
	// Join lists gossip addresses of existing members to contact.
	Join []string
	// BootstrapExpect is how many nodes form the first cluster together.
	// 0 with no Join means a single-node cluster; 0 with Join means join
	// an existing cluster.
	BootstrapExpect int
	// Voters caps the Raft voters (3 or 5); further nodes are non-voters.
	Voters int
	// ReapAfter is how long a failed node stays in the Raft configuration
	// before the leader removes it.
	ReapAfter time.Duration

	// BatchInterval is the longest a worker gathers records before it
	// proposes a batch.
	BatchInterval time.Duration
	// MaxBatchRecords caps the records of one batch.
	MaxBatchRecords int
	// MaxRatePerPartition caps records per second per partition (0: none).
	MaxRatePerPartition float64
	// CheckpointInterval and CheckpointRecords bound how long and how many
	// records a detecting worker goes between detector checkpoints
	// (pipeline/checkpoint.go); 0 for the interval makes every batch a
	// checkpoint.
	CheckpointInterval time.Duration
	CheckpointRecords  int

	// LogFormat is how workers parse records: an accesslog preset, "auto"
	// (each line by the first format that reads it), json:..., or an Apache
	// LogFormat string. Retention is how much event time the load figures
	// keep. The leader writes both into the FSM, so all workers agree.
	LogFormat string
	Retention time.Duration
	// DLQTopic receives the records that do not parse; "" disables it.
	// Default: the input topic with ".dlq" appended.
	DLQTopic string
	// NoDLQ turns the dead-letter topic off.
	NoDLQ bool
	// MaxClockSkew is how far ahead of this node's clock a line's time may
	// be; a line dated later is malformed ("future time"), so that it
	// cannot move the event-time horizon (expire every window, end every
	// decision). Default 1h; negative turns the check off.
	MaxClockSkew time.Duration

	// Rules is the YAML of a rule file applied over the built-in scenarios
	// ("" for the built-in ones); Allow the addresses and ranges never to
	// ban. Like the log format, the leader's values apply cluster-wide.
	Rules string
	Allow []string
	// AdminToken guards POST and DELETE /v1/decisions (Authorization:
	// Bearer TOKEN); without it those endpoints are refused.
	AdminToken string
	// ConfigVersion is the version of this node's cluster settings
	// (LogFormat, Retention, Rules, Allow). They bootstrap the cluster's
	// configuration; later they replace it only if ConfigVersion is above
	// the cluster's version (0: only to bootstrap).
	ConfigVersion uint64
	// Backpressure turns on the PID rate estimator of each worker
	// (package backpressure): the effective rate is the lower of
	// MaxRatePerPartition and the estimate. BackpressureInitialRate is the
	// rate before the first estimate (0: none), BackpressureMinRate the
	// floor (0: 100 records/s).
	Backpressure            bool
	BackpressureInitialRate float64
	BackpressureMinRate     float64
	// Semantics is exactly-once (the default), at-least-once or
	// at-most-once (fsm/semantics.go); OffsetCommitInterval is how often
	// at-least-once commits offsets.
	Semantics            string
	OffsetCommitInterval time.Duration
	// ShutdownTimeout bounds how long a clean stop waits for the batches in
	// flight to commit before it leaves.
	ShutdownTimeout time.Duration
	// StallAfter: a member whose partitions have records waiting and no
	// commit for this long gets no partitions for a while (0: never).
	StallAfter time.Duration
	// MaxUnpublishedAlerts bounds the alerts kept while the alerts topic
	// cannot take them (0: detect.DefaultMaxUnpublished); a cluster
	// setting, like LogFormat.
	MaxUnpublishedAlerts int
	// StartOffset is where partitions the cluster has never read begin:
	// earliest (default) or latest; a cluster setting.
	StartOffset string
	// Simulate: alerts, but every decision simulated (none enforced); a
	// cluster setting.
	Simulate bool
	// InputKeyedByClient: every client's lines are in one partition of
	// the input (warden ship keys them so), so detection runs on the
	// input's partitions and the repartition stage is skipped; a cluster
	// setting. MaxLateness: how much older than its partition's watermark
	// an event may be and still reach detection (0: any); a cluster
	// setting.
	InputKeyedByClient bool
	MaxLateness        time.Duration
	// RepartitionTopic is the second stage's topic ("": <topic>.by-client).
	RepartitionTopic string
	// HTTPToken, when set, guards every read of the HTTP API (/v1/*,
	// /metrics, the dashboard) behind Authorization: Bearer HTTPToken (the
	// admin token works too); /healthz and /readyz stay open.
	HTTPToken string
	// HTTPTLSCert and HTTPTLSKey serve the HTTP API over TLS.
	HTTPTLSCert, HTTPTLSKey string
	// HTTPMaxConns caps the API's simultaneous connections (0: no cap).
	HTTPMaxConns int
	// Pprof serves Go's profiler under /debug/pprof/, admin token only.
	Pprof bool
	// BouncerKeys are the API keys bouncers present (X-Api-Key) to
	// /v1/decisions/stream; without any, the stream is refused.
	BouncerKeys []string
	// AlertsTopic receives every alert exactly once; "" disables it.
	// Default: the input topic with ".alerts" appended.
	AlertsTopic   string
	NoAlertsTopic bool

	// Raft timing: heartbeat and election timeouts, tuned for a LAN. The
	// leader lease is half of it, and so are both timeouts on a follower
	// that has proven its leader gone (failfast.go).
	RaftHeartbeat time.Duration
	// SnapshotEntries is how many log entries since the last snapshot
	// make a new one; TrailingLogs how many entries a snapshot leaves in
	// the log, for followers that are a little behind (further behind,
	// they get the snapshot). Commit entries are up to 4 MiB.
	SnapshotEntries int
	TrailingLogs    int
	// GossipProbeInterval sets memberlist's failure detection pace.
	GossipProbeInterval time.Duration
	// GossipKey encrypts gossip (16, 24 or 32 bytes). Without it, a
	// ClusterKey gives one (transport.GossipKeyFromClusterKey).
	GossipKey []byte
	// TLS secures the Raft/forwarding port; nil means plain TCP. With a CA
	// (mutual TLS) it also authenticates nodes.
	TLS *transport.TLSConfig
	// ClusterKey is the secret every node of the cluster shares
	// (transport.ClusterKeySize bytes, from transport.ParseClusterKey):
	// each Raft and forwarding connection must prove it holds the key, so
	// that nobody else can join Raft or propose a command. It also keys
	// gossip when GossipKey is unset.
	ClusterKey []byte
	// InsecureNoAuth lets a node listen on non-loopback addresses without
	// a ClusterKey or mutual TLS (and gossip without a key): anyone who
	// reaches those ports can then change the replicated state (ban every
	// client, move offsets). Without it such a node refuses to start; on
	// loopback addresses a node starts either way, with a warning.
	InsecureNoAuth bool
	// MinDecisionPrefixV4 and MinDecisionPrefixV6 are the widest ranges an
	// operator may ban through this node's API (/8 and /32 by default, and
	// at least that: every replica refuses wider ones).
	MinDecisionPrefixV4 int
	MinDecisionPrefixV6 int
	// KafkaOpts are extra franz-go options for every Kafka client (TLS, SASL).
	KafkaOpts []kgo.Opt

	Logger *slog.Logger

	// maxBatchBytes bounds one encoded batch: maxBatchBytes, lowered by
	// the package's tests.
	maxBatchBytes int
}

// DefaultConfig returns a Config with every tunable at its default.
func DefaultConfig() Config {
	return Config{
		Voters:               3,
		ReapAfter:            30 * time.Second,
		BatchInterval:        200 * time.Millisecond,
		MaxBatchRecords:      40000,
		CheckpointInterval:   pipeline.CheckpointInterval,
		CheckpointRecords:    pipeline.CheckpointRecords,
		LogFormat:            pipeline.LogFormat, // shared with warden analyze: pipeline/defaults.go
		Retention:            pipeline.Retention,
		RaftHeartbeat:        300 * time.Millisecond,
		SnapshotEntries:      1024,
		TrailingLogs:         1024,
		GossipProbeInterval:  150 * time.Millisecond,
		MaxClockSkew:         analytics.DefaultMaxSkew,
		HTTPMaxConns:         1024,
		StallAfter:           30 * time.Second,
		ShutdownTimeout:      10 * time.Second,
		Backpressure:         true,
		Semantics:            "exactly-once",
		OffsetCommitInterval: 5 * time.Second,
		StartOffset:          "earliest",
		MinDecisionPrefixV4:  detect.FloorPrefixV4,
		MinDecisionPrefixV6:  detect.FloorPrefixV6,
	}
}

// Validate reports the first problem with c, in words an operator can act on.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("--id is required")
	case c.DataDir == "":
		return errors.New("--data-dir is required")
	case c.Topic == "":
		return errors.New("--topic is required")
	case len(c.Brokers) == 0:
		return errors.New("--brokers is required")
	case c.Voters != 3 && c.Voters != 5 && c.Voters != 1:
		return fmt.Errorf("--voters must be 1, 3 or 5, got %d", c.Voters)
	case c.BootstrapExpect < 0:
		return fmt.Errorf("--bootstrap-expect must not be negative, got %d", c.BootstrapExpect)
	case c.BatchInterval <= 0:
		return fmt.Errorf("--batch-interval must be positive, got %s", c.BatchInterval)
	case c.MaxBatchRecords <= 0:
		return fmt.Errorf("--max-batch-records must be positive, got %d", c.MaxBatchRecords)
	case c.CheckpointInterval < 0:
		return fmt.Errorf("--checkpoint-interval must not be negative, got %s", c.CheckpointInterval)
	case c.CheckpointRecords < 0:
		return fmt.Errorf("--checkpoint-records must not be negative, got %d", c.CheckpointRecords)
	case c.MaxRatePerPartition < 0:
		return fmt.Errorf("--max-rate-per-partition must not be negative, got %g", c.MaxRatePerPartition)
	case c.SnapshotEntries < 1:
		return fmt.Errorf("--raft-snapshot-entries must be at least 1, got %d", c.SnapshotEntries)
	case c.TrailingLogs < 1:
		return fmt.Errorf("--raft-trailing-logs must be at least 1, got %d", c.TrailingLogs)
	case c.MinDecisionPrefixV4 != 0 && (c.MinDecisionPrefixV4 < detect.FloorPrefixV4 || c.MinDecisionPrefixV4 > 32):
		return fmt.Errorf("--min-decision-prefix-v4 must be between %d and 32, got %d", detect.FloorPrefixV4, c.MinDecisionPrefixV4)
	case c.MinDecisionPrefixV6 != 0 && (c.MinDecisionPrefixV6 < detect.FloorPrefixV6 || c.MinDecisionPrefixV6 > 128):
		return fmt.Errorf("--min-decision-prefix-v6 must be between %d and 128, got %d", detect.FloorPrefixV6, c.MinDecisionPrefixV6)
	case c.ClusterKey != nil && len(c.ClusterKey) != transport.ClusterKeySize:
		return fmt.Errorf("--cluster-key must be %d bytes, got %d", transport.ClusterKeySize, len(c.ClusterKey))
	}
	if c.LogFormat != "" {
		if _, err := accesslog.Lookup(c.LogFormat); err != nil {
			return fmt.Errorf("--log-format: %w", err)
		}
	}
	if err := (analytics.Config{Retention: c.Retention}).Validate(); err != nil {
		return fmt.Errorf("--retention: %w", err)
	}
	if c.Rules != "" {
		if _, err := detect.Parse(detect.BuiltinYAML(), []byte(c.Rules)); err != nil {
			return fmt.Errorf("--rules: %w", err)
		}
	}
	if _, err := detect.ParseAllow(c.Allow); err != nil {
		return fmt.Errorf("--allow: %w", err)
	}
	if (c.HTTPTLSCert == "") != (c.HTTPTLSKey == "") {
		return errors.New("--http-tls-cert and --http-tls-key go together")
	}
	if c.StartOffset != "" && c.StartOffset != "earliest" && c.StartOffset != "latest" {
		return fmt.Errorf("--start-offset %q: want earliest or latest", c.StartOffset)
	}
	switch c.Semantics {
	case "", "exactly-once", "at-least-once", "at-most-once":
	default:
		return fmt.Errorf("--semantics %q: want exactly-once, at-least-once or at-most-once", c.Semantics)
	}
	if c.Semantics == "at-least-once" && c.OffsetCommitInterval <= 0 {
		return fmt.Errorf("--offset-commit-interval must be positive, got %s", c.OffsetCommitInterval)
	}
	if c.MaxUnpublishedAlerts < 0 {
		return fmt.Errorf("--max-unpublished-alerts must not be negative, got %d", c.MaxUnpublishedAlerts)
	}
	if c.MaxLateness < 0 {
		return fmt.Errorf("--max-lateness must not be negative, got %s", c.MaxLateness)
	}
	if c.RepartitionTopic != "" && (c.RepartitionTopic == c.Topic || c.RepartitionTopic == c.DLQTopic || c.RepartitionTopic == c.AlertsTopic) {
		return fmt.Errorf("--repartition-topic %q must differ from the input, dead-letter and alerts topics", c.RepartitionTopic)
	}
	if c.HTTPMaxConns < 0 {
		return fmt.Errorf("--http-max-conns must not be negative, got %d", c.HTTPMaxConns)
	}
	for flag, addr := range map[string]string{"--raft": c.RaftAddr, "--gossip": c.GossipAddr, "--http": c.HTTPAddr} {
		if _, _, err := transport.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}
	for _, j := range c.Join {
		if _, _, err := transport.SplitHostPort(j); err != nil {
			return fmt.Errorf("--join: %w", err)
		}
	}
	for _, b := range c.Brokers {
		if _, _, err := transport.SplitHostPort(b); err != nil {
			return fmt.Errorf("--brokers: %w", err)
		}
	}
	return c.checkAuth()
}

// raftAuthenticated reports whether the Raft/forwarding port needs a
// credential; gossipAuthenticated the same of gossip.
func (c Config) raftAuthenticated() bool   { return c.ClusterKey != nil || c.TLS.Mutual() }
func (c Config) gossipAuthenticated() bool { return c.GossipKey != nil || c.ClusterKey != nil }

// checkAuth refuses ports that anyone on the network could use to change
// the replicated state.
func (c Config) checkAuth() error {
	if c.InsecureNoAuth {
		return nil
	}
	if !c.raftAuthenticated() && !loopback(c.RaftAddr) {
		return fmt.Errorf("--raft %s is not a loopback address: give --cluster-key (make one with 'warden keygen') or mutual TLS (--tls-ca), or --insecure-no-auth", c.RaftAddr)
	}
	if !c.gossipAuthenticated() && !loopback(c.GossipAddr) {
		return fmt.Errorf("--gossip %s is not a loopback address: give --cluster-key or --gossip-key (make one with 'warden keygen'), or --insecure-no-auth", c.GossipAddr)
	}
	return nil
}

// authWarning is what a node that starts without authentication says.
func (c Config) authWarning() string {
	switch {
	case c.raftAuthenticated() && c.gossipAuthenticated():
		return ""
	case c.InsecureNoAuth && !(loopback(c.RaftAddr) && loopback(c.GossipAddr)):
		return "--insecure-no-auth: the Raft and gossip ports take any connection; whoever reaches them can change the replicated state (ban every client, move offsets)"
	case !c.raftAuthenticated():
		return "no cluster key or mutual TLS: any local process can change the replicated state through the Raft port; fine for a trial on one machine, give --cluster-key otherwise"
	default:
		return "no gossip key: any local process can join gossip; give --cluster-key or --gossip-key outside a trial on one machine"
	}
}

// loopback reports whether addr's host is a loopback address (or
// localhost), so that only this machine can reach it.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	if c.Voters == 0 {
		c.Voters = d.Voters
	}
	if c.ReapAfter == 0 {
		c.ReapAfter = d.ReapAfter
	}
	if c.BatchInterval == 0 {
		c.BatchInterval = d.BatchInterval
	}
	if c.MaxBatchRecords == 0 {
		c.MaxBatchRecords = d.MaxBatchRecords
	}
	if c.LogFormat == "" {
		c.LogFormat = d.LogFormat
	}
	if c.DLQTopic == "" && !c.NoDLQ {
		c.DLQTopic = c.Topic + ".dlq"
	}
	if c.NoDLQ {
		c.DLQTopic = ""
	}
	if c.AlertsTopic == "" && !c.NoAlertsTopic {
		c.AlertsTopic = c.Topic + ".alerts"
	}
	if c.NoAlertsTopic {
		c.AlertsTopic = ""
	}
	if c.RaftHeartbeat == 0 {
		c.RaftHeartbeat = d.RaftHeartbeat
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = d.SnapshotEntries
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.GossipProbeInterval == 0 {
		c.GossipProbeInterval = d.GossipProbeInterval
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = d.MaxClockSkew
	}
	if c.maxBatchBytes == 0 {
		c.maxBatchBytes = maxBatchBytes
	}
	if c.MinDecisionPrefixV4 == 0 {
		c.MinDecisionPrefixV4 = d.MinDecisionPrefixV4
	}
	if c.MinDecisionPrefixV6 == 0 {
		c.MinDecisionPrefixV6 = d.MinDecisionPrefixV6
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// checkDataDir creates dir if needed and proves it writable.
func checkDataDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("--data-dir %s is a file, not a directory", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--data-dir %s cannot be created: %w", dir, err)
	}
	probe := filepath.Join(dir, ".warden-probe")
	if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
		return fmt.Errorf("--data-dir %s is not writable: %w", dir, err)
	}
	return os.Remove(probe)
}
