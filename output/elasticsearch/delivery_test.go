package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
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

// readDeadLetters parses every dead-letter file in dir.
func readDeadLetters(t *testing.T, dir string) []delivery.Line {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []delivery.Line
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
			var line delivery.Line
			if err := json.Unmarshal(l, &line); err != nil {
				t.Fatalf("%s: %v: %q", e.Name(), err, l)
			}
			out = append(out, line)
		}
	}
	return out
}

// TestDeliveryExactlyOnce runs records through a buffer and the delivery
// loop to a server that throttles 5% of the items (429, once each), refuses
// 1% for good (a mapping error), and twice drops the connection of a full
// batch: once before indexing, once after (so the retried request carries
// documents that are already in). Every good record must be indexed exactly
// once, every bad one dead-lettered with Elasticsearch's reason, nothing
// else.
//
// The data_stream case (op_type create, where a duplicate would show) sends
// 200,000 records through the disk buffer and, on top, "crashes" the
// delivery side three times: in the middle of a request that the server
// indexes without answering, the runner is stopped and the buffer closed
// without acknowledging, then reopened; the unacknowledged records are
// delivered again. The bulk case sends 20,000 through the memory buffer.
func TestDeliveryExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		mode, buffer string
		n, crashes   int
	}{{"data_stream", "disk", 200_000, 3}, {"bulk", "memory", 20_000, 0}} {
		mode, n := tc.mode, tc.n
		t.Run(mode+"/"+tc.buffer, func(t *testing.T) {
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
			// Faults on full batches (not the small retries of throttled
			// items): the 3rd is dropped before indexing, the 9th after;
			// the 15th, 30th and 45th crash the delivery side.
			var big atomic.Int32
			var mu sync.Mutex
			var crash context.CancelFunc
			crashed := 0
			s.Fault = func(_ int, r *http.Request) *estest.RequestFault {
				if r.ContentLength < 8<<10 {
					return nil
				}
				switch b := big.Add(1); {
				case b == 3:
					return &estest.RequestFault{Drop: true}
				case b == 9:
					return &estest.RequestFault{DropAfterIndexing: true}
				case b%15 == 0 && int(b/15) <= tc.crashes:
					mu.Lock()
					crash()
					crashed++
					mu.Unlock()
					return &estest.RequestFault{DropAfterIndexing: true}
				}
				return nil
			}
			o := serverOutput(t, s, func(c *Config) {
				c.Mode = mode
				c.Index = strings.Replace(index, "svc", "{{ service }}", 1)
				c.MaxInFlight = 2
			})

			dir := t.TempDir()
			open := func() buffer.Buffer {
				b, err := buffer.New(dir, buffer.Config{MaxBytes: 512 << 20}, tc.buffer)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			buf := open()
			allAcked := make(chan struct{})
			ack := event.NewAck(n, func() { close(allAcked) })
			recs := make([]buffer.Record, 0, 1000)
			for i := range n {
				raw := fmt.Sprintf(`{"n":%d,"service":"svc","level":"info","msg":"request %d served in %d ms"}`, i, i, i%997)
				e := rawEvent(raw, map[string]any{"service": "svc"}, int64(1+i)*120)
				e.SetAck(ack)
				rec, err := o.Encode(nil, e)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, buffer.Record{Data: rec, Ack: e.Releaser()})
				if len(recs) == cap(recs) || i == n-1 {
					if err := buf.Write(t.Context(), recs); err != nil {
						t.Fatal(err)
					}
					recs = recs[:0]
				}
			}

			// The real dead-letter files.
			dataDir := t.TempDir()
			dl := delivery.NewDeadLetterFiles(dataDir, 256<<20, slog.New(slog.DiscardHandler))
			for run := 0; ; run++ {
				buf.Seal()
				r := &delivery.Runner{
					Name: "es", Out: o, Buf: buf,
					Batch:      delivery.BatchConfig{MaxEvents: 1000, MaxBytes: 5 << 20, Timeout: 100 * time.Millisecond},
					Retry:      delivery.RetryConfig{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
					DeadLetter: dl,
					Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
				}
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				mu.Lock()
				crash = cancel
				mu.Unlock()
				err := r.Run(ctx)
				cancel()
				if err == nil {
					break
				}
				if !errors.Is(err, context.Canceled) || run >= tc.crashes {
					t.Fatalf("run %d: %v", run, err)
				}
				// The crash: whatever was not acknowledged stays in the
				// buffer and is delivered again after the restart.
				if err := buf.Close(); err != nil {
					t.Fatal(err)
				}
				buf = open()
			}
			if crashed != tc.crashes {
				t.Fatalf("%d crashes, want %d", crashed, tc.crashes)
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
			// Exactly the bad records in the dead letters, with the reason
			// (a record dead-lettered just before a crash, in a batch not
			// yet acknowledged, is dead-lettered again after it).
			if err := dl.Close(); err != nil {
				t.Fatal(err)
			}
			bad := map[int]int{}
			lines := readDeadLetters(t, delivery.DeadLetterDir(dataDir, "es"))
			for _, l := range lines {
				_, _, line := split(t, l.Data())
				k := docN([]byte(line))
				if k%100 != 1 {
					t.Fatalf("good record %d dead-lettered: %s", k, l.Reason)
				}
				if !strings.Contains(l.Reason, "mapper_parsing_exception: failed to parse field [n]") || l.Output != "es" {
					t.Fatalf("dead letter %+v", l)
				}
				bad[k]++
			}
			if len(bad) != n/100 {
				t.Fatalf("%d distinct dead letters, want %d", len(bad), n/100)
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
			t.Logf("%s/%s: %d records, %d requests, %d items seen, item errors %v, %d dead letters (%d distinct), %d crashes",
				mode, tc.buffer, n, s.BulkRequests(), s.ItemsSeen(), errs, len(lines), len(bad), crashed)
		})
	}
}
