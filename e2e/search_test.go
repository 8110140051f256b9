package e2e_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/internal/testservers"
)

// Issue 16's acceptance, from the agent process against the real engines:
// N numbered lines (SIDELOG_ES_ACCEPT_LINES, 20,000 by default;
// scripts/es-acceptance.sh runs 200,000) appended by an application over
// about 8 seconds, tailed into a disk buffer and sent with id: source, while
// the agent is killed with SIGKILL three times during delivery and
// restarted; a last run reads to the end and exits. 1% of the lines carry a
// string where the index maps a long. Every good line must be in the
// engine exactly once (its _count, and a composite aggregation on the seq
// field: none missing, none twice), every bad line in the dead-letter files
// with the engine's reason, nothing else dead-lettered.
func TestSearchExactlyOnceOpenSearchBulk(t *testing.T) {
	searchExactlyOnce(t, testservers.OpenSearch(t), "opensearch", "bulk", false, "")
}

// The data stream is created by the agent (setup, the default in
// data_stream mode: its index template), the mapping of seq and code is
// the engine's dynamic one.
func TestSearchExactlyOnceOpenSearchDataStream(t *testing.T) {
	searchExactlyOnce(t, testservers.OpenSearch(t), "opensearch", "data_stream", true, "")
}

// The same data stream with the test's own template (setup: false) mapping
// seq and code.
func TestSearchExactlyOnceOpenSearchDataStreamOwnTemplate(t *testing.T) {
	searchExactlyOnce(t, testservers.OpenSearch(t), "opensearch", "data_stream", false, "")
}

func TestSearchExactlyOnceES7Bulk(t *testing.T) {
	searchExactlyOnce(t, testservers.Elasticsearch7(t), "elasticsearch", "bulk", false, "")
}

// The same with the _id taken from the record (id_key: seq) and a
// routing key ({{ stream }}): the engine's _id of each line is its seq,
// every document carries the routing.
func TestSearchExactlyOnceES7IDKeyRouting(t *testing.T) {
	searchExactlyOnce(t, testservers.Elasticsearch7(t), "elasticsearch", "bulk", false, "id_key: seq, routing: '{{ stream }}'")
}

// searchBad is the 1% of lines that break the mapping.
func searchBad(n int) bool { return n%100 == 7 }

// searchConfig is the agent's config: one tail input over dir/logs, one
// output "es" of type typ with extra keys (YAML flow mapping members).
func searchConfig(t *testing.T, dir, typ, url, index, mode, extra string) string {
	t.Helper()
	return searchConfigNamed(t, "es", dir, typ, url, index, mode, extra)
}

// searchConfigNamed is searchConfig with the output named out.
func searchConfigNamed(t *testing.T, out, dir, typ, url, index, mode, extra string) string {
	t.Helper()
	if extra != "" {
		extra = ", " + extra
	}
	cfg := filepath.Join(dir, "sidelog.yaml")
	err := os.WriteFile(cfg, []byte(`data_dir: `+dir+`/data
api: {address: "127.0.0.1:0"}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"], poll_interval: 50ms}
outputs:
  - {name: `+out+`, type: `+typ+`, endpoints: ["`+url+`"], index: '`+index+`', mode: `+mode+`, id: source,
     buffer: {type: disk}, batch: {max_events: 1000, timeout: 50ms}, retry: {initial: 50ms, max: 1s}`+extra+`}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	return cfg
}

// joinKeys joins YAML flow mapping members.
func joinKeys(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + ", " + b
}

// createSeqIndex creates what the agent writes into: an index (bulk) or an
// index template making name a data stream (data_stream), with the seq
// mapping; both removed when the test ends.
func createSeqIndex(t *testing.T, es *engine, name, mode string) {
	t.Helper()
	settings := map[string]any{"number_of_shards": 1, "number_of_replicas": 0}
	if mode == "data_stream" {
		es.must("PUT", "/_index_template/"+name, map[string]any{
			"index_patterns": []string{name},
			"data_stream":    map[string]any{},
			"priority":       500,
			"template":       map[string]any{"settings": settings, "mappings": seqMapping},
		})
		t.Cleanup(func() {
			es.do("DELETE", "/_data_stream/"+name, nil)
			es.do("DELETE", "/_index_template/"+name, nil)
		})
		return
	}
	es.must("PUT", "/"+name, map[string]any{"settings": settings, "mappings": seqMapping})
	t.Cleanup(func() { es.do("DELETE", "/"+name, nil) })
}

// finalRun runs the agent on cfg with --exit-on-eof: it reads every file to
// its end, delivers and exits.
func finalRun(t *testing.T, cfg string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "run", "-c", cfg, "--exit-on-eof").CombinedOutput()
	if err != nil {
		t.Fatalf("final run: %v\n%s", err, tail(string(out), 30))
	}
}

func searchExactlyOnce(t *testing.T, url, typ, mode string, setup bool, extra string) {
	lines := envInt(t, "SIDELOG_ES_ACCEPT_LINES", 20_000)
	es := newEngine(t, url)
	index := testservers.UniqueName(t, "sidelogtest-accept")
	dir := t.TempDir()
	out := "es"
	var cfg string
	switch {
	case setup:
		// The output's name names its template (sidelog-<output>): a name
		// of this test's own on the shared node, removed at the end.
		out = "es-" + index[len(index)-8:]
		t.Cleanup(func() {
			es.do("DELETE", "/_data_stream/"+index, nil)
			es.do("DELETE", "/_index_template/sidelog-"+out, nil)
		})
		cfg = searchConfigNamed(t, out, dir, typ, url, index, mode, joinKeys("setup: true", extra))
	case mode == "data_stream":
		createSeqIndex(t, es, index, mode)
		cfg = searchConfig(t, dir, typ, url, index, mode, joinKeys("setup: false", extra))
	default:
		createSeqIndex(t, es, index, mode)
		cfg = searchConfig(t, dir, typ, url, index, mode, extra)
	}
	outLabel := `{output="` + out + `"}`

	good := 0
	for n := range lines {
		if !searchBad(n) {
			good++
		}
	}
	// The application writes for about 8 seconds, whatever the count.
	binary(t) // built before the clock starts
	w := startLineWriter(t, filepath.Join(dir, "logs", "app.log"), lines, max(lines/8, 1000), func(b []byte, n int) []byte {
		return seqLine(b, n, searchBad(n), "a")
	})
	start := time.Now()
	if setup {
		// The first request starts at seq 0, a good line, so that the
		// dynamic mapping makes code a long.
		waitFor(t, time.Minute, "the first 1000 lines written", func() bool { return w.written.Load() >= 1000 }, nil)
	}

	// Three runs, each killed with SIGKILL once it has delivered a twelfth
	// of the lines more: while the application still writes, with records
	// in the buffer and requests in flight.
	step := float64(max(lines/12, 1))
	for k := range 3 {
		a := startAgent(t, cfg)
		// The agent's own count of delivered records: polling it costs the
		// shared node nothing.
		waitFor(t, 2*time.Minute, fmt.Sprintf("the agent delivering in run %d", k+1),
			func() bool { return a.metric(t, "sidelog_output_records_out_total", outLabel) >= step },
			func() string { return tail(a.out.String(), 20) })
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
		at := es.count(index)
		if at >= good {
			t.Fatalf("run %d: everything was delivered before the kill (%d documents): not a kill during delivery", k+1, at)
		}
		t.Logf("run %d killed at %v with %d of %d documents in the engine, %d lines written", k+1, time.Since(start).Round(time.Millisecond), at, good, w.written.Load())
	}
	w.wait(t, 2*time.Minute)
	finalRun(t, cfg, 4*time.Minute)
	elapsed := time.Since(start)
	t.Logf("final run done at %v", elapsed.Round(time.Millisecond))

	if mode == "data_stream" {
		// A data stream, not a plain index of that name.
		if st, body := es.do("GET", "/_data_stream/"+index, nil); st != 200 {
			t.Fatalf("%s is not a data stream: GET /_data_stream = %d %s", index, st, body)
		}
	}
	// The engine's count and, per seq, how many documents hold it.
	if got := es.count(index); got != good {
		t.Errorf("_count = %d, want %d good lines", got, good)
	}
	seen := es.seqCounts(index)
	missing, twice, stray := 0, 0, 0
	for n := range lines {
		switch c := seen[n]; {
		case searchBad(n) && c != 0:
			stray++
			t.Errorf("bad line %d is in the index %d times", n, c)
		case !searchBad(n) && c == 0:
			missing++
		case !searchBad(n) && c > 1:
			twice++
		}
	}
	for n, c := range seen {
		if n < 0 || n >= lines {
			t.Errorf("seq %d (%d documents) was never written", n, c)
		}
	}
	if missing > 0 || twice > 0 {
		t.Errorf("of %d good lines: %d missing, %d more than once", good, missing, twice)
	}

	if strings.Contains(extra, "id_key: seq") {
		// The engine's _id is the line's seq, the routing its stream.
		ids := []string{"0", "1", strconv.Itoa(lines / 2), strconv.Itoa(lines - 1)}
		out := es.must("POST", "/"+index+"/_search", map[string]any{"size": 10,
			"query": map[string]any{"bool": map[string]any{"filter": []any{
				map[string]any{"ids": map[string]any{"values": ids}},
				map[string]any{"term": map[string]any{"_routing": "a"}},
			}}}})
		var r struct {
			Hits struct {
				Hits []struct {
					ID     string            `json:"_id"`
					Source struct{ Seq int } `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(out, &r); err != nil || len(r.Hits.Hits) != len(ids) {
			t.Errorf("documents with _id %v and routing a: %s", ids, out)
		}
		for _, h := range r.Hits.Hits {
			if h.ID != strconv.Itoa(h.Source.Seq) {
				t.Errorf("_id %s holds seq %d", h.ID, h.Source.Seq)
			}
		}
		routed := es.must("POST", "/"+index+"/_count", map[string]any{"query": map[string]any{"term": map[string]any{"_routing": "a"}}})
		if !strings.Contains(string(routed), fmt.Sprintf(`"count":%d`, good)) {
			t.Errorf("documents routed by stream: %s, want %d", routed, good)
		}
	}

	// Every bad line dead-lettered with the engine's reason; nothing else.
	dead := map[int]int{}
	for _, d := range deadLetters(t, filepath.Join(dir, "data"), out) {
		n := d.seq(t)
		if !searchBad(n) {
			t.Errorf("good line %d dead-lettered: %s", n, d.Reason)
			continue
		}
		if !strings.Contains(d.Reason, "mapper_parsing_exception") || !strings.Contains(d.Reason, "[code]") {
			t.Errorf("line %d dead-lettered without the engine's reason: %q", n, d.Reason)
		}
		dead[n]++
	}
	deadAgain := 0
	for n := range lines {
		if searchBad(n) && dead[n] == 0 {
			t.Errorf("bad line %d is not in the dead-letter files", n)
		}
		if dead[n] > 1 {
			deadAgain += dead[n] - 1
		}
	}
	t.Logf("FIGURES engine=%s type=%s mode=%s setup=%v extra=%q lines=%d good=%d indexed=%d missing=%d duplicates=%d dead_lettered=%d (again after a kill: %d) kills=3 elapsed=%v",
		url, typ, mode, setup, extra, lines, good, len(seen), missing, twice, len(dead), deadAgain, elapsed.Round(time.Millisecond))
}

// bulkRecorder is a 127.0.0.1 reverse proxy in front of a node that
// records every _bulk request it forwards: its body (decompressed) and the
// _id of each action line.
type bulkRecorder struct {
	mu       sync.Mutex
	bodies   map[[32]byte]int // request body hash → times sent
	ids      map[string]int   // document _id → times sent
	requests int              // _bulk requests
	other    []string         // other requests ("GET /")
	statuses map[int]int      // answers to _bulk requests, by status
}

func startBulkRecorder(t *testing.T, upstream string) (*bulkRecorder, string) {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rec := &bulkRecorder{bodies: map[[32]byte]int{}, ids: map[string]int{}, statuses: map[int]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/_bulk") {
			rec.mu.Lock()
			rec.statuses[resp.StatusCode]++
			rec.mu.Unlock()
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/_bulk") {
			rec.mu.Lock()
			rec.other = append(rec.other, r.Method+" "+r.URL.Path)
			rec.mu.Unlock()
			proxy.ServeHTTP(w, r)
			return
		}
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		body := raw
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err == nil {
				body, err = io.ReadAll(zr)
			}
			if err != nil {
				t.Errorf("a gzip bulk body that does not decompress: %v", err)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		rec.mu.Lock()
		rec.requests++
		rec.bodies[sha256.Sum256(body)]++
		lines := bytes.Split(bytes.TrimRight(body, "\n"), []byte("\n"))
		for i := 0; i+1 < len(lines); i += 2 {
			var action map[string]struct {
				ID string `json:"_id"`
			}
			if err := json.Unmarshal(lines[i], &action); err != nil {
				t.Errorf("unreadable action line %q: %v", lines[i], err)
			}
			for _, a := range action {
				rec.ids[a.ID]++
			}
		}
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(raw))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

// An OpenSearch node with type: elasticsearch (the Elasticsearch client
// once resent every applied request forever: OpenSearch sends no
// X-Elastic-Product): through a recording proxy, each bulk request is sent
// once and each document once, and the node holds every line.
func TestSearchOpenSearchAsElasticsearchOnce(t *testing.T) {
	const lines = 10_000
	upstream := testservers.OpenSearch(t)
	es := newEngine(t, upstream)
	rec, proxyURL := startBulkRecorder(t, upstream)
	index := testservers.UniqueName(t, "sidelogtest-accept")
	createSeqIndex(t, es, index, "bulk")
	dir := t.TempDir()
	cfg := searchConfig(t, dir, "elasticsearch", proxyURL, index, "bulk", "")
	var b []byte
	for n := range lines {
		b = seqLine(b, n, false, "a")
	}
	if err := os.WriteFile(filepath.Join(dir, "logs", "app.log"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	finalRun(t, cfg, 3*time.Minute)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.requests == 0 {
		t.Fatal("no bulk request went through the proxy")
	}
	for _, c := range rec.bodies {
		if c > 1 {
			t.Errorf("a bulk request was sent %d times", c)
		}
	}
	if len(rec.bodies) != rec.requests {
		t.Errorf("%d bulk requests, %d distinct", rec.requests, len(rec.bodies))
	}
	again := 0
	for id, c := range rec.ids {
		if id == "" {
			t.Errorf("%d documents sent without an _id (id: source)", c)
		}
		if c > 1 {
			again += c - 1
		}
	}
	if len(rec.ids) != lines || again > 0 {
		t.Errorf("%d distinct documents sent, %d sent again; want %d, each once", len(rec.ids), again, lines)
	}
	for st, c := range rec.statuses {
		if st != http.StatusOK {
			t.Errorf("%d bulk requests answered %d", c, st)
		}
	}
	if got := es.count(index); got != lines {
		t.Errorf("_count = %d, want %d", got, lines)
	}
	seen := es.seqCounts(index)
	for n := range lines {
		if seen[n] != 1 {
			t.Errorf("line %d is in the index %d times", n, seen[n])
			break
		}
	}
	t.Logf("FIGURES lines=%d bulk_requests=%d distinct=%d documents_sent=%d other_requests=%v", lines, rec.requests, len(rec.bodies), len(rec.ids)+again, rec.other)
}

// ecs: true from the agent into the real engines: the ECS fields are
// indexed as the engine maps them (agent.*, host.name, log.file.path,
// log.offset, and data_stream.* matching the data stream's name).
func TestSearchECSOpenSearchDataStream(t *testing.T) {
	searchECS(t, testservers.OpenSearch(t), "opensearch", "data_stream")
}

func TestSearchECSES7Bulk(t *testing.T) {
	searchECS(t, testservers.Elasticsearch7(t), "elasticsearch", "bulk")
}

func searchECS(t *testing.T, url, typ, mode string) {
	const lines = 200
	es := newEngine(t, url)
	u := testservers.UniqueName(t, "x")
	index := "logs-sidelogtestecs" + u[len(u)-8:] + "-default"
	createSeqIndex(t, es, index, mode)
	dir := t.TempDir()
	extra := "ecs: true"
	if mode == "data_stream" {
		extra += ", setup: false"
	}
	cfg := searchConfig(t, dir, typ, url, index, mode, extra)
	var b []byte
	for n := range lines {
		b = seqLine(b, n, false, "a")
	}
	logf := filepath.Join(dir, "logs", "app.log")
	if err := os.WriteFile(logf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	finalRun(t, cfg, 2*time.Minute)
	if got := es.count(index); got != lines {
		t.Fatalf("_count = %d, want %d", got, lines)
	}
	if d := deadLetters(t, filepath.Join(dir, "data"), "es"); len(d) > 0 {
		t.Fatalf("%d dead letters (first: %s)", len(d), d[0].Reason)
	}
	host, _ := os.Hostname()
	q := map[string]any{"bool": map[string]any{"filter": []any{
		map[string]any{"term": map[string]any{"seq": 9}},
		map[string]any{"term": map[string]any{"agent.type": "sidelog"}},
		map[string]any{"term": map[string]any{"host.name": host}},
		map[string]any{"term": map[string]any{"log.offset": len(seqLine(nil, 0, false, "a")) * 10}},
	}}}
	if mode == "data_stream" {
		q["bool"].(map[string]any)["filter"] = append(q["bool"].(map[string]any)["filter"].([]any),
			map[string]any{"term": map[string]any{"data_stream.dataset": strings.Split(index, "-")[1]}},
			map[string]any{"term": map[string]any{"data_stream.namespace": "default"}})
	}
	out := es.must("POST", "/"+index+"/_search", map[string]any{"query": q})
	var r struct {
		Hits struct {
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Hits.Hits) != 1 {
		t.Fatalf("line 9 with its ECS fields: %d hits (%v): %s", len(r.Hits.Hits), err, out)
	}
	src := r.Hits.Hits[0].Source
	if lg, _ := src["log"].(map[string]any); lg == nil || lg["file"].(map[string]any)["path"] != logf {
		t.Errorf("log.file.path: %v", src["log"])
	}
	t.Logf("document of line 9: %v", src)
}
