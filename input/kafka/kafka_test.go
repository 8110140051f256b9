package kafka

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/internal/kafkatest"
	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output/sourceid"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Topics = nil; c.TopicRegex = "^logs-" }, ""},
		{func(c *Config) { c.Topics = nil }, "topics: set topics or topic_regex"},
		{func(c *Config) { c.TopicRegex = "^logs-" }, "topic_regex: set topics or topic_regex, not both"},
		{func(c *Config) { c.Topics = nil; c.TopicRegex = "(" }, "topic_regex:"},
		{func(c *Config) { c.Group = "" }, "group: is required"},
		{func(c *Config) { c.StartOffset = "middle" }, "start_offset: must be earliest or latest"},
		{func(c *Config) { c.Brokers = nil }, "brokers:"},
	} {
		c := NewConfig()
		c.Brokers = []string{"127.0.0.1:9092"}
		c.Topics = []string{"logs"}
		c.Group = "g"
		tc.mod(c)
		err := c.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}

// exit_on_eof (--exit-on-eof) cannot end a kafka input: New says so in a
// warning naming the input, so that a run that never ends is explained.
func TestExitOnEOFWarns(t *testing.T) {
	c := NewConfig()
	c.Brokers, c.Topics, c.Group = []string{"127.0.0.1:9092"}, []string{"logs"}, "g"
	for _, exit := range []bool{false, true} {
		var b bytes.Buffer
		if _, err := New(c, input.Env{Name: "from-agents", ExitOnEOF: exit, Logger: slog.New(slog.NewTextHandler(&b, nil))}); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(b.String(), "level=WARN") && strings.Contains(b.String(), "exit_on_eof does not apply") &&
			strings.Contains(b.String(), "input=from-agents")
		if warned != exit {
			t.Errorf("exit_on_eof %v: log %q", exit, b.String())
		}
	}
}

// The acknowledged offset advances only over a prefix of released batches.
func TestTrackerContiguous(t *testing.T) {
	p := newPartition("t", 0)
	a := p.add(10, 1)
	b := p.add(20, 1)
	c := p.add(30, 2)
	if p.done(b) {
		t.Fatal("moved past an unreleased batch")
	}
	if _, _, ok := p.toCommit(); ok {
		t.Fatal("commit before the first batch is done")
	}
	if !p.done(a) {
		t.Fatal("did not move")
	}
	if off, ep, ok := p.toCommit(); !ok || off != 20 || ep != 1 {
		t.Fatalf("%d %d %v", off, ep, ok)
	}
	p.committed(20)
	if _, _, ok := p.toCommit(); ok {
		t.Fatal("commit of an unchanged offset")
	}
	if p.outstanding() != 1 {
		t.Fatal(p.outstanding())
	}
	p.detach()
	if p.done(c) {
		t.Fatal("a detached partition wakes the committer")
	}
	if _, _, ok := p.toCommit(); ok {
		t.Fatal("a detached partition commits")
	}
}

func produce(t *testing.T, brokers []string, topic string, n int, withID bool) {
	t.Helper()
	cl := kafkatest.Client(t, brokers)
	var recs []*kgo.Record
	for i := range n {
		r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i % 50)), Value: fmt.Appendf(nil, `{"n":%d}`, i)}
		if withID {
			r.Headers = []kgo.RecordHeader{{Key: sourceid.Header, Value: fmt.Appendf(nil, "id-%d", i)}}
		}
		recs = append(recs, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

type collector struct {
	mu     sync.Mutex
	events []*event.Event
	hold   func(*event.Event) bool // true: keep the reference
	held   []*event.Event
}

func (c *collector) emit(batch []*event.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range batch {
		c.events = append(c.events, e)
		if c.hold != nil && c.hold(e) {
			c.held = append(c.held, e)
			continue
		}
		e.Done()
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

func newInput(t *testing.T, brokers []string, topic, group string, mod func(*Config)) *Input {
	t.Helper()
	c := NewConfig()
	c.Brokers = brokers
	c.Topics = []string{topic}
	c.Group = group
	if mod != nil {
		mod(c)
	}
	in, err := New(c, input.Env{Name: "from-agents"})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Records become events with their ids (the source-id header, else
// topic/partition/offset); only acknowledged offsets are committed, and
// only up to the first record not acknowledged.
func TestConsumeCommitsAcknowledged(t *testing.T) {
	brokers := testservers.Kafka(t)
	topic := testservers.UniqueName(t, "sidelogtest")
	group := topic + "-group"
	kafkatest.CreateTopic(t, brokers, topic, 3, nil)
	produce(t, brokers, topic, 300, true)
	produce(t, brokers, topic, 30, false)

	// Hold one record of partition 0: its partition's commit stops there.
	var heldOffset int64 = -1
	c := &collector{hold: func(e *event.Event) bool {
		if e.Path == topic+"/0" && heldOffset < 0 && e.Pos.Offset >= 20 {
			heldOffset = e.Pos.Offset
			return true
		}
		return false
	}}
	in := newInput(t, brokers, topic, group, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, c.emit) }()
	waitFor(t, "330 records", time.Minute, func() bool { return c.count() == 330 })
	end := kafkatest.EndOffsets(t, brokers, topic)
	if heldOffset < 0 {
		t.Fatalf("partition 0 got too few records: %v", end)
	}
	var com map[int32]int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		com = kafkatest.Committed(t, brokers, group, topic)
		if com[1] == end[1] && com[2] == end[2] && com[0] == heldOffset {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed %v, want %v with partition 0 at %d", com, end, heldOffset)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("end %v, committed %v, held %d", end, com, heldOffset)
	// Lag: partition 0 holds the records from the held one on.
	for _, l := range in.Lag() {
		want := int64(0)
		if l.Partition == 0 {
			want = end[0] - heldOffset
		}
		if l.Lag != want {
			t.Errorf("partition %d: lag %d, want %d", l.Partition, l.Lag, want)
		}
	}
	ids := map[string]bool{}
	withHeader := 0
	for _, e := range c.events {
		ids[e.ID] = true
		if strings.HasPrefix(e.ID, "id-") {
			withHeader++
		} else if want := fmt.Sprintf("%s/%d", e.Path, e.Pos.Offset); e.ID != want {
			t.Fatalf("id %q, want %q", e.ID, want)
		}
		if e.Input != "from-agents" || len(e.Raw) == 0 || e.Time.IsZero() {
			t.Fatalf("%+v", e)
		}
	}
	if withHeader != 300 || len(ids) != 330 {
		t.Fatalf("%d ids from headers, %d distinct", withHeader, len(ids))
	}
	// Releasing the held record lets the commit reach the end. A stop
	// waits for it first.
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	go func() {
		time.Sleep(300 * time.Millisecond)
		for _, e := range held {
			e.Done()
		}
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	com = kafkatest.Committed(t, brokers, group, topic)
	for p, e := range end {
		if com[p] != e && e > 0 {
			t.Fatalf("partition %d committed %d, end %d", p, com[p], e)
		}
	}
}

// A rebalance revokes partitions: their acknowledged offsets are committed
// in the revoked callback (the periodic commit is off here: only revokes
// and stops commit), so the member that takes them over reads none of
// those records again.
func TestRevokeCommits(t *testing.T) {
	brokers := testservers.Kafka(t)
	topic := testservers.UniqueName(t, "sidelogtest")
	group := topic + "-group"
	kafkatest.CreateTopic(t, brokers, topic, 4, nil)
	produce(t, brokers, topic, 400, false)

	a := newInput(t, brokers, topic, group, nil)
	a.noPeriodic = true
	ca := &collector{}
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- a.Run(ctxA, ca.emit) }()
	waitFor(t, "400 records in A", time.Minute, func() bool { return ca.count() == 400 })
	if com := kafkatest.Committed(t, brokers, group, topic); len(com) > 0 && (com[0] > 0 || com[1] > 0 || com[2] > 0 || com[3] > 0) {
		t.Fatalf("committed without a revoke: %v", com)
	}

	b := newInput(t, brokers, topic, group, nil)
	b.noPeriodic = true
	cb := &collector{}
	ctxB, cancelB := context.WithCancel(context.Background())
	doneB := make(chan error, 1)
	go func() { doneB <- b.Run(ctxB, cb.emit) }()
	waitFor(t, "B assigned", time.Minute, func() bool { return len(b.assignedList()) > 0 })
	// B consumes from what A committed when its partitions were revoked:
	// nothing is left for it.
	time.Sleep(2 * time.Second) // B had its chance to (wrongly) read old records
	if n := cb.count(); n != 0 {
		t.Fatalf("B read %d records A had acknowledged", n)
	}
	cancelB()
	cancelA()
	<-doneB
	<-doneA
	end := kafkatest.EndOffsets(t, brokers, topic)
	com := kafkatest.Committed(t, brokers, group, topic)
	for p, e := range end {
		if com[p] != e && e > 0 {
			t.Fatalf("partition %d committed %d, end %d", p, com[p], e)
		}
	}
}
