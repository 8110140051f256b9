package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/internal/testservers"
)

// Issue 16's acceptance for configuration errors, from the agent process
// against the real engines: what the engine refuses for a reason that is
// not the document's (a write block, an index that may not be created)
// pauses delivery to that index, shows in /status with the engine's reason,
// is never dead-lettered, and everything arrives once the cause is lifted.

// statusBlock is one entry of an output's "blocked" list in /status.
type statusBlock struct {
	Key     string    `json:"key"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// blocks returns what /status says output es is blocked on (nil: not
// blocked) and its state.
func (a *agent) blocks(t *testing.T) (string, []statusBlock) {
	t.Helper()
	code, body := a.get(t, "/status")
	if code != 200 {
		t.Fatalf("/status: %d %s", code, body)
	}
	var s struct {
		Outputs map[string]struct {
			State   string        `json:"state"`
			Blocked []statusBlock `json:"blocked"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	o := s.Outputs["es"]
	return o.State, o.Blocked
}

// blockedOn returns the block of /status on key for reason, if shown.
func (a *agent) blockedOn(t *testing.T, key, reason string) (statusBlock, bool) {
	_, bs := a.blocks(t)
	for _, b := range bs {
		if b.Key == key && b.Reason == reason {
			return b, true
		}
	}
	return statusBlock{}, false
}

func TestSearchWriteBlockOpenSearch(t *testing.T) {
	searchWriteBlock(t, testservers.OpenSearch(t), "opensearch")
}

func TestSearchWriteBlockES7(t *testing.T) {
	searchWriteBlock(t, testservers.Elasticsearch7(t), "elasticsearch")
}

// searchWriteBlock: one output writing to two indices (index: '<p>-{{
// stream }}'); index.blocks.write is set on <p>-a mid-run, then lifted.
// While it lasts /status shows the output blocked on <p>-a with the
// engine's reason and <p>-b keeps receiving; afterwards every line is in
// its index once and nothing is dead-lettered.
func searchWriteBlock(t *testing.T, url, typ string) {
	const lines = 10_000
	es := newEngine(t, url)
	prefix := testservers.UniqueName(t, "sidelogtest-block")
	idxA, idxB := prefix+"-a", prefix+"-b"
	createSeqIndex(t, es, idxA, "bulk")
	createSeqIndex(t, es, idxB, "bulk")
	// Runs before the deletes (cleanups run last first).
	t.Cleanup(func() { es.do("PUT", "/"+idxA+"/_settings", `{"index.blocks.write": null}`) })
	dir := t.TempDir()
	cfg := searchConfig(t, dir, typ, url, prefix+"-{{ stream }}", "bulk", "")
	// The default batch.timeout (1s): how long the other index keeps
	// flowing depends on it (see below).
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "timeout: 50ms", "timeout: 1s", 1)), 0o644)
	stream := func(n int) string { return map[bool]string{true: "a", false: "b"}[n%2 == 0] }
	binary(t)
	// The application writes for about 15 seconds.
	w := startLineWriter(t, filepath.Join(dir, "logs", "app.log"), lines, lines/15, func(b []byte, n int) []byte {
		return seqLine(b, n, false, stream(n))
	})
	a := startAgent(t, cfg)
	waitFor(t, time.Minute, "the agent delivering",
		func() bool { return a.metric(t, "sidelog_output_records_out_total", `{output="es"}`) >= 500 },
		func() string { return tail(a.out.String(), 20) })

	es.must("PUT", "/"+idxA+"/_settings", `{"index.blocks.write": true}`)
	var blk statusBlock
	waitFor(t, time.Minute, "/status showing the output blocked on "+idxA+" by cluster_block_exception",
		func() bool {
			if d := deadLetters(t, filepath.Join(dir, "data"), "es"); len(d) > 0 {
				t.Fatalf("%d records dead-lettered instead of a block (first: %s)", len(d), d[0].Reason)
			}
			var ok bool
			blk, ok = a.blockedOn(t, idxA, "cluster_block_exception")
			return ok
		},
		func() string {
			_, bs := a.blocks(t)
			return fmt.Sprintf("/status blocked: %+v\n%s", bs, tail(a.out.String(), 20))
		})
	t.Logf("/status while blocked: key %s, reason %s, message %q", blk.Key, blk.Reason, blk.Message)
	if !strings.Contains(blk.Message, "blocks.write") && !strings.Contains(blk.Message, "index write") {
		t.Errorf("the block's message is not the engine's reason: %q", blk.Message)
	}
	aAt, bAt := es.count(idxA), es.count(idxB)

	// The block lasts 6 seconds; the other index keeps receiving through
	// all of it. (Records of the blocked index wait aside in at most
	// delivery.DefaultMaxParked batches and DefaultMaxParkedBytes, so that
	// other indices keep flowing; past that the whole output pauses.)
	var bs []int
	// Two windows of 3 s (a bulk request on the loaded shared node can
	// take seconds).
	for i := range 2 {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if _, still := a.blockedOn(t, idxA, "cluster_block_exception"); !still {
				t.Fatalf("/status no longer shows the block that is still set")
			}
			time.Sleep(200 * time.Millisecond)
		}
		bs = append(bs, es.count(idxB))
		if prev := append([]int{bAt}, bs...)[i]; bs[i] <= prev {
			t.Fatalf("%s stopped receiving %ds into the block: %d documents at the block, then %v", idxB, 3*(i+1), bAt, bs)
		}
	}
	if got := es.count(idxA); got != aAt {
		t.Fatalf("%s grew from %d to %d under a write block", idxA, aAt, got)
	}
	bDuring := bs[len(bs)-1] - bAt
	if d := deadLetters(t, filepath.Join(dir, "data"), "es"); len(d) > 0 {
		t.Fatalf("%d records dead-lettered during the block (first: %s)", len(d), d[0].Reason)
	}

	es.must("PUT", "/"+idxA+"/_settings", `{"index.blocks.write": false}`)
	lifted := time.Now()
	waitFor(t, time.Minute, "/status no longer blocked",
		func() bool { _, bs := a.blocks(t); return len(bs) == 0 },
		func() string { _, bs := a.blocks(t); return fmt.Sprintf("%+v", bs) })
	w.wait(t, 2*time.Minute)
	waitFor(t, 2*time.Minute, "every line delivered",
		func() bool { return a.metric(t, "sidelog_output_records_out_total", `{output="es"}`) >= lines },
		func() string {
			return fmt.Sprintf("%v delivered", a.metric(t, "sidelog_output_records_out_total", `{output="es"}`))
		})
	if code, _ := a.stop(t, 30*time.Second); code != 0 {
		t.Errorf("the agent exited %d", code)
	}

	if d := deadLetters(t, filepath.Join(dir, "data"), "es"); len(d) > 0 {
		t.Errorf("%d records dead-lettered (first: %s)", len(d), d[0].Reason)
	}
	for _, idx := range []string{idxA, idxB} {
		want := idx[len(idx)-1:]
		seen := es.seqCounts(idx)
		for n := range lines {
			if stream(n) == want && seen[n] != 1 {
				t.Errorf("line %d is in %s %d times", n, idx, seen[n])
			}
		}
		if got := es.count(idx); got != lines/2 {
			t.Errorf("%s: _count = %d, want %d", idx, got, lines/2)
		}
	}
	t.Logf("FIGURES block on %s: /status reason %s (%q); %s received %d documents during the block; blocked %v until the lift (%s every 3 s: %v), everything delivered %v after it",
		idxA, blk.Reason, blk.Message, idxB, bDuring, lifted.Sub(blk.Since).Round(time.Millisecond), idxB, bs, time.Since(lifted).Round(time.Millisecond))
}

func TestSearchAutoCreateOffOpenSearch(t *testing.T) {
	searchAutoCreateOff(t, testservers.OpenSearch(t), "opensearch")
}

func TestSearchAutoCreateOffES7(t *testing.T) {
	searchAutoCreateOff(t, testservers.Elasticsearch7(t), "elasticsearch")
}

// searchAutoCreateOff: action.auto_create_index refuses the test's own
// prefix (the node is shared: never globally); the agent's output pauses,
// blocked on index_not_found_exception, nothing is dead-lettered; the test
// creates the index and everything arrives.
func searchAutoCreateOff(t *testing.T, url, typ string) {
	const lines = 5_000
	es := newEngine(t, url)
	prefix := testservers.UniqueName(t, "sidelogtest-noauto")
	index := prefix + "-app"
	const key = "action.auto_create_index"
	prev := es.clusterSetting(key)
	value := "-" + prefix + "*,+*"
	switch prev {
	case "", "true":
	case "false":
		t.Fatalf("%s is false on the shared node: another test turned it off globally", key)
	default: // another test's own exclusions: keep them
		value = "-" + prefix + "*," + prev
	}
	es.must("PUT", "/_cluster/settings", map[string]any{"persistent": map[string]any{key: value}})
	t.Cleanup(func() {
		// Restore the value found, unless another test changed it since:
		// then take only this test's exclusion out.
		var restore any
		switch cur := es.clusterSetting(key); {
		case cur == value && prev != "":
			restore = prev
		case cur == value:
			restore = nil // unset, as it was
		case strings.HasPrefix(cur, "-"+prefix+"*,"):
			restore = strings.TrimPrefix(cur, "-"+prefix+"*,")
		default:
			restore = cur
		}
		es.must("PUT", "/_cluster/settings", map[string]any{"persistent": map[string]any{key: restore}})
		es.do("DELETE", "/"+index, nil)
	})

	dir := t.TempDir()
	cfg := searchConfig(t, dir, typ, url, index, "bulk", "")
	var b []byte
	for n := range lines {
		b = seqLine(b, n, false, "a")
	}
	if err := os.WriteFile(filepath.Join(dir, "logs", "app.log"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, cfg)
	var blk statusBlock
	waitFor(t, time.Minute, "/status showing the output blocked on "+index+" by index_not_found_exception",
		func() bool {
			if d := deadLetters(t, filepath.Join(dir, "data"), "es"); len(d) > 0 {
				t.Fatalf("%d records dead-lettered instead of a pause (first: %s)", len(d), d[0].Reason)
			}
			var ok bool
			blk, ok = a.blockedOn(t, index, "index_not_found_exception")
			return ok
		},
		func() string {
			_, bs := a.blocks(t)
			return fmt.Sprintf("/status blocked: %+v\n%s", bs, tail(a.out.String(), 20))
		})
	t.Logf("/status while paused: key %s, reason %s, message %q", blk.Key, blk.Reason, blk.Message)
	if got := a.metric(t, "sidelog_output_records_out_total", `{output="es"}`); got > 0 {
		t.Errorf("%v records delivered into an index that does not exist", got)
	}
	if st, _ := es.do("HEAD", "/"+index, nil); st != 404 {
		t.Fatalf("HEAD %s = %d: the index exists although auto-create is off for it", index, st)
	}
	if d := deadLetters(t, filepath.Join(dir, "data"), "es"); len(d) > 0 {
		t.Fatalf("%d records dead-lettered while paused (first: %s)", len(d), d[0].Reason)
	}

	es.must("PUT", "/"+index, map[string]any{"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0}, "mappings": seqMapping})
	created := time.Now()
	waitFor(t, 2*time.Minute, "every line delivered",
		func() bool { return a.metric(t, "sidelog_output_records_out_total", `{output="es"}`) >= lines },
		func() string {
			return fmt.Sprintf("%v delivered", a.metric(t, "sidelog_output_records_out_total", `{output="es"}`))
		})
	arrived := time.Since(created)
	if _, bs := a.blocks(t); len(bs) > 0 {
		t.Errorf("still blocked after everything arrived: %+v", bs)
	}
	if code, _ := a.stop(t, 30*time.Second); code != 0 {
		t.Errorf("the agent exited %d", code)
	}
	if d := deadLetters(t, filepath.Join(dir, "data"), "es"); len(d) > 0 {
		t.Errorf("%d records dead-lettered (first: %s)", len(d), d[0].Reason)
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
	t.Logf("FIGURES auto-create off for %s*: /status reason %s (%q); %d lines arrived %v after the index was created",
		prefix, blk.Reason, blk.Message, lines, arrived.Round(time.Millisecond))
}
