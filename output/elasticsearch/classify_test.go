package elasticsearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// classOf names what the delivery loop does with err: "permanent",
// "throttled", "retryable", or "blocked KEY REASON".
func classOf(err error) string {
	if b, ok := delivery.AsBlocked(err); ok {
		return "blocked " + b.Key + " " + b.Reason
	}
	c, _ := output.Classify(err)
	return c.String()
}

// TestClassifyByType: the class follows error.type, not the status.
func TestClassifyByType(t *testing.T) {
	cases := []struct {
		status      int
		typ, reason string
		want        string
	}{
		{400, "mapper_parsing_exception", "failed to parse field [n] of type [long]", "permanent"},
		{400, "document_parsing_exception", "[1:8] failed to parse field [n]", "permanent"},
		{400, "strict_dynamic_mapping_exception", "mapping set to strict, dynamic introduction of [x] within [_doc] is not allowed", "permanent"},
		{400, "illegal_argument_exception", "field [n] of type [long] does not support ...", "permanent"},
		{400, "invalid_index_name_exception", "Invalid index name [_x], must not start with '_', '-', or '+'", "permanent"},
		{403, "cluster_block_exception", "index [a] blocked by: [FORBIDDEN/8/index write (api)];", "blocked a cluster_block_exception"},
		{429, "cluster_block_exception", "index [a] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];", "blocked a cluster_block_exception"},
		{404, "index_not_found_exception", "no such index [a] and [action.auto_create_index] ([false]) doesn't match", "blocked a index_not_found_exception"},
		{403, "security_exception", "action [indices:data/write/bulk[s]] is unauthorized", "blocked a security_exception"},
		{400, "illegal_argument_exception", "pipeline with id [p] does not exist", "blocked a missing_pipeline"},
		{400, "index_closed_exception", "closed", "blocked a index_closed_exception"},
		{400, "illegal_argument_exception", "only write ops with an op_type of create are allowed in data streams", "blocked a data_stream_op_type"},
		{429, "es_rejected_execution_exception", "rejected execution", "throttled"},
		{503, "unavailable_shards_exception", "primary shard is not active", "retryable"},
		{500, "", "", "retryable"},
	}
	for _, c := range cases {
		raw, _ := json.Marshal(map[string]string{"type": c.typ, "reason": c.reason})
		it := bulkItem{op: "create", Index: ".ds-a-2026.12.03-000001", Status: c.status, Error: raw}
		if got := classOf(it.classify("elasticsearch", "a")); got != c.want {
			t.Errorf("%d %s %q: %s, want %s", c.status, c.typ, c.reason, got, c.want)
		}
	}
}

// TestClassifyRealAnswers: the per-item errors that the real OpenSearch
// 2.19 and Elasticsearch 7.17 nodes returned (estest/testdata/real-*.json)
// get their class: a write block, a missing index with auto-create off and
// a missing pipeline block the index; a mapping error is permanent.
func TestClassifyRealAnswers(t *testing.T) {
	want := map[string]string{
		"bulk_write_block":      "blocked IDX cluster_block_exception",
		"bulk_auto_create_off":  "blocked IDX index_not_found_exception",
		"bulk_missing_pipeline": "blocked IDX missing_pipeline",
		"bulk_mapping_error":    "permanent",
	}
	files, _ := filepath.Glob("estest/testdata/real-*.json")
	if len(files) < 2 {
		t.Fatalf("captures: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var caps map[string]struct {
			Response json.RawMessage `json:"response"`
		}
		if err := json.Unmarshal(data, &caps); err != nil {
			t.Fatal(err)
		}
		for name, w := range want {
			var r struct{ Items []json.RawMessage }
			if err := json.Unmarshal(caps[name].Response, &r); err != nil || len(r.Items) == 0 {
				t.Fatalf("%s %s: %v", f, name, err)
			}
			items, err := parseBulkResponse(caps[name].Response, len(r.Items))
			if err != nil {
				t.Fatalf("%s %s: %v", f, name, err)
			}
			it := items[0]
			got := classOf(it.classify("elasticsearch", "IDX"))
			if got != w {
				t.Errorf("%s %s: %s, want %s (%s)", filepath.Base(f), name, got, w, errorText(it.Error))
			}
		}
	}
}

// deadLetters records what the delivery loop dead-letters.
type deadLetters struct {
	mu      sync.Mutex
	reasons []string
}

func (d *deadLetters) Write(_ string, recs [][]byte, reasons []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reasons = append(d.reasons, reasons...)
	return nil
}

func (d *deadLetters) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.reasons...)
}

// twoServices encodes n records alternating service a and b.
func twoServices(t *testing.T, o *Output, n int) [][]byte {
	t.Helper()
	var recs [][]byte
	for i := range n {
		svc := []string{"a", "b"}[i%2]
		raw := fmt.Sprintf(`{"n":%d,"service":%q}`, i, svc)
		rec, err := o.Encode(nil, rawEvent(raw, map[string]any{"service": svc}, int64(100+i*10)))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// runUntil runs r in the background and returns a function that waits for
// its end.
func runUntil(t *testing.T, r *delivery.Runner) func() {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		defer cancel()
		if err := <-done; err != nil {
			t.Fatalf("runner: %v", err)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, s := range state {
				msg += " " + s()
			}
			t.Fatalf("timed out waiting for %s;%s", what, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBlockedIndexKeepsOthersFlowing: a configuration error on one index
// of a templated output (each type in turn) blocks that index only: its
// records wait in the buffer (nothing dead-lettered, retry.max_elapsed
// does not apply), /status's BlockState names it with the engine's reason,
// the other index receives everything meanwhile; once the cause is lifted
// every record arrives once.
func TestBlockedIndexKeepsOthersFlowing(t *testing.T) {
	for _, fault := range []estest.ItemResult{
		{Status: 403, Type: "cluster_block_exception", Reason: "index [app-a] blocked by: [FORBIDDEN/8/index write (api)];"},
		{Status: 429, Type: "cluster_block_exception", Reason: "index [app-a] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"},
		{Status: 404, Type: "index_not_found_exception", Reason: "no such index [app-a] and [action.auto_create_index] contains [-app-a*] which forbids automatic creation of the index"},
		{Status: 403, Type: "security_exception", Reason: "action [indices:data/write/bulk[s]] is unauthorized for user [sidelog] on indices [app-a]"},
		{Status: 400, Type: "illegal_argument_exception", Reason: "pipeline with id [p] does not exist"},
		{Status: 400, Type: "index_closed_exception", Reason: "closed"},
	} {
		t.Run(fault.Type+"-"+fmt.Sprint(fault.Status), func(t *testing.T) {
			s := estest.New()
			defer s.Close()
			var lifted atomic.Bool
			s.ItemFault = func(it estest.Item) *estest.ItemResult {
				if it.Index == "app-a" && !lifted.Load() {
					f := fault
					return &f
				}
				return nil
			}
			o := serverOutput(t, s, nil)
			dl := &deadLetters{}
			blocks := delivery.NewBlockState(nil)
			r := &delivery.Runner{Name: "es", Out: o, Buf: memBuffer(t, twoServices(t, o, 400)), Blocks: blocks, DeadLetter: dl,
				// 10 batches: each parks aside once its app-b records are
				// in (fewer than delivery.DefaultMaxParked).
				Batch: delivery.BatchConfig{MaxEvents: 40, Timeout: 10 * time.Millisecond},
				Retry: delivery.RetryConfig{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxElapsed: time.Millisecond}}
			wait := runUntil(t, r)
			waitFor(t, "app-b complete while app-a is blocked", 20*time.Second, func() bool {
				bs := blocks.Blocks("es")
				return s.Count("app-b") == 200 && len(bs) == 1 && bs[0].Key == "app-a"
			}, func() string { return fmt.Sprintf("app-b %d, blocks %+v", s.Count("app-b"), blocks.Blocks("es")) })
			bs := blocks.Blocks("es")
			if want := configReason(fault.Status, fault.Type, fault.Reason); bs[0].Reason != want || !strings.Contains(bs[0].Message, fault.Reason) {
				t.Errorf("block %+v, want reason %s with the engine's message", bs[0], want)
			}
			if n := s.Count("app-a"); n != 0 {
				t.Errorf("app-a has %d documents while blocked", n)
			}
			lifted.Store(true)
			wait()
			if n := s.Count("app-a"); n != 200 {
				t.Errorf("app-a: %d documents after the block was lifted, want 200", n)
			}
			if d := dl.all(); len(d) != 0 {
				t.Errorf("%d records dead-lettered: %v", len(d), d[0])
			}
			if len(blocks.Blocks("es")) != 0 {
				t.Errorf("still blocked: %+v", blocks.Blocks("es"))
			}
		})
	}
}

// TestClassifyRealNodes: on the real OpenSearch and Elasticsearch 7.17
// nodes, a write block on one index of a templated output blocks that
// index only (the other's documents land in the same request), a missing
// pipeline blocks, a mapping error is permanent with the engine's reason;
// once the block is lifted the blocked records land.
func TestClassifyRealNodes(t *testing.T) {
	for _, srv := range []struct {
		name string
		url  func(testing.TB) string
	}{{"opensearch", testservers.OpenSearch}, {"elasticsearch7", testservers.Elasticsearch7}} {
		t.Run(srv.name, func(t *testing.T) {
			n := node{t, srv.url(t)}
			prefix := testservers.UniqueName(t, "sidelog-cls")
			a, b := prefix+"-a", prefix+"-b"
			n.cleanup("/"+a, "/"+b)
			n.must("PUT", "/"+a, `{"mappings":{"properties":{"n":{"type":"long"}}}}`)
			n.must("PUT", "/"+a+"/_settings", `{"index.blocks.write":true}`)
			t.Cleanup(func() { n.do("PUT", "/"+a+"/_settings", `{"index.blocks.write":false}`) })
			o := testOutput(t, func(c *Config) { c.Endpoints = []string{n.url}; c.Index = prefix + "-{{ service }}" }, plugins.OutputEnv{Name: "es"})
			recs := twoServices(t, o, 20)
			err := o.Write(t.Context(), recs)
			var be *output.BatchError
			if !errors.As(err, &be) || len(be.Failed) != 10 {
				t.Fatalf("got %v", err)
			}
			for i, e := range be.Failed {
				if i%2 != 0 || classOf(e) != "blocked "+a+" cluster_block_exception" || !strings.Contains(e.Error(), "index write") {
					t.Fatalf("record %d: %s (%v)", i, classOf(e), e)
				}
			}
			if got := n.count(b); got != 10 {
				t.Errorf("%s: %d documents, want 10 while %s is blocked", b, got, a)
			}
			n.must("PUT", "/"+a+"/_settings", `{"index.blocks.write":false}`)
			var retry [][]byte
			for i := range be.Failed {
				retry = append(retry, recs[i])
			}
			if err := o.Write(t.Context(), retry); err != nil {
				t.Fatalf("after lifting the block: %v", err)
			}
			if got := n.count(a); got != 10 {
				t.Errorf("%s: %d documents, want 10", a, got)
			}

			// A mapping error: permanent, with the engine's reason.
			bad, err := o.Encode(nil, rawEvent(`{"n":"not a number","service":"a"}`, map[string]any{"service": "a"}, 999999))
			if err != nil {
				t.Fatal(err)
			}
			err = o.Write(t.Context(), [][]byte{bad})
			if classOf(err) != "permanent" && !(errors.As(err, &be) && classOf(be.Failed[0]) == "permanent") {
				t.Fatalf("mapping error: %v", err)
			}
			if !strings.Contains(err.Error(), "mapper_parsing_exception") && !(errors.As(err, &be) && strings.Contains(be.Failed[0].Error(), "mapper_parsing_exception")) {
				t.Errorf("no engine reason: %v", err)
			}

			// A missing ingest pipeline: blocked.
			op := testOutput(t, func(c *Config) {
				c.Endpoints = []string{n.url}
				c.Index = b
				c.Pipeline = testservers.UniqueName(t, "sidelog-nopipe")
			}, plugins.OutputEnv{Name: "es"})
			err = op.Write(t.Context(), docs(t, op, 0, 2))
			if !errors.As(err, &be) || classOf(be.Failed[0]) != "blocked "+b+" missing_pipeline" {
				t.Fatalf("missing pipeline: %v", err)
			}
		})
	}
}
