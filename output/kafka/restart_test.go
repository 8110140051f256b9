package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/internal/kafkatest"
	"github.com/sidelog/sidelog/internal/testservers"
)

// A broker killed (SIGKILL) and started again while 4 Writes are in
// flight: the output is blocked on broker_unreachable meanwhile, every
// Write returns success only once the broker has its records, and the
// topic holds every record exactly once: the producer keeps the records
// it could not send, and those it sent without an answer, in their
// idempotent sequence across the restart, so nothing is produced twice.
func TestBrokerRestartExactlyOnce(t *testing.T) {
	b := testservers.StartKafka(t)
	topic := testservers.UniqueName(t, "sidelogtest")
	kafkatest.CreateTopic(t, b.Internal(), topic, 3, nil)
	o := newOutput(t, b.Brokers(), func(c *Config) {
		c.Topic = topic
		c.Key = "{{ k }}"
		c.Timeout = 3 * time.Minute // longer than the restart: Writes wait
	})
	bs := delivery.NewBlockState(nil)
	o.WatchBlocks(bs, "bus")

	const writers, perBatch = 4, 200
	var next, acked atomic.Int64
	var failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				first := next.Add(perBatch) - perBatch
				var evs []*event.Event
				for n := first; n < first+perBatch; n++ {
					evs = append(evs, jsonEvent(fmt.Sprintf(`{"n":%d}`, n), map[string]any{"k": fmt.Sprint(n % 10)}, n+1))
				}
				recs := encodeAll(t, o, evs...)
				// As the delivery loop does: the batch again until
				// it is acknowledged.
				for {
					err := o.Write(context.Background(), recs)
					if err == nil {
						break
					}
					failures.Add(1)
					t.Logf("write from %d: %v (again)", first, err)
					time.Sleep(100 * time.Millisecond)
				}
				acked.Add(perBatch)
			}
		}()
	}
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				t.Fatalf("%s: not after %v", what, within)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("2,000 records acknowledged", time.Minute, func() bool { return acked.Load() >= 2000 })
	stopped := time.Now()
	b.Stop(syscall.SIGKILL)
	waitFor("blocked on broker_unreachable", 30*time.Second, func() bool {
		bl := bs.Blocks("bus")
		return len(bl) == 1 && bl[0].Reason == "broker_unreachable"
	})
	atKill := acked.Load()
	b.Start()
	waitFor("unblocked", time.Minute, func() bool { return len(bs.Blocks("bus")) == 0 })
	down := time.Since(stopped)
	waitFor("2,000 more records acknowledged", time.Minute, func() bool { return acked.Load() >= atKill+2000 })
	close(stop)
	wg.Wait()

	total := next.Load()
	seen := make([]int, total)
	for _, r := range kafkatest.ReadAll(t, b.Internal(), topic) {
		var doc struct{ N int64 }
		if err := json.Unmarshal(r.Value, &doc); err != nil || doc.N < 0 || doc.N >= total {
			t.Fatalf("record %s: %q", kafkatest.ID(r), r.Value)
		}
		seen[doc.N]++
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("record %d is in the topic %d times (of %d records, %d acknowledged before the kill)", n, c, total, atKill)
		}
	}
	t.Logf("%d records, each once; %d acknowledged before the SIGKILL, %v from the kill to unblocked, %d Writes failed and were sent again", total, atKill, down.Round(time.Millisecond), failures.Load())
}
