package elasticsearch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/output/template"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the plugin's part of an `outputs[]` entry of type elasticsearch.
// (name, type, route, buffer, batch and retry are decoded by the engine.)
type Config struct {
	// Endpoints are the base URLs of the cluster's nodes; requests go
	// round-robin and fail over to the next node on connection errors and
	// 502/503/504.
	Endpoints []string `yaml:"endpoints"`
	// Index is a template (output/template): `app-{{ service }}-%Y.%m.%d`.
	// Default: `sidelog-%Y.%m.%d` in bulk mode, `logs-sidelog-default` in
	// data_stream mode.
	Index string `yaml:"index"`
	// Mode is bulk (op_type index) or data_stream (op_type create).
	Mode string `yaml:"mode"`
	// ID is source (a stable _id per source line) or none (ES assigns ids).
	ID string `yaml:"id"`
	// IDKey takes each document's _id from this record field (a dotted
	// path); records without it get the id that ID says.
	IDKey string `yaml:"id_key"`
	// Routing is an optional template of the routing key (`{{ tenant }}`);
	// a record for which it renders empty is sent without one.
	Routing string `yaml:"routing"`
	// Pipeline is an optional ingest pipeline.
	Pipeline string `yaml:"pipeline"`
	// Compression of request bodies: gzip or none.
	Compression string `yaml:"compression"`
	// MaxInFlight bounds concurrent bulk requests of this output.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxRequestBytes bounds one bulk request's uncompressed body; a larger
	// batch is split into several requests.
	MaxRequestBytes units.Size `yaml:"max_request_bytes"`
	// Timeout bounds one bulk request (connect, send, wait for the answer).
	Timeout time.Duration `yaml:"timeout"`
	// Setup creates an index template for the output's names when none
	// of that name exists (at run, after the start-up probe): default
	// true in data_stream mode, false in bulk mode. See setup.go.
	Setup *bool `yaml:"setup"`
	// Lifecycle names an existing ILM policy (Elasticsearch) that the
	// template created by setup sets on new indices.
	Lifecycle string `yaml:"lifecycle"`
	// ECS adds the Elastic Common Schema fields (agent, host, log,
	// data_stream) and writes the kubernetes object in ECS form (ecs.go).
	ECS bool `yaml:"ecs"`

	Username    string     `yaml:"username"`
	Password    string     `yaml:"password"`
	APIKey      string     `yaml:"api_key"`
	BearerToken string     `yaml:"bearer_token"`
	TLS         *TLSConfig `yaml:"tls"`

	// Managed services (aws.go, cloud.go): SigV4 signing, Elastic Cloud.
	Auth    *AuthConfig `yaml:"auth"`
	CloudID string      `yaml:"cloud_id"`
}

// TLSConfig is the `tls:` block.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// CAFingerprint pins the server's CA or leaf certificate by its
	// SHA-256 fingerprint (fingerprint.go).
	CAFingerprint string `yaml:"ca_fingerprint"`
}

// Defaults.
const (
	DefaultMaxInFlight     = 2
	DefaultMaxRequestBytes = 10 << 20
	DefaultTimeout         = 30 * time.Second
	defaultBulkIndex       = "sidelog-%Y.%m.%d"
	defaultStreamIndex     = "logs-sidelog-default"
)

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		Mode:            "bulk",
		ID:              "source",
		Compression:     "gzip",
		MaxInFlight:     DefaultMaxInFlight,
		MaxRequestBytes: DefaultMaxRequestBytes,
		Timeout:         DefaultTimeout,
	}
}

func keyErr(key, format string, args ...any) error {
	return &plugins.KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// indexTemplate returns the effective index template source.
func (c *Config) indexTemplate() string {
	if c.Index != "" {
		return c.Index
	}
	if c.Mode == "data_stream" {
		return defaultStreamIndex
	}
	return defaultBulkIndex
}

// setup reports whether setup is on (its default depends on the mode).
func (c *Config) setup() bool {
	if c.Setup != nil {
		return *c.Setup
	}
	return c.Mode == "data_stream"
}

// Validate checks values and combinations; errors name their key. It never
// quotes a secret.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, keyErr(key, format, args...)) }

	if len(c.Endpoints) == 0 && c.CloudID == "" {
		add("endpoints", "at least one endpoint (e.g. [\"https://127.0.0.1:9200\"]) or cloud_id is required")
	}
	for i, ep := range c.Endpoints {
		key := fmt.Sprintf("endpoints[%d]", i)
		u, err := url.Parse(ep)
		if err != nil {
			// url.Parse quotes its input; it may hold credentials.
			add(key, "not a valid URL")
			continue
		}
		if u.User != nil {
			add(key, "credentials in the URL are not accepted: use username/password, api_key or bearer_token")
			continue
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			add(key, "scheme must be http or https, not %q", u.Scheme)
		}
		if u.Host == "" {
			add(key, "no host in %q", ep)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			add(key, "query strings and fragments are not accepted in %q", u.Scheme+"://"+u.Host+u.Path)
		}
	}

	switch c.Mode {
	case "bulk", "data_stream":
	default:
		add("mode", "must be bulk or data_stream, not %q", c.Mode)
	}
	switch c.ID {
	case "source", "none":
	default:
		add("id", "must be source or none, not %q", c.ID)
	}
	switch c.Compression {
	case "gzip", "none":
	default:
		add("compression", "must be gzip or none, not %q", c.Compression)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 64 {
		add("max_in_flight", "must be between 1 and 64, not %d", c.MaxInFlight)
	}
	if c.MaxRequestBytes < 1024 {
		add("max_request_bytes", "must be at least 1KiB, not %s", c.MaxRequestBytes)
	}
	if c.Timeout <= 0 {
		add("timeout", "must be positive, not %s", c.Timeout)
	}
	if t, err := template.Compile(c.indexTemplate()); err != nil {
		add("index", "%v", err)
	} else if lit := t.Literals(); lit != strings.ToLower(lit) {
		add("index", "index names must be lowercase: %q", c.Index)
	} else if i := strings.IndexAny(lit, invalidIndexChars); i >= 0 {
		add("index", "%q may not appear in an index name", lit[i:i+1])
	} else if t.IsStatic() {
		if err := checkIndexName([]byte(lit)); err != nil {
			add("index", "%q: %v", lit, err)
		}
	} else if g := t.Glob(); g[0] == '-' || g[0] == '_' || g[0] == '+' {
		add("index", "%q: an index name must not start with %q", c.Index, g[0])
	}
	if c.IDKey != "" {
		if _, err := template.Compile("{{ " + c.IDKey + " }}"); err != nil || strings.ContainsAny(c.IDKey, "{}%") {
			add("id_key", "not a field name or dotted path: %q", c.IDKey)
		}
	}
	if c.Routing != "" {
		if _, err := template.Compile(c.Routing); err != nil {
			add("routing", "%v", err)
		}
	}
	if c.Setup != nil && *c.Setup {
		if t, err := template.Compile(c.indexTemplate()); err == nil && strings.HasPrefix(t.Glob(), "*") {
			add("setup", "the index %q starts with a field or a date: an index template for it would match every index (*); create the template yourself, or start the name with fixed text", c.indexTemplate())
		}
	}
	if c.Lifecycle != "" && !c.setup() {
		add("lifecycle", "is applied by the template that setup creates: set setup: true")
	}
	if strings.ContainsAny(c.Lifecycle, "\"\\\n") {
		add("lifecycle", "invalid policy name %q", c.Lifecycle)
	}
	if strings.ContainsAny(c.Pipeline, "\"\\\n") {
		add("pipeline", "invalid pipeline name %q", c.Pipeline)
	}

	// Authentication: one method.
	var methods []string
	if c.Username != "" || c.Password != "" {
		if c.Username == "" {
			add("username", "is required with password")
		}
		if c.Password == "" {
			add("password", "is required with username")
		}
		methods = append(methods, "username/password")
	}
	if c.APIKey != "" {
		methods = append(methods, "api_key")
	}
	if c.BearerToken != "" {
		methods = append(methods, "bearer_token")
	}
	if len(methods) > 1 {
		key := "api_key"
		if c.APIKey == "" {
			key = "bearer_token"
		}
		add(key, "set only one of username/password, api_key and bearer_token (found %s)", strings.Join(methods, ", "))
	}

	c.validateManaged(add)

	if c.TLS != nil {
		if _, err := c.TLS.build(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// build loads the TLS files. Errors name their key.
func (t *TLSConfig) build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user's explicit choice
	var errs []error
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			errs = append(errs, keyErr("tls.ca_file", "%v", err))
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				errs = append(errs, keyErr("tls.ca_file", "no PEM certificate found in %s", t.CAFile))
			}
			cfg.RootCAs = pool
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		errs = append(errs, keyErr("tls.key_file", "is required with tls.cert_file"))
	case t.CertFile == "" && t.KeyFile != "":
		errs = append(errs, keyErr("tls.cert_file", "is required with tls.key_file"))
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// tls errors name files and PEM problems, never key material.
			errs = append(errs, keyErr("tls.cert_file", "%v", err))
		} else {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	if t.CAFingerprint != "" {
		if fp, err := parseFingerprint(t.CAFingerprint); err != nil {
			errs = append(errs, keyErr("tls.ca_fingerprint", "%v", err))
		} else {
			pinFingerprint(cfg, fp)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// invalidIndexChars may not appear in an Elasticsearch index name.
const invalidIndexChars = "\\/*?\"<>| ,#:"
