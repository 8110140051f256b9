package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sidelog/sidelog/internal/testservers"
)

// BenchmarkSearchIngest measures the agent process (built without -race)
// sending a file of numbered JSON lines (SIDELOG_ES_BENCH_LINES, 200,000 by
// default) into the real node, with the output's defaults (bulk, id:
// source, gzip, max_in_flight 2, disk buffer) and batch.max_events 1000:
// from start to exit (--exit-on-eof), documents a second and the agent's
// CPU seconds (user + system, from its rusage) per 100,000 documents.
// scripts/es-acceptance.sh runs it with -benchtime=1x; the figures go to
// docs/benchmarks.md.
func BenchmarkSearchIngest(b *testing.B) {
	b.Run("opensearch", func(b *testing.B) { benchSearchIngest(b, testservers.OpenSearch(b)) })
	b.Run("elasticsearch7", func(b *testing.B) { benchSearchIngest(b, testservers.Elasticsearch7(b)) })
}

func benchSearchIngest(b *testing.B, url string) {
	lines := 200_000
	if v := os.Getenv("SIDELOG_ES_BENCH_LINES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SIDELOG_ES_BENCH_LINES=%q", v)
		}
		lines = n
	}
	bin := binary(b)
	var docs, secs, cpu float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		es := newEngine(b, url)
		index := testservers.UniqueName(b, "sidelogtest-bench")
		es.must("PUT", "/"+index, map[string]any{"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0}, "mappings": seqMapping})
		dir := b.TempDir()
		os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
		var buf []byte
		for n := range lines {
			buf = seqLine(buf, n, false, "a")
		}
		if err := os.WriteFile(filepath.Join(dir, "logs", "app.log"), buf, 0o644); err != nil {
			b.Fatal(err)
		}
		cfg := filepath.Join(dir, "sidelog.yaml")
		os.WriteFile(cfg, []byte(`data_dir: `+dir+`/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"]}
outputs:
  - {name: es, type: elasticsearch, endpoints: ["`+url+`"], index: `+index+`, batch: {max_events: 1000}}
`), 0o644)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, bin, "run", "-c", cfg, "--exit-on-eof")
		b.StartTimer()
		start := time.Now()
		out, err := cmd.CombinedOutput()
		wall := time.Since(start)
		b.StopTimer()
		cancel()
		if err != nil {
			b.Fatalf("agent: %v\n%s", err, tail(string(out), 20))
		}
		if got := es.count(index); got != lines {
			b.Fatalf("_count = %d, want %d", got, lines)
		}
		es.do("DELETE", "/"+index, nil)
		docs += float64(lines)
		secs += wall.Seconds()
		cpu += (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	b.ReportMetric(docs/secs, "docs/s")
	b.ReportMetric(cpu/docs*100_000, "cpu-s/100k-docs")
	b.ReportMetric(0, "ns/op")
}
