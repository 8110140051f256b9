// Command sidelog-bench measures sidelog end to end, as a user runs it.
//
//	sidelog-bench [flags]            generate the data sets, run every scenario, print the table
//	sidelog-bench naive FILE         the naive-Go reference (run by the bench as its own process)
//	sidelog-bench latency [flags]    write-to-delivered latency at a fixed rate (see latency.go)
//	sidelog-bench daemonset [flags]  a node's day: 200 CRI files, kubernetes (api), Elasticsearch (see daemonset.go)
//
// It generates the data sets deterministically into a work dir, writes one
// config per scenario in the public config shape, and runs the real sidelog
// binary as a process per scenario (`sidelog run -c CFG --exit-on-eof`),
// measuring wall time, CPU (user + system from the child's rusage) and peak
// RSS, and verifying the number of records delivered. The naive-Go
// reference (bufio.Scanner + json.Unmarshal into map[string]any, no output)
// runs in the same invocation, measured the same way, so that CPU ratios
// compare across machines. Every figure is the median of -runs runs.
//
// A scenario whose plugins the sidelog binary lacks is reported as
// "unavailable" with the reason that `sidelog validate` gave.
//
// See docs/benchmarks.md for the scenarios, the targets and the figures.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sidelog/sidelog/output/datadog/ddtest"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	Work       string
	Lines      int64
	Runs       int
	Scenarios  []string
	Sidelog    string
	Keep       bool
	Timeout    time.Duration
	IdleFiles  int
	IdleWindow time.Duration
	IdleQuiet  time.Duration
	CPUProfile bool
	SkipNaive  bool
	Short      bool
	Sink       string
	Quiet      bool
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "naive" {
		return naive(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "latency" {
		return latency(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "daemonset" {
		return daemonset(args[1:], stdout, stderr)
	}
	var o options
	fs := flag.NewFlagSet("sidelog-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Work, "work", filepath.Join(os.TempDir(), "sidelog-bench"), "work dir: data sets, configs, outputs")
	fs.Int64Var(&o.Lines, "lines", 2_000_000, "records in the data sets (2,000,000 ≈ 480 MiB of JSON)")
	fs.IntVar(&o.Runs, "runs", 3, "runs per scenario; figures are medians")
	scen := fs.String("scenarios", "1,2,2b,3,4", "scenarios to run, comma-separated (1, 2, 2b, 3, 4)")
	fs.StringVar(&o.Sidelog, "sidelog", "", "the sidelog binary (default: go build ./cmd/sidelog into the work dir)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work dir (data sets are then reused by the next invocation)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "limit for one sidelog run")
	fs.IntVar(&o.IdleFiles, "idle-files", 1000, "scenario 4: files appended to")
	fs.DurationVar(&o.IdleWindow, "idle-window", 30*time.Second, "scenario 4: appending window (one line per file per second)")
	fs.DurationVar(&o.IdleQuiet, "idle-quiet", 10*time.Second, "scenario 4: window with no writes at all")
	fs.BoolVar(&o.Short, "short", false, "the JSON scenarios and the naive reference read the short-line data set (json-short: no trace_id, user_id, path; ≈ 150 bytes a record) instead of json")
	fs.BoolVar(&o.CPUProfile, "cpuprofile", false, "after the measured runs, run each scenario once more with sidelog's --cpuprofile (written to WORK/profiles/)")
	fs.StringVar(&o.Sink, "sink", "fast", "test servers of scenarios 2b and 3: fast (counting, cheap) | full (estest/ddtest: every document checked and kept)")
	fs.BoolVar(&o.SkipNaive, "skip-naive", false, "do not run the naive-Go reference")
	fs.BoolVar(&o.Quiet, "q", false, "no progress messages on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sidelog-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	for _, id := range strings.Split(*scen, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if _, ok := scenarioByID(id); !ok {
			fmt.Fprintf(stderr, "sidelog-bench: unknown scenario %q\n", id)
			return 2
		}
		o.Scenarios = append(o.Scenarios, id)
	}
	if o.Sink != "fast" && o.Sink != "full" {
		fmt.Fprintf(stderr, "sidelog-bench: -sink must be fast or full, not %q\n", o.Sink)
		return 2
	}
	if o.Lines <= 0 || o.Runs <= 0 || o.IdleFiles <= 0 {
		fmt.Fprintln(stderr, "sidelog-bench: -lines, -runs and -idle-files must be positive")
		return 2
	}
	logf := func(format string, a ...any) {
		if !o.Quiet {
			fmt.Fprintf(stderr, "sidelog-bench: "+format+"\n", a...)
		}
	}
	rep, err := bench(o, logf)
	if err != nil {
		fmt.Fprintln(stderr, "sidelog-bench:", err)
		return 1
	}
	rep.write(stdout)
	return 0
}

// Result is the outcome of one scenario.
type Result struct {
	Scenario scenario
	Status   string // "ok", "unavailable: ...", "failed: ..."
	Input    dataset
	Measure  Measure
	Runs     []Measure
	Records  int64 // delivered, summed over outputs (median run)
	Idle     *IdleMeasure
	Profile  string
}

func bench(o options, logf func(string, ...any)) (*report, error) {
	work, err := filepath.Abs(o.Work)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	if !o.Keep {
		defer os.RemoveAll(work)
	}
	rep := &report{Options: o, Machine: machine(), Date: time.Now().UTC().Format("2006-01-02")}

	bin := o.Sidelog
	if bin == "" {
		bin = filepath.Join(work, "sidelog")
		logf("building sidelog into %s", bin)
		cmd := exec.Command("go", "build", "-o", bin, "github.com/sidelog/sidelog/cmd/sidelog")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/sidelog: %v\n%s", err, out)
		}
	} else if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	rep.Sidelog = sidelogVersion(bin)
	rep.Commit = gitCommit()

	needs := map[string]bool{}
	for _, id := range o.Scenarios {
		s, _ := scenarioByID(id)
		if s.Data != "" {
			needs[s.Data] = true
			needs["json"] = needs["json"] || !o.SkipNaive
		}
	}
	data := map[string]dataset{}
	for _, kind := range []string{"json", "cri"} {
		if needs[kind] {
			gen := kind
			if kind == "json" && o.Short {
				gen = "json-short"
			}
			d, err := ensureDataset(work, gen, o.Lines, logf)
			if err != nil {
				return nil, err
			}
			data[kind] = d
		}
	}

	if d, ok := data["json"]; ok && !o.SkipNaive {
		rep.Naive = runNaive(work, d, o, logf)
	}
	for _, id := range o.Scenarios {
		s, _ := scenarioByID(id)
		var r Result
		if s.Data == "" {
			r = runIdleScenario(bin, work, s, o, logf)
		} else {
			r = runScenario(bin, work, s, data[s.Data], o, logf)
		}
		logf("scenario %s: %s", s.ID, r.Status)
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}

// runNaive measures the naive-Go reference on the JSON data set.
func runNaive(work string, d dataset, o options, logf func(string, ...any)) *Result {
	r := &Result{Scenario: scenario{ID: "naive", Title: "naive Go: bufio.Scanner + json.Unmarshal into map[string]any, no output"}, Input: d}
	self, err := os.Executable()
	if err != nil {
		r.Status = "failed: " + err.Error()
		return r
	}
	dir := filepath.Join(work, "runs", "naive")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.Status = "failed: " + err.Error()
		return r
	}
	for i := range o.Runs {
		outPath := filepath.Join(dir, "stdout.txt")
		m, err := runMeasured(exec.Command(self, "naive", d.Path), outPath, filepath.Join(dir, "stderr.log"), o.Timeout)
		if err != nil {
			r.Status = "failed: " + err.Error()
			return r
		}
		b, _ := os.ReadFile(outPath)
		if got := strings.TrimSpace(string(b)); got != fmt.Sprint(d.Stats.Records) {
			r.Status = fmt.Sprintf("failed: decoded %s records, want %d", got, d.Stats.Records)
			return r
		}
		logf("naive run %d/%d: wall %.2fs, CPU %.2fs, RSS %.1f MiB", i+1, o.Runs, m.Wall.Seconds(), m.CPU().Seconds(), mib(m.MaxRSS))
		r.Runs = append(r.Runs, m)
	}
	r.Measure = medianMeasure(r.Runs)
	r.Records = d.Stats.Records
	r.Status = "ok"
	return r
}

// prepareRun makes a fresh run dir with the scenario's config.
func prepareRun(work string, s scenario, name string, e *runEnv) (string, error) {
	e.RunDir = filepath.Join(work, "runs", "s"+s.ID+"-"+name)
	if err := os.RemoveAll(e.RunDir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(e.RunDir, "out"), 0o755); err != nil {
		return "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	e.APIAddr = addr
	cfg := filepath.Join(e.RunDir, "config.yaml")
	return cfg, os.WriteFile(cfg, []byte(s.Config(e)), 0o644)
}

// startSink starts the scenario's test server; the returned func stops it.
func startSink(s scenario, e *runEnv, mode string) func() {
	if s.Sink != "" && mode == "fast" {
		e.Fast = newFastSink(s.Sink, ddAPIKey)
		return func() { e.Fast.Close(); e.Fast = nil }
	}
	switch s.Sink {
	case "es":
		e.ES = estest.New()
		return func() { e.ES.Close(); e.ES = nil; runtime.GC() }
	case "dd":
		e.DD = ddtest.New(ddAPIKey)
		return func() { e.DD.Close(); e.DD = nil; runtime.GC() }
	}
	return func() {}
}

// validate asks the binary itself whether it can run the config: a
// scenario whose plugins are missing is unavailable, not a crash.
func validate(bin, cfg string) error {
	out, err := exec.Command(bin, "validate", "-c", cfg).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		lines := strings.Split(msg, "\n")
		for i, l := range lines {
			// Shorten "/long/work/dir/runs/.../config.yaml:12: ..." to "config.yaml:12: ...".
			lines[i] = strings.TrimPrefix(l, filepath.Dir(cfg)+string(filepath.Separator))
		}
		return errors.New(strings.Join(lines, "; "))
	}
	return nil
}

func runScenario(bin, work string, s scenario, d dataset, o options, logf func(string, ...any)) Result {
	r := Result{Scenario: s, Input: d}
	e := &runEnv{Work: work, Data: d}

	stopSink := startSink(s, e, o.Sink)
	cfg, err := prepareRun(work, s, "validate", e)
	if err == nil {
		err = validate(bin, cfg)
		if err != nil {
			r.Status = "unavailable: " + err.Error()
		}
	} else {
		r.Status = "failed: " + err.Error()
	}
	stopSink()
	if err != nil {
		return r
	}

	var delivered []int64
	for i := range o.Runs + boolInt(o.CPUProfile) {
		profile := i == o.Runs // the extra run, not measured
		stopSink := startSink(s, e, o.Sink)
		m, n, err := runOnce(bin, work, s, e, fmt.Sprint(i+1), profile, o)
		stopSink()
		if err != nil {
			r.Status = "failed: " + err.Error()
			return r
		}
		if profile {
			r.Profile = filepath.Join(work, "profiles", "s"+s.ID+".pprof")
			logf("scenario %s: CPU profile in %s", s.ID, r.Profile)
			continue
		}
		logf("scenario %s run %d/%d: wall %.2fs, CPU %.2fs, RSS %.1f MiB, %d records delivered", s.ID, i+1, o.Runs, m.Wall.Seconds(), m.CPU().Seconds(), mib(m.MaxRSS), n)
		r.Runs = append(r.Runs, m)
		delivered = append(delivered, n)
	}
	r.Measure = medianMeasure(r.Runs)
	r.Records = median(delivered)
	r.Status = "ok"
	return r
}

// runOnce runs sidelog on the scenario once and verifies its outputs.
func runOnce(bin, work string, s scenario, e *runEnv, name string, profile bool, o options) (Measure, int64, error) {
	cfg, err := prepareRun(work, s, name, e)
	if err != nil {
		return Measure{}, 0, err
	}
	args := []string{"run", "-c", cfg, "--exit-on-eof"}
	if profile {
		dir := filepath.Join(work, "profiles")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return Measure{}, 0, err
		}
		args = append(args, "--cpuprofile", filepath.Join(dir, "s"+s.ID+".pprof"))
	}
	m, err := runMeasured(exec.Command(bin, args...), filepath.Join(e.RunDir, "stdout.log"), filepath.Join(e.RunDir, "stderr.log"), o.Timeout)
	if err != nil {
		return m, 0, err
	}
	n, err := s.Verify(e)
	if err != nil {
		return m, n, fmt.Errorf("verify: %w", err)
	}
	if !o.Keep {
		// Outputs can be as large as the input: free the disk early.
		_ = os.RemoveAll(filepath.Join(e.RunDir, "out"))
		_ = os.RemoveAll(e.dataDir())
	}
	return m, n, nil
}

func runIdleScenario(bin, work string, s scenario, o options, logf func(string, ...any)) Result {
	r := Result{Scenario: s}
	e := &runEnv{Work: work, IdleFiles: o.IdleFiles}
	cfg, err := prepareRun(work, s, "validate", e)
	if err == nil {
		if err = prepareIdle(work, 1); err == nil {
			if err = validate(bin, cfg); err != nil {
				r.Status = "unavailable: " + err.Error()
				return r
			}
		}
	}
	if err != nil {
		r.Status = "failed: " + err.Error()
		return r
	}
	var ms []IdleMeasure
	for i := range o.Runs {
		if _, err := prepareRun(work, s, fmt.Sprint(i+1), e); err != nil {
			r.Status = "failed: " + err.Error()
			return r
		}
		m, err := runIdle(bin, e, o.IdleWindow, o.IdleQuiet, o.Timeout, logf)
		if err != nil {
			r.Status = "failed: " + err.Error()
			return r
		}
		logf("scenario 4 run %d/%d: appending %.2f%%, quiet %.2f%% of a core, RSS at rest %.1f MiB, peak %.1f MiB", i+1, o.Runs, 100*m.AppendCPU, 100*m.QuietCPU, mib(m.RSSAtRest), mib(m.MaxRSS))
		ms = append(ms, m)
	}
	im := medianIdle(ms)
	r.Idle = &im
	r.Records = im.Records
	r.Status = "ok"
	return r
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// machine describes the machine: cores and CPU model.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d cores, %s, %s/%s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH)
}

func sidelogVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += " (+ uncommitted changes)"
	}
	return c
}
