package datadog

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sidelog/sidelog/output/template"
	"github.com/sidelog/sidelog/plugins"
)

// Sites are the Datadog sites whose log intake the output knows
// (https://http-intake.logs.<site>/api/v2/logs).
var Sites = []string{
	"datadoghq.com",
	"datadoghq.eu",
	"us3.datadoghq.com",
	"us5.datadoghq.com",
	"ap1.datadoghq.com",
	"ap2.datadoghq.com",
	"uk1.datadoghq.com",
	"ddog-gov.com",
	"us2.ddog-gov.com",
}

// Config is the `datadog` output's part of an `outputs:` entry. The keys
// name, type, route, buffer, batch and retry belong to the engine.
type Config struct {
	// APIKey is sent as DD-API-KEY; write it as ${DD_API_KEY} or
	// ${file:/path}. It never appears in logs or errors.
	APIKey string `yaml:"api_key"`
	// Site selects the intake: https://http-intake.logs.<site>.
	Site string `yaml:"site"`
	// Endpoint overrides the site with a base URL (proxies, tests): logs go
	// to <endpoint>/api/v2/logs.
	Endpoint string `yaml:"endpoint"`
	// Service is a template ({{ field }}) giving the `service` attribute.
	Service string `yaml:"service"`
	// Source is a template giving `ddsource`.
	Source string `yaml:"source"`
	// Tags are sent as `ddtags`; each is a template ("team:{{ team }}"). A
	// tag whose template renders empty, or ends with ':' because its field
	// is missing, is left out.
	Tags []string `yaml:"tags"`
	// Hostname is a template giving `hostname`. Default: $POD_NAME, else
	// $NODE_NAME, else the machine's host name.
	Hostname string `yaml:"hostname"`
	// Compression of request bodies: gzip | none.
	Compression string `yaml:"compression"`
	// StatusKey is the record field (dotted paths allowed) whose value
	// becomes the log's `status` (its level).
	StatusKey string `yaml:"status_key"`
	// RequestTimeout bounds one HTTP request, including reading the answer.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxInFlight is the number of requests sent at once: the engine's
	// delivery loop keeps that many batches in flight (InFlight), so that
	// one batch is prepared while the previous one waits for its answer.
	MaxInFlight int `yaml:"max_in_flight"`
	// AuthErrorBackoff is the wait before retrying after a 401/403 (bad API
	// key): long, so that a wrong key does not hammer the intake.
	AuthErrorBackoff time.Duration `yaml:"auth_error_backoff"`
	// TooOld says what happens to a record older than the intake accepts
	// (18 hours) when it is sent: dead_letter (the default: the dead-letter
	// file, reason "older than the intake accepts"), redate (sent with the
	// current time, its own in original_timestamp and the tag
	// sidelog_redated:true) or drop (counted, too_old_dropped).
	TooOld string `yaml:"too_old"`
	// MessageKey names the top-level field sent as the entry's message; the
	// record's other fields become the entry's attributes (Fluent Bit's
	// dd_message_key, Vector's datadog_logs). Empty: the whole record is
	// sent as JSON in message.
	MessageKey string `yaml:"message_key"`
	// TLS configures the connection to the intake (or to an endpoint, a
	// proxy that terminates TLS).
	TLS *TLSConfig `yaml:"tls"`
	// Proxy is an HTTP(S) proxy URL for every request; empty: HTTPS_PROXY,
	// HTTP_PROXY and NO_PROXY from the environment.
	Proxy string `yaml:"proxy"`
}

// TLSConfig is the `tls:` block.
type TLSConfig struct {
	// CAFile is a PEM file of certificates to trust besides the system's
	// (a proxy's or a private endpoint's CA).
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify turns certificate verification off (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// too_old values.
const (
	TooOldDeadLetter = "dead_letter"
	TooOldRedate     = "redate"
	TooOldDrop       = "drop"
)

// DefaultMaxInFlight is the default of max_in_flight.
const DefaultMaxInFlight = 2

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		Site:             "datadoghq.com",
		Compression:      "gzip",
		StatusKey:        "level",
		RequestTimeout:   30 * time.Second,
		MaxInFlight:      DefaultMaxInFlight,
		AuthErrorBackoff: 60 * time.Second,
		TooOld:           TooOldDeadLetter,
	}
}

func keyErr(key string, format string, args ...any) error {
	return &plugins.KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Validate checks what the types alone cannot. All problems are reported,
// each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.APIKey) == "" {
		errs = append(errs, keyErr("api_key", "required (write it as ${DD_API_KEY} or ${file:/path})"))
	} else if strings.ContainsAny(c.APIKey, " \t\r\n") {
		// Never print the key itself.
		errs = append(errs, keyErr("api_key", "contains white space"))
	}
	if c.Endpoint == "" {
		if !slices.Contains(Sites, c.Site) {
			errs = append(errs, keyErr("site", "unknown site %q (known: %s)", c.Site, strings.Join(Sites, ", ")))
		}
	} else if _, _, err := parseEndpoint(c.Endpoint); err != nil {
		errs = append(errs, keyErr("endpoint", "%v", err))
	}
	switch c.Compression {
	case "gzip", "none":
	default:
		errs = append(errs, keyErr("compression", "must be gzip or none, not %q", c.Compression))
	}
	for key, src := range map[string]string{"service": c.Service, "source": c.Source, "hostname": c.Hostname} {
		if _, err := template.Compile(src); err != nil {
			errs = append(errs, keyErr(key, "%v", err))
		}
	}
	for i, t := range c.Tags {
		if strings.TrimSpace(t) == "" {
			errs = append(errs, keyErr(fmt.Sprintf("tags[%d]", i), "empty tag"))
		} else if strings.Contains(t, ",") {
			errs = append(errs, keyErr(fmt.Sprintf("tags[%d]", i), "a tag cannot hold a comma (ddtags are comma-separated)"))
		} else if _, err := template.Compile(t); err != nil {
			errs = append(errs, keyErr(fmt.Sprintf("tags[%d]", i), "%v", err))
		}
	}
	if c.StatusKey == "" || strings.ContainsAny(c.StatusKey, "{}%? \t") {
		errs = append(errs, keyErr("status_key", "must be a field name or dotted path, not %q", c.StatusKey))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, keyErr("request_timeout", "must be positive"))
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 64 {
		errs = append(errs, keyErr("max_in_flight", "must be between 1 and 64, not %d", c.MaxInFlight))
	}
	if c.AuthErrorBackoff <= 0 {
		errs = append(errs, keyErr("auth_error_backoff", "must be positive"))
	}
	switch c.TooOld {
	case TooOldDeadLetter, TooOldRedate, TooOldDrop:
	default:
		errs = append(errs, keyErr("too_old", "must be dead_letter, redate or drop, not %q", c.TooOld))
	}
	if c.MessageKey != "" && (strings.ContainsAny(c.MessageKey, "{}%?. \t") || strings.TrimSpace(c.MessageKey) == "") {
		errs = append(errs, keyErr("message_key", "must be a top-level field name, not %q", c.MessageKey))
	}
	if c.Proxy != "" {
		if u, err := url.Parse(c.Proxy); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, keyErr("proxy", "must be an http:// or https:// URL with a host")) // never print it: it may hold a password
		}
	}
	if c.TLS != nil {
		if _, err := c.TLS.build(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseEndpoint splits a base URL into the protocol and the rest
// (host[:port][/path]) that the client's "{protocol}://{name}" server takes.
func parseEndpoint(s string) (protocol, name string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("invalid URL %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("%q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("%q: a base URL has no query, fragment or user info", s)
	}
	return u.Scheme, u.Host + strings.TrimRight(u.EscapedPath(), "/"), nil
}
