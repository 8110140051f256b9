package datadog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/output/datadog"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
	_ "github.com/sidelog/sidelog/plugins/all"
)

// End to end: a file of 100,000 JSON lines and one 3 MB line, tailed with
// max_line_bytes: 8MiB, parsed, routed to the datadog output and delivered
// to the fake intake, which refuses requests at random. Every line arrives
// once; the 3 MB line arrives cut under 1 MB and flagged; no request breaks
// a limit.
func TestEndToEndTailToIntake(t *testing.T) {
	n := 100_000
	if testing.Short() || datadog.RaceEnabled {
		n = 20_000
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `{"seq":%d,"level":"%s","service":"checkout","msg":"order %d placed"}`+"\n", i, []string{"info", "WARN", "error"}[i%3], i)
	}
	big := strings.Repeat("stack frame é \"quoted\" ", 3_000_000/24)
	fmt.Fprintf(&sb, `{"seq":%d,"level":"error","msg":%q}`+"\n", n, big)
	if err := os.WriteFile(logPath, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	const key = "e2e-key-0123456789"
	srv := ddtest.New(key)
	defer srv.Close()
	srv.Inject(ddtest.Fault{Status: 429, RetryAfter: "0"}, ddtest.Fault{}, ddtest.Fault{Status: 503}, ddtest.Fault{Status: 413})
	rng := rand.New(rand.NewPCG(3, 4))
	srv.SetFaults(func(_, entries int) *ddtest.Fault {
		switch r := rng.IntN(100); {
		case r < 6:
			return &ddtest.Fault{Status: 429, RetryAfter: "0"}
		case r < 10:
			return &ddtest.Fault{Status: 503}
		case r < 13 && entries > 1:
			return &ddtest.Fault{Status: 413}
		}
		return nil
	})
	t.Setenv("DD_API_KEY", key)
	yml := fmt.Sprintf(`
data_dir: %s
inputs:
  - name: app
    type: tail
    paths: [%q]
    exit_on_eof: true
    max_line_bytes: 8MiB
    parser: json
outputs:
  - name: dd
    type: datadog
    api_key: ${DD_API_KEY}
    endpoint: %s
    service: '{{ service ?? "unknown" }}'
    source: sidelog-e2e
    tags: ["env:test"]
    buffer: {type: memory, max_bytes: 64MiB}
    batch: {max_events: 2000, max_bytes: 8MiB, timeout: 20ms}
    retry: {initial: 1ms, max: 5ms}
`, filepath.Join(dir, "data"), logPath, srv.URL)
	cfg, err := config.Parse("e2e.yaml", []byte(yml), plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Build(cfg, pipeline.Options{ExitOnEOF: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}

	seen := make([]int, n+1)
	var bigEntry *ddtest.Entry
	for _, e := range srv.Entries() {
		var rec struct{ Seq int }
		if err := json.Unmarshal([]byte(e.Message), &rec); err != nil {
			t.Fatalf("message is not JSON: %.80s", e.Message)
		}
		seen[rec.Seq]++
		if rec.Seq == n {
			bigEntry = &e
		} else if e.Service != "checkout" || e.Ddsource != "sidelog-e2e" || e.Ddtags != "env:test" || e.Truncated {
			t.Fatalf("entry %+v", e)
		}
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("line %d arrived %d times", i, c)
		}
	}
	if bigEntry == nil || !bigEntry.Truncated || bigEntry.Size > datadog.MaxEntryBytes || bigEntry.Status != "error" {
		t.Fatalf("3 MB line: %+v", bigEntry)
	}
	if !strings.Contains(bigEntry.Message, `"truncated":true`) {
		t.Error("cut record lacks truncated: true")
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Fatalf("limits broken: %v", v)
	}
	o := p.Outputs()["dd"].(*datadog.Output)
	st := o.Stats()
	t.Logf("entries %d, requests %d (%d answered), throttled %d, server errors %d, splits %d, truncated %d",
		len(srv.Entries()), st.Requests, len(srv.Requests()), st.Throttled, st.ServerErrors, st.Splits, st.Truncated)
	if st.Truncated != 1 || st.PossibleDuplicates != 0 || st.Throttled == 0 || st.ServerErrors == 0 {
		t.Errorf("stats %+v", st)
	}
}
