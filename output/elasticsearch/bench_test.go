package elasticsearch

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// BenchmarkWrite sends encoded 250-byte records to the test server in
// batches of 1000 (the default batch.max_events), reporting documents/s and
// MB/s of source lines. The server runs in the same process on the same 2
// cores, so its own parsing counts against the figure.
func BenchmarkWrite(b *testing.B) {
	for _, comp := range []string{"none", "gzip"} {
		b.Run("compression="+comp, func(b *testing.B) {
			s := estest.New()
			defer s.Close()
			s.Discard = true
			o := serverOutput(b, s, func(c *Config) { c.Compression = comp })
			const batchSize = 1000
			batch := make([][]byte, batchSize)
			lineBytes := 0
			for i := range batch {
				raw := fmt.Sprintf(`{"ts":"2024-02-29T23:04:05.123Z","level":"info","service":"svc","msg":"request served","path":"/api/v1/orders/%08d","status":200,"latency_ms":12.5,"user":"u-000123","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","pad":"%s"}`, i, "")
				raw = raw[:len(raw)-2] + strings.Repeat("x", 250-len(raw)) + `"}`
				lineBytes += len(raw)
				e := rawEvent(raw, map[string]any{"service": "svc"}, int64(1+i)*251)
				rec, err := o.Encode(nil, e)
				if err != nil {
					b.Fatal(err)
				}
				batch[i] = rec
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := o.Write(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*batchSize)/sec, "docs/s")
			b.ReportMetric(float64(b.N*lineBytes)/sec/1e6, "MB/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// daemonSetEvent is a record as the DaemonSet scenario's pipeline hands it
// to the output: a CRI line's JSON body (RawJSON, checked and plain, as the
// json parser leaves it) with the CRI stream and the kubernetes filter's
// shared object in the overlay.
// raw replaces the generated line when it is not empty.
func daemonSetEvent(i int, kube map[string]any, kubeEnc []byte, raw string) *event.Event {
	if raw == "" {
		raw = fmt.Sprintf(`{"ts":"2024-02-29T23:04:05.%03dZ","level":"info","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":"u-%07d","latency_ms":%d,"path":"/api/v1/orders/%06d","status":200}`, i%1000, i*7919%10_000_000, 1+i%120, i%1_000_000)
	}
	e := &event.Event{Raw: []byte(raw), Time: t0.Add(time.Duration(i) * 250 * time.Microsecond),
		Flags: event.RawJSON | event.RawChecked | event.RawPlain, Stream: "stdout", Input: "pods",
		Path: "/var/log/pods/team-1_checkout-7d9f8b6c5-abcde_5f2b1a9e-0000-4000-8000-000000000001/app/0.log",
		Pos:  event.Position{FileID: event.FileID{Dev: 2049, Ino: 1234567, Fingerprint: 0x5eed}, Offset: int64(i) * 512}}
	e.AddField("service", "checkout")
	e.Partial = true // the parser selected a few keys
	if _, ok := e.Field("stream"); !ok {
		e.SetField("stream", "stdout")
	}
	if _, ok := e.Field("kubernetes"); !ok {
		e.SetFieldShared("kubernetes", kube, kubeEnc)
	}
	return e
}

func daemonSetKube() (map[string]any, []byte) {
	kube := map[string]any{
		"pod_name": "checkout-7d9f8b6c5-abcde", "namespace_name": "team-1", "pod_id": "5f2b1a9e-0000-4000-8000-000000000001",
		"host": "node-a", "pod_ip": "10.1.0.2", "container_name": "app", "container_image": "registry.example/checkout:1.42.0",
		"labels":           map[string]any{"app": "checkout", "team": "team-1", "tier": "backend", "pod-template-hash": "7d9f8b6c5"},
		"annotations":      map[string]any{"app.kubernetes.io/version": "1.42.0"},
		"owner":            map[string]any{"kind": "Deployment", "name": "checkout"},
		"namespace_labels": map[string]any{"env": "prod"},
	}
	return kube, event.AppendValue(nil, kube)
}

// BenchmarkEncodeDaemonSet encodes DaemonSet-scenario records (id: source, index
// from a field, @timestamp spliced) into one arena, as the pipeline does.
func BenchmarkEncodeDaemonSet(b *testing.B) {
	o := testOutput(b, func(c *Config) { c.Index = "app-{{ service }}" }, plugins.OutputEnv{})
	kube, enc := daemonSetKube()
	evs := make([]*event.Event, 1000)
	for i := range evs {
		evs[i] = daemonSetEvent(i, kube, enc, "")
	}
	arena := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		var err error
		if arena, err = o.Encode(arena[:0], evs[n%len(evs)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.SetBytes(int64(len(arena)))
}

// BenchmarkGzipBatch compresses one request body of 1000 DaemonSet records
// as bulk does (a reused writer: Reset, one Write per record, Close), and
// the same bytes as one Write, and with a new writer per request: what
// the per-record writes and the writer's set-up cost beside the
// compression itself. MB/s are of uncompressed body.
func BenchmarkGzipBatch(b *testing.B) {
	o := testOutput(b, func(c *Config) { c.Index = "app-{{ service }}" }, plugins.OutputEnv{})
	kube, enc := daemonSetKube()
	recs := make([][]byte, 1000)
	var whole []byte
	for i := range recs {
		r, err := o.Encode(nil, daemonSetEvent(i, kube, enc, ""))
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = r
		whole = append(whole, r...)
	}
	var out bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	run := func(b *testing.B, body func()) {
		b.SetBytes(int64(len(whole)))
		b.ReportAllocs()
		for b.Loop() {
			out.Reset()
			body()
		}
		b.ReportMetric(float64(out.Len())/float64(len(whole)), "ratio")
	}
	b.Run("reused,per-record", func(b *testing.B) {
		run(b, func() {
			gw.Reset(&out)
			for _, r := range recs {
				_, _ = gw.Write(r)
			}
			_ = gw.Close()
		})
	})
	b.Run("reused,one-write", func(b *testing.B) {
		run(b, func() {
			gw.Reset(&out)
			_, _ = gw.Write(whole)
			_ = gw.Close()
		})
	})
	b.Run("new-writer", func(b *testing.B) {
		run(b, func() {
			w, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
			for _, r := range recs {
				_, _ = w.Write(r)
			}
			_ = w.Close()
		})
	})
}
