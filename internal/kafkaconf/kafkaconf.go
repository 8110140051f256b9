// Package kafkaconf holds what the kafka output and the kafka input share:
// the connection keys (brokers, sasl, tls) and their translation into
// franz-go client options.
package kafkaconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sidelog/sidelog/plugins"
)

// Conn is the connection part of a kafka input or output.
type Conn struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `yaml:"brokers"`
	// ClientID names the client in the brokers' logs and quotas.
	ClientID string      `yaml:"client_id"`
	SASL     *SASLConfig `yaml:"sasl"`
	TLS      *TLSConfig  `yaml:"tls"`
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration `yaml:"dial_timeout"`
}

// SASLConfig is the `sasl:` block.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// TLSConfig is the `tls:` block.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// DefaultClientID is the client id when none is configured.
const DefaultClientID = "sidelog"

// KeyErr names the key an error is about.
func KeyErr(key, format string, args ...any) error {
	return &plugins.KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Validate checks the connection keys; errors name their key and never
// quote a secret.
func (c *Conn) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, KeyErr(key, format, args...)) }
	if len(c.Brokers) == 0 {
		add("brokers", "at least one broker is required (e.g. [\"127.0.0.1:9092\"])")
	}
	for i, b := range c.Brokers {
		if strings.Contains(b, "://") {
			add(fmt.Sprintf("brokers[%d]", i), "a broker is host:port, without a scheme (TLS is the tls block)")
			continue
		}
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			add(fmt.Sprintf("brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if c.DialTimeout < 0 {
		add("dial_timeout", "must not be negative")
	}
	if s := c.SASL; s != nil {
		switch s.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			add("sasl.mechanism", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", s.Mechanism)
		}
		if s.Username == "" {
			add("sasl.username", "is required")
		}
		if s.Password == "" {
			add("sasl.password", "is required")
		}
	}
	if c.TLS != nil {
		if _, err := c.TLS.build(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t *TLSConfig) build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user's explicit choice
	var errs []error
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			errs = append(errs, KeyErr("tls.ca_file", "%v", err))
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				errs = append(errs, KeyErr("tls.ca_file", "no PEM certificate found in %s", t.CAFile))
			}
			cfg.RootCAs = pool
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		errs = append(errs, KeyErr("tls.key_file", "is required with tls.cert_file"))
	case t.CertFile == "" && t.KeyFile != "":
		errs = append(errs, KeyErr("tls.cert_file", "is required with tls.key_file"))
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			errs = append(errs, KeyErr("tls.cert_file", "%v", err))
		} else {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Opts returns the franz-go options of the connection.
func (c *Conn) Opts() ([]kgo.Opt, error) {
	id := c.ClientID
	if id == "" {
		id = DefaultClientID
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(id)}
	if c.DialTimeout > 0 {
		opts = append(opts, kgo.DialTimeout(c.DialTimeout))
	}
	if c.TLS != nil {
		t, err := c.TLS.build()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(t))
	}
	if s := c.SASL; s != nil {
		switch s.Mechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()))
		default:
			return nil, KeyErr("sasl.mechanism", "unknown mechanism %q", s.Mechanism)
		}
	}
	return opts, nil
}
