package datadog

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

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

// BenchmarkEncodeMessageKey: message_key: msg, the other fields written
// as attributes (the record's map is walked and its keys sorted).
func BenchmarkEncodeMessageKey(b *testing.B) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(b, srv, func(c *Config) {
		c.Source = "checkout"
		c.Tags = []string{"env:prod", "team:payments", "path:{{ path }}"}
		c.MessageKey = "msg"
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

// BenchmarkWriteGzipMessageKey: gzip, message_key: msg (attributes).
func BenchmarkWriteGzipMessageKey(b *testing.B) { benchWrite(b, "gzip", "msg") }

func benchWrite(b *testing.B, comp string, msgKey ...string) {
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
		if len(msgKey) > 0 {
			c.MessageKey = msgKey[0]
		}
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

// The record as a JSON string: measured at Encode (jsonLen) and written at
// Write (appendJSONString) for every entry.
func BenchmarkJSONLen(b *testing.B) {
	line := []byte(benchLine)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if jsonLen(line) < len(line) {
			b.Fatal("short")
		}
	}
}

func BenchmarkAppendJSONString(b *testing.B) {
	var dst []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(benchLine)))
	for b.Loop() {
		dst = appendJSONString(dst[:0], benchLine)
	}
}

// benchBody is a request body of 1000 entries like the bench's data set
// (varied trace ids, users, paths, latencies), as Write builds it.
func benchBody(b *testing.B) []byte {
	rng := rand.New(rand.NewPCG(1, 1))
	levels := []string{"info", "info", "info", "info", "info", "info", "info", "debug", "debug", "warn"}
	msgs := []string{"request completed for the authenticated user", "payment authorisation approved by the provider", "cache miss, loading from the database"}
	svcs := []string{"payments", "cart", "inventory", "checkout"}
	ents := make([]entry, 1000)
	var recs [][]byte
	for i := range ents {
		line := fmt.Sprintf(`{"ts":"2026-11-25T10:00:%02d.%03dZ","level":%q,"msg":%q,"service":%q,"trace_id":"%016x%016x","user_id":"u-%07d","latency_ms":%d,"path":"/api/v1/orders/%d","status":200,"kubernetes":{"namespace":"shop","pod":"checkout-6d8f9c7b5-x7k2p","container":"app"}}`,
			i/1000, i%1000, levels[rng.IntN(len(levels))], msgs[rng.IntN(len(msgs))], svcs[rng.IntN(len(svcs))],
			rng.Uint64(), rng.Uint64(), rng.IntN(10_000_000), rng.IntN(300), rng.IntN(1_000_000))
		recs = append(recs, []byte(line))
		ents[i] = entry{msg: line, service: "checkout", source: "sidelog", hostname: "node-1", tags: "env:prod", status: "info", timestamp: 1764064800000 + int64(i)}
	}
	var s scratch
	body, _ := s.makeBody(ents, false)
	return bytes.Clone(body)
}

// BenchmarkGzipLevels: the compression of one request body. stdlib-default
// is what the client's PrepareRequest does with Content-Encoding: gzip;
// klauspost-1 is what this output uses.
func BenchmarkGzipLevels(b *testing.B) {
	body := benchBody(b)
	type w interface {
		io.WriteCloser
		Reset(io.Writer)
	}
	for _, c := range []struct {
		name string
		new  func() w
	}{
		{"stdlib-default", func() w { z, _ := stdgzip.NewWriterLevel(nil, stdgzip.DefaultCompression); return z }},
		{"stdlib-1", func() w { z, _ := stdgzip.NewWriterLevel(nil, stdgzip.BestSpeed); return z }},
		{"klauspost-1", func() w { z, _ := kgzip.NewWriterLevel(nil, kgzip.BestSpeed); return z }},
		{"klauspost-2", func() w { z, _ := kgzip.NewWriterLevel(nil, 2); return z }},
		{"klauspost-default", func() w { z, _ := kgzip.NewWriterLevel(nil, kgzip.DefaultCompression); return z }},
	} {
		b.Run(c.name, func(b *testing.B) {
			z := c.new()
			var out bytes.Buffer
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				out.Reset()
				z.Reset(&out)
				z.Write(body)
				z.Close()
			}
			b.ReportMetric(float64(len(body))/float64(out.Len()), "ratio")
		})
	}
}

// BenchmarkBody: building the request body of 1000 entries (JSON + gzip)
// without the network.
func BenchmarkBody(b *testing.B) {
	body := benchBody(b)
	var arr []struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &arr); err != nil {
		b.Fatal(err)
	}
	ents := make([]entry, len(arr))
	for i := range ents {
		ents[i] = entry{msg: arr[i].Message, service: "checkout", source: "sidelog", hostname: "node-1", tags: "env:prod", status: "info", timestamp: 1764064800000 + int64(i)}
	}
	for _, comp := range []bool{true, false} {
		b.Run(map[bool]string{true: "gzip", false: "none"}[comp], func(b *testing.B) {
			var s scratch
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				s.makeBody(ents, comp)
			}
			b.ReportMetric(float64(len(ents))*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
