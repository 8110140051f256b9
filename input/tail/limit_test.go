package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// openLogFDs counts this process's descriptors open on files under dir.
// It reads /proc/self/fd/N for N upwards (descriptors are allocated lowest
// first, so they are dense) and opens nothing itself: listing the
// directory, or reading fdinfo, would take a descriptor and free it while
// the tail closes and opens files, shifting the numbers the tail gets past
// the sampler's position and counting a closed file and its replacement
// both.
func openLogFDs(dir string) int {
	n, miss := 0, 0
	for fd := 0; miss < 64; fd++ {
		tgt, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			miss++
			continue
		}
		miss = 0
		if strings.HasPrefix(tgt, dir+"/") {
			n++
		}
	}
	return n
}

// sampleFDs samples openLogFDs(dir) every 10 ms until stop is closed and
// returns the largest count seen.
func sampleFDs(dir string, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		most := 0
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if n := openLogFDs(dir); n > most {
				most = n
			}
			select {
			case <-stop:
				out <- most
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// Issue 14: 5,000 files with max_open_files: 500: every line of every file
// is delivered once, the log files open in the process (sampled from
// /proc/self/fd every 10 ms) never exceed 500; lines appended later to
// files closed as idle are read from their position (reopened by
// identity); with every file quiet the CPU used is measured (reported, not
// asserted).
func TestMaxOpenFiles5000(t *testing.T) {
	const files, lines, limit = 5000, 3, 500
	logs := t.TempDir()
	for i := 0; i < files; i++ {
		var b strings.Builder
		for l := 0; l < lines; l++ {
			fmt.Fprintf(&b, "f%04d-l%d\n", i, l)
		}
		mustWrite(t, filepath.Join(logs, fmt.Sprintf("%04d.log", i)), b.String())
	}
	// The appends later go through descriptors opened now, on hard links
	// in another directory: no descriptor is opened or closed in this
	// process during the run but the tail's (no data_dir either: the
	// checkpoint writes would open and close files). Another descriptor
	// taken and freed while the tail closes one file and opens the next
	// would shift the numbers it gets past the sampler's position, and the
	// sampler would count both.
	links := t.TempDir()
	var appenders []*os.File
	for i := 0; i < files; i += files / 100 {
		name := fmt.Sprintf("%04d.log", i)
		if err := os.Link(filepath.Join(logs, name), filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(filepath.Join(links, name), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		appenders = append(appenders, f)
	}
	cfg := testConfig(filepath.Join(logs, "*.log"))
	cfg.MaxOpenFiles = limit
	stop := make(chan struct{})
	most := sampleFDs(logs, stop)
	s := newSink()
	began := time.Now()
	r := start(t, cfg, "", s.emit)
	s.waitFor(t, 120*time.Second, "every line", func() bool { return s.total >= files*lines })
	took := time.Since(began)
	// appended to 100 files, most of them closed as idle by now
	for k, f := range appenders {
		if _, err := fmt.Fprintf(f, "f%04d-l%d\n", k*(files/100), lines); err != nil {
			t.Fatal(err)
		}
	}
	s.waitFor(t, 60*time.Second, "the appended lines", func() bool { return s.total >= files*lines+100 })
	close(stop)
	peak := <-most
	st := r.t.Stats()

	// all quiet: CPU over a measuring window (not an assertion)
	// once the rescans backed off (2 s without one: fsnotify is healthy),
	// over a 5 s window
	last, lastAt := r.t.Stats().Scans, time.Now()
	s.waitFor(t, 30*time.Second, "the rescans backed off", func() bool {
		if n := r.t.Stats().Scans; n != last {
			last, lastAt = n, time.Now()
		}
		return time.Since(lastAt) >= 2*time.Second
	})
	cpu0, t0, scans0 := cpuTime(), time.Now(), r.t.Stats().Scans
	window := time.NewTimer(5 * time.Second) // a measuring window, not synchronisation
	<-window.C
	quiet := float64(cpuTime()-cpu0) / float64(time.Since(t0))
	quietScans := r.t.Stats().Scans - scans0
	r.stop(t)

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.counts) != files*lines+100 || s.total != files*lines+100 {
		t.Fatalf("%d distinct lines in %d events, want %d once each", len(s.counts), s.total, files*lines+100)
	}
	if st.PeakOpenFiles > limit {
		t.Fatalf("the tail held %d log files open at once (max_open_files: %d)", st.PeakOpenFiles, limit)
	}
	if peak > limit || peak <= 0 {
		t.Fatalf("%d log files open at once (max_open_files: %d)", peak, limit)
	}
	t.Logf("%d files, max_open_files %d: every line in %v, at most %d log files open (sampled every 10 ms), %d closed as idle, %d opens deferred; all quiet: %.2f%% of a core, %d rescans in 5 s once backed off (poll_interval %v, max_poll_interval %v, fsnotify on)",
		files, limit, took.Round(time.Millisecond), peak, st.IdleClosed, st.DeferredOpens, quiet*100, quietScans, cfg.PollInterval, cfg.MaxPollInterval)
}

// Issue 14: a file idle for close_inactive is closed and reopened by
// identity at its position when it grows; one renamed away while closed
// is found by identity and read to its end.
func TestCloseInactive(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(10)
	cfg := testConfig(p)
	cfg.CloseInactive = 100 * time.Millisecond
	s := newSink()
	r := start(t, cfg, data, s.emit)
	s.waitFor(t, 10*time.Second, "10 lines", func() bool { return s.total == 10 })
	s.waitFor(t, 10*time.Second, "the idle file closed", func() bool { st := r.t.Stats(); return st.OpenFiles == 0 && st.IdleClosed == 1 })
	w.write(5)
	s.waitFor(t, 10*time.Second, "15 lines", func() bool { return s.total == 15 })
	s.waitFor(t, 10*time.Second, "closed again", func() bool { st := r.t.Stats(); return st.OpenFiles == 0 && st.IdleClosed == 2 })
	// appended and renamed out of the glob while closed
	w.write(5)
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, 10*time.Second, "20 lines", func() bool { return s.total == 20 })
	s.checkNumbers(t, 20)
}

// Issue 14: at the first start, a file older than ignore_older is skipped
// with a checkpoint at its end; what is appended to it later is read.
func TestIgnoreOlder(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	old, fresh := filepath.Join(logs, "old.log"), filepath.Join(logs, "fresh.log")
	mustWrite(t, old, "old 1\nold 2\n")
	mustWrite(t, fresh, "fresh 1\n")
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(filepath.Join(logs, "*.log"))
	cfg.IgnoreOlder = time.Hour
	s := newSink()
	r := start(t, cfg, data, s.emit)
	s.waitFor(t, 10*time.Second, "the fresh file", func() bool { return s.counts["fresh 1"] == 1 })
	if st := r.t.Stats(); st.IgnoredOld != 1 || st.OpenFiles != 1 {
		t.Fatalf("%d ignored, %d open", st.IgnoredOld, st.OpenFiles)
	}
	r.t.persist()
	doc, _, _ := loadCheckpoints(checkpointPath(data, "test"))
	var at int64 = -1
	for _, c := range doc.Files {
		if c.Path == old {
			at = c.Offset
		}
	}
	if at != int64(len("old 1\nold 2\n")) {
		t.Fatalf("old file checkpointed at %d: %+v", at, doc.Files)
	}
	appendFile(t, old, "old 3\n")
	s.waitFor(t, 10*time.Second, "the line appended to the old file", func() bool { return s.counts["old 3"] == 1 })
	if s.counts["old 1"] != 0 || s.total != 2 {
		t.Fatalf("%d lines: %v", s.total, s.counts)
	}
}

// Issue 14: a write to a file closed as idle reopens that file alone: a
// slow writer's file costs one stat per write, not a rescan of every file.
func TestWriteToIdleFileNoRescan(t *testing.T) {
	const files = 200
	logs, data := t.TempDir(), t.TempDir()
	for i := 0; i < files; i++ {
		mustWrite(t, filepath.Join(logs, fmt.Sprintf("%03d.log", i)), fmt.Sprintf("f%03d-l0\n", i))
	}
	cfg := testConfig(filepath.Join(logs, "*.log"))
	cfg.CloseInactive = 50 * time.Millisecond
	s := newSink()
	r := start(t, cfg, data, s.emit)
	s.waitFor(t, 30*time.Second, "every file read and closed as idle", func() bool {
		st := r.t.Stats()
		return s.total == files && st.OpenFiles == 0 && st.IdleClosed == files
	})
	// quiet until the rescans backed off (2 s without one)
	last, lastAt := r.t.Stats().Scans, time.Now()
	s.waitFor(t, 30*time.Second, "the rescans backed off", func() bool {
		if n := r.t.Stats().Scans; n != last {
			last, lastAt = n, time.Now()
		}
		return time.Since(lastAt) >= 2*time.Second
	})
	before := r.t.Stats()
	for i := 0; i < files; i += 4 {
		appendFile(t, filepath.Join(logs, fmt.Sprintf("%03d.log", i)), fmt.Sprintf("f%03d-l1\n", i))
	}
	s.waitFor(t, 30*time.Second, "the appended lines", func() bool { return s.total == files+files/4 })
	after := r.t.Stats()
	if after.TouchScans == before.TouchScans {
		t.Fatal("the writes were not handled by looking at their files alone")
	}
	if n := after.Scans - before.Scans; n > 3 {
		t.Fatalf("%d full rescans for %d writes to idle files", n, files/4)
	}
	if len(s.counts) != files+files/4 {
		t.Fatalf("%d distinct lines in %d events", len(s.counts), s.total)
	}
}
