package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/internal/kafkaopt"
)

// kafkaFlags are the Kafka client security flags every command that talks
// to Kafka takes (agent, ship, chaos).
type kafkaFlags struct {
	cfg kafkaopt.Config
}

// add defines the flags on fs.
func (k *kafkaFlags) add(fs *pflag.FlagSet) {
	c := &k.cfg
	fs.BoolVar(&c.TLS, "kafka-tls", false, "dial the Kafka brokers with TLS (implied by any other --kafka-tls-* flag)")
	fs.StringVar(&c.CAFile, "kafka-tls-ca", "", "PEM bundle of the authorities that sign the brokers' certificates (default: the system's)")
	fs.StringVar(&c.CertFile, "kafka-tls-cert", "", "PEM client certificate, for brokers that require one (with --kafka-tls-key)")
	fs.StringVar(&c.KeyFile, "kafka-tls-key", "", "PEM key of --kafka-tls-cert")
	fs.StringVar(&c.ServerName, "kafka-tls-server-name", "", "name the brokers' certificates must carry (default: the host of each broker address)")
	fs.BoolVar(&c.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "INSECURE, for trials only: accept any broker certificate, so anyone on the path can read and change the stream and take the password")
	fs.StringVar(&c.SASL, "kafka-sasl", "", "SASL mechanism: "+strings.Join(kafkaopt.Mechanisms, ", ")+" (with --kafka-user and --kafka-password)")
	fs.StringVar(&c.User, "kafka-user", "", "SASL user")
	fs.StringVar(&c.Password, "kafka-password", "", "SASL password ($WARDEN_KAFKA_PASSWORD)")
	config.MarkSecret(fs, "kafka-password")
}

// options checks the flags, reads the files they name and returns the
// franz-go options; warn receives what an operator must hear at start.
func (k *kafkaFlags) options(warn func(string)) ([]kgo.Opt, error) {
	opts, err := k.cfg.Options()
	if err != nil {
		var fe *kafkaopt.FieldError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("--kafka-%s: %s", fe.Field, fe.Msg)
		}
		return nil, err
	}
	for _, w := range k.cfg.Warnings() {
		warn(w)
	}
	return opts, nil
}

// args renders the flags for a child process (chaos's agents), the
// password as a file so that it stays out of process lists.
func (k *kafkaFlags) args(passwordFile string) []string {
	c := k.cfg
	var a []string
	if c.TLSEnabled() {
		a = append(a, "--kafka-tls")
	}
	for _, f := range []struct{ name, v string }{
		{"kafka-tls-ca", c.CAFile}, {"kafka-tls-cert", c.CertFile}, {"kafka-tls-key", c.KeyFile},
		{"kafka-tls-server-name", c.ServerName}, {"kafka-sasl", c.SASL}, {"kafka-user", c.User},
	} {
		if f.v != "" {
			a = append(a, "--"+f.name, f.v)
		}
	}
	if c.InsecureSkipVerify {
		a = append(a, "--kafka-tls-insecure-skip-verify")
	}
	if c.Password != "" {
		a = append(a, "--kafka-password-file", passwordFile)
	}
	return a
}
