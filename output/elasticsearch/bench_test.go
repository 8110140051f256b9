package elasticsearch

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/output/elasticsearch/estest"
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
