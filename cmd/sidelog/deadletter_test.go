package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
)

// A document Elasticsearch refuses (mapping error) goes to the dead-letter
// file with the reason; once the cause is fixed, `sidelog dead-letter
// replay` indexes it and removes the file.
func TestDeadLetterAndReplay(t *testing.T) {
	es := estest.New()
	defer es.Close()
	var refuse atomic.Bool
	refuse.Store(true)
	es.ItemFault = func(it estest.Item) *estest.ItemResult {
		if refuse.Load() && bytes.Contains(it.Source, []byte(`"bad"`)) {
			return &estest.ItemResult{Status: 400, Type: "mapper_parsing_exception", Reason: "failed to parse field [n] of type [long]"}
		}
		return nil
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "logs", "a.log"), `{"n":1}`+"\n"+`{"n":"bad"}`+"\n"+`{"n":3}`+"\n")
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, `data_dir: `+dir+`/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"]}
outputs:
  - name: es
    type: elasticsearch
    endpoints: ["`+es.URL+`"]
    index: app
    batch: {timeout: 10ms}
    retry: {initial: 10ms, max: 100ms}
`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b, err := sidelog(ctx, "run", "-c", cfg, "--exit-on-eof").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if n := es.Count("app"); n != 2 {
		t.Fatalf("%d documents indexed, want 2", n)
	}
	files, _ := filepath.Glob(filepath.Join(delivery.DeadLetterDir(filepath.Join(dir, "data"), "es"), "*.ndjson"))
	if len(files) != 1 {
		t.Fatalf("dead-letter files: %v", files)
	}
	dl, _ := os.ReadFile(files[0])
	if !strings.Contains(string(dl), `"source":{"input":"app","path":"`+filepath.Join(dir, "logs", "a.log")+`","offset":20}`) {
		t.Fatalf("dead letter lacks the source (input, file, offset): %s", dl)
	}
	if !strings.Contains(string(dl), "mapper_parsing_exception") || !strings.Contains(string(dl), `"reason"`) {
		t.Fatalf("dead letter lacks the reason: %s", dl)
	}

	refuse.Store(false)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"dead-letter", "replay", "-c", cfg, "--output", "es"}, &stdout, &stderr); code != 0 {
		t.Fatalf("replay: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "replayed 1 records") {
		t.Fatalf("replay printed %q", stdout.String())
	}
	if n := es.Count("app"); n != 3 {
		t.Fatalf("%d documents after replay, want 3", n)
	}
	if files, _ := filepath.Glob(filepath.Join(delivery.DeadLetterDir(filepath.Join(dir, "data"), "es"), "*.ndjson")); len(files) != 0 {
		t.Fatalf("dead-letter files left after replay: %v", files)
	}
}
