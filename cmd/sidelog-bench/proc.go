package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Measure is what one process run cost.
type Measure struct {
	Wall time.Duration
	User time.Duration
	Sys  time.Duration
	// MaxRSS is the peak resident set in bytes: the child's VmHWM, polled
	// from /proc while it runs. Not ru_maxrss: on Linux that is at least the
	// spawner's RSS at the time of the spawn (exec folds the high-water mark
	// of the vfork-shared image into the child's), so a bench holding a
	// million documents in its fake Elasticsearch would charge them to
	// sidelog.
	MaxRSS int64
	// SinkCPU is the CPU time this process (the bench, hosting the test
	// servers) spent while the child ran: the cost of the fake
	// Elasticsearch or Datadog, which shares the machine with sidelog.
	SinkCPU time.Duration
}

// CPU is user + system time.
func (m Measure) CPU() time.Duration { return m.User + m.Sys }

// runMeasured runs cmd to its end (or until timeout, then kills it) and
// returns the child's own resource usage: wall time, user and system CPU
// from wait4's rusage, and peak RSS from /proc (see Measure.MaxRSS). Stdout and stderr go to the files named (or are
// discarded when empty).
func runMeasured(cmd *exec.Cmd, stdoutPath, stderrPath string, timeout time.Duration) (Measure, error) {
	var m Measure
	for _, o := range []struct {
		path string
		dst  *io.Writer
	}{{stdoutPath, &cmd.Stdout}, {stderrPath, &cmd.Stderr}} {
		if o.path == "" {
			continue
		}
		f, err := os.Create(o.path)
		if err != nil {
			return m, err
		}
		defer f.Close()
		*o.dst = f
	}
	self0 := selfCPU()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return m, err
	}
	hwm := pollHWM(cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-done:
	case <-timer.C:
		_ = cmd.Process.Kill() // the child we started, by its pid
		<-done
		err = fmt.Errorf("timed out after %s (killed)", timeout)
	}
	m.Wall = time.Since(start)
	m.MaxRSS = hwm()
	m.SinkCPU = selfCPU() - self0
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		m.User = time.Duration(ru.Utime.Nano())
		m.Sys = time.Duration(ru.Stime.Nano())
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("exit status %d%s", ee.ExitCode(), tailOf(stderrPath))
		}
		return m, err
	}
	return m, nil
}

// selfCPU returns the CPU time used so far by this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tailOf returns ": " and the last lines of a log file, for error messages.
func tailOf(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return ": " + strings.Join(lines, " | ")
}

// medianMeasure takes the median of each figure independently.
func medianMeasure(ms []Measure) Measure {
	pick := func(f func(Measure) int64) int64 {
		v := make([]int64, len(ms))
		for i, m := range ms {
			v[i] = f(m)
		}
		return median(v)
	}
	return Measure{
		Wall:    time.Duration(pick(func(m Measure) int64 { return int64(m.Wall) })),
		User:    time.Duration(pick(func(m Measure) int64 { return int64(m.User) })),
		Sys:     time.Duration(pick(func(m Measure) int64 { return int64(m.Sys) })),
		MaxRSS:  pick(func(m Measure) int64 { return m.MaxRSS }),
		SinkCPU: time.Duration(pick(func(m Measure) int64 { return int64(m.SinkCPU) })),
	}
}

// median of v (the mean of the two middle values for an even count).
func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// procCPU reads the CPU time (user + system, all threads) of a running
// process from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// pollHWM samples the peak RSS (VmHWM) of a running process every 10 ms
// until it exits; the returned func (idempotent) stops the polling and returns the last
// value read. VmHWM only grows, so the value misses at most the growth of
// the last 10 ms of the process's life.
func pollHWM(pid int) func() int64 {
	var last atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatus(pid, "VmHWM:"); err == nil && v > last.Load() {
				last.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() int64 {
		once.Do(func() { close(stop) })
		<-done
		return last.Load()
	}
}

// procRSS reads the resident set size of a running process (VmRSS).
func procRSS(pid int) (int64, error) { return procStatus(pid, "VmRSS:") }

// procStatus reads a size field (in kB) of /proc/<pid>/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// countLines counts newlines in a file.
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err != nil {
			if err == io.EOF {
				return n, nil
			}
			return n, err
		}
	}
}

// agentBinary is the agent to run: path made absolute, or, when path is
// empty, the agent built from this module into work.
func agentBinary(path, work string, stderr io.Writer) (string, error) {
	if path != "" {
		return filepath.Abs(path)
	}
	bin := filepath.Join(work, "sidelog")
	fmt.Fprintf(stderr, "sidelog-bench: building sidelog into %s\n", bin)
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sidelog/sidelog/cmd/sidelog").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// agentProc is a started agent process whose peak RSS is polled until it
// ends; done receives its exit.
type agentProc struct {
	cmd    *exec.Cmd
	done   chan error
	hwm    func() int64
	exited bool
	maxRSS int64
}

// startAgent starts cmd and polls its VmHWM.
func startAgent(cmd *exec.Cmd) (*agentProc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &agentProc{cmd: cmd, done: make(chan error, 1), hwm: pollHWM(cmd.Process.Pid)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// ended records an exit received from done and returns the peak RSS.
func (p *agentProc) ended() int64 {
	p.exited = true
	p.maxRSS = p.hwm()
	return p.maxRSS
}

// stop sends SIGTERM to the process (the child we started) unless it has
// exited, waits for it (SIGKILL after 30 s) and returns its peak RSS.
// Idempotent.
func (p *agentProc) stop() int64 {
	if p.exited {
		return p.maxRSS
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.ended()
}
