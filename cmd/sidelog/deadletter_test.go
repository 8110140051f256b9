package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
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
	// Readable: the bulk action and the document as JSON fields.
	if !strings.Contains(string(dl), `"action":{"index":{"_index":"app","_id":"`) || !strings.Contains(string(dl), `,"n":"bad"}}`) {
		t.Fatalf("dead letter is not readable JSON (action, record): %s", dl)
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

// `sidelog dead-letter replay` while the agent runs: the data directory is
// locked, so the command asks the agent through its admin listener
// (api.admin, with its bearer token); the metrics address does not replay;
// without an admin listener the command says why it cannot.
func TestDeadLetterReplayWhileRunning(t *testing.T) {
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "logs", "a.log"), `{"n":1}`+"\n"+`{"n":"bad"}`+"\n")
	cfg := filepath.Join(dir, "sidelog.yaml")
	body := `data_dir: ` + dir + `/data
inputs:
  - {name: app, type: tail, paths: ["` + dir + `/logs/*.log"]}
outputs:
  - name: es
    type: elasticsearch
    endpoints: ["` + es.URL + `"]
    index: app
    batch: {timeout: 10ms}
`
	sock, token := filepath.Join(dir, "admin.sock"), filepath.Join(dir, "admin.token")
	writeFile(t, token, "s3cret-admin-token")
	writeFile(t, cfg, "api: {address: \""+addr+"\", admin: {socket: \""+sock+"\", token_file: \""+token+"\"}}\n"+body)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	agent := sidelog(ctx, "run", "-c", cfg)
	var logs bytes.Buffer
	agent.Stderr = &logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	}()
	dlDir := delivery.DeadLetterDir(filepath.Join(dir, "data"), "es")
	for {
		if files, _ := filepath.Glob(filepath.Join(dlDir, "*.ndjson")); len(files) == 1 && es.Count("app") == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no dead letter; agent log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond) // another process: polled
	}
	refuse.Store(false)
	// The metrics address (reachable by every pod behind a mesh) does not
	// replay.
	resp, err := http.Post("http://"+addr+"/dead-letter/replay?output=es", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /dead-letter/replay on api.address: %s, want 404", resp.Status)
	}
	if n := es.Count("app"); n != 1 {
		t.Fatalf("%d documents after a replay asked on the metrics address, want 1", n)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"dead-letter", "replay", "-c", cfg, "--output", "es"}, &stdout, &stderr); code != 0 {
		t.Fatalf("replay: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "replayed 1 records to output es (through the running agent)") {
		t.Fatalf("replay printed %q", stdout.String())
	}
	if n := es.Count("app"); n != 2 {
		t.Fatalf("%d documents after replay, want 2", n)
	}
	if files, _ := filepath.Glob(filepath.Join(dlDir, "*.ndjson")); len(files) != 0 {
		t.Fatalf("dead-letter files left after replay: %v", files)
	}
	// Without an admin listener the command says why it cannot.
	writeFile(t, cfg, "api: {address: \""+addr+"\"}\n"+body)
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"dead-letter", "replay", "-c", cfg, "--output", "es"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "admin listener is off (api.admin)") || !strings.Contains(stderr.String(), "held by pid") {
		t.Fatalf("replay without API: exit %d\n%s", code, stderr.String())
	}
}
