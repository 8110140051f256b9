package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output/datadog"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
)

// The datadog output through the agent process: a `sidelog run` of this
// binary tails JSON lines and sends them to a ddtest intake on 127.0.0.1.

const ddKey = "process-test-key-0123456789"

// ddLines writes n JSON lines with seq from..from+n-1 whose ts is at.
func ddLines(t *testing.T, path string, from, n int, at time.Time) {
	t.Helper()
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, `{"seq":%d,"ts":%q,"level":"error","service":"payments","msg":"payment %d failed","user":{"id":%d}}`+"\n", i, at.UTC().Format(time.RFC3339Nano), i, i)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
}

// ddConfig is an agent config with one datadog output; extra is added to
// the output's keys (indented by four spaces), top to the top level.
func ddConfig(dir, addr, endpoint, top, extra string) string {
	// shutdown_timeout: a blocked output holds a graceful stop that long.
	return `data_dir: ` + dir + `/data
api: {address: "` + addr + `"}
shutdown_timeout: 2s
` + top + `
inputs:
  - {name: app, type: tail, paths: ["` + dir + `/logs/*.log"], parser: json, time_key: ts, poll_interval: 20ms}
outputs:
  - name: dd
    type: datadog
    api_key: ` + ddKey + `
    endpoint: ` + endpoint + `
    batch: {max_events: 10, timeout: 10ms}
    retry: {initial: 10ms, max: 100ms}
` + extra
}

// ddStatus is what the tests read of /status.
type ddStatus struct {
	Outputs map[string]struct {
		State        string           `json:"state"`
		DeadLettered int              `json:"dead_lettered"`
		Blocked      []delivery.Block `json:"blocked"`
		Counters     map[string]int64 `json:"counters"`
	} `json:"outputs"`
	OutputDetails map[string]struct {
		State     string `json:"state"`
		LastError string `json:"last_error"`
	} `json:"output_details"`
}

func getStatus(addr string) (ddStatus, bool) {
	var s ddStatus
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return s, false
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s) == nil
}

// deadLetters returns the dead-letter lines of output dd.
func deadLetters(t *testing.T, dir string) []delivery.Line {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(delivery.DeadLetterDir(filepath.Join(dir, "data"), "dd"), "*.ndjson"))
	var out []delivery.Line
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			var dl delivery.Line
			if err := json.Unmarshal(l, &dl); err != nil {
				t.Fatalf("dead-letter line %s: %v", l, err)
			}
			out = append(out, dl)
		}
	}
	return out
}

// stop ends the agent gracefully and waits for it.
func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent: %v", err)
	}
}

// drain returns the log lines the agent has written so far (without
// waiting for more), for a failure message.
func (p *agentProc) drain() string {
	var b strings.Builder
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return b.String()
			}
			b.WriteString(l + "\n")
		default:
			return b.String()
		}
	}
}

// seqs counts the entries per seq (the record is the JSON message).
func seqs(t *testing.T, entries []ddtest.Entry) map[int]int {
	t.Helper()
	m := map[int]int{}
	for _, e := range entries {
		var r struct{ Seq int }
		if err := json.Unmarshal([]byte(e.Message), &r); err != nil {
			t.Fatalf("message is not the record: %.100s", e.Message)
		}
		m[r.Seq]++
	}
	return m
}

// A replay of 20-hour-old records (30 of them, with 20 recent ones) with
// each too_old choice: dead_letter keeps them out of the intake and in the
// dead-letter file with the reason, and `sidelog dead-letter replay` with
// too_old: redate is the way out; redate sends them now, tagged, with
// their own time kept; drop counts them. Exact counts.
func TestDatadogTooOldReplay(t *testing.T) {
	const nOld, nNew = 30, 20
	for _, mode := range []string{"dead_letter", "redate", "drop"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
			old := time.Now().Add(-20 * time.Hour).Truncate(time.Millisecond)
			ddLines(t, filepath.Join(dir, "logs", "app.log"), 0, nOld, old)
			ddLines(t, filepath.Join(dir, "logs", "app.log"), nOld, nNew, time.Now())
			srv := ddtest.New(ddKey)
			defer srv.Close()
			addr := freeAddr(t)
			cfg := filepath.Join(dir, "sidelog.yaml")
			writeFile(t, cfg, ddConfig(dir, addr, srv.URL, "", "    too_old: "+mode+"\n"))
			p := startAgentProc(t, "-c", cfg)
			arrive, dead := nNew, 0
			switch mode {
			case "redate":
				arrive = nOld + nNew
			case "dead_letter":
				dead = nOld
			}
			waitFor(t, "the records", func() bool { return len(srv.Entries()) >= arrive && len(deadLetters(t, dir)) >= dead })
			switch mode {
			case "dead_letter":
				waitFor(t, "/status", func() bool {
					s, _ := getStatus(addr)
					return s.Outputs["dd"].DeadLettered == nOld && s.Outputs["dd"].Counters["too_old_dead_lettered"] == nOld
				})
				if v := metric(t, addr, `sidelog_output_dead_lettered_total{output="dd"}`); v != "30" {
					t.Errorf("sidelog_output_dead_lettered_total %q", v)
				}
			case "redate":
				waitFor(t, "the redated counter", func() bool {
					return metric(t, addr, `sidelog_output_events_total{kind="too_old_redated",output="dd"}`) == "30"
				})
			case "drop":
				waitFor(t, "the dropped counter", func() bool {
					return metric(t, addr, `sidelog_dropped_records_total{component="output",name="dd",reason="too_old_dropped"}`) == "30" &&
						metric(t, addr, `sidelog_output_events_total{kind="too_old_dropped",output="dd"}`) == "30"
				})
				if s, _ := getStatus(addr); s.Outputs["dd"].Counters["too_old_dropped"] != nOld {
					t.Errorf("/status counters %v", s.Outputs["dd"].Counters)
				}
			}
			p.stop(t)
			got := srv.Entries()
			dls := deadLetters(t, dir)
			t.Logf("too_old: %s: %d entries arrived, %d dead-lettered", mode, len(got), len(dls))
			if len(got) != arrive || len(dls) != dead {
				t.Fatalf("%d entries arrived (want %d), %d dead-lettered (want %d)", len(got), arrive, len(dls), dead)
			}
			if s := srv.Stale(); len(s) != 0 {
				t.Fatalf("%d entries sent with a time the intake drops silently", len(s))
			}
			for seq, n := range seqs(t, got) {
				isOld := seq < nOld
				if n != 1 || (isOld && mode != "redate") {
					t.Fatalf("seq %d arrived %d times", seq, n)
				}
			}
			for _, e := range got {
				redated := strings.Contains(e.Ddtags, "sidelog_redated:true")
				var r struct{ Seq int }
				json.Unmarshal([]byte(e.Message), &r)
				if redated != (r.Seq < nOld) {
					t.Fatalf("entry %+v: redated tag %v", e, redated)
				}
				if redated {
					if ot, err := time.Parse(time.RFC3339Nano, e.OriginalTimestamp); err != nil || !ot.Equal(old) {
						t.Fatalf("original_timestamp %q, want %s", e.OriginalTimestamp, old)
					}
				}
			}
			if mode != "dead_letter" {
				return
			}
			for _, l := range dls {
				if !strings.Contains(l.Reason, "older than the intake accepts") {
					t.Fatalf("dead-letter reason %q", l.Reason)
				}
			}
			// The documented way out: replay with too_old: redate.
			cfg2 := filepath.Join(dir, "replay.yaml")
			writeFile(t, cfg2, ddConfig(dir, addr, srv.URL, "", "    too_old: redate\n"))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := sidelog(ctx, "dead-letter", "replay", "-c", cfg2, "--output", "dd")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("replay: %v\n%s%s", err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), fmt.Sprintf("replayed %d records to output dd", nOld)) {
				t.Fatalf("replay printed %q", stdout.String())
			}
			got = srv.Entries()
			if len(got) != nOld+nNew || len(deadLetters(t, dir)) != 0 {
				t.Fatalf("after replay: %d entries, %d dead letters left", len(got), len(deadLetters(t, dir)))
			}
			for seq, n := range seqs(t, got) {
				if n != 1 {
					t.Fatalf("seq %d arrived %d times", seq, n)
				}
			}
			for _, e := range got[nNew:] {
				if e.Ddtags != "sidelog_redated:true" || e.OriginalTimestamp == "" {
					t.Fatalf("replayed entry %+v", e)
				}
			}
		})
	}
}

// A long outage: by the time the intake is back, the buffered records are
// older than it accepts. They go to the dead-letter file (too_old's
// default), which fills: with dead_letter.when_full: block the output is
// shown blocked (dead_letter_full) in /status and /metrics and keeps the
// rest in its buffer. `sidelog dead-letter replay` with too_old: redate
// sends the dead letters; the agent restarted with too_old: redate sends
// the rest. Every record arrives exactly once.
func TestDatadogOutageFillsDeadLetter(t *testing.T) {
	const n = 120
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	// Written 10 s short of the output's limit (18 h less its 15 min
	// margin for clock skew): sendable when the agent starts, too old by
	// the time the intake is back.
	const margin = 10 * time.Second
	written := time.Now()
	ddLines(t, filepath.Join(dir, "logs", "app.log"), 0, n, written.Add(-datadog.MaxPast+margin))
	srv := ddtest.New(ddKey)
	defer srv.Close()
	var down sync.Mutex
	outage := true
	srv.SetFaults(func(_, _ int) *ddtest.Fault {
		down.Lock()
		defer down.Unlock()
		if outage {
			return &ddtest.Fault{Status: 503}
		}
		return nil
	})
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "sidelog.yaml")
	top := "dead_letter: {max_bytes: 8KiB, when_full: block}"
	// max_in_flight: 1: with two batches in flight, one dead-lettered
	// (acknowledged) while the other waits on the full directory, the
	// disk buffer's ack position cannot pass the waiting one, so after
	// the restart the first is sent again (at least once, not exactly).
	writeFile(t, cfg, ddConfig(dir, addr, srv.URL, top, "    max_in_flight: 1\n"))
	p := startAgentProc(t, "-c", cfg)
	waitFor(t, "the outage seen", func() bool {
		s, _ := getStatus(addr)
		return s.Outputs["dd"].State == "failing"
	})
	// The outage lasts until the records are too old (no other signal
	// than the clock: this is what is tested).
	time.Sleep(time.Until(written.Add(margin + time.Second)))
	down.Lock()
	outage = false
	down.Unlock()
	waitFor(t, "the output blocked on the full dead-letter directory", func() bool {
		s, _ := getStatus(addr)
		o := s.Outputs["dd"]
		return o.State == "blocked" && len(o.Blocked) == 1 && o.Blocked[0].Reason == "dead_letter_full"
	})
	if v := metric(t, addr, `sidelog_output_blocked{output="dd",reason="dead_letter_full"}`); v != "1" {
		t.Errorf("sidelog_output_blocked %q", v)
	}
	s, _ := getStatus(addr)
	if !strings.Contains(s.Outputs["dd"].Blocked[0].Message, "sidelog dead-letter replay") {
		t.Errorf("block message %q", s.Outputs["dd"].Blocked[0].Message)
	}
	p.stop(t)
	if n := len(srv.Entries()); n != 0 {
		t.Fatalf("%d stale entries sent", n)
	}
	dead := len(deadLetters(t, dir))
	if dead == 0 || dead >= n {
		t.Fatalf("%d dead letters", dead)
	}
	// The way out: replay with too_old: redate, then run with it.
	cfg2 := filepath.Join(dir, "redate.yaml")
	writeFile(t, cfg2, ddConfig(dir, addr, srv.URL, top, "    max_in_flight: 1\n    too_old: redate\n"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := sidelog(ctx, "dead-letter", "replay", "-c", cfg2, "--output", "dd").CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("replayed %d records", dead)) {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	if got := len(srv.Entries()); got != dead {
		t.Fatalf("%d entries after the replay, want %d", got, dead)
	}
	p2 := startAgentProc(t, "-c", cfg2)
	waitFor(t, "every record", func() bool { return len(srv.Entries()) >= n })
	p2.stop(t)
	got := srv.Entries()
	t.Logf("%d records: %d dead-lettered then replayed, %d sent from the buffer after the restart", n, dead, len(got)-dead)
	if len(got) != n || len(deadLetters(t, dir)) != 0 {
		t.Fatalf("%d entries (want %d), %d dead letters left", len(got), n, len(deadLetters(t, dir)))
	}
	for seq, c := range seqs(t, got) {
		if c != 1 {
			t.Fatalf("seq %d arrived %d times", seq, c)
		}
	}
	for _, e := range got {
		if e.Ddtags != "sidelog_redated:true" {
			t.Fatalf("entry %+v", e)
		}
	}
}

// A refused API key blocks the output (auth_error) in /status and
// /metrics, records kept; a reload with the right key delivers them and
// ends the block.
func TestDatadogAuthErrorBlocked(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	ddLines(t, filepath.Join(dir, "logs", "app.log"), 0, 5, time.Now())
	srv := ddtest.New("the-right-key")
	defer srv.Close()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, ddConfig(dir, addr, srv.URL, "", ""))
	p := startAgentProc(t, "-c", cfg)
	waitFor(t, "the auth_error block", func() bool {
		s, _ := getStatus(addr)
		o := s.Outputs["dd"]
		return o.State == "blocked" && len(o.Blocked) == 1 && o.Blocked[0].Reason == "auth_error" && s.OutputDetails["dd"].State == "auth_error"
	})
	if v := metric(t, addr, `sidelog_output_blocked{output="dd",reason="auth_error"}`); v != "1" {
		t.Errorf("sidelog_output_blocked %q", v)
	}
	s, _ := getStatus(addr)
	if msg := s.Outputs["dd"].Blocked[0].Message; !strings.Contains(msg, "403") || strings.Contains(msg, ddKey) {
		t.Errorf("block message %q", msg)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests during auth_error_backoff, want 1", n)
	}
	writeFile(t, cfg, strings.Replace(ddConfig(dir, addr, srv.URL, "", ""), ddKey, "the-right-key", 1))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "config reloaded")
	waitFor(t, "the records", func() bool { return len(srv.Entries()) == 5 })
	waitFor(t, "the block to end", func() bool {
		return metric(t, addr, `sidelog_output_blocked{output="dd",reason="auth_error"}`) == "0"
	})
}

// Through the process: an HTTPS endpoint trusted through tls.ca_file,
// message_key (fields as attributes, service from the record's field,
// status from its level), the hostname from NODE_NAME (over POD_NAME), a
// gateway's 502 after the intake took the first request and a timeout
// after it took the second: both counted as possible duplicates in
// /status and /metrics, and both did arrive twice.
func TestDatadogAttributesTLSAndDuplicates(t *testing.T) {
	const n = 10
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	ddLines(t, filepath.Join(dir, "logs", "app.log"), 0, n, time.Now())
	srv := ddtest.NewTLS(ddKey)
	defer srv.Close()
	ca := filepath.Join(dir, "ca.pem")
	writeFile(t, ca, string(srv.CAPEM()))
	srv.Inject(ddtest.Fault{Status: 502, Store: true}, ddtest.Fault{Store: true, Delay: time.Minute})
	t.Setenv("NODE_NAME", "node-7")
	t.Setenv("POD_NAME", "sidelog-x1")
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, ddConfig(dir, addr, srv.URL, "", "    message_key: msg\n    request_timeout: 5s\n    tls: {ca_file: "+ca+"}\n"))
	p := startAgentProc(t, "-c", cfg)
	// request_timeout is 5 s so that only the injected delay times out: a
	// request that merely ran long on a loaded machine would be a possible
	// duplicate too, which the accounting below does not expect.
	// The deadline is generous: one CI run under load (race detector, the
	// e2e package and three JVMs on 2 cores) saw the timed-out request not
	// retried within 40 s; the agent's log is printed on failure.
	var dups int64
	deadline := time.Now().Add(90 * time.Second)
	for {
		s, _ := getStatus(addr)
		dups = s.Outputs["dd"].Counters["possible_duplicates"]
		r := srv.Requests()
		if len(r) > 2 && dups == int64(r[0].Entries+r[1].Entries) && len(srv.Entries()) == n+int(dups) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for every record and the duplicates counted: %d possible duplicates, %d entries stored, requests %+v; the agent's log:\n%s",
				dups, len(srv.Entries()), r, p.drain())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := metric(t, addr, `sidelog_output_events_total{kind="possible_duplicates",output="dd"}`); v != fmt.Sprint(dups) {
		t.Errorf("possible_duplicates metric %q, want %d", v, dups)
	}
	p.stop(t)
	got := srv.Entries()
	if r := srv.Requests(); r[0].Status != 502 || r[1].Status != 0 || int64(r[0].Entries+r[1].Entries) != dups {
		t.Fatalf("requests %+v, %d possible duplicates", r[:2], dups)
	}
	if len(got) != n+int(dups) {
		t.Fatalf("%d entries, want %d + %d duplicates", len(got), n, dups)
	}
	seen := map[string]int{}
	for _, e := range got {
		seen[e.Message]++
		if e.Hostname != "node-7" || e.Status != "error" || e.Service != "payments" || !strings.HasPrefix(e.Message, "payment ") || !strings.Contains(e.Attributes, `"user":{"id":`) || strings.Contains(e.Attributes, `"msg"`) {
			t.Fatalf("entry %+v", e)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages, want %d", len(seen), n)
	}
}

// `proxy:` in the config sends the agent's requests through that proxy.
func TestDatadogProxyFromConfig(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	ddLines(t, filepath.Join(dir, "logs", "app.log"), 0, 3, time.Now())
	srv := ddtest.New(ddKey)
	defer srv.Close()
	var mu sync.Mutex
	proxied := 0
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host != "intake.invalid" {
			http.Error(w, "not a proxy request: "+r.URL.String(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		proxied++
		mu.Unlock()
		req, _ := http.NewRequest(r.Method, srv.URL+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer proxy.Close()
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, ddConfig(dir, "", "http://intake.invalid", "", "    proxy: "+proxy.URL+"\n"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := sidelog(ctx, "run", "-c", cfg, "--exit-on-eof").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if proxied == 0 || len(srv.Entries()) != 3 {
		t.Fatalf("%d proxied requests, %d entries", proxied, len(srv.Entries()))
	}
}

// Bad values of the datadog output's new keys are refused with file, line
// and key.
func TestDatadogValidateNewKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, ddConfig(dir, "", "http://127.0.0.1:1", "", "    too_old: keep\n    message_key: a.b\n    tls: {ca_file: "+dir+"/missing.pem}\n"))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-c", cfg}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{
		cfg + `:14: outputs[0].too_old: must be dead_letter, redate or drop, not "keep"`,
		cfg + `:15: outputs[0].message_key: must be a top-level field name`,
		cfg + `:16: outputs[0].tls.ca_file: open ` + dir + `/missing.pem`,
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("missing %q in:\n%s", want, stderr.String())
		}
	}
}
