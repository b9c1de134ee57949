// Package broker runs Warden's embedded Kafka-protocol broker: franz-go's
// kfake with its state persisted to a data directory, so that a restarted
// broker keeps its topics, records and offsets. Any Kafka client (franz-go,
// librdkafka's kcat, …) can produce to it and consume from it.
//
// It is meant for the demo, the tests and single-machine trials; production
// runs against a real Kafka cluster. See kfake's crash limits in the README.
//
// It can serve TLS (optionally requiring client certificates) and require
// SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) from one user given in its
// settings, so that clients' Kafka security can be tried and tested
// without a Kafka cluster.
package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/internal/kafkaopt"
)

// Config configures the broker.
type Config struct {
	// Listen is the host:port to serve on; port 0 picks a free port.
	Listen string
	// DataDir holds topics, records and offsets across restarts.
	DataDir string
	// Topics are created if missing, with Partitions partitions each; a
	// topic with fewer partitions grows (it never shrinks).
	Topics     []string
	Partitions int32
	// SyncWrites fsyncs every produced batch.
	SyncWrites bool
	Logger     *slog.Logger

	// TLSCert and TLSKey (PEM) make the broker serve TLS only.
	TLSCert, TLSKey string
	// TLSClientCA (PEM), with TLS, requires every client to present a
	// certificate it signed.
	TLSClientCA string
	// SASLUser and SASLPassword, with SASLMechanism ("plain",
	// "scram-sha-256", "scram-sha-512"), make the broker require SASL: that user is the only
	// one, with every right. The settings are the truth at each start: a
	// password changed between starts takes effect, the old one is gone.
	SASLMechanism, SASLUser, SASLPassword string
}

// DefaultConfig returns the defaults: 127.0.0.1:9092, 12 partitions,
// SCRAM-SHA-256 when a SASL user is given.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:9092", Partitions: 12, SASLMechanism: kafkaopt.ScramSHA256}
}

// Validate checks the configuration, including that DataDir is usable.
func (c Config) Validate() error {
	if err := c.Check(); err != nil {
		return err
	}
	if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
		return fmt.Errorf("--data-dir %s is a file, not a directory", c.DataDir)
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return fmt.Errorf("--data-dir %s cannot be created: %w", c.DataDir, err)
	}
	probe := filepath.Join(c.DataDir, ".warden-probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return fmt.Errorf("--data-dir %s is not writable: %w", c.DataDir, err)
	}
	return os.Remove(probe)
}

// Check validates the settings without touching the disk (Validate also
// makes sure the data dir is usable).
func (c Config) Check() error {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q is not host:port", c.Listen)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("--listen %q has no valid port", c.Listen)
	}
	if host == "" {
		return fmt.Errorf("--listen %q needs a host, such as 127.0.0.1", c.Listen)
	}
	if c.Partitions < 1 {
		return fmt.Errorf("--partitions must be at least 1, got %d", c.Partitions)
	}
	if c.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are checked over TLS")
	}
	switch m := strings.ToLower(c.SASLMechanism); {
	case c.SASLUser == "" && c.SASLPassword == "":
	case c.SASLUser == "" || c.SASLPassword == "":
		return errors.New("--sasl-user and --sasl-password are both needed to require SASL")
	case m != kafkaopt.Plain && m != kafkaopt.ScramSHA256 && m != kafkaopt.ScramSHA512:
		return fmt.Errorf("--sasl-mechanism %q: want %s", c.SASLMechanism, strings.Join(kafkaopt.Mechanisms, ", "))
	}
	return nil
}

// saslEnabled reports whether clients must authenticate.
func (c Config) saslEnabled() bool { return c.SASLUser != "" }

// Broker is a running embedded broker.
type Broker struct {
	c       *kfake.Cluster
	addr    string
	dataDir string
	// self are the client options with which the broker's own admin
	// client reaches it (its SASL user, TLS pinned to its own certificate).
	self []kgo.Opt
}

// Start validates cfg, starts the broker on its data dir and makes sure
// the topics exist before returning.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, portStr, _ := net.SplitHostPort(cfg.Listen)
	port, _ := strconv.Atoi(portStr)
	opts := []kfake.Opt{
		kfake.Ports(port),
		kfake.DataDir(cfg.DataDir),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
		kfake.ClusterID("warden"),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(cfg.Partitions, cfg.Topics...))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	var self []kgo.Opt
	var selfTLS *tls.Config
	if cfg.TLSCert != "" {
		server, client, err := brokerTLS(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kfake.TLS(server))
		self = append(self, kgo.DialTLSConfig(client))
		selfTLS = client
	}
	if cfg.saslEnabled() {
		mech := strings.ToUpper(cfg.SASLMechanism)
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(mech, cfg.SASLUser, cfg.SASLPassword))
		so, err := kafkaopt.Config{SASL: cfg.SASLMechanism, User: cfg.SASLUser, Password: cfg.SASLPassword}.Options()
		if err != nil {
			return nil, err
		}
		self = append(self, so...)
	}
	// kfake restores the users it persisted over the ones it is given; the
	// settings are the truth, so the persisted users go first (and again
	// after start, so that a PLAIN password is not left on disk).
	if err := removeSASLState(cfg.DataDir); err != nil {
		return nil, err
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s with %s: %w", cfg.Listen, cfg.DataDir, err)
	}
	b := &Broker{c: c, addr: c.ListenAddrs()[0], dataDir: cfg.DataDir, self: self}
	_ = removeSASLState(cfg.DataDir)
	if cfg.saslEnabled() {
		if err := advertiseHandshakeV0(c, b.addr, selfTLS); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, t := range cfg.Topics {
		if err := EnsureTopic(ctx, []string{b.addr}, t, cfg.Partitions, self...); err != nil {
			c.Close()
			return nil, err
		}
	}
	return b, nil
}

// removeSASLState deletes the users kfake persisted in dir.
func removeSASLState(dir string) error {
	err := os.Remove(filepath.Join(dir, "sasl.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("broker: --data-dir %s: remove the stored SASL users: %w", dir, err)
	}
	return nil
}

// brokerTLS loads the serving configuration and the one with which the
// broker's own admin client reaches it: that one trusts exactly the
// broker's own certificate (whoever signed it) and presents it as its
// client certificate when clients must have one.
func brokerTLS(cfg Config) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("broker: --tls-cert %s with --tls-key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, nil, fmt.Errorf("broker: --tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("broker: --tls-client-ca %s holds no PEM certificate", cfg.TLSClientCA)
		}
		server.ClientCAs, server.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	own := cert.Certificate[0]
	client = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below against the one certificate the broker serves.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], own) {
				return errors.New("broker: the listener did not present this broker's certificate")
			}
			return nil
		},
	}
	if cfg.TLSClientCA != "" {
		client.Certificates = []tls.Certificate{cert}
	}
	return server, client, nil
}

// Addr is the host:port the broker serves on.
func (b *Broker) Addr() string { return b.addr }

// Cluster is the kfake cluster behind the broker, for tests that make it
// misbehave on purpose (kfake's Control functions).
func (b *Broker) Cluster() *kfake.Cluster { return b.c }

// ClientOpts are the options with which the broker's own admin client
// reaches it (empty for a plaintext broker without SASL).
func (b *Broker) ClientOpts() []kgo.Opt { return b.self }

// Close stops the broker and persists its state.
func (b *Broker) Close() error {
	b.c.Close()
	return removeSASLState(b.dataDir)
}

// EnsureTopic creates topic with partitions partitions if it is missing,
// and grows it if it has fewer. It works against any Kafka; opts are extra
// client options (TLS, SASL).
func EnsureTopic(ctx context.Context, brokers []string, topic string, partitions int32, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var lastErr error
	for ctx.Err() == nil {
		details, err := adm.ListTopics(ctx, topic)
		if err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		d, ok := details[topic]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			resp, err := adm.CreateTopic(ctx, partitions, -1, nil, topic)
			if err == nil {
				err = resp.Err
			}
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("broker: create topic %s: %w", topic, err)
			}
			continue
		}
		if d.Err != nil {
			lastErr = d.Err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if have := int32(len(d.Partitions)); have < partitions {
			resp, err := adm.UpdatePartitions(ctx, int(partitions), topic)
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				return fmt.Errorf("broker: grow topic %s from %d to %d partitions: %w", topic, have, partitions, err)
			}
			continue
		}
		return nil
	}
	return fmt.Errorf("broker: topic %s not ready: %v", topic, kafkaopt.Explain(lastErr))
}
