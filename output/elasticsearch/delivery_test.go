package elasticsearch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
)

// deadLetters is a delivery.DeadLetter that keeps what it is given.
type deadLetters struct {
	mu      sync.Mutex
	recs    [][]byte
	reasons []string
}

func (d *deadLetters) Write(_ string, recs [][]byte, reasons []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, r := range recs {
		d.recs = append(d.recs, append([]byte(nil), r...))
		d.reasons = append(d.reasons, reasons[i])
	}
	return nil
}

// TestDeliveryExactlyOnce runs 200,000 records through a buffer and the
// delivery loop to a server that throttles 5% of the items (429, once each),
// refuses 1% for good (a mapping error), and twice drops the connection: once
// before indexing, once after (so the retried request carries documents that
// are already in). Every good record must be indexed exactly once, every bad
// one dead-lettered with Elasticsearch's reason, nothing else.
func TestDeliveryExactlyOnce(t *testing.T) {
	// The full size in data_stream mode (op_type create: a duplicate would
	// show), a tenth in bulk mode to keep the package's tests short.
	for _, tc := range []struct {
		mode string
		n    int
	}{{"data_stream", 200_000}, {"bulk", 20_000}} {
		mode, n := tc.mode, tc.n
		t.Run(mode, func(t *testing.T) {
			s := estest.New()
			defer s.Close()
			index := "app-svc"
			if mode == "data_stream" {
				index = "logs-svc-default"
				s.DataStreamPrefixes = []string{"logs-"}
			}
			s.ItemFault = func(it estest.Item) *estest.ItemResult {
				k := docN(it.Source)
				switch {
				case k%100 == 1:
					return &estest.ItemResult{Status: 400, Type: "mapper_parsing_exception", Reason: fmt.Sprintf("failed to parse field [n] with value [%d]", k)}
				case k%20 == 0 && it.Attempt == 1:
					return &estest.ItemResult{Status: 429, Type: "es_rejected_execution_exception", Reason: "rejected execution"}
				}
				return nil
			}
			// Drop full batches (not the small retries of throttled items):
			// the 3rd before indexing, the 9th after.
			var big atomic.Int32
			s.Fault = func(_ int, r *http.Request) *estest.RequestFault {
				if r.ContentLength < 8<<10 {
					return nil
				}
				switch big.Add(1) {
				case 3:
					return &estest.RequestFault{Drop: true}
				case 9:
					return &estest.RequestFault{DropAfterIndexing: true}
				}
				return nil
			}
			o := serverOutput(t, s, func(c *Config) {
				c.Mode = mode
				c.Index = strings.Replace(index, "svc", "{{ service }}", 1)
				c.MaxInFlight = 2
			})

			buf := buffer.NewMemory(256<<20, "block")
			allAcked := make(chan struct{})
			ack := event.NewAck(n, func() { close(allAcked) })
			go func() {
				recs := make([]buffer.Record, 0, 1000)
				for i := range n {
					raw := fmt.Sprintf(`{"n":%d,"service":"svc","level":"info","msg":"request %d served in %d ms"}`, i, i, i%997)
					e := rawEvent(raw, map[string]any{"service": "svc"}, int64(1+i)*120)
					e.SetAck(ack)
					rec, err := o.Encode(nil, e)
					if err != nil {
						panic(err)
					}
					recs = append(recs, buffer.Record{Data: rec, Ack: e.Releaser()})
					if len(recs) == cap(recs) {
						if err := buf.Write(context.Background(), recs); err != nil {
							panic(err)
						}
						recs = recs[:0]
					}
				}
				if err := buf.Write(context.Background(), recs); err != nil {
					panic(err)
				}
				buf.Seal()
			}()

			dl := &deadLetters{}
			r := &delivery.Runner{
				Name: "es", Out: o, Buf: buf,
				Batch:      delivery.BatchConfig{MaxEvents: 1000, MaxBytes: 5 << 20, Timeout: 100 * time.Millisecond},
				Retry:      delivery.RetryConfig{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
				DeadLetter: dl,
				Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			if err := r.Run(ctx); err != nil {
				t.Fatal(err)
			}

			// Exactly the good records, each once.
			docs := s.Docs(index)
			seen := make([]int, n)
			for _, d := range docs {
				k := docN(d.Source)
				if k < 0 || k >= n {
					t.Fatalf("stray document %s", d.Source)
				}
				seen[k]++
			}
			missing, dup, wrong := 0, 0, 0
			for k, c := range seen {
				switch {
				case k%100 == 1 && c != 0:
					wrong++
				case k%100 != 1 && c == 0:
					missing++
				case c > 1:
					dup++
				}
			}
			if missing+dup+wrong > 0 || len(docs) != n-n/100 || len(s.Indices()) != 1 {
				t.Fatalf("%d documents: %d good ones missing, %d duplicated, %d bad ones indexed; indices %v", len(docs), missing, dup, wrong, s.Indices())
			}
			// Exactly the bad records in the dead letters, with the reason.
			if len(dl.recs) != n/100 {
				t.Fatalf("%d dead letters, want %d", len(dl.recs), n/100)
			}
			for i, rec := range dl.recs {
				_, _, line := split(t, rec)
				if k := docN([]byte(line)); k%100 != 1 {
					t.Fatalf("good record %d dead-lettered: %s", k, dl.reasons[i])
				}
				if !strings.Contains(dl.reasons[i], "mapper_parsing_exception: failed to parse field [n]") {
					t.Fatalf("reason %q", dl.reasons[i])
				}
			}
			// The faults happened.
			errs := s.ItemErrors()
			if errs[429] < n/20 {
				t.Fatalf("only %d items throttled", errs[429])
			}
			if mode == "data_stream" && errs[409] < 900 {
				t.Fatal("the request dropped after indexing was not replayed (no 409)")
			}
			if st := buf.Stats(); st.Records != 0 || st.Bytes != 0 {
				t.Fatalf("buffer not drained: %+v", st)
			}
			select {
			case <-allAcked:
			default:
				t.Fatal("not every record was acknowledged to its input")
			}
			t.Logf("%s: %d requests, %d items seen, item errors %v", mode, s.BulkRequests(), s.ItemsSeen(), errs)
		})
	}
}
