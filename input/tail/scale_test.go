package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// 5,000 idle files and 50 active ones, default poll interval: start-up time
// (every file opened and its first line read), CPU while only the active
// files are written, CPU when everything is idle.
func TestManyIdleFiles(t *testing.T) {
	const idle, active = 5000, 50
	root := t.TempDir()
	for i := 0; i < idle; i++ {
		mustWrite(t, filepath.Join(root, "idle", fmt.Sprintf("%04d.log", i)), "idle\n")
	}
	if err := os.MkdirAll(filepath.Join(root, "active"), 0o755); err != nil {
		t.Fatal(err)
	}
	ws := make([]*writer, active)
	for i := range ws {
		ws[i] = newWriter(t, filepath.Join(root, "active", fmt.Sprintf("%02d.log", i)))
		ws[i].write(1)
	}
	cfg := testConfig(filepath.Join(root, "**", "*.log"))
	cfg.PollInterval = 250 * time.Millisecond
	s := newSink()
	began, cpu0 := time.Now(), cpuTime()
	r := start(t, cfg, t.TempDir(), s.emit)
	s.waitFor(t, 60*time.Second, "every first line", func() bool { return s.total == idle+active })
	startup, startCPU := time.Since(began), cpuTime()-cpu0

	// active: 50 files, 10 lines each every 100 ms (5,000 lines/s)
	cpu1, t1 := cpuTime(), time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	for k := 0; k < 30; k++ {
		<-tick.C
		for _, w := range ws {
			w.write(10)
		}
	}
	tick.Stop()
	s.waitFor(t, 30*time.Second, "active lines", func() bool { return s.total == idle+active+active*300 })
	activeCPU := float64(cpuTime()-cpu1) / float64(time.Since(t1))

	cpu2, t2 := cpuTime(), time.Now()
	timer := time.NewTimer(3 * time.Second) // a measuring window, not synchronisation
	<-timer.C
	idleCPU := float64(cpuTime()-cpu2) / float64(time.Since(t2))
	st := r.t.Stats()
	r.stop(t)
	if st.OpenFiles != idle+active {
		t.Fatalf("%d files open, want %d", st.OpenFiles, idle+active)
	}
	t.Logf("%d idle + %d active files: start-up %v (CPU %v); CPU %.1f%% of a core with the active files written (5,000 lines/s), %.1f%% all idle (poll_interval %v)",
		idle, active, startup.Round(time.Millisecond), startCPU.Round(time.Millisecond), activeCPU*100, idleCPU*100, cfg.PollInterval)
	if idleCPU > 0.5 {
		t.Fatalf("idle files cost %.0f%% of a core", idleCPU*100)
	}
}
