package kafka

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/internal/kafkaconf"
	"github.com/sidelog/sidelog/output/template"
)

// Config is the plugin's part of an `outputs[]` entry of type kafka (name,
// type, route, buffer, batch and retry are decoded by the engine).
type Config struct {
	// Brokers, client_id, sasl, tls, dial_timeout.
	kafkaconf.Conn `yaml:",inline"`
	// Topic is a template (output/template); rendered names are sanitised.
	Topic string `yaml:"topic"`
	// Key is a template; a record whose key renders empty has no key.
	Key string `yaml:"key"`
	// Headers are Kafka record headers: name → template.
	Headers map[string]string `yaml:"headers"`
	// Compression of record batches: zstd, lz4, snappy, gzip or none.
	Compression string `yaml:"compression"`
	// Acks must be all: the producer is idempotent, which Kafka requires
	// acks=all for.
	Acks string `yaml:"acks"`
	// AutoCreateTopics lets the broker create a missing topic (its
	// auto.create.topics.enable must be on too). Off: a missing topic
	// blocks its records until it exists.
	AutoCreateTopics bool `yaml:"auto_create_topics"`
	// MaxMessageBytes bounds one record batch. 0: each topic's
	// max.message.bytes, read with DescribeConfigs (1,000,012 bytes when it
	// cannot be read); set: the smaller of it and the topic's.
	MaxMessageBytes units.Size `yaml:"max_message_bytes"`
	// Timeout bounds the delivery of one record (produce retries included)
	// before the batch is handed back to the delivery loop's backoff.
	Timeout time.Duration `yaml:"timeout"`
	// MaxInFlight is the number of batches produced concurrently.
	MaxInFlight int `yaml:"max_in_flight"`
}

// Defaults.
const (
	DefaultCompression = "zstd"
	DefaultTimeout     = 30 * time.Second
	DefaultMaxInFlight = 4
	// DefaultBatchBytes is franz-go's and Kafka's default batch bound, used
	// when a topic's max.message.bytes cannot be read.
	DefaultBatchBytes = 1_000_012
	minBatchBytes     = 512 // franz-go's lower bound of a batch limit
)

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		Compression: DefaultCompression,
		Acks:        "all",
		Timeout:     DefaultTimeout,
		MaxInFlight: DefaultMaxInFlight,
	}
}

var keyErr = kafkaconf.KeyErr

// Validate checks values and combinations; errors name their key.
func (c *Config) Validate() error {
	errs := []error{c.Conn.Validate()}
	add := func(key, format string, args ...any) { errs = append(errs, keyErr(key, format, args...)) }
	if c.Topic == "" {
		add("topic", "is required (a template, e.g. 'logs-{{ kubernetes.namespace ?? \"default\" }}')")
	} else if t, err := template.Compile(c.Topic); err != nil {
		add("topic", "%v", err)
	} else if lit := t.Literals(); strings.IndexFunc(lit, func(r rune) bool { return !topicChar(r) }) >= 0 {
		add("topic", "topic names hold only ASCII letters, digits, '.', '_' and '-': %q", c.Topic)
	}
	if c.Key != "" {
		if _, err := template.Compile(c.Key); err != nil {
			add("key", "%v", err)
		}
	}
	for name, v := range c.Headers {
		if name == "" {
			add("headers", "a header name is empty")
			continue
		}
		if strings.EqualFold(name, sourceIDHeader) {
			add("headers."+name, "%s is the header sidelog writes the record's source id into", sourceIDHeader)
		}
		if _, err := template.Compile(v); err != nil {
			add("headers."+name, "%v", err)
		}
	}
	switch c.Compression {
	case "zstd", "lz4", "snappy", "gzip", "none":
	default:
		add("compression", "must be zstd, lz4, snappy, gzip or none, not %q", c.Compression)
	}
	switch strings.ToLower(c.Acks) {
	case "all", "-1":
	default:
		add("acks", "must be all (the producer is idempotent: Kafka requires acks=all for it, and acks %s could lose records the broker accepted), not %q", c.Acks, c.Acks)
	}
	if c.MaxMessageBytes != 0 && (c.MaxMessageBytes < minBatchBytes || c.MaxMessageBytes > 1<<30) {
		add("max_message_bytes", "must be between %d and 1GiB, not %s", minBatchBytes, strconv.FormatInt(int64(c.MaxMessageBytes), 10))
	}
	if c.Timeout <= 0 {
		add("timeout", "must be positive, not %s", c.Timeout)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 64 {
		add("max_in_flight", "must be between 1 and 64, not %d", c.MaxInFlight)
	}
	return errors.Join(errs...)
}

func topicChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// maxTopicLen is Kafka's longest topic name.
const maxTopicLen = 249

// sanitizeTopic rewrites a rendered topic name in place: characters Kafka
// refuses become '_'; the name is cut at 249 bytes; "." and ".." (refused)
// become "_" and "__".
func sanitizeTopic(b []byte) []byte {
	if len(b) > maxTopicLen {
		b = b[:maxTopicLen]
	}
	for i, c := range b {
		if !topicChar(rune(c)) {
			b[i] = '_'
		}
	}
	if s := string(b); s == "." || s == ".." {
		for i := range b {
			b[i] = '_'
		}
	}
	return b
}

// The connection blocks, shared with the kafka input.
type (
	SASLConfig = kafkaconf.SASLConfig
	TLSConfig  = kafkaconf.TLSConfig
)
