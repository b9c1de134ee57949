// Package kafkaopt turns the Kafka security settings an operator gives
// (TLS, client certificates, SASL PLAIN or SCRAM) into franz-go client
// options. Every Warden command that talks to Kafka (agent, ship, chaos,
// the broker's own admin client) builds its options here, so that one
// setting means the same thing everywhere.
//
// The settings are checked and the files they name are read when the
// options are built, not when a connection is made: a missing CA or a
// mechanism typo is one error at start, never a retry loop.
package kafkaopt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The SASL mechanisms, as operators write them.
const (
	Plain       = "plain"
	ScramSHA256 = "scram-sha-256"
	ScramSHA512 = "scram-sha-512"
)

// Mechanisms lists the SASL mechanisms in a stable order for help texts.
var Mechanisms = []string{Plain, ScramSHA256, ScramSHA512}

// Config is the security of a Kafka client. The zero value is plaintext
// without authentication, as before.
type Config struct {
	// TLS dials brokers with TLS. Any of the TLS fields below implies it.
	TLS bool
	// CAFile is a PEM bundle of the authorities that sign the brokers'
	// certificates; empty uses the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate (PEM) for brokers that
	// require one (mutual TLS); both or neither.
	CertFile, KeyFile string
	// ServerName is the name the broker certificates must carry; empty uses
	// the host of each broker address.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate. Only for trials:
	// anyone on the path can then read and change the stream.
	InsecureSkipVerify bool

	// SASL is the mechanism: "", Plain, ScramSHA256 or ScramSHA512
	// (case is ignored).
	SASL string
	// User and Password are the SASL credentials.
	User, Password string
}

// FieldError is a setting that is wrong. Field is one of tls, tls-ca,
// tls-cert, tls-key, tls-server-name, tls-insecure-skip-verify, sasl, user
// and password, so a command can name its own flag for it.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "kafka " + e.Field + ": " + e.Msg }

// TLSEnabled reports whether the client dials with TLS.
func (c Config) TLSEnabled() bool {
	return c.TLS || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.InsecureSkipVerify
}

// Enabled reports whether any security setting is given.
func (c Config) Enabled() bool {
	return c.TLSEnabled() || c.SASL != "" || c.User != "" || c.Password != ""
}

// Mechanism returns the SASL mechanism in lower case, "" for none.
func (c Config) Mechanism() string { return strings.ToLower(strings.TrimSpace(c.SASL)) }

// Validate checks the settings without reading files.
func (c Config) Validate() error {
	switch m := c.Mechanism(); m {
	case "":
		if c.User != "" || c.Password != "" {
			return &FieldError{"sasl", "a user or password is given but no SASL mechanism; want " + strings.Join(Mechanisms, ", ")}
		}
	case Plain, ScramSHA256, ScramSHA512:
		if c.User == "" {
			return &FieldError{"user", "SASL " + m + " needs a user"}
		}
		if c.Password == "" {
			return &FieldError{"password", "SASL " + m + " needs a password"}
		}
	default:
		return &FieldError{"sasl", fmt.Sprintf("unknown mechanism %q; want %s", c.SASL, strings.Join(Mechanisms, ", "))}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		if c.CertFile == "" {
			return &FieldError{"tls-cert", "a client key is given without its certificate"}
		}
		return &FieldError{"tls-key", "a client certificate is given without its key"}
	}
	return nil
}

// Warnings are the settings an operator should hear about at start: no
// certificate check, or a PLAIN password sent without TLS.
func (c Config) Warnings() []string {
	var w []string
	if c.InsecureSkipVerify {
		w = append(w, "INSECURE: the Kafka brokers' TLS certificates are NOT verified (tls-insecure-skip-verify): anyone on the network path can impersonate a broker, read and change the log stream and collect the SASL credentials; give the brokers' CA instead")
	}
	if c.Mechanism() == Plain && !c.TLSEnabled() {
		w = append(w, "SASL PLAIN without TLS sends the Kafka password in clear text; enable TLS or use SCRAM")
	}
	return w
}

// TLSConfig returns the client TLS configuration, or nil without TLS.
func (c Config) TLSConfig() (*tls.Config, error) {
	if !c.TLSEnabled() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, &FieldError{"tls-ca", fmt.Sprintf("cannot read: %v", unwrapPath(err))}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FieldError{"tls-ca", c.CAFile + " holds no PEM certificate"}
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, &FieldError{"tls-cert", fmt.Sprintf("cannot load %s with %s: %v", c.CertFile, c.KeyFile, unwrapPath(err))}
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// saslMechanism returns the franz-go SASL mechanism, or nil without SASL.
func (c Config) saslMechanism() sasl.Mechanism {
	switch c.Mechanism() {
	case Plain:
		return plain.Auth{User: c.User, Pass: c.Password}.AsMechanism()
	case ScramSHA256:
		return scram.Auth{User: c.User, Pass: c.Password}.AsSha256Mechanism()
	case ScramSHA512:
		return scram.Auth{User: c.User, Pass: c.Password}.AsSha512Mechanism()
	}
	return nil
}

// Options checks the settings, reads the files they name and returns the
// franz-go options for them (none for the zero Config).
func (c Config) Options() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var opts []kgo.Opt
	tc, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if m := c.saslMechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return append(opts, kgo.WithHooks(closeWatch{sasl: c.Mechanism()})), nil
}

// A broker that refuses a client may just close the connection (the
// embedded broker does so for wrong credentials; Kafka answers with an
// error code first), and the client then only sees EOF. closeWatch notes
// at which request the broker hung up, for Explain.
type closeWatch struct {
	sasl string
}

// Request keys of the Kafka protocol that closeWatch tells apart. (A
// plaintext client hanging up at ApiVersions is explained by franz-go.)
const (
	keySASLAuthenticate = 36
	keyApiVersions      = 18
	keySASLHandshake    = 17
)

// lastClose is the latest hang-up closeWatch saw. A process speaks to
// Kafka with one security configuration, so one place is enough; it only
// refines messages, it never changes what a client does.
var lastClose atomic.Pointer[hangUp]

type hangUp struct {
	at  time.Time
	why string
}

func (w closeWatch) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	err := e2e.ReadErr
	if err == nil {
		err = e2e.WriteErr
	}
	if err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
		return
	}
	var why string
	switch {
	case key == keySASLAuthenticate:
		why = fmt.Sprintf("Kafka closed the connection during SASL %s authentication: the credentials were refused (check the user, the password and the mechanism)", w.sasl)
	case key != keySASLHandshake && key != keyApiVersions && w.sasl == "":
		why = "Kafka closed the connection before serving a request: the broker may require SASL authentication (give a mechanism, user and password)"
	default:
		return
	}
	lastClose.Store(&hangUp{at: time.Now(), why: why})
}

// Explain rewrites a Kafka client error into what the operator should
// check, when it is a security failure: refused credentials, a certificate
// not trusted, TLS spoken to a plaintext port or the reverse. Other errors
// come back unchanged. The original error stays wrapped.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var (
		unknownAuth x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		recordHdr   tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("kafka: refused the SASL credentials (check the user, the password and the mechanism): %w", err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("kafka: does not offer this SASL mechanism (check the mechanism): %w", err)
	case errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("kafka: requires SASL authentication (give a mechanism, user and password): %w", err)
	case errors.As(err, &unknownAuth):
		return fmt.Errorf("the Kafka broker's certificate is not signed by a trusted authority (give its CA): %w", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("the Kafka broker's certificate does not name the broker (check the address or the TLS server name): %w", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("the Kafka broker's certificate is invalid (expired, or not for serving): %w", err)
	case errors.As(err, &recordHdr):
		return fmt.Errorf("the Kafka broker does not speak TLS on this port (drop TLS, or use its TLS listener): %w", err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		if h := lastClose.Load(); h != nil && time.Since(h.at) < time.Minute {
			return fmt.Errorf("%s: %w", h.why, err)
		}
	}
	return err
}

// unwrapPath drops the operation and path of an *os.PathError the caller
// already names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// IsSecurity reports whether err is a security failure Explain knows:
// retrying with the same settings will not help.
func IsSecurity(err error) bool {
	return err != nil && Explain(err) != err
}
