package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// IdleMeasure is what a sidecar at rest costs (scenario 4).
type IdleMeasure struct {
	Files int
	// Appending: one line per file per second during Window.
	Window    time.Duration
	AppendCPU float64 // share of one core while appending
	// Quiet: nothing written during QuietWindow.
	QuietWindow time.Duration
	QuietCPU    float64
	RSSAtRest   int64 // VmRSS at the end of the quiet window
	MaxRSS      int64 // peak RSS over the whole run (VmHWM)
	Records     int64
}

// idleLine is the line appended; a short, valid JSON app log.
func idleLine(file, tick int) []byte {
	return fmt.Appendf(nil, `{"ts":"2025-06-01T00:00:%02d.000Z","level":"info","msg":"heartbeat","service":"idle","file":%d,"tick":%d}`+"\n", tick%60, file, tick)
}

// prepareIdle creates the idle files, each holding one line.
func prepareIdle(work string, files int) error {
	dir := idleDir(work)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range files {
		if err := os.WriteFile(idleFile(work, i), idleLine(i, 0), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func idleFile(work string, i int) string {
	return filepath.Join(idleDir(work), fmt.Sprintf("app-%04d.log", i))
}

// runIdle runs sidelog (without --exit-on-eof) on the idle files: it waits
// until the first line of every file is delivered, then appends one line to
// every file each second during window while sampling sidelog's CPU from
// /proc, then writes nothing during quiet, then waits until every line is
// delivered, stops sidelog with SIGTERM and takes its peak RSS from rusage.
func runIdle(bin string, e *runEnv, window, quiet, timeout time.Duration, logf func(string, ...any)) (IdleMeasure, error) {
	m := IdleMeasure{Files: e.IdleFiles, Window: window, QuietWindow: quiet}
	if err := prepareIdle(e.Work, e.IdleFiles); err != nil {
		return m, err
	}
	fds := make([]*os.File, e.IdleFiles)
	for i := range fds {
		f, err := os.OpenFile(idleFile(e.Work, i), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return m, err
		}
		defer f.Close()
		fds[i] = f
	}
	cfg := filepath.Join(e.RunDir, "config.yaml")
	stderrPath := filepath.Join(e.RunDir, "stderr.log")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		return m, err
	}
	defer stderr.Close()
	cmd := exec.Command(bin, "run", "-c", cfg)
	cmd.Stderr = stderr
	p, err := startAgent(cmd)
	if err != nil {
		return m, err
	}
	stop := func() {
		if !p.exited {
			m.MaxRSS = p.stop()
		}
	}
	defer stop()
	out := e.out("all.ndjson")
	// waitFor polls the output until it holds n lines (no signal exists
	// between two processes but the file itself).
	waitFor := func(n int64, d time.Duration) error {
		deadline := time.Now().Add(d)
		var got int64
		for time.Now().Before(deadline) {
			select {
			case err := <-p.done:
				m.MaxRSS = p.ended()
				return fmt.Errorf("sidelog exited early (%v)%s", err, tailOf(stderrPath))
			default:
			}
			got, _ = countLines(out)
			if got >= n {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("%d of %d records delivered after %s", got, n, d)
	}
	files := int64(e.IdleFiles)
	if err := waitFor(files, timeout); err != nil {
		return m, fmt.Errorf("start-up: %w", err)
	}
	pid := cmd.Process.Pid

	cpu0, err := procCPU(pid)
	if err != nil {
		return m, err
	}
	start := time.Now()
	ticks := int(window / time.Second)
	tk := time.NewTicker(time.Second)
	for tick := 1; tick <= ticks; tick++ {
		for i, f := range fds {
			if _, err := f.Write(idleLine(i, tick)); err != nil {
				tk.Stop()
				return m, err
			}
		}
		<-tk.C
	}
	tk.Stop()
	cpu1, err := procCPU(pid)
	if err != nil {
		return m, err
	}
	m.AppendCPU = float64(cpu1-cpu0) / float64(time.Since(start))
	logf("scenario 4: appending: %.2f%% of a core", 100*m.AppendCPU)

	want := files * int64(1+ticks)
	if err := waitFor(want, timeout); err != nil {
		return m, fmt.Errorf("after appending: %w", err)
	}
	cpu2, err := procCPU(pid)
	if err != nil {
		return m, err
	}
	qstart := time.Now()
	time.Sleep(quiet) // the measurement window itself
	cpu3, err := procCPU(pid)
	if err != nil {
		return m, err
	}
	m.QuietCPU = float64(cpu3-cpu2) / float64(time.Since(qstart))
	if m.RSSAtRest, err = procRSS(pid); err != nil {
		return m, err
	}
	stop()
	if !cmd.ProcessState.Success() {
		return m, fmt.Errorf("sidelog did not exit cleanly after SIGTERM (%s)%s", cmd.ProcessState, tailOf(stderrPath))
	}
	if m.Records, err = countLines(out); err != nil {
		return m, err
	}
	if m.Records != want {
		return m, fmt.Errorf("%d records delivered, want %d", m.Records, want)
	}
	return m, nil
}

func medianIdle(ms []IdleMeasure) IdleMeasure {
	if len(ms) == 0 {
		return IdleMeasure{}
	}
	r := ms[0]
	f := func(get func(IdleMeasure) float64) float64 {
		v := make([]int64, len(ms))
		for i, m := range ms {
			v[i] = int64(get(m) * 1e9)
		}
		return float64(median(v)) / 1e9
	}
	r.AppendCPU = f(func(m IdleMeasure) float64 { return m.AppendCPU })
	r.QuietCPU = f(func(m IdleMeasure) float64 { return m.QuietCPU })
	r.RSSAtRest = int64(f(func(m IdleMeasure) float64 { return float64(m.RSSAtRest) }))
	r.MaxRSS = int64(f(func(m IdleMeasure) float64 { return float64(m.MaxRSS) }))
	return r
}
