package e2e_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/internal/kafkatest"
	"github.com/sidelog/sidelog/internal/testservers"
)

// Issue 19's acceptance, on the real agent, a Kafka 4.1 broker of the
// test's own (testservers.StartKafka: it is restarted, which the shared one
// must never be) and the shared OpenSearch node:
//
//  1. An agent tails N lines (SIDELOG_KAFKA_LINES, 20,000 by default; the
//     script run uses 200,000) into a topic of 3 partitions through the
//     kafka output (disk buffer), killed with SIGKILL three times; during
//     the second run the broker is stopped (SIGTERM) and started again on
//     the same port and data: /status shows the output blocked on
//     broker_unreachable while it is down, and unblocked once it is back,
//     without a restart of the agent. A last run reads to the end. Every
//     line is in the topic at least once; the duplicates are counted and
//     stay within the records in flight at the kills (max_in_flight ×
//     batch.max_events per kill) plus the tail's checkpoint group commit
//     at each kill: the restart adds none (the idempotent producer keeps
//     its unacknowledged records and their sequence across it). One line
//     larger than the topic's max.message.bytes is dead-lettered with the
//     reason, and nothing else is.
//  2. An aggregator (a second agent process: kafka input → elasticsearch
//     output, id: source) reads the topic into an OpenSearch index and is
//     killed with SIGKILL three times, and the broker is restarted under
//     its third run; a last run catches up. Every line
//     is in the index exactly once (by _count, and by the sequence field:
//     no value twice, min 0, max N-1), and the consumer lag is back to 0
//     (the group's committed offsets are the partitions' ends, and the
//     input's lag metric says 0).
func TestKafkaTwoTierExactlyOnce(t *testing.T) {
	osURL := testservers.OpenSearch(t)
	broker := testservers.StartKafka(t)
	brokers := broker.Brokers()
	lines := 20_000
	if s := os.Getenv("SIDELOG_KAFKA_LINES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			t.Fatalf("SIDELOG_KAFKA_LINES=%q", s)
		}
		lines = n
	}
	const (
		maxInFlight = 4
		maxEvents   = 500
		maxMessage  = 16384
	)
	topic := testservers.UniqueName(t, "sidelogtest")
	index := testservers.UniqueName(t, "sidelogtest")
	group := topic + "-aggregators"
	kafkatest.CreateTopic(t, brokers, topic, 3, map[string]string{"max.message.bytes": strconv.Itoa(maxMessage)})
	t.Cleanup(func() { osDelete(osURL + "/" + index) })

	dir := t.TempDir()
	binary(t) // built before the app starts writing
	logf := filepath.Join(dir, "logs", "app.log")
	os.MkdirAll(filepath.Dir(logf), 0o755)
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	// The app writes the lines over about 8 s, so that the three kills
	// fall while it writes (the last run reads to the end).
	cw := &countingWriter{w: f}
	big := lines / 3
	var bigEnd int64 // the big line's source offset (just past it)
	written := make(chan struct{})
	go func() {
		defer close(written)
		defer f.Close()
		w := bufio.NewWriterSize(cw, 1<<20)
		perTick := max(lines/400, 1) // 400 ticks of 20 ms
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := range lines {
			if i == big {
				fmt.Fprintf(w, `{"n":-1,"pad":"%s"}`+"\n", strings.Repeat("x", 2*maxMessage))
				w.Flush()
				bigEnd = cw.n
			}
			fmt.Fprintf(w, `{"n":%d,"msg":"order %d created","service":"checkout","pod":"web-%d"}`+"\n", i, i, i%16)
			if i%perTick == perTick-1 {
				w.Flush()
				<-tick.C
			}
		}
		w.Flush()
	}()

	// Tier 1: the agent.
	agentCfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(agentCfg, []byte(`data_dir: `+dir+`/agent
api: {address: "127.0.0.1:0"}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"]}
outputs:
  - name: bus
    type: kafka
    brokers: ["`+strings.Join(brokers, `","`)+`"]
    topic: '`+topic+`'
    key: '{{ pod }}'
    compression: zstd
    max_in_flight: `+strconv.Itoa(maxInFlight)+`
    buffer: {type: disk}
    batch: {max_events: `+strconv.Itoa(maxEvents)+`, timeout: 20ms}
    retry: {initial: 10ms, max: 200ms}
`), 0o644)
	var cpu, wall time.Duration
	inTopic := func() int64 {
		n := int64(0)
		for _, o := range kafkatest.EndOffsets(t, brokers, topic) {
			n += o
		}
		return n
	}
	var down time.Duration
	for i := range 3 { // each run killed once it added a fifth of the lines
		at := inTopic() + int64(lines)/5
		if n := inTopic(); at > int64(lines) {
			// Near the end: the run delivers what is left. Once every
			// line is in the topic (a run that rode out the broker's
			// restart can deliver the whole backlog at once on a slow
			// machine), more records can only be duplicates, which a
			// run need not make: it is killed as soon as it started.
			at = max(n, int64(lines))
		}
		start := time.Now()
		a := startAgent(t, agentCfg)
		if i == 1 {
			// The broker restart, once this run produced a tenth.
			for mid := at - int64(lines)/10; inTopic() < mid; {
				if time.Since(start) > 3*time.Minute {
					t.Fatalf("agent run %d: %d records in the topic after 3 minutes:\n%s", i, inTopic(), tail(a.out.String(), 20))
				}
				time.Sleep(2 * time.Millisecond)
			}
			before := inTopic()
			stopped := time.Now()
			broker.Stop(syscall.SIGTERM)
			reason := waitBusState(t, a, func(s busStatus) bool { return s.State == "blocked" }, 30*time.Second, "blocked while the broker is down")
			if reason != "broker_unreachable" {
				t.Fatalf("blocked on %q while the broker is down, want broker_unreachable", reason)
			}
			broker.Start()
			waitBusState(t, a, func(s busStatus) bool { return s.State != "blocked" }, time.Minute, "unblocked once the broker is back")
			down = time.Since(stopped)
			t.Logf("broker restarted (SIGTERM, %d records in the topic before): the output was blocked on broker_unreachable, unblocked %v after the stop", before, down.Round(time.Millisecond))
		}
		deadline := time.Now().Add(3 * time.Minute)
		for inTopic() < at {
			if time.Now().After(deadline) {
				t.Fatalf("agent run %d: %d records in the topic after 3 minutes:\n%s", i, inTopic(), tail(a.out.String(), 20))
			}
			time.Sleep(2 * time.Millisecond)
		}
		// What the buffer held just before the kill: the records above
		// its ack position (handed out and not acknowledged, acknowledged
		// behind one that was not, or not yet handed out): what a
		// restart can send again beyond the in-flight bound.
		held := a.metric(t, "sidelog_buffer_records", `{output="bus"}`)
		batches := a.metric(t, "sidelog_buffer_in_flight_batches", `{output="bus"}`)
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
		wall += time.Since(start)
		cpu += a.cmd.ProcessState.UserTime() + a.cmd.ProcessState.SystemTime()
		t.Logf("agent run %d killed with %d records in the topic; its buffer held %.0f records, %.0f batches in flight", i, inTopic(), held, batches)
		if testing.Verbose() {
			for _, l := range strings.Split(a.out.String(), "\n") {
				if strings.Contains(l, `"WARN"`) || strings.Contains(l, `"ERROR"`) {
					t.Logf("  %.300s", l)
				}
			}
		}
	}
	<-written
	start := time.Now()
	cmd := exec.Command(binary(t), "run", "-c", agentCfg, "--exit-on-eof")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("final agent run: %v\n%s", err, tail(string(out), 30))
	}
	wall += time.Since(start)
	cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

	seen := make([]int, lines)
	recs := kafkatest.ReadAll(t, brokers, topic)
	for _, r := range recs {
		var doc struct{ N int }
		if err := json.Unmarshal(r.Value, &doc); err != nil || doc.N < 0 || doc.N >= lines {
			t.Fatalf("record %s: %q (%v)", kafkatest.ID(r), r.Value, err)
		}
		if id, ok := kafkatest.Header(r, "sidelog-source-id"); !ok || len(id) != 22 {
			t.Fatalf("record %s: source id %q", kafkatest.ID(r), id)
		}
		seen[doc.N]++
	}
	dups := 0
	for n, c := range seen {
		if c == 0 {
			t.Fatalf("line %d is not in the topic", n)
		}
		dups += c - 1
	}
	// Per kill: the records handed to the producer and not acknowledged
	// (at most max_in_flight × batch.max_events), plus the tail's one
	// checkpoint group commit (lines already in the disk buffer whose
	// position was not yet saved: a few hundred at most, docs/architecture.md
	// "Durability"; 1% of the lines allowed, as in the rotation crash tests).
	inFlight := 3 * maxInFlight * maxEvents
	bound := inFlight + 3*lines/100
	if dups > bound {
		t.Fatalf("%d duplicates, more than the %d records in flight at 3 kills plus 3 checkpoint group commits; final run:\n%s", dups, bound, tail(string(out), 40))
	}
	// The big line, and only it, is dead-lettered with sidelog's reason
	// (more than once if a kill came between its dead-letter write and
	// the batch's acknowledgement: the same line, by its source offset).
	dead := kafkaDeadLetters(t, filepath.Join(dir, "agent", "dead-letter", "bus"))
	if len(dead) == 0 {
		t.Fatal("the line over max.message.bytes was not dead-lettered")
	}
	for _, d := range dead {
		var dl struct {
			Reason string
			Source struct{ Offset int64 }
		}
		if err := json.Unmarshal([]byte(d), &dl); err != nil {
			t.Fatalf("dead letter %.300s: %v", d, err)
		}
		if !strings.Contains(dl.Reason, "exceeds topic "+topic+"'s limit of "+strconv.Itoa(maxMessage)+" bytes") || dl.Source.Offset != bigEnd {
			t.Fatalf("dead letter of something else (the big line ends at %d): %.400s", bigEnd, d)
		}
	}
	t.Logf("tier 1: the big line dead-lettered (%d dead-letter lines, all of it)", len(dead))
	t.Logf("tier 1: %d lines, 3 kills, 1 broker restart (%v down to unblocked), %d records in the topic, %d duplicates (at most %d in flight at the kills; bound with the group commits %d); %.0f lines/s over %v of agent runs (the restart included), %.2f CPU-s per 100,000 lines",
		lines, down.Round(time.Millisecond), len(recs), dups, inFlight, bound, float64(lines)/wall.Seconds(), wall.Round(time.Millisecond), cpu.Seconds()*100_000/float64(lines))

	// Tier 2: the aggregator.
	aggCfg := filepath.Join(dir, "aggregator.yaml")
	os.WriteFile(aggCfg, []byte(`data_dir: `+dir+`/aggregator
api: {address: "127.0.0.1:0"}
inputs:
  - name: from-agents
    type: kafka
    brokers: ["`+strings.Join(brokers, `","`)+`"]
    topics: ["`+topic+`"]
    group: `+group+`
    session_timeout: 6s
    parser: json
outputs:
  - name: search
    type: elasticsearch
    endpoints: ["`+osURL+`"]
    index: `+index+`
    id: source
    max_in_flight: 1
    buffer: {type: disk}
    batch: {max_events: 500, timeout: 20ms}
    retry: {initial: 10ms, max: 200ms}
`), 0o644)
	cpu, wall = 0, 0
	for i := range 3 {
		// Each run is killed once it delivered a fifth of the lines (its
		// own counter: the index refreshes once a second, too late).
		start := time.Now()
		a := startAgent(t, aggCfg)
		deadline := time.Now().Add(3 * time.Minute)
		if i == 2 {
			// The broker restarted under the aggregator too, once it
			// delivered a tenth: its consumer and its commits resume
			// (the last killed run: its output may drain its buffer
			// while the broker is down, and the last run must still
			// bring the committed offsets to the ends).
			for a.metric(t, "sidelog_output_records_out_total", `{output="search"}`) < float64(lines/10) {
				if time.Now().After(deadline) {
					t.Fatalf("aggregator run %d: %d documents after 3 minutes:\n%s", i, osCount(t, osURL, index), tail(a.out.String(), 20))
				}
				time.Sleep(2 * time.Millisecond)
			}
			stopped := time.Now()
			broker.Stop(syscall.SIGTERM)
			broker.Start()
			t.Logf("broker restarted (SIGTERM) under aggregator run %d: %v down", i, time.Since(stopped).Round(time.Millisecond))
		}
		for a.metric(t, "sidelog_output_records_out_total", `{output="search"}`) < float64(lines/5) {
			if time.Now().After(deadline) {
				t.Fatalf("aggregator run %d: %d documents after 3 minutes:\n%s", i, osCount(t, osURL, index), tail(a.out.String(), 20))
			}
			time.Sleep(2 * time.Millisecond)
		}
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
		wall += time.Since(start)
		cpu += a.cmd.ProcessState.UserTime() + a.cmd.ProcessState.SystemTime()
		t.Logf("aggregator run %d killed with %d documents", i, osCount(t, osURL, index))
	}
	start = time.Now()
	a := startAgent(t, aggCfg)
	end := kafkatest.EndOffsets(t, brokers, topic)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		com := kafkatest.Committed(t, brokers, group, topic)
		caught := true
		for p, e := range end {
			caught = caught && com[p] == e
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group's offsets %v never reached the ends %v:\n%s", com, end, tail(a.out.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	wall += time.Since(start)
	for p := range end {
		a.waitMetric(t, "sidelog_input_kafka_lag_records", fmt.Sprintf(`{input="from-agents",partition="%d",topic="%s"}`, p, topic), 0, 30*time.Second)
	}
	if code, _ := a.stop(t, 30*time.Second); code != 0 {
		t.Fatalf("aggregator exit code %d:\n%s", code, tail(a.out.String(), 20))
	}
	cpu += a.cmd.ProcessState.UserTime() + a.cmd.ProcessState.SystemTime()

	// Exactly once: the count, and each sequence number once in 0..N-1.
	osRefresh(t, osURL, index)
	if got := osCount(t, osURL, index); got != lines {
		t.Fatalf("%d documents in the index, want %d", got, lines)
	}
	agg := osSearch(t, osURL, index, `{"size":0,"aggs":{
		"min":{"min":{"field":"n"}},"max":{"max":{"field":"n"}},
		"twice":{"terms":{"field":"n","min_doc_count":2,"size":10}}}}`)
	var res struct {
		Aggregations struct {
			Min, Max struct{ Value float64 }
			Twice    struct{ Buckets []json.RawMessage }
		}
	}
	if err := json.Unmarshal(agg, &res); err != nil {
		t.Fatalf("%v: %s", err, agg)
	}
	if res.Aggregations.Min.Value != 0 || res.Aggregations.Max.Value != float64(lines-1) || len(res.Aggregations.Twice.Buckets) != 0 {
		t.Fatalf("sequence field: min %v max %v, values indexed twice %s", res.Aggregations.Min.Value, res.Aggregations.Max.Value, res.Aggregations.Twice.Buckets)
	}
	if dead := kafkaDeadLetters(t, filepath.Join(dir, "aggregator", "dead-letter")); len(dead) != 0 {
		t.Fatalf("the aggregator dead-lettered %d records: %.400s", len(dead), dead[0])
	}
	t.Logf("tier 2: %d documents, each sequence number once; %.0f records/s over %v of aggregator runs, %.2f CPU-s per 100,000 records",
		lines, float64(len(recs))/wall.Seconds(), wall.Round(time.Millisecond), cpu.Seconds()*100_000/float64(len(recs)))
}

// busStatus is the output "bus" in the agent's /status.
type busStatus struct {
	State   string
	Blocked []struct{ Reason string }
}

// waitBusState polls /status until ok holds for the output "bus" and
// returns its first blocked reason then ("" if none); it fails the test
// after within.
func waitBusState(t *testing.T, a *agent, ok func(busStatus) bool, within time.Duration, what string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		_, body := a.get(t, "/status")
		var st struct{ Outputs map[string]busStatus }
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/status: %v: %s", err, body)
		}
		if s := st.Outputs["bus"]; ok(s) {
			if len(s.Blocked) > 0 {
				return s.Blocked[0].Reason
			}
			return ""
		}
		last = body
		if time.Now().After(deadline) {
			t.Fatalf("the output was not %s after %v: /status %s\n%s", what, within, last, tail(a.out.String(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// kafkaDeadLetters returns the dead-letter lines under dir (recursively).
func kafkaDeadLetters(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(p, ".ndjson") {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
		return nil
	})
	return out
}

func osDo(t *testing.T, method, url, body string) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 404 || resp.StatusCode == 503 && strings.HasSuffix(url, "/_count") {
		return nil // no index yet, or its shards are still starting
	}
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return b
}

func osCount(t *testing.T, base, index string) int {
	b := osDo(t, "GET", base+"/"+index+"/_count", "")
	if b == nil {
		return 0
	}
	var c struct{ Count int }
	json.Unmarshal(b, &c)
	return c.Count
}

func osRefresh(t *testing.T, base, index string) { osDo(t, "POST", base+"/"+index+"/_refresh", "") }

func osSearch(t *testing.T, base, index, body string) []byte {
	return osDo(t, "POST", base+"/"+index+"/_search", body)
}

func osDelete(url string) {
	req, _ := http.NewRequest("DELETE", url, nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}
