package datadog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
)

type deadLetters struct {
	mu      sync.Mutex
	recs    int
	reasons []string
}

func (d *deadLetters) Write(_ string, recs [][]byte, reasons []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recs += len(recs)
	d.reasons = append(d.reasons, reasons...)
	return nil
}

// 100,000 records through buffer → delivery.Runner → output → fake intake
// that refuses requests at random (429, 408, 500, 503, 413, and in one case
// drops connections after taking the entries). Every record arrives; no
// request breaks a limit; duplicates exist only when connections were
// dropped, and are exactly the entries counted as possible duplicates.
func TestDeliveryWithFaults(t *testing.T) {
	n := 100_000
	if raceEnabled {
		n = 20_000
	}
	buffers := map[string]func(t *testing.T) buffer.Buffer{
		"memory": func(*testing.T) buffer.Buffer { return buffer.NewMemory(64<<20, "block") },
	}
	for bname, newBuf := range buffers {
		for _, drops := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/drops=%v", bname, drops), func(t *testing.T) {
				srv := ddtest.New(testKey)
				defer srv.Close()
				// One fault of each class first (the first requests are
				// full), then random ones.
				srv.Inject(ddtest.Fault{Status: 429, RetryAfter: "0"}, ddtest.Fault{}, ddtest.Fault{Status: 503},
					ddtest.Fault{Status: 413}, ddtest.Fault{Status: 500}, ddtest.Fault{Status: 408})
				if drops {
					srv.Inject(ddtest.Fault{Drop: true})
				}
				rng := rand.New(rand.NewPCG(8, uint64(len(bname))))
				srv.SetFaults(func(_, entries int) *ddtest.Fault {
					switch r := rng.IntN(100); {
					case r < 8:
						return &ddtest.Fault{Status: 429, RetryAfter: "0"}
					case r < 12:
						return &ddtest.Fault{Status: 408}
					case r < 17:
						return &ddtest.Fault{Status: 503}
					case r < 20:
						return &ddtest.Fault{Status: 500, Body: `{"errors":["internal"]}`}
					case r < 24 && entries > 1:
						return &ddtest.Fault{Status: 413}
					case r < 29 && drops:
						return &ddtest.Fault{Drop: true}
					}
					return nil
				})
				o := newOutput(t, srv, func(c *Config) { c.Service = "{{ service }}"; c.Tags = []string{"env:test"} })
				buf := newBuf(t)
				dl := &deadLetters{}
				r := &delivery.Runner{
					Name: "dd", Out: o, Buf: buf, DeadLetter: dl,
					Batch:  delivery.BatchConfig{MaxEvents: 2500, MaxBytes: 8 << 20, Timeout: 5 * time.Millisecond},
					Retry:  delivery.RetryConfig{Initial: time.Millisecond, Max: 4 * time.Millisecond},
					Logger: slog.New(slog.DiscardHandler),
					// As the engine sets it: concurrent Writes, batches
					// acknowledged out of order.
					MaxInFlight: o.InFlight(),
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				runErr := make(chan error, 1)
				go func() { runErr <- r.Run(ctx) }()

				acked := make(chan struct{})
				ack := event.NewAck(n, func() { close(acked) })
				now := time.Now()
				recs := make([]buffer.Record, 0, 500)
				for i := range n {
					raw := fmt.Sprintf(`{"seq":%d,"level":"info","service":"svc-%d","msg":"request handled in %d ms"}`, i, i%7, i%300)
					e := &event.Event{Raw: []byte(raw), Time: now.Add(time.Duration(i) * time.Microsecond), Flags: event.RawJSON}
					if err := json.Unmarshal(e.Raw, &e.Fields); err != nil {
						t.Fatal(err)
					}
					e.SetAck(ack)
					data, err := o.Encode(nil, e)
					if err != nil {
						t.Fatal(err)
					}
					recs = append(recs, buffer.Record{Data: data, Ack: e.Releaser()})
					if len(recs) == cap(recs) || i == n-1 {
						if err := buf.Write(ctx, recs); err != nil {
							t.Fatal(err)
						}
						recs = recs[:0]
					}
				}
				buf.Seal()
				if err := <-runErr; err != nil {
					t.Fatal(err)
				}
				select {
				case <-acked:
				case <-ctx.Done():
					t.Fatal("not every record was acknowledged")
				}
				if err := buf.Close(); err != nil {
					t.Fatal(err)
				}

				seen := make([]int, n)
				for _, e := range srv.Entries() {
					var rec struct{ Seq int }
					if err := json.Unmarshal([]byte(e.Message), &rec); err != nil {
						t.Fatal(err)
					}
					seen[rec.Seq]++
					if e.Service != fmt.Sprintf("svc-%d", rec.Seq%7) || e.Ddtags != "env:test" || e.Status != "info" {
						t.Fatalf("entry %+v", e)
					}
				}
				missing, dups := 0, 0
				for _, c := range seen {
					if c == 0 {
						missing++
					}
					dups += max(c-1, 0)
				}
				st := o.Stats()
				t.Logf("requests %d, throttled %d, server errors %d, splits %d, transport errors %d, duplicates %d (counted %d)",
					st.Requests, st.Throttled, st.ServerErrors, st.Splits, st.TransportErrors, dups, st.PossibleDuplicates)
				if missing != 0 {
					t.Errorf("%d records missing", missing)
				}
				if dl.recs != 0 {
					t.Errorf("%d records dead-lettered: %v", dl.recs, dl.reasons[0])
				}
				if int64(dups) != st.PossibleDuplicates {
					t.Errorf("%d duplicates arrived, %d counted as possible duplicates", dups, st.PossibleDuplicates)
				}
				if !drops && dups != 0 {
					t.Errorf("duplicates without unknown outcomes")
				}
				if drops && st.PossibleDuplicates == 0 {
					t.Errorf("no connection was dropped: the test tests nothing")
				}
				if st.Throttled == 0 || st.ServerErrors == 0 || st.Splits == 0 {
					t.Errorf("faults not exercised: %+v", st)
				}
				if st.Delivered != int64(n) { // entries of answered (2xx) requests
					t.Errorf("delivered %d", st.Delivered)
				}
				if v := srv.Violations(); len(v) > 0 {
					t.Errorf("limits broken: %v", v[:min(len(v), 5)])
				}
				for _, rq := range srv.Requests() {
					if rq.Entries > MaxEntries || rq.Bytes > MaxRequestBytes || rq.ContentEncoding != "gzip" {
						t.Fatalf("request %+v", rq)
					}
				}
			})
		}
	}
}
