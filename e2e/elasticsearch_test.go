package e2e_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/output/elasticsearch/estest"
)

// Issue 7's acceptance: 200,000 lines tailed through the disk buffer to a
// cluster that refuses 5% of items with 429 (once each), 1% with a mapping
// error and drops the connection twice, while the agent is killed with
// SIGKILL three times: every good line is indexed exactly once (stable _id
// from instance id + file identity + offset), every bad one is in the
// dead-letter file with Elasticsearch's reason.
func TestElasticsearchExactlyOnceThroughSIGKILL(t *testing.T) {
	const lines = 200_000
	isBad := func(n int) bool { return n%100 == 7 }
	es := estest.New()
	defer es.Close()
	es.ItemFault = func(it estest.Item) *estest.ItemResult {
		var doc struct{ N int }
		if err := json.Unmarshal(it.Source, &doc); err != nil {
			return &estest.ItemResult{Status: 400, Type: "parse_exception", Reason: err.Error()}
		}
		if isBad(doc.N) {
			return &estest.ItemResult{Status: 400, Type: "mapper_parsing_exception", Reason: fmt.Sprintf("failed to parse field [user] for document %d", doc.N)}
		}
		if doc.N%20 == 0 && it.Attempt == 1 {
			return &estest.ItemResult{Status: 429, Type: "es_rejected_execution_exception", Reason: "rejected execution of coordinating operation"}
		}
		return nil
	}
	es.Fault = func(n int, r *http.Request) *estest.RequestFault {
		switch n {
		case 5:
			return &estest.RequestFault{Drop: true}
		case 11:
			return &estest.RequestFault{DropAfterIndexing: true}
		}
		return nil
	}

	dir := t.TempDir()
	logf := filepath.Join(dir, "logs", "app.log")
	os.MkdirAll(filepath.Dir(logf), 0o755)
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range lines {
		fmt.Fprintf(w, `{"n":%d,"level":"info","msg":"order %d created","service":"checkout"}`+"\n", i, i)
	}
	w.Flush()
	f.Close()
	cfg := filepath.Join(dir, "sidelog.yaml")
	os.WriteFile(cfg, []byte(`data_dir: `+dir+`/data
api: {address: "127.0.0.1:0"}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"]}
outputs:
  - name: es
    type: elasticsearch
    endpoints: ["`+es.URL+`"]
    index: app
    buffer: {type: disk}
    batch: {max_events: 1000, timeout: 20ms}
    retry: {initial: 10ms, max: 200ms}
`), 0o644)

	// Three runs killed with SIGKILL once the cluster has some more.
	for i, at := range []int{30_000, 90_000, 150_000} {
		a := startAgent(t, cfg)
		deadline := time.Now().Add(2 * time.Minute)
		for es.Total() < at {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: only %d documents after 2 minutes:\n%s", i, es.Total(), tail(a.out.String(), 20))
			}
			time.Sleep(5 * time.Millisecond)
		}
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
		t.Logf("run %d killed with %d documents indexed", i, es.Total())
	}
	// The last run reads to the end and exits.
	cmd := exec.Command(binary(t), "run", "-c", cfg, "--exit-on-eof")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("final run: %v\n%s", err, tail(string(out), 30))
	}

	seen := make(map[int]int)
	for id, d := range es.Docs("app") {
		var doc struct{ N int }
		if err := json.Unmarshal(d.Source, &doc); err != nil {
			t.Fatalf("document %s: %v", id, err)
		}
		seen[doc.N]++
	}
	good := 0
	for n := range lines {
		if isBad(n) {
			if seen[n] != 0 {
				t.Fatalf("bad line %d was indexed", n)
			}
			continue
		}
		good++
		if seen[n] != 1 {
			t.Fatalf("line %d indexed %d times", n, seen[n])
		}
	}
	if got := es.Count("app"); got != good {
		t.Fatalf("%d documents, want %d", got, good)
	}

	// Every bad line is in the dead-letter files, with the reason.
	dead := map[int]bool{}
	files, _ := filepath.Glob(filepath.Join(dir, "data", "dead-letter", "es", "*.ndjson"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if !strings.Contains(l, "mapper_parsing_exception") {
				t.Fatalf("dead letter without the reason: %s", l)
			}
			var n int
			if _, err := fmt.Sscanf(l[strings.Index(l, "for document ")+len("for document "):], "%d", &n); err != nil {
				t.Fatalf("cannot read the document number in %s", l)
			}
			dead[n] = true
		}
	}
	for n := range lines {
		if isBad(n) && !dead[n] {
			t.Fatalf("bad line %d is not in the dead-letter files", n)
		}
	}
	t.Logf("%d documents indexed once, %d dead letters, %d bulk requests, item errors %v", good, len(dead), es.BulkRequests(), es.ItemErrors())
}
