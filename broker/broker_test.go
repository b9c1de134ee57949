package broker

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/internal/kafkaopt"
	"github.com/wardenhq/warden/transport"
)

func client(t *testing.T, addr string, sec kafkaopt.Config, more ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts, err := sec.Options()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("t")}, opts...), more...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func pingErr(cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

func TestBroker_TLSAndSASL_PasswordFromSettingsAtEachStart(t *testing.T) {
	dir := t.TempDir()
	pki, err := transport.NewTestPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue("broker")
	if err != nil {
		t.Fatal(err)
	}
	port, err := transport.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(port)
	cfg.DataDir, cfg.Topics, cfg.Partitions = dir, []string{"t"}, 2
	cfg.TLSCert, cfg.TLSKey = cert, key
	cfg.SASLMechanism, cfg.SASLUser, cfg.SASLPassword = "scram-sha-512", "warden", "first"
	b, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	sec := kafkaopt.Config{CAFile: pki.CAFile, SASL: "scram-sha-512", User: "warden", Password: "first"}
	if err := client(t, b.Addr(), sec).ProduceSync(context.Background(), &kgo.Record{Value: []byte("one")}).FirstErr(); err != nil {
		t.Fatalf("produce with TLS and SCRAM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sasl.json")); !os.IsNotExist(err) {
		t.Fatalf("the broker left its users on disk: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart with a new password and more partitions (grown through the
	// broker's own TLS and SASL client): the old password is gone, the
	// records are kept.
	cfg.SASLPassword, cfg.Partitions = "second", 3
	if b, err = Start(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := pingErr(client(t, b.Addr(), sec)); !kafkaopt.IsSecurity(err) {
		t.Fatalf("the old password still works or fails otherwise: %v", err)
	}
	sec.Password = "second"
	cl := client(t, b.Addr(), sec)
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	parts := 0
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset; parts++ })
	if total != 1 || parts != 3 {
		t.Fatalf("after restart: %d records in %d partitions, want 1 in 3", total, parts)
	}
	plain := kafkaopt.Config{CAFile: pki.CAFile}
	if err := pingErr(client(t, b.Addr(), plain)); !kafkaopt.IsSecurity(err) || !strings.Contains(kafkaopt.Explain(err).Error(), "SASL") {
		t.Fatalf("a client without SASL: %v", kafkaopt.Explain(err))
	}
}

func TestBroker_ClientCertificatesRequired(t *testing.T) {
	pki, err := transport.NewTestPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue("broker")
	if err != nil {
		t.Fatal(err)
	}
	ccert, ckey, err := pki.Issue("agent")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen, cfg.DataDir, cfg.Topics, cfg.Partitions = "127.0.0.1:0", t.TempDir(), []string{"t"}, 1
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = cert, key, pki.CAFile
	b, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := pingErr(client(t, b.Addr(), kafkaopt.Config{CAFile: pki.CAFile})); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if err := pingErr(client(t, b.Addr(), kafkaopt.Config{CAFile: pki.CAFile, CertFile: ccert, KeyFile: ckey})); err != nil {
		t.Fatalf("a client with a certificate: %v", err)
	}
}

func TestConfig_CheckSecurity(t *testing.T) {
	base := DefaultConfig()
	base.DataDir = "/tmp/x"
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"cert without key", func(c *Config) { c.TLSCert = "c" }, "--tls-cert and --tls-key"},
		{"client CA without TLS", func(c *Config) { c.TLSClientCA = "ca" }, "--tls-client-ca"},
		{"user without password", func(c *Config) { c.SASLUser = "u" }, "--sasl-password"},
		{"bad mechanism", func(c *Config) { c.SASLUser, c.SASLPassword, c.SASLMechanism = "u", "p", "md5" }, "--sasl-mechanism"},
	} {
		c := base
		tc.mod(&c)
		if err := c.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check() = %v, want %q", tc.name, err, tc.want)
		}
	}
}
