package tail

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/internal/syncbuf"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/cri"
	"github.com/sidelog/sidelog/parser/multiline"
)

// capture makes the tailer log into a buffer the test reads.
func capture(tl *Tailer) *syncbuf.Buffer {
	lb := &syncbuf.Buffer{}
	tl.log = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return lb
}

// ackedOffset is the acknowledged offset of the open file at path.
func ackedOffset(tl *Tailer, path string) int64 {
	for _, f := range tl.Stats().Files {
		if f.Path == path {
			return f.Acked
		}
	}
	return -1
}

// Issue 14: the last partial (P) piece of a container that exited never
// gets its F piece. It is emitted flush_timeout after it came, with the
// file left open at its end, and the checkpoint reaches the end of the
// file (before: held forever, the checkpoint frozen before it).
func TestCRILastPartialFlushedAtEndOfFile(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "0.log")
	content := "2026-11-25T10:00:00Z stdout F started\n" +
		"2026-11-25T10:00:01Z stderr P panic: runtime error: index out of range [3] with length 3\n"
	mustWrite(t, p, content)
	s := newSink()
	s.keep = true
	r := startWith(t, testConfig(p), data, s.emit, func(tl *Tailer) {
		tl.newAsm = func() parser.Assembler { return cri.NewWithTimeout(1<<20, 200*time.Millisecond) }
	})
	s.waitFor(t, 10*time.Second, "the last partial piece", func() bool { return s.total == 2 })
	if got := string(s.events[1].Raw); got != "panic: runtime error: index out of range [3] with length 3" || s.events[1].Stream != "stderr" {
		t.Fatalf("got %q", got)
	}
	s.waitFor(t, 10*time.Second, "the checkpoint at the end", func() bool { return ackedOffset(r.t, p) == int64(len(content)) })
}

// Issue 14: a trace that never ends (written in two parts, every line
// joining the group) is cut into groups of max_lines lines: they are
// emitted while the trace goes on, nothing is lost, and the checkpoint
// moves past them (before: nothing emitted, the checkpoint frozen).
func TestMultilineMaxLinesWhileTheTraceGoesOn(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	frames := func(from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "\tat F.f%03d(F.java:1)\n", i)
		}
		return b.String()
	}
	first := "ERROR failed\n" + frames(1, 150)
	mustWrite(t, p, first)
	newML, err := multiline.New(parser.MultilineConfig{Preset: "java", Timeout: time.Hour, MaxLines: 100}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	s.keep = true
	r := startWith(t, testConfig(p), data, s.emit, func(tl *Tailer) { tl.newAsm = newML })
	s.waitFor(t, 10*time.Second, "a group of 100 lines", func() bool { return s.total == 1 })
	appendFile(t, p, frames(150, 250))
	s.waitFor(t, 10*time.Second, "two groups of 100 lines", func() bool { return s.total == 2 })
	for i, e := range s.events {
		if n := bytes.Count(e.Raw, []byte("\n")) + 1; n != 100 {
			t.Fatalf("group %d has %d lines", i, n)
		}
	}
	if !strings.HasPrefix(string(s.events[0].Raw), "ERROR failed\n\tat F.f001(") || !strings.HasPrefix(string(s.events[1].Raw), "\tat F.f100(") {
		t.Fatalf("groups %q... %q...", s.events[0].Raw[:30], s.events[1].Raw[:20])
	}
	// the first read's lines are all emitted: its acknowledgement is
	// released, the checkpoint passes it while 50 lines are still held
	s.waitFor(t, 10*time.Second, "the checkpoint past the first read", func() bool { return ackedOffset(r.t, p) == int64(len(first)) })
	if st := r.t.Stats(); st.LostBytes != 0 {
		t.Fatalf("%d bytes counted lost without a cut", st.LostBytes)
	}
}

// Issue 14: the bytes given up by cuts at max_line_bytes are counted by
// reason and logged with the path: a line cut by the reader (line_cut, one
// within a read and one longer than a read), a group cut by the assembler
// (group_cut).
func TestCutsCounted(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	long := strings.Repeat("x", 40)
	huge := strings.Repeat("y", 10000) // past the 4 KiB read buffer
	mustWrite(t, p, "start "+long+"\nstart "+huge+"\nstart\n cont1\n cont2\n")
	cfg := testConfig(p)
	cfg.MaxLine = 16
	cfg.ReadBufferBytes = 4 << 10
	newML, err := multiline.New(parser.MultilineConfig{Start: `^start`, Timeout: 50 * time.Millisecond}, 16)
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	s.keep = true
	var lb *syncbuf.Buffer
	r := startWith(t, cfg, data, s.emit, func(tl *Tailer) { tl.newAsm = newML; lb = capture(tl) })
	s.waitFor(t, 10*time.Second, "3 records", func() bool { return s.total == 3 })
	// "start xxx..." (46) cut to 16: 30; "start yyy..." (10006) to 16: 9990.
	// "start\n cont1\n cont2" (19) in a group bounded at 16: "start\n cont1\n co" kept, "nt2" lost.
	st := r.t.Stats()
	if st.Lost["line_cut"] != 30+9990 || st.Lost["group_cut"] != 3 || st.LostBytes != 30+9990+3 {
		t.Fatalf("lost %v (total %d)", st.Lost, st.LostBytes)
	}
	out := lb.String()
	for _, reason := range []string{"line_cut", "group_cut"} {
		if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "reason="+reason) || !strings.Contains(out, "path="+p) {
			t.Fatalf("no warning for %s with the path:\n%s", reason, out)
		}
	}
	_ = os.Remove
}

// Issue 14: a matched file the agent cannot open (chmod 000) is counted in
// OpenErrors and logged with its path, and tried again at each scan: once
// readable its lines arrive. The agent's tests run as root, which chmod
// 000 does not stop, so the open goes through the tail's open seam
// (Tailer.openFile), which refuses a file without read permission bits
// with EACCES as the kernel does for a non-root agent.
func TestOpenFailureCountedLoggedRetried(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	ok, locked := filepath.Join(logs, "ok.log"), filepath.Join(logs, "locked.log")
	mustWrite(t, ok, "fine\n")
	mustWrite(t, locked, "secret\n")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	s := newSink()
	var lb *syncbuf.Buffer
	r := startWith(t, testConfig(filepath.Join(logs, "*.log")), data, s.emit, func(tl *Tailer) {
		lb = capture(tl)
		tl.openFile = func(p string) (*os.File, error) {
			if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o444 == 0 {
				return nil, &os.PathError{Op: "open", Path: p, Err: syscall.EACCES}
			}
			return openNoAtime(p)
		}
	})
	s.waitFor(t, 10*time.Second, "the readable file", func() bool { return s.counts["fine"] == 1 })
	s.waitFor(t, 10*time.Second, "two failed opens", func() bool { return r.t.Stats().OpenErrors >= 2 })
	if out := lb.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "path="+locked) || !strings.Contains(out, "permission denied") {
		t.Fatalf("no warning with the path and the error:\n%s", out)
	}
	if strings.Count(lb.String(), "cannot open") != 1 {
		t.Fatalf("warnings not rate-limited:\n%s", lb.String())
	}
	if s.counts["secret"] != 0 {
		t.Fatal("read a file that could not be opened")
	}
	if err := os.Chmod(locked, 0o644); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, 10*time.Second, "the file once readable", func() bool { return s.counts["secret"] == 1 })
}

// A CRI partial (P) piece read at the end of the file, its final (F)
// piece written while the output takes longer than flush_timeout to take
// the batch before it (backpressure): the piece did not wait flush_timeout
// for its F piece, the reader did. The two pieces are still joined into one
// record (before: the P piece was flushed alone as soon as the emit
// returned, and the F piece became a record of its own: two parse errors
// downstream instead of one line).
func TestCRIPartialNotFlushedWhileTheReaderIsBehind(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "0.log")
	const flush = 200 * time.Millisecond
	first := "2026-11-25T10:00:00Z stdout F started\n" +
		"2026-11-25T10:00:01Z stdout P part one, \n"
	last := "2026-11-25T10:00:02Z stdout F part two\n"
	mustWrite(t, p, first)
	s := newSink()
	s.keep = true
	var calls int
	emit := func(batch []*event.Event) error {
		calls++
		if calls == 1 {
			// the F piece is written while a slow output takes the
			// first batch after flush_timeout has passed twice over
			appendFile(t, p, last)
			time.Sleep(2 * flush)
		}
		return s.emit(batch)
	}
	r := startWith(t, testConfig(p), data, emit, func(tl *Tailer) {
		tl.newAsm = func() parser.Assembler { return cri.NewWithTimeout(1<<20, flush) }
	})
	// every byte acknowledged: every record of the file was emitted
	s.waitFor(t, 10*time.Second, "the checkpoint at the end", func() bool { return ackedOffset(r.t, p) == int64(len(first+last)) })
	s.mu.Lock()
	defer s.mu.Unlock()
	var got []string
	for _, e := range s.events {
		got = append(got, string(e.Raw))
	}
	if len(got) != 2 || got[0] != "started" || got[1] != "part one, part two" {
		t.Fatalf("records %q, want %q", got, []string{"started", "part one, part two"})
	}
}
