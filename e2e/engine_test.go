package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers of the acceptance tests against the real search engines
// (internal/testservers: the shared OpenSearch 2.19 and Elasticsearch 7.17
// nodes): a small REST client, the numbered log lines the tests write and
// the checks that every line arrived exactly once.

// engine is a real search engine node.
type engine struct {
	t   testing.TB
	url string
	hc  *http.Client
}

func newEngine(t testing.TB, url string) *engine {
	return &engine{t: t, url: url, hc: &http.Client{Timeout: 60 * time.Second}}
}

// do sends a request with an optional JSON body; it returns the status and
// the answer.
func (e *engine) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// must is do, failing the test on a non-2xx answer.
func (e *engine) must(method, path string, body any) []byte {
	e.t.Helper()
	st, out := e.do(method, path, body)
	if st < 200 || st > 299 {
		e.t.Fatalf("%s %s: HTTP %d: %s", method, path, st, out)
	}
	return out
}

// count refreshes index (an index or a data stream) and returns its
// document count; -1 while it does not exist.
func (e *engine) count(index string) int {
	e.t.Helper()
	if st, _ := e.do("POST", "/"+index+"/_refresh", nil); st == http.StatusNotFound {
		return -1
	}
	st, out := e.do("GET", "/"+index+"/_count", nil)
	if st == http.StatusNotFound {
		return -1
	}
	if st != http.StatusOK {
		e.t.Fatalf("_count %s: HTTP %d: %s", index, st, out)
	}
	var r struct{ Count int }
	if err := json.Unmarshal(out, &r); err != nil {
		e.t.Fatalf("_count %s: %v: %s", index, err, out)
	}
	return r.Count
}

// seqCounts returns, per value of the long field seq, how many documents
// of index hold it, read with a composite aggregation page by page (the
// engine counts; the test never fetches the documents).
func (e *engine) seqCounts(index string) map[int]int {
	e.t.Helper()
	e.must("POST", "/"+index+"/_refresh", nil)
	seen := map[int]int{}
	var after any
	for {
		comp := map[string]any{
			"size":    10000,
			"sources": []any{map[string]any{"seq": map[string]any{"terms": map[string]any{"field": "seq"}}}},
		}
		if after != nil {
			comp["after"] = after
		}
		out := e.must("POST", "/"+index+"/_search", map[string]any{
			"size": 0, "track_total_hits": true,
			"aggs": map[string]any{"seqs": map[string]any{"composite": comp}},
		})
		var r struct {
			Aggregations struct {
				Seqs struct {
					AfterKey map[string]any `json:"after_key"`
					Buckets  []struct {
						Key      struct{ Seq float64 } `json:"key"`
						DocCount int                   `json:"doc_count"`
					} `json:"buckets"`
				} `json:"seqs"`
			} `json:"aggregations"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			e.t.Fatalf("composite aggregation on %s: %v", index, err)
		}
		b := r.Aggregations.Seqs.Buckets
		for _, k := range b {
			seen[int(k.Key.Seq)] += k.DocCount
		}
		if len(b) == 0 || r.Aggregations.Seqs.AfterKey == nil {
			return seen
		}
		after = r.Aggregations.Seqs.AfterKey
	}
}

// clusterSetting returns the persistent value of a cluster setting ("" when
// unset).
func (e *engine) clusterSetting(key string) string {
	e.t.Helper()
	out := e.must("GET", "/_cluster/settings?flat_settings=true", nil)
	var r struct {
		Persistent map[string]any `json:"persistent"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		e.t.Fatal(err)
	}
	if v, ok := r.Persistent[key]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

// seqLine is the numbered log line n: seq is mapped long, code too; a bad
// line carries a string in code, which the mapping refuses.
func seqLine(dst []byte, n int, bad bool, stream string) []byte {
	if bad {
		return fmt.Appendf(dst, `{"seq":%d,"code":"not-a-number-%d","stream":%q,"msg":"order %d created"}`+"\n", n, n, stream, n)
	}
	return fmt.Appendf(dst, `{"seq":%d,"code":%d,"stream":%q,"msg":"order %d created"}`+"\n", n, n%1000, stream, n)
}

// seqMapping is the mapping the tests create for their indices.
var seqMapping = map[string]any{
	"properties": map[string]any{
		"seq":        map[string]any{"type": "long"},
		"code":       map[string]any{"type": "long"},
		"stream":     map[string]any{"type": "keyword"},
		"msg":        map[string]any{"type": "text"},
		"@timestamp": map[string]any{"type": "date"},
	},
}

// lineWriter is the application: it appends lines 0..total-1 to path at
// rate lines a second, in bursts every 20 ms.
type lineWriter struct {
	path    string
	total   int
	rate    int
	line    func(dst []byte, n int) []byte
	written atomic.Int64
	done    chan struct{}
	err     error
}

func startLineWriter(t *testing.T, path string, total, rate int, line func([]byte, int) []byte) *lineWriter {
	w := &lineWriter{path: path, total: total, rate: rate, line: line, done: make(chan struct{})}
	stop := make(chan struct{})
	go w.run(stop)
	t.Cleanup(func() { close(stop); <-w.done })
	return w
}

func (w *lineWriter) run(stop chan struct{}) {
	defer close(w.done)
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.err = err
		return
	}
	defer f.Close()
	start := time.Now()
	var buf []byte
	for n := 0; n < w.total; {
		owed := min(int(time.Since(start).Seconds()*float64(w.rate)), w.total)
		if owed <= n {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		buf = buf[:0]
		for ; n < owed; n++ {
			buf = w.line(buf, n)
		}
		if _, err := f.Write(buf); err != nil {
			w.err = err
			return
		}
		w.written.Store(int64(n))
	}
}

func (w *lineWriter) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(within):
		t.Fatalf("the writer wrote %d of %d lines in %v", w.written.Load(), w.total, within)
	}
	if w.err != nil {
		t.Fatal(w.err)
	}
}

// deadLetter is one line of a dead-letter file.
type deadLetter struct {
	Reason string          `json:"reason"`
	Action json.RawMessage `json:"action"`
	Record json.RawMessage `json:"record"`
}

// deadLetters reads every dead-letter line of output under dataDir.
func deadLetters(t *testing.T, dataDir, output string) []deadLetter {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "dead-letter", output, "*.ndjson"))
	var out []deadLetter
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var d deadLetter
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				t.Fatalf("%s: unreadable dead letter %q: %v", p, sc.Text(), err)
			}
			out = append(out, d)
		}
		f.Close()
	}
	return out
}

// seqOf returns the seq field of a dead-lettered document.
func (d deadLetter) seq(t *testing.T) int {
	var doc struct {
		Seq *int `json:"seq"`
	}
	if err := json.Unmarshal(d.Record, &doc); err != nil || doc.Seq == nil {
		t.Fatalf("dead letter without a readable seq: %s (reason %s)", d.Record, d.Reason)
	}
	return *doc.Seq
}

// envInt is an integer from the environment, else def.
func envInt(t *testing.T, key string, def int) int {
	if v := os.Getenv(key); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive integer", key, v)
		}
		return n
	}
	return def
}

// waitFor polls cond every 100 ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if diag != nil {
				msg = "\n" + diag()
			}
			t.Fatalf("%s: not within %v%s", what, within, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
