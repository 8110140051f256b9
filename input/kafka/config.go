package kafka

import (
	"errors"
	"regexp"
	"time"

	"github.com/sidelog/sidelog/internal/kafkaconf"
)

// Config is the kafka input's part of an input's YAML mapping (name, type
// and the parser keys are decoded by the config loader).
type Config struct {
	// Brokers, client_id, sasl, tls, dial_timeout.
	kafkaconf.Conn `yaml:",inline"`
	// Topics to consume; or TopicRegex.
	Topics []string `yaml:"topics"`
	// TopicRegex consumes every topic whose name matches (RE2).
	TopicRegex string `yaml:"topic_regex"`
	// Group is the consumer group; aggregators of one tier share it.
	Group string `yaml:"group"`
	// StartOffset is where a partition without a committed offset starts:
	// earliest or latest.
	StartOffset string `yaml:"start_offset"`
	// MaxPollRecords bounds one poll (and so one emitted batch per
	// partition).
	MaxPollRecords int `yaml:"max_poll_records"`
	// CommitInterval is the shortest pause between two offset commits.
	// Acknowledged offsets are committed as soon as they move (a group
	// commit), at most once per interval.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// RevokeTimeout bounds how long a partition being revoked (a
	// rebalance) waits for the acknowledgements of the records already
	// emitted before its offset is committed and it is given up.
	RevokeTimeout time.Duration `yaml:"revoke_timeout"`
	// SessionTimeout is how long the group waits for a silent member (a
	// killed aggregator) before it gives its partitions to the others.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// DrainTimeout bounds the wait for acknowledgements on a stop when
	// the input runs without the pipeline's shutdown deadline.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// Defaults.
const (
	DefaultMaxPollRecords = 1000
	DefaultCommitInterval = 100 * time.Millisecond
	DefaultRevokeTimeout  = 10 * time.Second
	DefaultDrainTimeout   = 25 * time.Second
	DefaultSessionTimeout = 45 * time.Second // Kafka's default
)

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		StartOffset:    "earliest",
		MaxPollRecords: DefaultMaxPollRecords,
		CommitInterval: DefaultCommitInterval,
		RevokeTimeout:  DefaultRevokeTimeout,
		DrainTimeout:   DefaultDrainTimeout,
		SessionTimeout: DefaultSessionTimeout,
	}
}

var keyErr = kafkaconf.KeyErr

// Validate checks values and combinations; errors name their key.
func (c *Config) Validate() error {
	errs := []error{c.Conn.Validate()}
	add := func(key, format string, args ...any) { errs = append(errs, keyErr(key, format, args...)) }
	switch {
	case len(c.Topics) == 0 && c.TopicRegex == "":
		add("topics", "set topics or topic_regex")
	case len(c.Topics) > 0 && c.TopicRegex != "":
		add("topic_regex", "set topics or topic_regex, not both")
	}
	for i, t := range c.Topics {
		if t == "" {
			add("topics", "topic %d is empty", i)
		}
	}
	if c.TopicRegex != "" {
		if _, err := regexp.Compile(c.TopicRegex); err != nil {
			add("topic_regex", "%v", err)
		}
	}
	if c.Group == "" {
		add("group", "is required: the consumer group whose committed offsets say what was taken")
	}
	switch c.StartOffset {
	case "earliest", "latest":
	default:
		add("start_offset", "must be earliest or latest, not %q", c.StartOffset)
	}
	if c.MaxPollRecords < 1 {
		add("max_poll_records", "must be at least 1")
	}
	if c.SessionTimeout < 0 {
		add("session_timeout", "must not be negative")
	}
	if c.CommitInterval < 0 || c.RevokeTimeout < 0 || c.DrainTimeout < 0 {
		add("commit_interval", "durations must not be negative")
	}
	return errors.Join(errs...)
}
