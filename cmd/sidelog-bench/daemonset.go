package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sidelog/sidelog/filter/kubernetes/kubetest"
)

// The DaemonSet scenario (issue 22, goal 5):
//
//	sidelog-bench daemonset [-files 200] [-rate 250] [-duration 30s] [-warmup 5s] [-cpuprofile]
//
// A node's day: -files pods (one container each) under WORK/var/log/pods,
// each appending -rate CRI lines a second (5 % of the records split into a P
// and an F piece, as in the cri data set), read by one agent with the
// kubernetes filter fed by an API server (filter/kubernetes/kubetest, in
// this process: every pod with labels, an annotation and a Deployment
// owner) and sent to Elasticsearch (the counting fast sink, gzip, disk
// buffer by default). The writer appends every 100 ms (rate/10 lines per
// file and tick, one write each). After -warmup, the agent's CPU is read
// from /proc over -duration; RSS is sampled each second. Then the writer
// stops, every record must arrive, and the agent must exit 0 on SIGTERM.

type daemonsetOptions struct {
	Work       string
	Sidelog    string
	Files      int
	Rate       int
	Duration   time.Duration
	Warmup     time.Duration
	Timeout    time.Duration
	CPUProfile bool
}

// DaemonSetResult is one run's measurement.
type DaemonSetResult struct {
	Records     int64   // records written (= delivered)
	Lines       int64   // physical lines written (P+F pieces count twice)
	AgentCPU    float64 // share of one core during the measured window
	BenchCPU    float64 // this process (writer, API server, sink) in the same window
	RSSMean     int64   // mean of VmRSS samples in the window
	RSSMax      int64   // largest VmRSS sample in the window
	HWM         int64   // VmHWM over the whole run
	Requests    int64
	Profile     string
	Delivered   time.Duration // writer stop to last record delivered
	Rate        float64       // records/s written in the measured window
	Extra       int64         // records delivered beyond those written
	TotalCPU    time.Duration // the agent's CPU from its start to the last record delivered
	Metrics     string        // the agent's input counters at the end
	HeapProfile string        // at the end of the window (with -cpuprofile)
}

// adminYAML is the api block's admin listener with pprof ("" for none).
func adminYAML(addr string) string {
	if addr == "" {
		return ""
	}
	return fmt.Sprintf("  pprof: true\n  admin: {address: %s}\n", q(addr))
}

// fetch saves the body of a GET.
func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

const daemonsetNode = "bench-node"

func daemonset(args []string, stdout, stderr io.Writer) int {
	var o daemonsetOptions
	fs := flag.NewFlagSet("sidelog-bench daemonset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Work, "work", filepath.Join(os.TempDir(), "sidelog-bench-daemonset"), "work dir")
	fs.StringVar(&o.Sidelog, "sidelog", "", "the sidelog binary (default: go build ./cmd/sidelog into the work dir)")
	fs.IntVar(&o.Files, "files", 200, "pods (one container log file each)")
	fs.IntVar(&o.Rate, "rate", 250, "records per second and file")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "measured window")
	fs.DurationVar(&o.Warmup, "warmup", 5*time.Second, "writing before the measured window")
	fs.DurationVar(&o.Timeout, "timeout", time.Minute, "limit for start-up and for the last record's delivery")
	fs.BoolVar(&o.CPUProfile, "cpuprofile", false, "run sidelog with --cpuprofile (WORK/daemonset.pprof) and take a heap profile at the end of the window (WORK/daemonset-heap.pprof)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Files <= 0 || o.Rate < 10 || o.Duration <= 0 || o.Warmup < 0 {
		fmt.Fprintln(stderr, "sidelog-bench daemonset: -files must be positive, -rate at least 10, -duration positive")
		return 2
	}
	work, err := filepath.Abs(o.Work)
	if err == nil {
		err = os.MkdirAll(work, 0o755)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sidelog-bench daemonset:", err)
		return 1
	}
	o.Work = work
	bin, err := agentBinary(o.Sidelog, work, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "sidelog-bench daemonset:", err)
		return 1
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "sidelog-bench: "+format+"\n", a...) }
	load0 := loadAvg()
	// The machine's speed moves (a shared host: the same binary measured
	// 31 % and 53 % of a core on one evening); the naive-Go reference,
	// timed just before and after, says how fast the machine was.
	yard0, yerr := yardstick(work)
	if yerr != nil {
		logf("daemonset: yardstick: %v", yerr)
	}
	r, err := runDaemonSet(bin, o, logf)
	if err != nil {
		fmt.Fprintln(stderr, "sidelog-bench daemonset:", err)
		return 1
	}
	fmt.Fprintf(stdout, "## sidelog-bench daemonset %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(stdout, "- machine: %s; load average before / after: %s / %s\n", machine(), load0, loadAvg())
	fmt.Fprintf(stdout, "- commit: %s; binary: %s\n", gitCommit(), sidelogVersion(bin))
	fmt.Fprintf(stdout, "- %d files × %d records/s (%d records/s), %s measured after %s of warm-up; cri + json → kubernetes (api) → elasticsearch (gzip, disk buffer; counting sink)\n\n",
		o.Files, o.Rate, o.Files*o.Rate, o.Duration, o.Warmup)
	fmt.Fprintln(stdout, "| records | lines | records/s written (measured window) | agent CPU % of a core | µs CPU / record | RSS mean MiB | RSS max MiB | peak RSS (VmHWM) MiB | bulk requests | records / request | whole run: agent CPU s (µs / record) | bench (writer + API + sink) CPU % | last delivered after stop |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	fmt.Fprintf(stdout, "| %d | %d | %.0f | **%.1f** | %.2f | %.1f | %.1f | %.1f | %d | %.0f | %.2f (%.2f) | %.1f | %s s |\n",
		r.Records, r.Lines, r.Rate, 100*r.AgentCPU, 1e6*r.AgentCPU/max(r.Rate, 1), mib(r.RSSMean), mib(r.RSSMax), mib(r.HWM),
		r.Requests, float64(r.Records)/float64(max(r.Requests, 1)), r.TotalCPU.Seconds(), 1e6*r.TotalCPU.Seconds()/float64(max(r.Records, 1)), 100*r.BenchCPU, fmt.Sprintf("%.2f", r.Delivered.Seconds()))
	if yard1, err := yardstick(work); err == nil && yerr == nil {
		mean := (yard0 + yard1) / 2
		fmt.Fprintf(stdout, "\n- machine yardstick: the naive-Go reference decodes a JSON line in %.2f µs of CPU before the run, %.2f after; the agent's µs / record over their mean: **%.2f**\n",
			yard0, yard1, 1e6*r.AgentCPU/max(r.Rate, 1)/mean)
	}
	if r.BenchCPU > 0 {
		// The bench's own work in the window (writing the lines, the sink
		// decompressing and counting the documents) is the same in every
		// run: a second yardstick, taken in the same seconds as the agent's.
		fmt.Fprintf(stdout, "- the agent's CPU over the bench's own (writer + API + sink, the same work in every run) in the window: **%.2f**\n", r.AgentCPU/r.BenchCPU)
	}
	fmt.Fprintf(stdout, "\n- agent counters at the end: %s\n", r.Metrics)
	if r.Extra > 0 {
		fmt.Fprintf(stdout, "- %d records delivered beyond those written (split CRI records or resent batches)\n", r.Extra)
	}
	if r.Profile != "" {
		fmt.Fprintf(stdout, "- CPU profile: %s\n", r.Profile)
	}
	if r.HeapProfile != "" {
		fmt.Fprintf(stdout, "- heap profile at the end of the window: %s\n", r.HeapProfile)
	}
	return 0
}

// daemonsetPod is pod i of the node: namespaces team-0..team-9, a
// Deployment's ReplicaSet as the owner, labels and an annotation.
func daemonsetPod(i int) *corev1.Pod {
	yes := true
	app := fmt.Sprintf("svc-%03d", i)
	hash := "7d9f8b6c5"
	rs := app + "-" + hash
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%05x", rs, i), Namespace: fmt.Sprintf("team-%d", i%10),
			UID:             types.UID(fmt.Sprintf("5f2b1a9e-0000-4000-8000-%012d", i)),
			Labels:          map[string]string{"app": app, "team": fmt.Sprintf("team-%d", i%10), "tier": "backend", "pod-template-hash": hash},
			Annotations:     map[string]string{"app.kubernetes.io/version": "1.2.3"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: "rs-" + types.UID(app), Controller: &yes}},
		},
		Spec:   corev1.PodSpec{NodeName: daemonsetNode, Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + app + ":1.2.3"}}},
		Status: corev1.PodStatus{PodIP: fmt.Sprintf("10.1.%d.%d", i/250, 1+i%250)},
	}
}

func runDaemonSet(bin string, o daemonsetOptions, logf func(string, ...any)) (DaemonSetResult, error) {
	var r DaemonSetResult
	dir := filepath.Join(o.Work, "run")
	if err := os.RemoveAll(dir); err != nil {
		return r, err
	}
	podsDir := filepath.Join(dir, "var", "log", "pods")
	if err := os.MkdirAll(podsDir, 0o755); err != nil {
		return r, err
	}
	api, err := kubetest.Start()
	if err != nil {
		return r, err
	}
	defer api.Close()
	for i := range 10 {
		api.SetNamespace(fmt.Sprintf("team-%d", i), map[string]string{"env": "prod"})
	}
	files := make([]*os.File, o.Files)
	for i := range files {
		p := api.AddPod(daemonsetPod(i))
		d := filepath.Join(podsDir, fmt.Sprintf("%s_%s_%s", p.Namespace, p.Name, p.UID), "app")
		if err := os.MkdirAll(d, 0o755); err != nil {
			return r, err
		}
		f, err := os.OpenFile(filepath.Join(d, "0.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return r, err
		}
		defer f.Close()
		files[i] = f
	}
	kubeconfig, err := api.Kubeconfig(dir)
	if err != nil {
		return r, err
	}
	sink := newFastSink("es", ddAPIKey)
	defer sink.Close()
	addr, err := freeAddr()
	if err != nil {
		return r, err
	}
	admin := ""
	if o.CPUProfile {
		if admin, err = freeAddr(); err != nil {
			return r, err
		}
	}
	cfg := fmt.Sprintf(`# generated by sidelog-bench daemonset
data_dir: %s
api:
  address: %s
%sinputs:
  - name: pods
    type: tail
    paths: [%s]
    read_from: head
    parser: cri
    inner_parser: json
filters:
  - type: kubernetes
    api: {kubeconfig: %s, node_name: %s}
    labels: ["*"]
    annotations: ["app.kubernetes.io/*"]
outputs:
  - name: es
    type: elasticsearch
    endpoints: [%s]
    index: 'app-{{ service }}'
    compression: gzip
    buffer: {type: disk}
`, q(filepath.Join(dir, "data")), q(addr), adminYAML(admin), q(filepath.Join(podsDir, "*", "*", "*.log")), q(kubeconfig), q(daemonsetNode), q(sink.URL))
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return r, err
	}
	if err := validate(bin, cfgPath); err != nil {
		return r, err
	}
	args := []string{"run", "-c", cfgPath}
	if o.CPUProfile {
		r.Profile = filepath.Join(o.Work, "daemonset.pprof")
		args = append(args, "--cpuprofile", r.Profile)
	}
	stderrPath := filepath.Join(dir, "stderr.log")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		return r, err
	}
	defer stderr.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = stderr
	p, err := startAgent(cmd)
	if err != nil {
		return r, err
	}
	pid := cmd.Process.Pid
	stop := func() {
		if !p.exited {
			r.HWM = p.stop()
		}
	}
	defer stop()
	// waitFor polls the sink (no signal crosses the two processes but the
	// deliveries themselves) until it holds n records.
	waitFor := func(n int64) error {
		deadline := time.Now().Add(o.Timeout)
		for time.Now().Before(deadline) {
			select {
			case err := <-p.done:
				p.ended()
				return fmt.Errorf("sidelog exited early (%v)%s", err, tailOf(stderrPath))
			default:
			}
			if sink.Docs() >= n {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return fmt.Errorf("%d of %d records delivered after %s%s", sink.Docs(), n, o.Timeout, tailOf(stderrPath))
	}

	// Start-up: one record per file, delivered.
	g := newGenerator("cri")
	var buf []byte
	write := func(f *os.File, n int) error {
		buf = buf[:0]
		now := time.Now().UTC()
		for range n {
			doc, _ := g.next()
			body := doc[:len(doc)-1]
			if g.split.IntN(100) < criSplitPercent {
				cut := 1 + g.split.IntN(len(body)-1)
				buf = appendCRI(buf, now, 'P', body[:cut])
				buf = appendCRI(buf, now, 'F', body[cut:])
				r.Lines += 2
			} else {
				buf = appendCRI(buf, now, 'F', body)
				r.Lines++
			}
			r.Records++
		}
		_, err := f.Write(buf)
		return err
	}
	for _, f := range files {
		if err := write(f, 1); err != nil {
			return r, err
		}
	}
	if err := waitFor(r.Records); err != nil {
		return r, fmt.Errorf("start-up: %w", err)
	}
	if err := verifyDaemonSetSample(sink.Sample()); err != nil {
		return r, err
	}
	logf("daemonset: agent up, %d files, writing %d records/s", o.Files, o.Files*o.Rate)

	const tick = 100 * time.Millisecond
	perTick := o.Rate / 10
	tk := time.NewTicker(tick)
	defer tk.Stop()
	var cpu0, self0 time.Duration
	var start time.Time
	var rssSum, rssN, rec0 int64
	measuring := false
	warmEnd := time.Now().Add(o.Warmup)
	var end time.Time
	lastRSS := time.Time{}
	for {
		now := time.Now()
		if !measuring && !now.Before(warmEnd) {
			measuring = true
			if cpu0, err = procCPU(pid); err != nil {
				return r, err
			}
			self0 = selfCPU()
			rec0 = r.Records
			start = time.Now()
			end = start.Add(o.Duration)
		}
		if measuring && !now.Before(end) {
			break
		}
		for _, f := range files {
			if err := write(f, perTick); err != nil {
				return r, err
			}
		}
		if measuring && now.Sub(lastRSS) >= time.Second {
			lastRSS = now
			if v, err := procRSS(pid); err == nil {
				rssSum += v
				rssN++
				r.RSSMax = max(r.RSSMax, v)
			}
		}
		select {
		case err := <-p.done:
			p.ended()
			return r, fmt.Errorf("sidelog exited early (%v)%s", err, tailOf(stderrPath))
		case <-tk.C:
		}
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return r, err
	}
	el := time.Since(start)
	if admin != "" {
		r.HeapProfile = filepath.Join(o.Work, "daemonset-heap.pprof")
		if err := fetch("http://"+admin+"/debug/pprof/heap", r.HeapProfile); err != nil {
			logf("daemonset: heap profile: %v", err)
			r.HeapProfile = ""
		}
	}
	r.AgentCPU = float64(cpu1-cpu0) / float64(el)
	r.BenchCPU = float64(selfCPU()-self0) / float64(el)
	r.Rate = float64(r.Records-rec0) / el.Seconds()
	if rssN > 0 {
		r.RSSMean = rssSum / rssN
	}
	stopped := time.Now()
	if err := waitFor(r.Records); err != nil {
		return r, fmt.Errorf("after writing: %w", err)
	}
	r.Delivered = time.Since(stopped)
	if total, err := procCPU(pid); err == nil {
		r.TotalCPU = total
	}
	r.Requests = sink.requests.Load()
	r.Metrics = agentMetrics(addr, "sidelog_input_records_total", "sidelog_input_parse_errors_total")
	stop()
	if !cmd.ProcessState.Success() {
		return r, fmt.Errorf("sidelog did not exit cleanly after SIGTERM (%s)%s", cmd.ProcessState, tailOf(stderrPath))
	}
	// Fewer is a loss. More: the agent split records (a CRI P piece
	// emitted alone after flush_timeout, then its F piece: both parse
	// errors, each a record), or an output resent a batch (at least once).
	if got := sink.Docs(); got != r.Records {
		err := fmt.Errorf("%d records delivered, %d written (agent: %s)", got, r.Records, r.Metrics)
		if got < r.Records {
			return r, err
		}
		logf("daemonset: %v", err)
		r.Extra = got - r.Records
	}
	if p := sink.Problems(); len(p) > 0 {
		return r, fmt.Errorf("%d protocol problems, the first: %s", len(p), p[0])
	}
	logf("daemonset: %d records, agent %.1f%% of a core, RSS mean %.1f MiB", r.Records, 100*r.AgentCPU, mib(r.RSSMean))
	return r, nil
}

// verifyDaemonSetSample checks that a document carries the API's metadata
// (labels, owner), not only the path's.
func verifyDaemonSetSample(pair []byte) error {
	_, source, ok := strings.Cut(string(pair), "\n")
	if !ok {
		return fmt.Errorf("no sample document")
	}
	for _, want := range []string{`"trace_id"`, `"kubernetes"`, `"labels"`, `"tier":"backend"`, `"owner"`, `"Deployment"`, `"namespace_labels"`} {
		if !strings.Contains(source, want) {
			return fmt.Errorf("sample document lacks %s: %.400s", want, source)
		}
	}
	return nil
}

// agentMetrics reads the agent's /metrics and returns the named series
// (summed over labels), for the report.
func agentMetrics(addr string, names ...string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "unavailable: " + err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "unavailable: " + err.Error()
	}
	sums := make([]float64, len(names))
	for _, line := range strings.Split(string(b), "\n") {
		for i, n := range names {
			rest, ok := strings.CutPrefix(line, n)
			if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
				continue
			}
			f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(f) > 0 {
				v, _ := strconv.ParseFloat(f[0], 64)
				sums[i] += v
			}
		}
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.0f", n, sums[i])
	}
	return strings.Join(parts, ", ")
}

// yardstickLines is the size of the yardstick's data set (about half a
// second of the naive reference's CPU).
const yardstickLines = 200_000

// yardstick runs the naive-Go reference (`sidelog-bench naive`, its own
// process) over the first lines of the JSON data set and returns its CPU
// µs per line.
func yardstick(work string) (float64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	path := filepath.Join(work, "yardstick.json")
	if _, err := os.Stat(path); err != nil {
		f, err := os.Create(path + ".tmp")
		if err != nil {
			return 0, err
		}
		if _, err := writeDataset(f, "json", yardstickLines); err != nil {
			f.Close()
			return 0, err
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return 0, err
		}
	}
	out := filepath.Join(work, "yardstick.out")
	m, err := runMeasured(exec.Command(self, "naive", path), out, "", time.Minute)
	if err != nil {
		return 0, err
	}
	b, _ := os.ReadFile(out)
	if got := strings.TrimSpace(string(b)); got != fmt.Sprint(yardstickLines) {
		return 0, fmt.Errorf("naive decoded %q lines, want %d", got, yardstickLines)
	}
	return float64(m.CPU().Microseconds()) / yardstickLines, nil
}
