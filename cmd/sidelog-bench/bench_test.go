package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/plugins"
	_ "github.com/sidelog/sidelog/plugins/all"
)

func generate(t *testing.T, kind string, lines int64) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	s, err := writeDataset(&buf, kind, lines)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), s
}

func TestDatasetIsDeterministic(t *testing.T) {
	for _, kind := range []string{"json", "json-short", "cri"} {
		a, sa := generate(t, kind, 3000)
		b, sb := generate(t, kind, 3000)
		if sha256.Sum256(a) != sha256.Sum256(b) || sa != sb {
			t.Errorf("%s: two generations differ", kind)
		}
		// A smaller data set is a prefix of a larger one.
		c, _ := generate(t, kind, 1000)
		if !bytes.HasPrefix(a, c) {
			t.Errorf("%s: 1000 records are not a prefix of 3000", kind)
		}
	}
}

// The JSON data set has the shape that issue 10 describes: ~252 bytes a
// line, levels 70/20/8/2 % info/debug/warn/error, the fields named.
func TestJSONDatasetShape(t *testing.T) {
	const n = 50_000
	data, s := generate(t, "json", n)
	if s.Records != n || s.PhysicalLines != n || s.Bytes != int64(len(data)) || s.JSONBytes != s.Bytes {
		t.Fatalf("stats %+v for %d bytes", s, len(data))
	}
	if avg := float64(s.Bytes) / n; avg < 247 || avg > 257 {
		t.Errorf("average line %.1f bytes, want ~252", avg)
	}
	var counted [4]int64
	sc := bufio.NewScanner(bytes.NewReader(data))
	lines := 0
	for sc.Scan() {
		lines++
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
		if err := hasKeys(m, "ts", "level", "msg", "service", "trace_id", "user_id", "latency_ms", "path", "status"); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, m["ts"].(string)); err != nil {
			t.Fatalf("line %d: ts: %v", lines, err)
		}
		if len(m["trace_id"].(string)) != 32 {
			t.Fatalf("line %d: trace_id %q", lines, m["trace_id"])
		}
		known := false
		for i, name := range levelNames {
			if m["level"] == name {
				counted[i]++
				known = true
			}
		}
		if !known {
			t.Fatalf("line %d: level %v", lines, m["level"])
		}
	}
	if lines != n {
		t.Fatalf("%d lines", lines)
	}
	if counted != s.Levels {
		t.Errorf("levels counted %v, stats say %v", counted, s.Levels)
	}
	for i, want := range []float64{70, 20, 8, 2} {
		got := 100 * float64(counted[i]) / n
		if got < want-1 || got > want+1 {
			t.Errorf("%s: %.2f%% of the lines, want %.0f%%", levelNames[i], got, want)
		}
	}
}

// The CRI data set holds the same documents, 5% of them split into a P and
// an F piece, and joining the pieces gives the JSON data set back.
func TestCRIDatasetWrapsTheJSONDataset(t *testing.T) {
	const n = 20_000
	jsonData, js := generate(t, "json", n)
	criData, cs := generate(t, "cri", n)
	if cs.Levels != js.Levels || cs.JSONBytes != js.JSONBytes || cs.Records != n {
		t.Fatalf("cri stats %+v, json stats %+v", cs, js)
	}
	if share := 100 * float64(cs.Partial) / n; share < 4 || share > 6 {
		t.Errorf("%.2f%% of the records split, want 5%%", share)
	}
	var joined bytes.Buffer
	var pending []byte
	physical, partial := 0, 0
	for _, line := range bytes.SplitAfter(criData, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		physical++
		f := bytes.SplitN(line[:len(line)-1], []byte(" "), 4)
		if len(f) != 4 || string(f[1]) != "stdout" {
			t.Fatalf("line %d: not CRI: %q", physical, line)
		}
		if _, err := time.Parse(time.RFC3339Nano, string(f[0])); err != nil {
			t.Fatalf("line %d: %v", physical, err)
		}
		switch string(f[2]) {
		case "P":
			partial++
			pending = append(pending, f[3]...)
		case "F":
			joined.Write(pending)
			joined.Write(f[3])
			joined.WriteByte('\n')
			pending = pending[:0]
		default:
			t.Fatalf("line %d: tag %q", physical, f[2])
		}
	}
	if int64(physical) != cs.PhysicalLines || int64(partial) != cs.Partial {
		t.Errorf("%d lines, %d P pieces; stats say %d, %d", physical, partial, cs.PhysicalLines, cs.Partial)
	}
	if !bytes.Equal(joined.Bytes(), jsonData) {
		t.Error("joined CRI pieces differ from the JSON data set")
	}
}

func TestEnsureDatasetReusesAMatchingManifest(t *testing.T) {
	work := t.TempDir()
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, f) }
	d1, err := ensureDataset(work, "json", 500, logf)
	if err != nil {
		t.Fatal(err)
	}
	fi1, _ := os.Stat(d1.Path)
	d2, err := ensureDataset(work, "json", 500, logf)
	if err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(d2.Path)
	if len(logs) != 1 || d2.Stats != d1.Stats || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("second call regenerated the data set (logs %q)", logs)
	}
	// Another size regenerates.
	d3, err := ensureDataset(work, "json", 700, logf)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 2 || d3.Stats.Records != 700 {
		t.Errorf("a different size was not regenerated: %+v", d3.Stats)
	}
	// The CRI data set lives in the kubelet's layout, which the
	// kubernetes filter understands.
	d4, err := ensureDataset(work, "cri", 10, logf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(filepath.ToSlash(d4.Path), "/var/log/pods/shop_checkout-6d8f9c7b5-x7k2p_0b8e1e9c-3c1a-4e0b-9a57-5d2f7c1e8a11/app/0.log") {
		t.Errorf("CRI data set at %s", d4.Path)
	}
}

// Every scenario's config is a valid config of the public shape, with the
// plugins that sidelog registers.
func TestScenarioConfigsParse(t *testing.T) {
	work := t.TempDir()
	for _, s := range scenarios {
		for _, mode := range []string{"fast", "full"} {
			e := &runEnv{Work: work, RunDir: filepath.Join(work, "runs", s.ID), IdleFiles: 3, APIAddr: "127.0.0.1:20999"}
			e.Data.Path = jsonDatasetPath(work)
			if s.Data == "cri" {
				e.Data.Path = criDatasetPath(work)
			}
			stop := startSink(s, e, mode)
			text := s.Config(e)
			url := e.sinkURL()
			stop()
			if (s.Sink != "") != strings.Contains(text, q(url)) {
				t.Errorf("scenario %s, sink %s: config does not name the sink's URL %q", s.ID, mode, url)
			}
			cfg, err := config.Parse("scenario-"+s.ID+".yaml", []byte(text), plugins.Default)
			if err != nil {
				t.Errorf("scenario %s:\n%s\n%v", s.ID, text, err)
				continue
			}
			if cfg.DataDir != e.dataDir() || cfg.API.Address != e.APIAddr {
				t.Errorf("scenario %s: data_dir %q, api.address %q", s.ID, cfg.DataDir, cfg.API.Address)
			}
			if len(cfg.Inputs) != 1 || cfg.Inputs[0].Type != "tail" {
				t.Errorf("scenario %s: inputs %+v", s.ID, cfg.Inputs)
			}
			wantOutputs := map[string]int{"2": 2}[s.ID]
			if wantOutputs == 0 {
				wantOutputs = 1
			}
			if len(cfg.Outputs) != wantOutputs {
				t.Errorf("scenario %s: %d outputs", s.ID, len(cfg.Outputs))
			}
		}
	}
}

func TestNaiveDecode(t *testing.T) {
	data, s := generate(t, "json", 1000)
	n, err := naiveDecode(bytes.NewReader(data))
	if err != nil || n != s.Records {
		t.Errorf("decoded %d, %v", n, err)
	}
	if _, err := naiveDecode(strings.NewReader("{\"a\":1}\n{oops\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestVerifyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.ndjson")
	content := `{"level":"warn","latency_ms":120,"latency_s":0.12}` + "\n" + `{"level":"error","latency_ms":5,"latency_s":0.005}` + "\n"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := verifyFile(p, 2, checkComputed); err != nil || n != 2 {
		t.Errorf("good file: %d, %v", n, err)
	}
	if _, err := verifyFile(p, 3, checkComputed); err == nil {
		t.Error("a missing record was not reported")
	}
	bad := strings.Replace(content, "0.005", "0.5", 1)
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyFile(p, 2, checkComputed); err == nil {
		t.Error("a wrong computed field in the last line was not reported")
	}
}

func TestMedian(t *testing.T) {
	if m := median([]int64{5, 1, 3}); m != 3 {
		t.Errorf("odd: %d", m)
	}
	if m := median([]int64{4, 1, 3, 10}); m != 3 {
		t.Errorf("even: %d", m)
	}
	ms := medianMeasure([]Measure{{Wall: 3, User: 1, MaxRSS: 9}, {Wall: 1, User: 5, MaxRSS: 7}, {Wall: 2, User: 3, MaxRSS: 8}})
	if ms.Wall != 2 || ms.User != 3 || ms.MaxRSS != 8 {
		t.Errorf("medianMeasure: %+v", ms)
	}
}

// TestMain lets the test binary act as a measured child process.
func TestMain(m *testing.M) {
	if os.Getenv("SIDELOG_BENCH_TEST_CHILD") == "burn" {
		// Burn 300 ms of CPU (whatever the wall time on a busy
		// machine), holding little memory.
		for selfCPU() < 300*time.Millisecond {
		}
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == "naive" { // the yardstick's child
		os.Exit(naive(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// The yardstick runs the naive reference as a child over its data set
// (written once, reused) and gives its CPU per line.
func TestYardstick(t *testing.T) {
	work := t.TempDir()
	for run := range 2 {
		us, err := yardstick(work)
		if err != nil {
			t.Fatal(err)
		}
		if us <= 0 || us > 1000 {
			t.Fatalf("run %d: %.3f µs a line", run, us)
		}
	}
	b, err := os.ReadFile(filepath.Join(work, "yardstick.json"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte{'\n'}); n != yardstickLines {
		t.Fatalf("data set of %d lines, want %d", n, yardstickLines)
	}
}

// runMeasured charges the child its own CPU and its own peak RSS, not the
// parent's: the parent here holds 256 MiB while the child holds a few.
func TestRunMeasuredIsChildLocal(t *testing.T) {
	big := make([]byte, 256<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "SIDELOG_BENCH_TEST_CHILD=burn")
	dir := t.TempDir()
	m, err := runMeasured(cmd, filepath.Join(dir, "out"), filepath.Join(dir, "err"), time.Minute)
	runtime.KeepAlive(big)
	if err != nil {
		t.Fatal(err)
	}
	if m.CPU() < 300*time.Millisecond || m.CPU() > 2*time.Second {
		t.Errorf("child CPU %v, want a little over 300ms", m.CPU())
	}
	if m.Wall < 300*time.Millisecond {
		t.Errorf("wall %v shorter than the child's busy loop", m.Wall)
	}
	if m.MaxRSS <= 0 || m.MaxRSS > 100<<20 {
		t.Errorf("child peak RSS %.1f MiB, want a few MiB (the parent holds 256)", mib(m.MaxRSS))
	}
	// A failing child is an error that carries its stderr.
	fail := exec.Command("/bin/sh", "-c", "echo boom >&2; exit 4")
	if _, err := runMeasured(fail, "", filepath.Join(dir, "err2"), time.Minute); err == nil || !strings.Contains(err.Error(), "exit status 4: boom") {
		t.Errorf("failing child: %v", err)
	}
}

func post(t *testing.T, url, path string, header map[string]string, body []byte, gz bool) (int, string) {
	t.Helper()
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(body)
		zw.Close()
		body = b.Bytes()
		header["Content-Encoding"] = "gzip"
	}
	req, err := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFastSinkElasticsearch(t *testing.T) {
	s := newFastSink("es", "")
	defer s.Close()
	body := `{"index":{"_index":"app-cart"}}` + "\n" + `{"service":"cart","level":"info","latency_ms":250,"latency_s":0.25}` + "\n" +
		`{"index":{"_index":"app-auth"}}` + "\n" + `{"service":"auth","level":"warn","latency_ms":1,"latency_s":0.001}` + "\n"
	status, resp := post(t, s.URL, "/_bulk", map[string]string{}, []byte(body), true)
	if status != 200 {
		t.Fatalf("status %d: %s", status, resp)
	}
	var r struct {
		Errors bool
		Items  []map[string]struct{ Status int }
	}
	if err := json.Unmarshal([]byte(resp), &r); err != nil || r.Errors || len(r.Items) != 2 || r.Items[1]["index"].Status != 201 {
		t.Errorf("answer %s (%v)", resp, err)
	}
	if s.Docs() != 2 {
		t.Errorf("%d documents counted", s.Docs())
	}
	if err := verifyESSample(s.Sample()); err != nil {
		t.Errorf("sample: %v (%q)", err, s.Sample())
	}
	// A body cut in the middle of a pair is refused and reported.
	if status, _ := post(t, s.URL, "/_bulk", map[string]string{}, []byte(`{"index":{}}`+"\n"), false); status != 400 || len(s.Problems()) != 1 || s.Docs() != 2 {
		t.Errorf("odd lines: status %d, problems %q, docs %d", status, s.Problems(), s.Docs())
	}
	// A sample in the wrong index fails the verification.
	if err := verifyESSample([]byte(`{"index":{"_index":"app-x"}}` + "\n" + `{"service":"cart","latency_ms":1,"latency_s":0.001}`)); err == nil {
		t.Error("wrong index not reported")
	}
}

func TestFastSinkDatadog(t *testing.T) {
	s := newFastSink("dd", "k1")
	defer s.Close()
	msg := `{"service":"cart","trace_id":"x","note":"braces } ] { in \" strings","kubernetes":{"namespace":"shop","pod":"checkout-6d8f9c7b5-x7k2p","container":"app"}}`
	entry, _ := json.Marshal(map[string]string{"message": msg, "service": "cart"})
	body := "[" + string(entry) + "," + string(entry) + ",\n " + string(entry) + "]"
	if status, resp := post(t, s.URL, "/api/v2/logs", map[string]string{"DD-API-KEY": "k1"}, []byte(body), true); status != 202 {
		t.Fatalf("status %d: %s", status, resp)
	}
	if s.Docs() != 3 {
		t.Errorf("%d entries counted, want 3", s.Docs())
	}
	var en struct{ Service, Message string }
	if err := json.Unmarshal(s.Sample(), &en); err != nil || verifyDDEntry(en.Service, en.Message) != nil {
		t.Errorf("sample %q: %v / %v", s.Sample(), err, verifyDDEntry(en.Service, en.Message))
	}
	if status, _ := post(t, s.URL, "/api/v2/logs", map[string]string{"DD-API-KEY": "wrong"}, []byte(body), false); status != 403 || s.Docs() != 3 {
		t.Errorf("wrong key: status %d, docs %d", status, s.Docs())
	}
	if n, _, err := countArray([]byte(`[{"a":1},2]`)); err == nil {
		t.Errorf("a non-object element was accepted (%d)", n)
	}
	if verifyDDEntry("cart", `{"trace_id":"x"}`) == nil {
		t.Error("an entry without kubernetes metadata passed")
	}
}

func TestAgentMetricsSumsSeries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "# HELP x\nsidelog_input_records_total{input=\"a\"} 10\nsidelog_input_records_total{input=\"b\"} 5\nsidelog_input_records_total_other 99\nsidelog_input_parse_errors_total 2\n")
	}))
	defer srv.Close()
	got := agentMetrics(strings.TrimPrefix(srv.URL, "http://"), "sidelog_input_records_total", "sidelog_input_parse_errors_total")
	if want := "sidelog_input_records_total 15, sidelog_input_parse_errors_total 2"; got != want {
		t.Fatalf("agentMetrics = %q, want %q", got, want)
	}
}

func TestVerifyDaemonSetSample(t *testing.T) {
	good := `{"index":{"_index":"app-cart"}}` + "\n" + `{"trace_id":"x","kubernetes":{"labels":{"tier":"backend"},"namespace_labels":{"env":"prod"},"owner":{"kind":"Deployment","name":"svc-001"}}}`
	if err := verifyDaemonSetSample([]byte(good)); err != nil {
		t.Fatal(err)
	}
	pathOnly := `{"index":{}}` + "\n" + `{"trace_id":"x","kubernetes":{"namespace":"team-1","pod":"p"}}`
	if err := verifyDaemonSetSample([]byte(pathOnly)); err == nil {
		t.Fatal("a document without the API's metadata passed")
	}
}

// The short data set is the JSON one without trace_id, user_id and path:
// the same records otherwise, about 150 bytes a line.
func TestShortDatasetShape(t *testing.T) {
	long, sl := generate(t, "json", 2000)
	short, ss := generate(t, "json-short", 2000)
	if ss.Levels != sl.Levels || ss.Records != 2000 || ss.Kind != "json-short" {
		t.Fatalf("short stats %+v, long %+v", ss, sl)
	}
	if per := float64(ss.Bytes) / 2000; per < 140 || per > 160 {
		t.Fatalf("%.1f bytes a record", per)
	}
	ls := strings.Split(strings.TrimSpace(string(long)), "\n")
	for i, line := range strings.Split(strings.TrimSpace(string(short)), "\n") {
		var s, l map[string]any
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if err := json.Unmarshal([]byte(ls[i]), &l); err != nil {
			t.Fatal(err)
		}
		delete(l, "trace_id")
		delete(l, "user_id")
		delete(l, "path")
		if !reflect.DeepEqual(s, l) {
			t.Fatalf("line %d: %v, want %v", i, s, l)
		}
	}
}
