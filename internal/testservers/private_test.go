package testservers_test

import (
	"context"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sidelog/sidelog/internal/testservers"
)

// A private broker restarted (SIGTERM, then Start) comes back on the same
// address with the records produced before; while it is down nothing
// listens there. (A SIGKILL restart: output/kafka's
// TestBrokerRestartExactlyOnce.)
func TestPrivateKafkaRestartKeepsPortAndData(t *testing.T) {
	b := testservers.StartKafka(t)
	addr := b.Brokers()[0]
	topic := testservers.UniqueName(t, "private")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	produce := func(from, to int) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Brokers()...), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i := from; i < to; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
		}
	}
	consume := func(want int) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Brokers()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for next := 0; next < want; {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("consumed %d of %d records", next, want)
			}
			fs.EachRecord(func(r *kgo.Record) {
				if string(r.Value) != strconv.Itoa(next) {
					t.Fatalf("record %d is %q", next, r.Value)
				}
				next++
			})
		}
	}
	produce(0, 10)

	pid := b.PID()
	b.Stop(syscall.SIGTERM)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still answers after the broker (pid %d) stopped", addr, pid)
	}
	b.Start()
	if got := b.Brokers()[0]; got != addr || b.PID() == pid {
		t.Fatalf("restarted broker at %s pid %d, was %s pid %d", got, b.PID(), addr, pid)
	}
	produce(10, 20)
	consume(20)
}
