package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/internal/kafkatest"
	"github.com/sidelog/sidelog/internal/syncbuf"
	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/sourceid"
	"github.com/sidelog/sidelog/plugins"
)

func newOutput(t *testing.T, brokers []string, mod func(*Config)) *Output {
	t.Helper()
	return newOutputLog(t, brokers, mod, nil)
}

func newOutputLog(t *testing.T, brokers []string, mod func(*Config), log *slog.Logger) *Output {
	t.Helper()
	c := NewConfig()
	c.Brokers = brokers
	c.Topic = "t"
	c.Timeout = 20 * time.Second
	if mod != nil {
		mod(c)
	}
	o, err := New(c, plugins.OutputEnv{Name: "bus", InstanceID: "i-1", Hostname: "h", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	return o
}

func jsonEvent(raw string, fields map[string]any, off int64) *event.Event {
	return &event.Event{
		Raw: []byte(raw), Fields: fields, Flags: event.RawJSON, Time: time.Unix(1700000000, 0),
		Pos: event.Position{FileID: event.FileID{Dev: 1, Ino: 2, Fingerprint: 3}, Offset: off},
	}
}

func encodeAll(t *testing.T, o *Output, evs ...*event.Event) [][]byte {
	t.Helper()
	var out [][]byte
	for _, e := range evs {
		b, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string // "" valid
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Acks = "-1" }, ""},
		{func(c *Config) { c.Acks = "1" }, "acks: must be all (the producer is idempotent"},
		{func(c *Config) { c.Acks = "0" }, "acks: must be all"},
		{func(c *Config) { c.Brokers = nil }, "brokers: at least one broker"},
		{func(c *Config) { c.Brokers = []string{"kafka://a:9092"} }, "brokers[0]: a broker is host:port"},
		{func(c *Config) { c.Brokers = []string{"a"} }, `brokers[0]: "a" is not host:port`},
		{func(c *Config) { c.Topic = "" }, "topic: is required"},
		{func(c *Config) { c.Topic = "logs/{{ a }}" }, "topic: topic names hold only"},
		{func(c *Config) { c.Topic = "logs-{{ a" }, "topic:"},
		{func(c *Config) { c.Compression = "brotli" }, "compression: must be zstd, lz4, snappy, gzip or none"},
		{func(c *Config) { c.Headers = map[string]string{"sidelog-source-id": "x"} }, "headers.sidelog-source-id:"},
		{func(c *Config) { c.MaxMessageBytes = 100 }, "max_message_bytes: must be between 512"},
		{func(c *Config) { c.MaxInFlight = 0 }, "max_in_flight"},
		{func(c *Config) { c.SASL = &SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "p"} }, "sasl.mechanism: must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{func(c *Config) { c.SASL = &SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u"} }, "sasl.password: is required"},
		{func(c *Config) { c.TLS = &TLSConfig{CAFile: "/nonexistent/ca.pem"} }, "tls.ca_file:"},
	} {
		c := NewConfig()
		c.Brokers = []string{"127.0.0.1:9092"}
		c.Topic = "logs-{{ service }}"
		tc.mod(c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("want %q, got %v", tc.want, err)
		}
		if err != nil && c.SASL != nil && c.SASL.Password != "" && strings.Contains(err.Error(), c.SASL.Password) {
			t.Errorf("the error quotes the password: %v", err)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	o := newOutput(t, []string{"127.0.0.1:1"}, func(c *Config) {
		c.Topic = "logs-{{ kubernetes.namespace ?? \"none\" }}"
		c.Key = "{{ pod }}"
		c.Headers = map[string]string{"service": "{{ service }}", "b": "static"}
	})
	e := jsonEvent(`{"pod":"p-1","service":"checkout","kubernetes":{"namespace":"Shop/Å"}}`,
		map[string]any{"pod": "p-1", "service": "checkout", "kubernetes": map[string]any{"namespace": "Shop/Å"}}, 42)
	b, err := o.Encode([]byte("prefix"), e)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decode(b[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}
	if string(r.topic) != "logs-Shop___" { // '/' and the two bytes of Å
		t.Errorf("topic %q", r.topic)
	}
	if string(r.key) != "p-1" || string(r.value) != string(e.Raw) {
		t.Errorf("key %q value %q", r.key, r.value)
	}
	want, _ := sourceid.NewPrefix("i-1", "h").FromPosition(e.Pos)
	got := map[string]string{}
	var names []string
	for _, h := range r.headers {
		got[string(h.name)] = string(h.value)
		names = append(names, string(h.name))
	}
	if strings.Join(names, ",") != "sidelog-source-id,b,service" || got["sidelog-source-id"] != string(want[:]) || got["service"] != "checkout" || got["b"] != "static" {
		t.Errorf("headers %v", got)
	}

	// An id given by the input travels as it is; no key renders no key.
	e2 := &event.Event{Fields: map[string]any{"kubernetes": map[string]any{"namespace": "a"}}, Flags: event.Modified, ID: "upstream-id"}
	b, _ = o.Encode(nil, e2)
	r, _ = decode(b)
	if r.key != nil || string(r.headers[0].value) != "upstream-id" || string(r.topic) != "logs-a" {
		t.Errorf("%q %q %q", r.key, r.headers[0].value, r.topic)
	}
	// A record without a position or id has no source-id header.
	e3 := &event.Event{Fields: map[string]any{}, Flags: event.Modified}
	b, _ = o.Encode(nil, e3)
	r, _ = decode(b)
	if string(r.topic) != "logs-none" || len(r.headers) != 2 {
		t.Errorf("%q %d headers", r.topic, len(r.headers))
	}

	// Every truncation of a record is refused, never a panic.
	for i := range len(b) - 1 {
		if _, err := decode(b[:i]); err == nil && i < len(b)-len(r.value) {
			t.Errorf("truncated at %d decoded", i)
		}
	}

	// An empty topic is an encode error.
	o2 := newOutput(t, []string{"127.0.0.1:1"}, func(c *Config) { c.Topic = "{{ missing }}" })
	if _, err := o2.Encode(nil, e3); !errors.Is(err, errEmptyTopic) {
		t.Errorf("empty topic: %v", err)
	}
}

func TestSanitizeTopic(t *testing.T) {
	for in, want := range map[string]string{
		"logs-app.v1_x": "logs-app.v1_x", "a b/c": "a_b_c", ".": "_", "..": "__",
		strings.Repeat("x", 300): strings.Repeat("x", 249),
	} {
		if got := string(sanitizeTopic([]byte(in))); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	o := &Output{}
	for _, tc := range []struct {
		err    error
		reason string // blocked reason, or the class name
		key    string
	}{
		{kerr.UnknownTopicOrPartition, "unknown_topic_or_partition", "t"},
		{kerr.TopicAuthorizationFailed, "topic_authorization_failed", "t"},
		{kerr.ClusterAuthorizationFailed, "cluster_authorization_failed", ""},
		{fmt.Errorf("wrapped: %w", kerr.SaslAuthenticationFailed), "authentication_failed", ""},
		// franz-go's record timeout carries the last error.
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.SaslAuthenticationFailed), "authentication_failed", ""},
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.UnknownTopicOrPartition), "unknown_topic_or_partition", "t"},
		{kgo.ErrRecordTimeout, "retryable", ""}, // brokers answer (no connection attempt failed)
		{kerr.InvalidTopicException, "permanent", ""},
		{kerr.NotLeaderForPartition, "retryable", ""},
		{context.DeadlineExceeded, "retryable", ""},
	} {
		err := o.classify("t", tc.err)
		if b, ok := delivery.AsBlocked(err); ok {
			if b.Reason != tc.reason || b.Key != tc.key {
				t.Errorf("%v: blocked %q on %q", tc.err, b.Reason, b.Key)
			}
			continue
		}
		if c, _ := output.Classify(err); c.String() != tc.reason {
			t.Errorf("%v: %v, want %s", tc.err, c, tc.reason)
		}
	}
}

// The record's batch size counts exactly what franz-go counts: a record of
// the limit's size is produced, one byte more is dead-lettered (tested
// against the broker below).
func TestBatchBytes(t *testing.T) {
	r := record{topic: []byte("t"), value: make([]byte, 100)}
	// 65 overhead + length varint (2: zig-zag 214) + attributes,
	// timestamp and offset deltas (3) + key length (1) + value length (2:
	// zig-zag 200) + 100 + header count (1)
	if got := r.batchBytes(); got != 65+2+3+1+2+100+1 {
		t.Errorf("%d", got)
	}
}

// Against the real broker: records, keys, headers and the source id arrive
// with each compression codec; the batch is acknowledged only when the
// broker has every record.
func TestProduceRealBroker(t *testing.T) {
	brokers := testservers.Kafka(t)
	for _, codec := range []string{"zstd", "lz4", "snappy", "gzip", "none"} {
		t.Run(codec, func(t *testing.T) {
			topic := testservers.UniqueName(t, "sidelogtest")
			kafkatest.CreateTopic(t, brokers, topic, 3, nil)
			o := newOutput(t, brokers, func(c *Config) {
				c.Topic = topic
				c.Key = "{{ user }}"
				c.Headers = map[string]string{"service": "{{ service }}"}
				c.Compression = codec
			})
			const n = 500
			var evs []*event.Event
			for i := range n {
				raw := fmt.Sprintf(`{"n":%d,"user":"u%d","service":"checkout"}`, i, i%7)
				evs = append(evs, jsonEvent(raw, map[string]any{"user": fmt.Sprintf("u%d", i%7), "service": "checkout"}, int64(i+1)*10))
			}
			if err := o.Write(context.Background(), encodeAll(t, o, evs...)); err != nil {
				t.Fatal(err)
			}
			got := kafkatest.ReadAll(t, brokers, topic)
			if len(got) != n {
				t.Fatalf("%d records in the topic, want %d", len(got), n)
			}
			prefix := sourceid.NewPrefix("i-1", "h")
			byValue := map[string]bool{}
			partOfKey := map[string]int32{}
			for _, r := range got {
				byValue[string(r.Value)] = true
				var i, u int
				fmt.Sscanf(string(r.Value), `{"n":%d,"user":"u%d"`, &i, &u)
				if string(r.Key) != fmt.Sprintf("u%d", u) {
					t.Fatalf("record %d: key %q", i, r.Key)
				}
				if p, ok := partOfKey[string(r.Key)]; ok && p != r.Partition {
					t.Fatalf("key %q in partitions %d and %d", r.Key, p, r.Partition)
				}
				partOfKey[string(r.Key)] = r.Partition
				id, _ := prefix.FromPosition(evs[i].Pos)
				if h, _ := kafkatest.Header(r, sourceid.Header); h != string(id[:]) {
					t.Fatalf("record %d: source id %q, want %q", i, h, id)
				}
				if h, _ := kafkatest.Header(r, "service"); h != "checkout" {
					t.Fatalf("record %d: service header %q", i, h)
				}
			}
			if len(byValue) != n {
				t.Fatalf("%d distinct records", len(byValue))
			}
		})
	}
}

// A topic that does not exist blocks its records (never dead-lettered)
// while others flow; once created, they go. With auto_create_topics the
// broker creates it.
func TestUnknownTopicBlocks(t *testing.T) {
	brokers := testservers.Kafka(t)
	missing := testservers.UniqueName(t, "sidelogtest-missing")
	present := testservers.UniqueName(t, "sidelogtest-present")
	kafkatest.CreateTopic(t, brokers, present, 1, nil)
	o := newOutput(t, brokers, func(c *Config) { c.Topic = "{{ topic }}" })
	evs := []*event.Event{
		jsonEvent(`{"topic":"`+missing+`"}`, map[string]any{"topic": missing}, 1),
		jsonEvent(`{"topic":"`+present+`"}`, map[string]any{"topic": present}, 2),
	}
	recs := encodeAll(t, o, evs...)
	err := o.Write(context.Background(), recs)
	var be *output.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 {
		t.Fatalf("%v", err)
	}
	b, ok := delivery.AsBlocked(be.Failed[0])
	if !ok || b.Key != missing || b.Reason != "unknown_topic_or_partition" {
		t.Fatalf("%v", be.Failed[0])
	}
	if got := kafkatest.ReadAll(t, brokers, present); len(got) != 1 {
		t.Fatalf("%d records in %s", len(got), present)
	}
	kafkatest.CreateTopic(t, brokers, missing, 1, nil)
	if err := o.Write(context.Background(), recs[:1]); err != nil {
		t.Fatalf("after creating the topic: %v", err)
	}
	if got := kafkatest.ReadAll(t, brokers, missing); len(got) != 1 {
		t.Fatalf("%d records in %s", len(got), missing)
	}

	auto := testservers.UniqueName(t, "sidelogtest-auto")
	t.Cleanup(func() { kafkatest.DeleteTopic(brokers, auto) })
	oa := newOutput(t, brokers, func(c *Config) { c.Topic = auto; c.AutoCreateTopics = true })
	if err := oa.Write(context.Background(), encodeAll(t, oa, evs[0])); err != nil {
		t.Fatalf("auto_create_topics: %v", err)
	}
	if got := kafkatest.ReadAll(t, brokers, auto); len(got) != 1 {
		t.Fatalf("%d records in %s", len(got), auto)
	}
}

// Sizes: with a topic's max.message.bytes of 4096, 200 records of 1,000
// bytes are produced (so no batch exceeded it: the broker would refuse
// one), a record that fits in no batch is dead-lettered with sidelog's
// reason, and the record exactly at the limit goes through.
func TestTopicMaxMessageBytes(t *testing.T) {
	brokers := testservers.Kafka(t)
	topic := testservers.UniqueName(t, "sidelogtest")
	kafkatest.CreateTopic(t, brokers, topic, 1, map[string]string{"max.message.bytes": "4096"})
	var logs syncbuf.Buffer
	o := newOutputLog(t, brokers, func(c *Config) { c.Topic = topic; c.Compression = "none" }, slog.New(slog.NewTextHandler(&logs, nil)))
	var evs []*event.Event
	for i := range 200 {
		raw := fmt.Sprintf(`{"n":%4d,"pad":"%s"}`, i, strings.Repeat("x", 980))
		evs = append(evs, jsonEvent(raw, nil, int64(i+1)))
	}
	big := jsonEvent(`{"big":"`+strings.Repeat("y", 5000)+`"}`, nil, 99999)
	evs = append(evs, big)
	recs := encodeAll(t, o, evs...)
	// The record that fills the limit exactly, and one byte more.
	fit := func(extra int) []byte {
		base := jsonEvent(`{"fit":""}`, nil, 123456)
		r, _ := decode(encodeAll(t, o, base)[0])
		pad := 4096 - r.batchBytes() + extra
		e := jsonEvent(`{"fit":"`+strings.Repeat("z", pad)+`"}`, nil, 123456)
		b := encodeAll(t, o, e)[0]
		r, _ = decode(b)
		if r.batchBytes() != 4096+extra {
			// the value length's varint may have grown by one byte
			e = jsonEvent(`{"fit":"`+strings.Repeat("z", pad-(r.batchBytes()-4096-extra))+`"}`, nil, 123456)
			b = encodeAll(t, o, e)[0]
		}
		return b
	}
	recs = append(recs, fit(0), fit(1))
	err := o.Write(context.Background(), recs)
	var be *output.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 {
		t.Fatalf("want the big record and the one byte over refused, got %v", err)
	}
	for _, i := range []int{200, 202} {
		ferr := be.Failed[i]
		if c, _ := output.Classify(ferr); c != output.Permanent || !strings.Contains(ferr.Error(), "exceeds topic "+topic+"'s limit of 4096 bytes") {
			t.Fatalf("record %d: %v", i, ferr)
		}
	}
	if got := kafkatest.ReadAll(t, brokers, topic); len(got) != 201 {
		t.Fatalf("%d records in the topic, want 201", len(got))
	}
	// No batch was over the limit: the broker refused none.
	if strings.Contains(logs.String(), "too large") {
		t.Fatalf("the broker refused a batch:\n%s", logs.String())
	}
}

// The broker's MESSAGE_TOO_LARGE (the topic's limit lowered after sidelog
// read it) fails whole batches: their records are produced one by one and
// only the record too large on its own is refused, permanently.
func TestBrokerMessageTooLargeRetriedOneByOne(t *testing.T) {
	brokers := testservers.Kafka(t)
	topic := testservers.UniqueName(t, "sidelogtest")
	kafkatest.CreateTopic(t, brokers, topic, 1, map[string]string{"max.message.bytes": "100000"})
	o := newOutput(t, brokers, func(c *Config) { c.Topic = topic; c.Compression = "none" })
	if err := o.Write(context.Background(), encodeAll(t, o, jsonEvent(`{"warm":1}`, nil, 1))); err != nil {
		t.Fatal(err)
	}
	kafkatest.SetTopicConfig(t, brokers, topic, "max.message.bytes", "3000")
	var evs []*event.Event
	for i := range 10 {
		evs = append(evs, jsonEvent(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 1000)), nil, int64(i+10)))
	}
	evs = append(evs, jsonEvent(`{"big":"`+strings.Repeat("y", 5000)+`"}`, nil, 99))
	// The new limit reaches the broker's log config asynchronously: a probe
	// record as large as the big one is written until the broker refuses it
	// (a probe written before that is in the topic, the big one never).
	probe := jsonEvent(`{"probe":"`+strings.Repeat("z", 5000)+`"}`, nil, 98)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := o.Write(context.Background(), encodeAll(t, o, probe))
		if err != nil {
			var be *output.BatchError
			if errors.As(err, &be) && be.Failed[0] != nil {
				err = be.Failed[0]
			}
			if !strings.Contains(err.Error(), "too large") {
				t.Fatalf("probe: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker never applied max.message.bytes 3000")
		}
		time.Sleep(200 * time.Millisecond)
	}
	err := o.Write(context.Background(), encodeAll(t, o, evs...))
	var be *output.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[10] == nil {
		t.Fatalf("want only the big record (10) refused: %v", err)
	}
	if c, _ := output.Classify(be.Failed[10]); c != output.Permanent || !strings.Contains(be.Failed[10].Error(), "refused by the broker on its own as too large") {
		t.Fatalf("%v", be.Failed[10])
	}
	got := kafkatest.ReadAll(t, brokers, topic)
	n := 0
	for _, r := range got {
		if strings.Contains(string(r.Value), `"big"`) {
			t.Fatalf("the big record is in the topic")
		}
		if strings.HasPrefix(string(r.Value), `{"n":`) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("%d of the small records in the topic, want 10", n)
	}
}

// Write returns when its context ends, with the batch unacknowledged, and
// does not keep the caller's memory: the records were copied.
func TestWriteContextEnds(t *testing.T) {
	o := newOutput(t, []string{"127.0.0.1:1"}, func(c *Config) { c.Topic = "x"; c.DialTimeout = 100 * time.Millisecond })
	recs := encodeAll(t, o, jsonEvent(`{"a":1}`, nil, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := o.Write(ctx, recs)
	if err == nil {
		t.Fatal("delivered to nowhere")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("Write took %v after its context ended", time.Since(start))
	}
}

// While no broker answers, the output is blocked on broker_unreachable
// (through the BlockState the pipeline gives it, at once, and through
// Write's error, so retry.max_elapsed never dead-letters the records); an
// answer from any broker ends it; Close ends it too.
func TestReachability(t *testing.T) {
	o := newOutput(t, []string{"127.0.0.1:1"}, nil)
	bs := delivery.NewBlockState(nil)
	o.WatchBlocks(bs, "bus")
	if b := bs.Blocks("bus"); len(b) != 0 {
		t.Fatalf("blocked before any attempt: %v", b)
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	o.reach.attempt("a:9092", refused)
	o.reach.attempt("b:9092", nil)
	if b := bs.Blocks("bus"); len(b) != 0 {
		t.Fatalf("blocked while b answers: %v", b)
	}
	o.reach.attempt("b:9092", refused)
	b := bs.Blocks("bus")
	if len(b) != 1 || b[0].Reason != "broker_unreachable" || b[0].Key != "" || !strings.Contains(b[0].Message, "none of the 2 brokers is reachable") {
		t.Fatalf("blocks = %+v", b)
	}
	err := o.classify("t", fmt.Errorf("%w", kgo.ErrRecordTimeout))
	if be, ok := delivery.AsBlocked(err); !ok || be.Reason != "broker_unreachable" {
		t.Fatalf("a record timeout while unreachable: %v, want blocked", err)
	}
	// The client's own end says nothing about the brokers.
	o.reach.attempt("a:9092", context.Canceled)
	if len(bs.Blocks("bus")) != 1 {
		t.Fatal("a cancelled attempt ended the block")
	}
	// A broker answering with an error (SASL) is reachable.
	o.reach.attempt("a:9092", kerr.SaslAuthenticationFailed)
	if b := bs.Blocks("bus"); len(b) != 0 {
		t.Fatalf("blocked while a answers: %v", b)
	}
	if err := o.classify("t", kgo.ErrRecordTimeout); err != kgo.ErrRecordTimeout {
		t.Fatalf("a record timeout while reachable: %v, want it as it is (retryable)", err)
	}
	o.reach.attempt("a:9092", refused)
	if len(bs.Blocks("bus")) != 1 {
		t.Fatal("not blocked again")
	}
	// Every broker failing the certificate check: tls_error, not an
	// outage; one refusing again: broker_unreachable.
	badCert := fmt.Errorf("unable to dial: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}})
	o.reach.attempt("a:9092", badCert)
	o.reach.attempt("b:9092", badCert)
	if b := bs.Blocks("bus"); len(b) != 1 || b[0].Reason != "tls_error" || !strings.Contains(b[0].Message, "tls.ca_file") {
		t.Fatalf("blocks = %+v, want tls_error", b)
	}
	if be, ok := delivery.AsBlocked(o.classify("t", kgo.ErrRecordTimeout)); !ok || be.Reason != "tls_error" {
		t.Fatalf("a record timeout while every certificate fails: %v", be)
	}
	o.reach.attempt("b:9092", refused)
	if b := bs.Blocks("bus"); len(b) != 1 || b[0].Reason != "broker_unreachable" {
		t.Fatalf("blocks = %+v, want broker_unreachable", b)
	}
	o.Close(context.Background())
	if b := bs.Blocks("bus"); len(b) != 0 {
		t.Fatalf("blocked after Close: %v", b)
	}
}

// A Write to a port where no broker listens returns the whole output
// blocked on broker_unreachable, and the BlockState shows it meanwhile.
func TestUnreachableBrokerBlocks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	o := newOutput(t, []string{addr}, func(c *Config) { c.Topic = "x"; c.Timeout = 2 * time.Second; c.DialTimeout = 200 * time.Millisecond })
	bs := delivery.NewBlockState(nil)
	o.WatchBlocks(bs, "bus")
	err = o.Write(context.Background(), encodeAll(t, o, jsonEvent(`{"a":1}`, nil, 1)))
	be, ok := delivery.AsBlocked(err)
	if !ok || be.Reason != "broker_unreachable" || be.Key != "" || !strings.Contains(err.Error(), "the broker is unreachable") {
		t.Fatalf("Write = %v, want the output blocked on broker_unreachable", err)
	}
	if b := bs.Blocks("bus"); len(b) != 1 || b[0].Reason != "broker_unreachable" {
		t.Fatalf("blocks = %+v", b)
	}
}
