// Package kafka is the `kafka` output: it produces records to Kafka topics
// with franz-go's idempotent producer.
//
// Acknowledgement: Write hands every record of a batch to the producer with
// a promise and returns only when every promise ran; the delivery loop then
// acknowledges the batch to the buffer. A record is therefore acknowledged
// only once the broker acknowledged it (acks=all), and a crash in between
// produces it again: at least once into the topic, with the record's
// stable source id in the sidelog-source-id header so that a kafka input
// downstream writes it exactly once (output/sourceid).
//
// Sizes: batches never exceed the topic's max.message.bytes (read once
// per topic with DescribeConfigs; max_message_bytes caps it further). A
// record too large for any batch is dead-lettered with sidelog's reason. A
// MESSAGE_TOO_LARGE from the broker (a limit lowered after it was read)
// fails a whole batch: its records are produced again one by one, so only
// the record that is too large on its own is dead-lettered.
//
// Errors: a missing topic (with auto_create_topics off) and authorization
// failures block (delivery.BlockedOn the topic, or the whole output):
// records stay in the buffer and are retried until the cause is fixed.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/internal/kafkaconf"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/sourceid"
	"github.com/sidelog/sidelog/output/template"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterOutput("kafka", plugins.Output{
		Config: func() any { return NewConfig() },
		New: func(cfg any, env plugins.OutputEnv) (output.Output, error) {
			return New(cfg.(*Config), env)
		},
	})
}

// Output is the kafka output. It is safe for concurrent use.
type Output struct {
	name     string
	cfg      Config
	logger   *slog.Logger
	topic    *template.Template
	key      *template.Template
	headers  []headerTpl
	idPrefix sourceid.Prefix
	keys     []string
	opts     []kgo.Opt

	mu     sync.Mutex
	cl     *kgo.Client
	closed bool

	limitsMu sync.Mutex
	limits   map[string]int // topic → batch limit in bytes
	warned   map[string]bool

	reach reachability
}

type headerTpl struct {
	name string
	tpl  *template.Template
}

var (
	_ output.Output          = (*Output)(nil)
	_ output.DefaultBufferer = (*Output)(nil)
)

// New builds the output from a validated config. It contacts no broker: the
// client starts with the first Write.
func New(cfg *Config, env plugins.OutputEnv) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := &Output{
		reach:    reachability{output: env.Name, last: map[string]error{}},
		name:     env.Name,
		cfg:      *cfg,
		logger:   logger,
		topic:    template.MustCompile(cfg.Topic),
		idPrefix: sourceid.NewPrefix(env.InstanceID, env.Hostname),
		limits:   map[string]int{},
		warned:   map[string]bool{},
	}
	o.keys = append(o.keys, o.topic.Keys()...)
	if cfg.Key != "" {
		o.key = template.MustCompile(cfg.Key)
		o.keys = append(o.keys, o.key.Keys()...)
	}
	names := make([]string, 0, len(cfg.Headers))
	for n := range cfg.Headers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := template.MustCompile(cfg.Headers[n])
		o.headers = append(o.headers, headerTpl{name: n, tpl: t})
		o.keys = append(o.keys, t.Keys()...)
	}
	opts, err := cfg.Conn.Opts()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence requires it
		kgo.ProducerBatchCompression(compression(cfg.Compression)),
		kgo.ProducerBatchMaxBytesFn(o.batchLimit),
		kgo.RecordDeliveryTimeout(cfg.Timeout),
		kgo.ProduceRequestTimeout(min(cfg.Timeout, 30*time.Second)),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.WithLogger(kafkaconf.Logger(logger)),
		kgo.WithHooks(connHook{&o.reach}),
	)
	if cfg.AutoCreateTopics {
		opts = append(opts, kgo.AllowAutoTopicCreation())
	}
	o.opts = opts
	return o, nil
}

func compression(name string) kgo.CompressionCodec {
	switch name {
	case "zstd":
		return kgo.ZstdCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "snappy":
		return kgo.SnappyCompression()
	case "gzip":
		return kgo.GzipCompression()
	}
	return kgo.NoCompression()
}

// DefaultBuffer: a network output's records wait on disk.
func (o *Output) DefaultBuffer() string { return "disk" }

// InFlight is the number of batches the delivery loop produces at once.
func (o *Output) InFlight() int { return o.cfg.MaxInFlight }

// Keys are the fields the topic, key and header templates read.
func (o *Output) Keys() []string { return o.keys }

// client returns the producer, started on first use.
func (o *Output) client() (*kgo.Client, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, errors.New("kafka: output closed")
	}
	if o.cl == nil {
		cl, err := kgo.NewClient(o.opts...)
		if err != nil {
			return nil, output.PermanentError(fmt.Errorf("kafka: %w", err))
		}
		o.cl = cl
	}
	return o.cl, nil
}

// batchLimit is franz-go's per-topic batch bound: the limit learned before
// the topic's first record was produced.
func (o *Output) batchLimit(topic string) int32 {
	o.limitsMu.Lock()
	defer o.limitsMu.Unlock()
	if l, ok := o.limits[topic]; ok {
		return int32(max(l, minBatchBytes))
	}
	return int32(o.configuredLimit())
}

func (o *Output) configuredLimit() int {
	if o.cfg.MaxMessageBytes > 0 {
		return int(o.cfg.MaxMessageBytes)
	}
	return DefaultBatchBytes
}

// errUnknownTopic: DescribeConfigs says the topic does not exist.
var errUnknownTopic = errors.New("unknown topic")

// topicLimit returns the batch limit of topic: its max.message.bytes
// (DescribeConfigs, once), capped by max_message_bytes. A missing topic
// returns errUnknownTopic unless auto-creation is on.
func (o *Output) topicLimit(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	o.limitsMu.Lock()
	l, ok := o.limits[topic]
	o.limitsMu.Unlock()
	if ok {
		return l, nil
	}
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeTopic
	res.ResourceName = topic
	res.ConfigNames = []string{"max.message.bytes"}
	req.Resources = append(req.Resources, res)
	rctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	resp, err := req.RequestWith(rctx, cl)
	limit := o.configuredLimit()
	known := false
	if err == nil && len(resp.Resources) == 1 {
		r := resp.Resources[0]
		err = kerr.ErrorForCode(r.ErrorCode)
		switch {
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			if !o.cfg.AutoCreateTopics {
				return 0, errUnknownTopic
			}
			return limit, nil // created by the first produce; not cached
		case err == nil:
			for _, c := range r.Configs {
				if c.Name == "max.message.bytes" && c.Value != nil {
					if v, perr := strconv.Atoi(*c.Value); perr == nil && v > 0 {
						limit = min(limit, v)
						if o.cfg.MaxMessageBytes == 0 {
							limit = v
						}
						known = true
					}
				}
			}
		}
	}
	if err != nil && ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if isAuthFailure(err) {
		return 0, authBlocked(err) // not the fallback limit: the credentials are wrong
	}
	if !known {
		if isTransient(err) {
			return 0, fmt.Errorf("kafka: reading topic %s's max.message.bytes: %w", topic, err)
		}
		// No DescribeConfigs permission (or an old broker): the
		// configured limit, said once.
		o.limitsMu.Lock()
		if !o.warned[topic] {
			o.warned[topic] = true
			o.logger.Warn("kafka: cannot read the topic's max.message.bytes: batches are bounded by max_message_bytes (default 1000012)", "topic", topic, "error", fmt.Sprint(err), "limit", limit)
		}
		o.limitsMu.Unlock()
	}
	o.limitsMu.Lock()
	o.limits[topic] = limit
	o.limitsMu.Unlock()
	return limit, nil
}

// isTransient: a network error or a broker error that says "try again".
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	return true // connection errors, timeouts
}

// Write produces a batch and returns once every record is acknowledged by
// the broker or has failed (see the package comment).
func (o *Output) Write(ctx context.Context, batch [][]byte) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	// franz-go keeps a record until its promise runs, which can be after
	// Write returned on ctx's end: the records point into a copy of the
	// batch, never into the buffer's memory (one allocation per batch).
	total := 0
	for _, b := range batch {
		total += len(b)
	}
	slab := make([]byte, 0, total)
	recs := make([]*kgo.Record, len(batch))
	sizes := make([]int, len(batch))
	failed := map[int]error{}
	for i, b := range batch {
		off := len(slab)
		slab = append(slab, b...)
		r, err := decode(slab[off:len(slab):len(slab)])
		if err != nil {
			failed[i] = output.PermanentError(err)
			continue
		}
		kr := &kgo.Record{Topic: string(r.topic), Key: r.key, Value: r.value}
		if len(r.headers) > 0 {
			kr.Headers = make([]kgo.RecordHeader, len(r.headers))
			for j, h := range r.headers {
				kr.Headers[j] = kgo.RecordHeader{Key: string(h.name), Value: h.value}
			}
		}
		recs[i] = kr
		sizes[i] = r.batchBytes()
	}

	// Each topic's limit, once: a missing topic blocks its records; a
	// record that fits in no batch is dead-lettered.
	limits := map[string]int{}
	for i, r := range recs {
		if r == nil {
			continue
		}
		l, seen := limits[r.Topic]
		if !seen {
			var err error
			l, err = o.topicLimit(ctx, cl, r.Topic)
			switch {
			case errors.Is(err, errUnknownTopic):
				l = -1
			case err != nil:
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if _, ok := delivery.AsBlocked(err); ok {
					return err // authentication_failed
				}
				if b := o.reach.block(err); b != nil {
					return b
				}
				return err // retryable: the broker did not answer in time
			}
			limits[r.Topic] = l
		}
		switch {
		case l < 0:
			failed[i] = delivery.BlockedOn(r.Topic, "unknown_topic_or_partition",
				fmt.Errorf("kafka: topic %s does not exist and auto_create_topics is off: records wait until it is created", r.Topic))
			recs[i] = nil
		case sizes[i] > l:
			failed[i] = output.PermanentError(tooLarge(r.Topic, sizes[i], l))
			recs[i] = nil
		}
	}

	errs := o.produce(ctx, cl, recs)
	if errs == nil {
		return ctx.Err()
	}
	// MESSAGE_TOO_LARGE from the broker fails whole batches: produce
	// those records one by one, so only a record too large alone fails.
	var big []int
	for i, err := range errs {
		if err != nil && isTooLarge(err) {
			big = append(big, i)
		}
	}
	if len(big) > 0 {
		o.logger.Warn("kafka: the broker refused a batch as too large: producing its records one by one", "records", len(big))
		for _, i := range big {
			rctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
			res := cl.ProduceSync(rctx, recs[i])
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs[i] = res.FirstErr()
			if errs[i] != nil && isTooLarge(errs[i]) {
				errs[i] = output.PermanentError(fmt.Errorf("kafka: record of %d bytes refused by the broker on its own as too large for topic %s (its max.message.bytes is lower than the %d bytes read before): %w", sizes[i], recs[i].Topic, limits[recs[i].Topic], errs[i]))
			}
		}
	}
	for i, err := range errs {
		if err != nil {
			failed[i] = o.classify(recs[i].Topic, err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &output.BatchError{Failed: failed}
}

// produce produces recs (nil entries skipped) and waits for every promise.
// It returns nil when ctx ended first, else each record's error.
func (o *Output) produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) []error {
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i, r := range recs {
		if r == nil {
			continue
		}
		wg.Add(1)
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return errs
	case <-ctx.Done():
		return nil
	}
}

func isTooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// classify turns a produce error into the delivery loop's classes.
func (o *Output) classify(topic string, err error) error {
	var oe *output.Error
	if errors.As(err, &oe) {
		return err
	}
	// A record timeout carries the last error (a SASL failure, a missing
	// topic): the cases below look at it first.
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return delivery.BlockedOn(topic, "unknown_topic_or_partition",
			fmt.Errorf("kafka: topic %s does not exist and auto_create_topics is off: records wait until it is created: %w", topic, err))
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return delivery.BlockedOn(topic, "topic_authorization_failed",
			fmt.Errorf("kafka: not authorized to write to topic %s (a WRITE ACL is missing): %w", topic, err))
	case errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return delivery.Blocked("cluster_authorization_failed",
			fmt.Errorf("kafka: not authorized to produce idempotently (the IDEMPOTENT_WRITE cluster ACL, or WRITE on a topic, is missing): %w", err))
	case isAuthFailure(err):
		return authBlocked(err)
	case errors.Is(err, kerr.InvalidTopicException):
		return output.PermanentError(fmt.Errorf("kafka: topic %s is not a valid topic name: %w", topic, err))
	case errors.Is(err, kerr.CorruptMessage), errors.Is(err, kerr.InvalidRecord):
		return output.PermanentError(fmt.Errorf("kafka: the broker refused the record: %w", err))
	case errors.Is(err, kgo.ErrRecordTimeout):
		if b := o.reach.block(err); b != nil {
			return b
		}
	}
	return err // retryable: timeouts, leader changes
}

// isAuthFailure: the broker refused the client's SASL credentials.
func isAuthFailure(err error) bool {
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.IllegalSaslState) || errors.Is(err, kerr.UnsupportedSaslMechanism)
}

// authBlocked blocks the whole output on authentication_failed.
func authBlocked(err error) error {
	return delivery.Blocked("authentication_failed", fmt.Errorf("kafka: SASL authentication failed (check sasl.mechanism, username and password): %w", err))
}

// Close flushes what was produced and stops the client. In-flight Writes
// have returned.
func (o *Output) Close(ctx context.Context) error {
	o.mu.Lock()
	cl := o.cl
	o.closed = true
	o.mu.Unlock()
	defer o.reach.close()
	if cl == nil {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := cl.Flush(fctx)
	cl.Close()
	return err
}
