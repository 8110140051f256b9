package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/internal/syncbuf"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/multiline"
)

// blockingSink is a sink whose emit blocks until released (a blocked
// output).
type blockingSink struct {
	*sink
	entered chan struct{} // an emit is blocked
	release chan struct{} // closed: emits go through
	once    atomic.Bool
}

func newBlockingSink() *blockingSink {
	return &blockingSink{sink: newSink(), entered: make(chan struct{}), release: make(chan struct{})}
}

func (b *blockingSink) emit(batch []*event.Event) error {
	if b.once.CompareAndSwap(false, true) {
		close(b.entered)
	}
	<-b.release
	return b.sink.emit(batch)
}

// Issue 14: a file truncated while the reader is behind (its output
// blocked) loses the bytes it had not read: they are counted (reason
// truncated) and logged with the path, exactly the bytes between where the
// reader was and the size before the truncation (before: a debug line).
func TestTruncationBehindBlockedOutputCounted(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(20000) // 180,000 bytes, many reads of 4 KiB
	w.close()
	const total = 20000 * 9
	cfg := testConfig(p)
	cfg.ReadBufferBytes = 4 << 10
	bs := newBlockingSink()
	bs.keep = true
	var lb *syncbuf.Buffer
	r := startWith(t, cfg, data, bs.emit, func(tl *Tailer) { lb = capture(tl) })
	<-bs.entered // the reader is blocked in its first emit, far behind
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, p, "after\n")
	// the scanner notices the truncation while the reader is blocked
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st := r.t.Stats(); len(st.Files) == 1 && st.Files[0].Size == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the truncation was not noticed")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	close(bs.release)
	bs.waitFor(t, 10*time.Second, "the new content", func() bool { return bs.counts["after"] == 1 })
	var read int64 // where the reader was: the end of the last event of generation 0
	bs.mu.Lock()
	for _, e := range bs.events {
		if e.Pos.Generation == 0 && e.Pos.Offset > read {
			read = e.Pos.Offset
		}
	}
	bs.mu.Unlock()
	st := r.t.Stats()
	if read <= 0 || read >= total || st.Lost["truncated"] != uint64(total-read) || st.LostBytes != uint64(total-read) {
		t.Fatalf("read to %d of %d, lost %v", read, total, st.Lost)
	}
	out := lb.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "reason=truncated") || !strings.Contains(out, "path="+p) ||
		!strings.Contains(out, fmt.Sprintf("lost_bytes=%d", total-read)) {
		t.Fatalf("no warning with the path and the bytes:\n%s", out)
	}
}

// Issue 14: a deleted file released after max_deleted_hold while its
// reader is blocked gives up what its assembler held too: their bytes are
// counted and their acknowledgements released, so the tracker drains and
// every emitted batch comes back (before: the held lines' batch stayed in
// flight forever, and every stop then waited drain_timeout).
func TestDeletedReleaseDropsHeldLines(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	head := "start a\n cont a\nstart b\n cont b\n" // "start b\n cont b" held by multiline
	mustWrite(t, p, head)
	cfg := testConfig(p)
	cfg.MaxDeletedHold = 100 * time.Millisecond
	newML, err := multiline.New(parser.MultilineConfig{Start: `^start`, Timeout: time.Hour}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	bs := newBlockingSink()
	r := startWith(t, cfg, data, bs.emit, func(tl *Tailer) { tl.newAsm = newML })
	<-bs.entered                  // "start a\n cont a" emitted, blocked; "start b..." held
	appendFile(t, p, "start c\n") // never read: the reader is blocked
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.t.Stats().LostBytes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the deleted file was not released")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	close(bs.release)
	bs.waitFor(t, 10*time.Second, "the emitted group", func() bool { return bs.total == 1 })
	st := r.t.Stats()
	if want := uint64(len("start b\n cont b\nstart c\n")); st.Lost["deleted"] != want {
		t.Fatalf("lost %v, want %d deleted", st.Lost, want)
	}
	if !r.t.waitInflight(10 * time.Second) {
		t.Fatalf("%d batches still in flight: the held lines' acknowledgements were not released", r.t.inflight.Load())
	}
}

// Issue 14: a failed read (EIO) is not the end of the file: it is retried
// at each scan, and a failure that clears within max_read_error_hold loses
// nothing.
func TestReadErrorRetried(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(100)
	var failing atomic.Bool
	failing.Store(true)
	readFault = func(path string, _ int64) error {
		if path == p && failing.Load() {
			return syscall.EIO
		}
		return nil
	}
	t.Cleanup(func() { readFault = nil }) // after the tailer stopped (cleanups run last first)
	s := newSink()
	r := start(t, testConfig(p), data, s.emit)
	s.waitFor(t, 10*time.Second, "failed reads", func() bool { return r.t.Stats().ReadErrors >= 3 })
	if s.total != 0 {
		t.Fatal("lines read from a failing file")
	}
	failing.Store(false)
	s.waitFor(t, 10*time.Second, "every line", func() bool { return s.total == 100 })
	s.checkNumbers(t, 100)
	if st := r.t.Stats(); st.LostBytes != 0 {
		t.Fatalf("lost %v", st.Lost)
	}
}

// Issue 14: reads that keep failing past max_read_error_hold give up the
// unread bytes, counted (reason read_error) and logged with the path; the
// file goes on after them (before: the failure was an end of file, the
// bytes silently skipped by nothing and never counted).
func TestReadErrorPastHoldCounted(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(100)
	var failing atomic.Bool
	failing.Store(true)
	readFault = func(path string, _ int64) error {
		if path == p && failing.Load() {
			return syscall.EIO
		}
		return nil
	}
	t.Cleanup(func() { readFault = nil })
	cfg := testConfig(p)
	cfg.MaxReadErrorHold = 200 * time.Millisecond
	s := newSink()
	var lb *syncbuf.Buffer
	r := startWith(t, cfg, data, s.emit, func(tl *Tailer) { lb = capture(tl) })
	s.waitFor(t, 10*time.Second, "the bytes given up", func() bool { return r.t.Stats().Lost["read_error"] == 900 })
	failing.Store(false)
	w.write(10)
	s.waitFor(t, 10*time.Second, "the lines written after", func() bool { return s.total == 10 })
	for i := 101; i <= 110; i++ {
		if s.counts[numLine(i)] != 1 {
			t.Fatalf("line %d: %d times", i, s.counts[numLine(i)])
		}
	}
	out := lb.String()
	if !strings.Contains(out, "reason=read_error") || !strings.Contains(out, "path="+p) || !strings.Contains(out, "input/output error") {
		t.Fatalf("no warning with the path and the error:\n%s", out)
	}
}
