package tail

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
)

// holder keeps the emitted batches, unreleased, until the test releases
// them.
type holder struct {
	mu      sync.Mutex
	batches [][]*event.Event
	lines   int
	notify  chan struct{}
}

func newHolder() *holder { return &holder{notify: make(chan struct{}, 1)} }

func (h *holder) emit(batch []*event.Event) error {
	h.mu.Lock()
	h.batches = append(h.batches, batch)
	h.lines += len(batch)
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
	return nil
}

func (h *holder) waitLines(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		h.mu.Lock()
		got := h.lines
		h.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-h.notify:
		case <-deadline:
			t.Fatalf("%d lines emitted, waiting for %d", got, n)
		}
	}
}

// release releases batch i.
func (h *holder) release(i int) {
	h.mu.Lock()
	b := h.batches[i]
	h.mu.Unlock()
	for _, e := range b {
		e.Done()
	}
}

func (h *holder) releaseAll() {
	h.mu.Lock()
	n := len(h.batches)
	h.mu.Unlock()
	for i := 0; i < n; i++ {
		h.release(i)
	}
}

// savedOffset is the checkpointed offset of path (-1: not in it).
func savedOffset(t *testing.T, dataDir, path string) int64 {
	t.Helper()
	doc, _, err := loadCheckpoints(checkpointPath(dataDir, "test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range doc.Files {
		if c.Path == path {
			return c.Offset
		}
	}
	return -1
}

// waitSaved waits until the checkpoint file holds offset want for path.
func waitSaved(t *testing.T, dataDir, path string, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for savedOffset(t, dataDir, path) != want {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint of %s: offset %d, want %d", path, savedOffset(t, dataDir, path), want)
		}
		time.Sleep(5 * time.Millisecond) // the checkpoint file has no change signal
	}
}

// TestCheckpointFollowsHeldAcks holds the acknowledgements back: the saved
// offset stays at the start while the lines are read and emitted, does not
// pass a batch that is not released (a later one released first), and
// follows the release of the first one. (How promptly it follows is what
// e2e/rotate_crash_test.go measures: duplicates after SIGKILLs.)
func TestCheckpointFollowsHeldAcks(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := filepath.Join(dir, "a.log")
	w := newWriter(t, p)
	defer w.close()
	cfg := testConfig(p)
	h := newHolder()
	r := start(t, cfg, data, h.emit)

	w.write(5) // 45 bytes: batch 0
	h.waitLines(t, 5)
	w.write(5) // batch 1, up to 90
	h.waitLines(t, 10)
	if st := r.t.Stats(); len(st.Files) != 1 || st.Files[0].Offset != 90 {
		t.Fatalf("read offset: %+v, want 90", st.Files)
	}
	if got := savedOffset(t, data, p); got != 0 {
		t.Fatalf("saved offset %d while every acknowledgement is held, want 0", got)
	}
	h.release(1) // out of order: the offset may not pass batch 0
	if st := r.t.Stats(); st.Files[0].Acked != 0 {
		t.Fatalf("acknowledged offset %d with batch 0 held, want 0", st.Files[0].Acked)
	}
	h.release(0)
	waitSaved(t, data, p, 90)
	r.stop(t)
}

// TestFinalCheckpointAfterBuffersDrained: on a graceful stop under a
// pipeline (a shutdown deadline given), the final checkpoint is written
// once the acknowledgements came back, however long after drain_timeout;
// and at the pipeline's deadline when they do not.
func TestFinalCheckpointAfterBuffersDrained(t *testing.T) {
	for _, late := range []bool{false, true} {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		p := filepath.Join(dir, "a.log")
		mustWrite(t, p, numLine(1)+"\n"+numLine(2)+"\n")
		cfg := testConfig(p)
		cfg.DrainTimeout = time.Millisecond // not what bounds the wait here
		deadline := make(chan struct{})
		tl, err := New(cfg, input.Env{Name: "test", DataDir: data, ShutdownDeadline: deadline})
		if err != nil {
			t.Fatal(err)
		}
		h := newHolder()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tl.Run(ctx, h.emit) }()
		h.waitLines(t, 2)
		cancel()
		select {
		case err := <-done:
			t.Fatalf("Run returned (%v) with acknowledgements outstanding, before the shutdown deadline", err)
		case <-time.After(300 * time.Millisecond): // far past drain_timeout
		}
		if late {
			close(deadline) // the pipeline gives up: save what is acknowledged
		} else {
			h.release(0) // the buffers drained
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return")
		}
		want := int64(18)
		if late {
			want = 0
		}
		if got := savedOffset(t, data, p); got != want {
			t.Fatalf("late=%v: final checkpoint offset %d, want %d", late, got, want)
		}
		if late {
			h.releaseAll()
		}
	}
}

// TestRotatedFileFoundAfterRestart: a file renamed out of the globs while
// the input was stopped, with unread bytes, is found by identity in its
// directory (and in rotated_dirs: logrotate's olddir) and read to its end.
func TestRotatedFileFoundAfterRestart(t *testing.T) {
	for _, where := range []string{"same-dir", "olddir"} {
		t.Run(where, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			p := filepath.Join(dir, "app.log")
			w := newWriter(t, p)
			cfg := testConfig(filepath.Join(dir, "*.log"))
			cfg.RotatedDirs = []string{"old"}
			s := newSink()
			r := start(t, cfg, data, s.emit)
			w.write(100)
			s.waitFor(t, 10*time.Second, "100 lines", func() bool { return len(s.counts) == 100 })
			r.stop(t)
			// while stopped: more lines, then the rotation
			w.write(50)
			w.close()
			rotated := filepath.Join(dir, "app.log.1")
			if where == "olddir" {
				os.Mkdir(filepath.Join(dir, "old"), 0o755)
				rotated = filepath.Join(dir, "old", "app.log.1")
			}
			if err := os.Rename(p, rotated); err != nil {
				t.Fatal(err)
			}
			r = start(t, cfg, data, s.emit)
			s.waitFor(t, 10*time.Second, "150 lines", func() bool { return len(s.counts) == 150 })
			r.stop(t)
			s.checkNumbers(t, 150)
			if got := savedOffset(t, data, rotated); got != 150*9 {
				t.Fatalf("checkpoint of %s: %d, want %d", rotated, got, 150*9)
			}
		})
	}
}

// TestRotatedFileGoneCounted: a file with unread bytes (acknowledgements
// held back) that is deleted while the input is stopped is counted as
// lost at the next start: the bytes between its checkpointed offset and
// the size the input last saw.
func TestRotatedFileGoneCounted(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := filepath.Join(dir, "app.log")
	w := newWriter(t, p)
	w.write(100)
	w.close()
	cfg := testConfig(filepath.Join(dir, "*.log"))
	cfg.DrainTimeout = time.Millisecond
	h := newHolder()
	r := start(t, cfg, data, h.emit)
	h.waitLines(t, 100)
	r.stop(t) // nothing acknowledged: offset 0, size 900 saved
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	s := newSink()
	r = start(t, cfg, data, s.emit)
	s.waitFor(t, 10*time.Second, "the loss counted", func() bool { return r.t.Stats().LostBytes > 0 })
	if lost := r.t.Stats().LostBytes; lost != 900 {
		t.Fatalf("lost bytes %d, want 900", lost)
	}
	r.stop(t)
	h.releaseAll()
}
