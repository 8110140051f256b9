package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/sidelog/sidelog/output/datadog/ddtest"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
)

// The latency scenario (issue 22):
//
//	sidelog-bench latency [-rate 500] [-duration 10s] [-sinks file,es,dd] [-batch YAML]
//
// A writer appends lines to a tailed file at a fixed rate; each line carries
// the time it was written ("wt", Unix nanoseconds). The sink notes when each
// line is delivered: the file output is read back (polled every
// millisecond), the Elasticsearch (estest) and Datadog (ddtest) test servers
// sit behind a proxy in this process that notes when the server answered a
// request. The figures are delivered minus written: p50, p90, p99 and max,
// with the number of requests the test server received and the agent's CPU
// while the writer ran. sidelog runs with default settings, except for the
// output's `batch:` block when -batch is given (e.g. -batch '{timeout: 200ms}').

type latencyOptions struct {
	Work     string
	Sidelog  string
	Rate     int
	Duration time.Duration
	Sinks    []string
	Batch    string
	Timeout  time.Duration
}

// LatencyResult is one sink's measurement.
type LatencyResult struct {
	Sink               string
	Rate               int
	Lines              int
	P50, P90, P99, Max time.Duration
	Requests           int64 // bulk/intake requests (file: 0)
	AgentCPU           float64
	Err                error
}

func latency(args []string, stdout, stderr io.Writer) int {
	var o latencyOptions
	fs := flag.NewFlagSet("sidelog-bench latency", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Work, "work", filepath.Join(os.TempDir(), "sidelog-bench-latency"), "work dir")
	fs.StringVar(&o.Sidelog, "sidelog", "", "the sidelog binary (default: go build ./cmd/sidelog into the work dir)")
	fs.IntVar(&o.Rate, "rate", 500, "lines written per second")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "writing window")
	sinks := fs.String("sinks", "file,es,dd", "sinks, comma-separated: file, es, dd")
	fs.StringVar(&o.Batch, "batch", "", "the output's batch block as YAML flow (default: none, the defaults)")
	fs.DurationVar(&o.Timeout, "timeout", time.Minute, "limit for the last line's delivery")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, s := range strings.Split(*sinks, ",") {
		switch s = strings.TrimSpace(s); s {
		case "file", "es", "dd":
			o.Sinks = append(o.Sinks, s)
		case "":
		default:
			fmt.Fprintf(stderr, "sidelog-bench latency: unknown sink %q\n", s)
			return 2
		}
	}
	if o.Rate <= 0 || o.Duration <= 0 {
		fmt.Fprintln(stderr, "sidelog-bench latency: -rate and -duration must be positive")
		return 2
	}
	work, err := filepath.Abs(o.Work)
	if err != nil {
		fmt.Fprintln(stderr, "sidelog-bench latency:", err)
		return 1
	}
	o.Work = work
	if err := os.MkdirAll(work, 0o755); err != nil {
		fmt.Fprintln(stderr, "sidelog-bench latency:", err)
		return 1
	}
	bin, err := agentBinary(o.Sidelog, work, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "sidelog-bench latency:", err)
		return 1
	}
	var res []LatencyResult
	for _, s := range o.Sinks {
		r := runLatency(bin, s, o)
		if r.Err != nil {
			fmt.Fprintf(stderr, "sidelog-bench: latency %s: %v\n", s, r.Err)
		} else {
			fmt.Fprintf(stderr, "sidelog-bench: latency %s: p50 %s p99 %s max %s, %d requests\n", s, ms(r.P50), ms(r.P99), ms(r.Max), r.Requests)
		}
		res = append(res, r)
	}
	batch := o.Batch
	if batch == "" {
		batch = "defaults"
	}
	fmt.Fprintf(stdout, "## sidelog-bench latency %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(stdout, "- machine: %s; load average: %s\n", machine(), loadAvg())
	fmt.Fprintf(stdout, "- commit: %s; binary: %s\n", gitCommit(), sidelogVersion(bin))
	fmt.Fprintf(stdout, "- %d lines/s for %s; batch: %s\n\n", o.Rate, o.Duration, batch)
	fmt.Fprintln(stdout, "| sink | lines | p50 ms | p90 ms | p99 ms | max ms | requests | lines/request | agent CPU % of a core |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|")
	failed := false
	for _, r := range res {
		if r.Err != nil {
			failed = true
			fmt.Fprintf(stdout, "| %s | failed: %v |||||||\n", r.Sink, r.Err)
			continue
		}
		per := "-"
		if r.Requests > 0 {
			per = fmt.Sprintf("%.1f", float64(r.Lines)/float64(r.Requests))
		}
		fmt.Fprintf(stdout, "| %s | %d | %s | %s | %s | %s | %d | %s | %.1f |\n", r.Sink, r.Lines, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.Requests, per, 100*r.AgentCPU)
	}
	if failed {
		return 1
	}
	return 0
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// latencySink collects delivery times: delivered minus written, per line.
type latencySink struct {
	mu       sync.Mutex
	lat      []time.Duration
	warm     int   // warm-up lines (wt 0) delivered
	requests int64 // requests carrying measured lines
}

// note records the lines found in b as delivered at t.
func (s *latencySink) note(b []byte, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	measured := false
	for {
		i := bytes.Index(b, []byte(`wt`))
		if i < 0 {
			break
		}
		b = b[i+2:]
		// "wt":N, or \"wt\":N inside a JSON string (a message).
		j := 0
		for j < len(b) && (b[j] == '"' || b[j] == '\\' || b[j] == ':') {
			j++
		}
		if j == 0 || b[j-1] != ':' {
			continue
		}
		k := j
		for k < len(b) && b[k] >= '0' && b[k] <= '9' {
			k++
		}
		if k == j {
			continue
		}
		wt, err := strconv.ParseInt(string(b[j:k]), 10, 64)
		b = b[k:]
		if err != nil {
			continue
		}
		if wt == 0 {
			s.warm++
			continue
		}
		measured = true
		s.lat = append(s.lat, t.Sub(time.Unix(0, wt)))
	}
	if measured {
		s.requests++
	}
}

func (s *latencySink) counts() (warm, measured int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.warm, len(s.lat)
}

// proxy forwards every request to backend and notes the lines of the
// request's body as delivered when the backend answered 2xx.
func (s *latencySink) proxy(backend string) *httptest.Server {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, backend+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 == 2 {
			now := time.Now()
			plain := body
			if r.Header.Get("Content-Encoding") == "gzip" {
				if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
					plain, _ = io.ReadAll(zr)
				}
			}
			s.note(plain, now)
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(answer)
	}))
}

// followFile polls path every millisecond and notes each complete line as
// delivered when seen, until stop is closed.
func (s *latencySink) followFile(path string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var f *os.File
	var pending []byte
	buf := make([]byte, 1<<20)
	tk := time.NewTicker(time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			if f != nil {
				f.Close()
			}
			return
		case <-tk.C:
		}
		if f == nil {
			var err error
			if f, err = os.Open(path); err != nil {
				continue
			}
		}
		for {
			n, _ := f.Read(buf)
			if n == 0 {
				break
			}
			now := time.Now()
			pending = append(pending, buf[:n]...)
			if i := bytes.LastIndexByte(pending, '\n'); i >= 0 {
				s.note(pending[:i+1], now)
				pending = append(pending[:0], pending[i+1:]...)
			}
		}
	}
}

// latencyLine is one written line; wt 0 marks a warm-up line.
func latencyLine(b []byte, seq int, wt int64) []byte {
	b = append(b, `{"level":"info","service":"latency","msg":"latency probe","seq":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"wt":`...)
	b = strconv.AppendInt(b, wt, 10)
	return append(b, "}\n"...)
}

func runLatency(bin, sink string, o latencyOptions) (r LatencyResult) {
	r = LatencyResult{Sink: sink, Rate: o.Rate}
	dir := filepath.Join(o.Work, "latency-"+sink)
	if err := os.RemoveAll(dir); err != nil {
		r.Err = err
		return r
	}
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
		r.Err = err
		return r
	}
	logPath := filepath.Join(dir, "app.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.Err = err
		return r
	}
	defer lf.Close()
	addr, err := freeAddr()
	if err != nil {
		r.Err = err
		return r
	}
	s := &latencySink{}
	batch := ""
	if o.Batch != "" {
		batch = "    batch: " + o.Batch + "\n"
	}
	cfg := fmt.Sprintf("# generated by sidelog-bench latency\ndata_dir: %s\napi:\n  address: %s\ninputs:\n  - name: app\n    type: tail\n    paths: [%s]\n    read_from: head\n    parser: json\noutputs:\n",
		q(filepath.Join(dir, "data")), q(addr), q(logPath))
	stopFollow := make(chan struct{})
	followDone := make(chan struct{})
	switch sink {
	case "file":
		out := filepath.Join(dir, "out", "all.ndjson")
		cfg += fmt.Sprintf("  - name: all\n    type: file\n    path: %s\n", q(out))
		go s.followFile(out, stopFollow, followDone)
	case "es":
		es := estest.New()
		es.Discard = true
		defer es.Close()
		p := s.proxy(es.URL)
		defer p.Close()
		cfg += fmt.Sprintf("  - name: es\n    type: elasticsearch\n    endpoints: [%s]\n    index: latency\n", q(p.URL))
		close(followDone)
	case "dd":
		dd := ddtest.New(ddAPIKey)
		defer dd.Close()
		p := s.proxy(dd.URL)
		defer p.Close()
		cfg += fmt.Sprintf("  - name: dd\n    type: datadog\n    api_key: %s\n    endpoint: %s\n    service: latency\n    source: sidelog-bench\n", q(ddAPIKey), q(p.URL))
		close(followDone)
	}
	defer func() { close(stopFollow); <-followDone }()
	cfg += batch
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		r.Err = err
		return r
	}
	stderrPath := filepath.Join(dir, "stderr.log")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		r.Err = err
		return r
	}
	defer stderr.Close()
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		r.Err = err
		return r
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	defer func() {
		if exited {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM) // the child we started
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	// waitFor polls the sink (no signal crosses the two processes but the
	// deliveries themselves) until cond holds.
	waitFor := func(what string, cond func() bool) error {
		deadline := time.Now().Add(o.Timeout)
		for time.Now().Before(deadline) {
			select {
			case err := <-done:
				exited = true
				return fmt.Errorf("sidelog exited early (%v)%s", err, tailOf(stderrPath))
			default:
			}
			if cond() {
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		return fmt.Errorf("%s: not delivered after %s%s", what, o.Timeout, tailOf(stderrPath))
	}
	// Warm-up: the agent is up and its output connected.
	const warmup = 3
	var line []byte
	for i := range warmup {
		line = latencyLine(line[:0], -1-i, 0)
		if _, err := lf.Write(line); err != nil {
			r.Err = err
			return r
		}
	}
	if err := waitFor("warm-up lines", func() bool { w, _ := s.counts(); return w >= warmup }); err != nil {
		r.Err = err
		return r
	}
	s.mu.Lock()
	s.requests = 0
	s.mu.Unlock()

	pid := cmd.Process.Pid
	cpu0, err := procCPU(pid)
	if err != nil {
		r.Err = err
		return r
	}
	total := int(int64(o.Rate) * int64(o.Duration) / int64(time.Second))
	interval := max(time.Second/time.Duration(o.Rate), time.Millisecond)
	start := time.Now()
	tk := time.NewTicker(interval)
	written := 0
	for written < total {
		<-tk.C
		due := min(int(int64(time.Since(start))*int64(o.Rate)/int64(time.Second))+1, total)
		line = line[:0]
		for ; written < due; written++ {
			line = latencyLine(line, written, time.Now().UnixNano())
		}
		if len(line) > 0 {
			if _, err := lf.Write(line); err != nil {
				tk.Stop()
				r.Err = err
				return r
			}
		}
	}
	tk.Stop()
	cpu1, err := procCPU(pid)
	if err != nil {
		r.Err = err
		return r
	}
	r.AgentCPU = float64(cpu1-cpu0) / float64(time.Since(start))
	if err := waitFor(fmt.Sprintf("%d lines", total), func() bool { _, n := s.counts(); return n >= total }); err != nil {
		r.Err = err
		return r
	}
	s.mu.Lock()
	lat := slices.Clone(s.lat)
	r.Requests = s.requests
	s.mu.Unlock()
	slices.Sort(lat)
	r.Lines = len(lat)
	if len(lat) != total {
		r.Err = fmt.Errorf("%d lines delivered, %d written (duplicates?)", len(lat), total)
		return r
	}
	pct := func(p float64) time.Duration { return lat[min(int(p*float64(len(lat))), len(lat)-1)] }
	r.P50, r.P90, r.P99, r.Max = pct(0.50), pct(0.90), pct(0.99), lat[len(lat)-1]
	return r
}
