package datadog

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
)

// A typical JSON log line (~250 bytes).
const benchLine = `{"ts":"2026-11-25T10:00:00.123Z","level":"info","service":"checkout","msg":"request handled","method":"GET","path":"/api/v1/cart/items","status":200,"latency_ms":12.5,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user":"u-1234"}`

func benchEvent(b *testing.B) *event.Event {
	e := &event.Event{Raw: []byte(benchLine), Time: time.Now(), Flags: event.RawJSON}
	if err := json.Unmarshal(e.Raw, &e.Fields); err != nil {
		b.Fatal(err)
	}
	return e
}

// Encode is on the pipeline's hot path: once per record.
func BenchmarkEncode(b *testing.B) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(b, srv, func(c *Config) {
		c.Service = "{{ service }}"
		c.Source = "checkout"
		c.Tags = []string{"env:prod", "team:payments", "path:{{ path }}"}
	})
	e := benchEvent(b)
	var dst []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(benchLine)))
	for b.Loop() {
		var err error
		dst, err = o.Encode(dst[:0], e)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// Write: encoded records to an intake on 127.0.0.1, gzip on, 1000 entries
// per request. The server reads and discards the body (the fake intake's
// own JSON checks would otherwise take most of the 2 cores).
func BenchmarkWriteGzip(b *testing.B) { benchWrite(b, "gzip") }

// BenchmarkWriteNone: the same without compression.
func BenchmarkWriteNone(b *testing.B) { benchWrite(b, "none") }

func benchWrite(b *testing.B, comp string) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "{}")
	}))
	defer sink.Close()
	o := newOutput(b, &ddtest.Server{URL: sink.URL}, func(c *Config) {
		c.Compression = comp
		c.Service = "{{ service }}"
		c.Source = "checkout"
		c.Tags = []string{"env:prod"}
	})
	e := benchEvent(b)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i], _ = o.Encode(nil, e)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := o.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "entries/s")
	b.ReportMetric(0, "ns/op")
}
