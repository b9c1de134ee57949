// Package broker runs Warden's embedded Kafka-protocol broker: franz-go's
// kfake with its state persisted to a data directory, so that a restarted
// broker keeps its topics, records and offsets. Any Kafka client (franz-go,
// librdkafka's kcat, …) can produce to it and consume from it.
//
// It is meant for the demo, the tests and single-machine trials; production
// runs against a real Kafka cluster. See kfake's crash limits in the README.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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
}

// DefaultConfig returns the defaults: 127.0.0.1:9092, 12 partitions.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:9092", Partitions: 12}
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
	return nil
}

// Broker is a running embedded broker.
type Broker struct {
	c    *kfake.Cluster
	addr string
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
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s with %s: %w", cfg.Listen, cfg.DataDir, err)
	}
	b := &Broker{c: c, addr: c.ListenAddrs()[0]}
	for _, t := range cfg.Topics {
		if err := EnsureTopic(ctx, []string{b.addr}, t, cfg.Partitions); err != nil {
			c.Close()
			return nil, err
		}
	}
	return b, nil
}

// Addr is the host:port the broker serves on.
func (b *Broker) Addr() string { return b.addr }

// Cluster is the kfake cluster behind the broker, for tests that make it
// misbehave on purpose (kfake's Control functions).
func (b *Broker) Cluster() *kfake.Cluster { return b.c }

// Close stops the broker and persists its state.
func (b *Broker) Close() error {
	b.c.Close()
	return nil
}

// EnsureTopic creates topic with partitions partitions if it is missing,
// and grows it if it has fewer. It works against any Kafka.
func EnsureTopic(ctx context.Context, brokers []string, topic string, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
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
	return fmt.Errorf("broker: topic %s not ready: %v", topic, lastErr)
}
