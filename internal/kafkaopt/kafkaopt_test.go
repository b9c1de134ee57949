package kafkaopt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/transport"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"zero", Config{}, ""},
		{"scram", Config{SASL: "SCRAM-SHA-512", User: "u", Password: "p"}, ""},
		{"unknown mechanism", Config{SASL: "gssapi", User: "u", Password: "p"}, "sasl"},
		{"no user", Config{SASL: "plain", Password: "p"}, "user"},
		{"no password", Config{SASL: "scram-sha-256", User: "u"}, "password"},
		{"user without mechanism", Config{User: "u", Password: "p"}, "sasl"},
		{"cert without key", Config{CertFile: "c.pem"}, "tls-key"},
		{"key without cert", Config{KeyFile: "k.pem"}, "tls-cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var fe *FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("Validate() = %v, want an error about %s", err, tc.field)
			}
		})
	}
}

func TestTLSImpliedAndWarnings(t *testing.T) {
	if (Config{}).TLSEnabled() {
		t.Fatal("zero config dials TLS")
	}
	if !(Config{ServerName: "kafka"}).TLSEnabled() || !(Config{InsecureSkipVerify: true}).TLSEnabled() {
		t.Fatal("a TLS setting does not imply TLS")
	}
	w := Config{TLS: true, InsecureSkipVerify: true}.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "NOT verified") {
		t.Fatalf("insecure warnings = %q", w)
	}
	if w := (Config{SASL: "plain", User: "u", Password: "p"}).Warnings(); len(w) != 1 || !strings.Contains(w[0], "clear text") {
		t.Fatalf("plain without TLS warnings = %q", w)
	}
	if _, err := (Config{CAFile: "/nonexistent/ca.pem"}).Options(); err == nil || !strings.Contains(err.Error(), "tls-ca") {
		t.Fatalf("missing CA file: %v", err)
	}
}

// secureCluster starts an in-process kfake broker serving TLS with a
// certificate from a fresh CA and requiring SCRAM-SHA-256 for user warden.
func secureCluster(t *testing.T) (addr, caFile string) {
	t.Helper()
	pki, err := transport.NewTestPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := pki.Issue("broker")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "warden", "s3cret"), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0], pki.CAFile
}

func ping(t *testing.T, addr string, cfg Config) error {
	t.Helper()
	opts, err := cfg.Options()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

func TestAgainstSecureBroker(t *testing.T) {
	addr, ca := secureCluster(t)
	good := Config{TLS: true, CAFile: ca, SASL: "scram-sha-256", User: "warden", Password: "s3cret"}
	if err := ping(t, addr, good); err != nil {
		t.Fatalf("right settings: %v", err)
	}

	wrong := good
	wrong.Password = "nope"
	err := ping(t, addr, wrong)
	// Kafka answers SASL_AUTHENTICATION_FAILED; kfake closes the connection.
	if !IsSecurity(err) || !strings.Contains(Explain(err).Error(), "credentials") {
		t.Fatalf("wrong password: %v (explained: %v)", err, Explain(err))
	}

	untrusted := good
	untrusted.CAFile = ""
	err = ping(t, addr, untrusted)
	if !IsSecurity(err) || !strings.Contains(Explain(err).Error(), "not signed by a trusted authority") {
		t.Fatalf("unknown CA: %v (explained: %v)", err, Explain(err))
	}

	misnamed := good
	misnamed.ServerName = "kafka.example.com"
	err = ping(t, addr, misnamed)
	if !IsSecurity(err) || !strings.Contains(Explain(err).Error(), "does not name the broker") {
		t.Fatalf("wrong server name: %v (explained: %v)", err, Explain(err))
	}

	skip := good
	skip.CAFile, skip.InsecureSkipVerify = "", true
	if err := ping(t, addr, skip); err != nil {
		t.Fatalf("insecure skip verify: %v", err)
	}
}

func TestExplainKafkaErrorCode(t *testing.T) {
	err := fmt.Errorf("metadata: %w", kerr.SaslAuthenticationFailed)
	if !IsSecurity(err) || !errors.Is(Explain(err), kerr.SaslAuthenticationFailed) || !strings.Contains(Explain(err).Error(), "refused the SASL credentials") {
		t.Fatalf("Explain(%v) = %v", err, Explain(err))
	}
	if other := errors.New("dial tcp: connection refused"); Explain(other) != other || IsSecurity(other) {
		t.Fatalf("an unrelated error was rewritten: %v", Explain(other))
	}
}

func TestPlaintextToSASLBroker(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "u", "p"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = ping(t, c.ListenAddrs()[0], Config{})
	if !IsSecurity(err) || !strings.Contains(Explain(err).Error(), "SASL") {
		t.Fatalf("no SASL against a SASL broker: %v (explained: %v)", err, Explain(err))
	}
	if err := ping(t, c.ListenAddrs()[0], Config{SASL: "plain", User: "u", Password: "p"}); err != nil {
		t.Fatalf("plain: %v", err)
	}
}
