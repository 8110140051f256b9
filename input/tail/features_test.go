package tail

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/parser"
)

func TestTrackerOutOfOrder(t *testing.T) {
	var dirty atomic.Bool
	tr := newTracker(0, 10, &dirty)
	a, b, c := tr.add(20), tr.add(30), tr.add(40)
	tr.addDone(45) // skipped bytes after c
	tr.done(b)
	tr.done(c)
	if got, out := tr.state(); got != 10 || out != 4 {
		t.Fatalf("acked %d with %d out, want 10 with 4: b and c are done but a is not", got, out)
	}
	tr.done(a)
	if got, out := tr.state(); got != 45 || out != 0 {
		t.Fatalf("acked %d with %d out, want 45 with 0", got, out)
	}
	if !dirty.Load() {
		t.Fatal("dirty not set")
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := checkpointPath(dir, "app/x")
	doc := checkpointDoc{Input: "app/x", Files: []checkpoint{{Dev: 1, Ino: 2, FP: 3, MatchFP: 4, MatchLen: 5, Gen: 6, Offset: 7, Path: "/a", Seen: 8}}}
	if _, err := saveCheckpoints(p, &doc, nil); err != nil {
		t.Fatal(err)
	}
	got, found, err := loadCheckpoints(p)
	if err != nil || !found {
		t.Fatalf("load: found=%v err=%v", found, err)
	}
	if len(got.Files) != 1 || got.Files[0] != doc.Files[0] {
		t.Fatalf("got %+v, want %+v", got.Files, doc.Files)
	}
	if strings.Contains(p, "app/x") {
		t.Fatalf("input name not sanitised: %s", p)
	}
}

func TestCheckpointVersionAndCorruption(t *testing.T) {
	dataDir := t.TempDir()
	logs := t.TempDir()
	mustWrite(t, filepath.Join(logs, "a.log"), "00000001\n")
	p := checkpointPath(dataDir, "test")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	// a newer version: refuse to start rather than read everything again
	if err := os.WriteFile(p, []byte(`{"version":3,"files":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(testConfig(filepath.Join(logs, "*.log")), input.Env{Name: "test", DataDir: dataDir})
	if !errors.Is(err, errNewerVersion) {
		t.Fatalf("New with a version 3 checkpoint: %v, want errNewerVersion", err)
	}
	// version 0 or garbage: moved aside, known files read from their start
	for _, bad := range []string{`{"version":0}`, `{"version":1,"files":[{"dev":"x"}]}`, "\x00\x00garbage"} {
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		tl, err := New(testConfig(filepath.Join(logs, "*.log")), input.Env{Name: "test", DataDir: dataDir})
		if err != nil {
			t.Fatalf("New with a corrupt checkpoint %q: %v", bad, err)
		}
		if tl.firstStart {
			t.Fatalf("corrupt checkpoint %q treated as a first start (read_from: tail would skip data)", bad)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("the corrupt checkpoint was not moved aside")
		}
	}
	aside, _ := filepath.Glob(p + ".corrupt-*")
	if len(aside) == 0 {
		t.Fatal("no .corrupt file kept")
	}
}

func TestResumeAfterRestart(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(500)
	s := newSink()
	r := start(t, testConfig(p), data, s.emit)
	s.waitLines(t, 500)
	r.stop(t)
	w.write(300)
	s2 := newSink()
	r2 := start(t, testConfig(p), data, s2.emit)
	s2.waitLines(t, 300)
	r2.stop(t)
	for i := 1; i <= 500; i++ {
		if s2.counts[numLine(i)] != 0 {
			t.Fatalf("line %d read again after a clean restart", i)
		}
	}
	if s2.total != 300 {
		t.Fatalf("%d lines after restart, want 300", s2.total)
	}
}

func TestReadFromTail(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	old := filepath.Join(logs, "old.log")
	mustWrite(t, old, "past 1\npast 2\n")
	cfg := testConfig(filepath.Join(logs, "*.log"))
	cfg.ReadFrom = "tail"
	s := newSink()
	r := start(t, cfg, data, s.emit)
	s.waitFor(t, waitAll, "first scan", func() bool { return r.t.Stats().FilesOpened == 1 })
	appendFile(t, old, "new 1\n")
	mustWrite(t, filepath.Join(logs, "later.log"), "later 1\n") // appears later: from its start
	s.waitFor(t, waitAll, "lines", func() bool { return len(s.counts) == 2 })
	r.stop(t)
	if s.counts["new 1"] != 1 || s.counts["later 1"] != 1 || s.counts["past 1"] != 0 {
		t.Fatalf("got %v", s.counts)
	}
	// not a first start any more: a file that appeared meanwhile is read
	// from its start, known files resume
	mustWrite(t, filepath.Join(logs, "while-down.log"), "down 1\n")
	appendFile(t, old, "new 2\n")
	s2 := newSink()
	r2 := start(t, cfg, data, s2.emit)
	s2.waitFor(t, waitAll, "lines", func() bool { return len(s2.counts) == 2 })
	r2.stop(t)
	if s2.counts["down 1"] != 1 || s2.counts["new 2"] != 1 || s2.total != 2 {
		t.Fatalf("second start got %v", s2.counts)
	}
}

func TestMaxLineBytes(t *testing.T) {
	logs := t.TempDir()
	p := filepath.Join(logs, "app.log")
	long := strings.Repeat("x", 50000)
	mustWrite(t, p, "short 1\n"+long+"\nshort 2\n"+strings.Repeat("y", 100)+"\nshort 3\n")
	cfg := testConfig(p)
	cfg.MaxLine = 1000
	cfg.ReadBufferBytes = 4096 // the long line spans many reads
	s := newSink()
	s.keep = true
	r := start(t, cfg, t.TempDir(), s.emit)
	s.waitFor(t, waitAll, "5 lines", func() bool { return s.total == 5 })
	r.stop(t)
	if s.total != 5 {
		t.Fatalf("%d events, want 5", s.total)
	}
	for i, e := range s.events {
		want := []string{"short 1", long[:1000], "short 2", strings.Repeat("y", 100), "short 3"}[i]
		if string(e.Raw) != want {
			t.Fatalf("event %d: %.40q..., want %.40q...", i, e.Raw, want)
		}
		if e.Has(event.Truncated) != (i == 1) {
			t.Fatalf("event %d: truncated=%v", i, e.Has(event.Truncated))
		}
	}
	if got, want := s.events[1].Pos.Offset, int64(8+1000); got != want {
		t.Fatalf("cut line offset %d, want %d (line start + max_line_bytes)", got, want)
	}
}

func TestPartialLineHeldAndCRLF(t *testing.T) {
	logs := t.TempDir()
	p := filepath.Join(logs, "app.log")
	mustWrite(t, p, "first\r\n12")
	cfg := testConfig(p)
	s := newSink()
	s.keep = true
	r := start(t, cfg, t.TempDir(), s.emit)
	s.waitFor(t, waitAll, "the partial line read", func() bool { return r.t.Stats().BytesRead == 9 })
	appendFile(t, p, "34\nlast without newline")
	s.waitFor(t, waitAll, "2 lines", func() bool { return s.total == 2 })
	// rotated away: the last partial line is emitted as it is
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, waitAll, "3 lines", func() bool { return s.total == 3 })
	r.stop(t)
	got := []string{string(s.events[0].Raw), string(s.events[1].Raw), string(s.events[2].Raw)}
	if got[0] != "first" || got[1] != "1234" || got[2] != "last without newline" {
		t.Fatalf("got %q", got)
	}
	if s.events[2].Pos.Offset != int64(len("first\r\n1234\nlast without newline")) {
		t.Fatalf("partial line offset %d", s.events[2].Pos.Offset)
	}
}

// releasing sink: keeps events until release is called.
type holdSink struct {
	mu     sync.Mutex
	events []*event.Event
	n      atomic.Int64
}

func (h *holdSink) emit(b []*event.Event) error {
	h.mu.Lock()
	h.events = append(h.events, b...)
	h.mu.Unlock()
	h.n.Add(int64(len(b)))
	return nil
}

func (h *holdSink) release() {
	h.mu.Lock()
	evs := h.events
	h.events = nil
	h.mu.Unlock()
	for _, e := range evs {
		e.Done()
	}
}

func TestExitOnEOFWaitsForAcks(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(3000)
	w.f.WriteString("no newline at the end")
	cfg := testConfig(p)
	cfg.ExitOnEOF = true
	cfg.ReadBufferBytes = 4096
	tl, err := New(cfg, input.Env{Name: "test", DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	h := &holdSink{}
	done := make(chan error, 1)
	go func() { done <- tl.Run(context.Background(), h.emit) }()
	deadline := time.Now().Add(waitAll)
	for h.n.Load() < 3001 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling a counter, no signal exists
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) before the events were acknowledged", err)
	default:
	}
	h.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h.n.Load() != 3001 {
		t.Fatalf("%d events, want 3001", h.n.Load())
	}
	doc, _, err := loadCheckpoints(checkpointPath(data, "test"))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if len(doc.Files) != 1 || doc.Files[0].Offset != st.Size() {
		t.Fatalf("checkpoint %+v, want offset %d", doc.Files, st.Size())
	}
}

func TestDeletedFileHeldThenReleased(t *testing.T) {
	logs := t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(20000) // 180 kB: many reads of 4 KiB
	cfg := testConfig(p)
	cfg.ReadBufferBytes = 4096
	cfg.MaxDeletedHold = 300 * time.Millisecond
	block := make(chan struct{})
	var got atomic.Int64
	emit := func(b []*event.Event) error {
		got.Add(int64(len(b)))
		<-block // the pipeline is full
		for _, e := range b {
			e.Done()
		}
		return nil
	}
	r := start(t, cfg, t.TempDir(), emit)
	s := newSink()
	s.waitFor(t, waitAll, "first batch", func() bool { return got.Load() > 0 })
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	w.close()
	s.waitFor(t, waitAll, "deleted file held", func() bool { return r.t.Stats().DeletedOpen == 1 })
	s.waitFor(t, waitAll, "deleted file released", func() bool {
		st := r.t.Stats()
		return st.OpenFiles == 0 && st.LostBytes > 0
	})
	close(block)
	st := r.t.Stats()
	r.stop(t)
	lostLines := st.LostBytes / 9
	if int64(lostLines)+got.Load() < 20000 || st.LostBytes%9 != 0 {
		t.Fatalf("lost %d bytes and got %d lines of 20000", st.LostBytes, got.Load())
	}
}

func TestGracefulStopReadsToCurrentEnd(t *testing.T) {
	logs := t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(100)
	cfg := testConfig(p)
	cfg.Watch = false
	cfg.PollInterval = time.Hour // nothing but the stop reads the new lines
	s := newSink()
	r := start(t, cfg, t.TempDir(), s.emit)
	s.waitLines(t, 100)
	w.write(400)
	r.stop(t)
	s.checkNumbers(t, 500)
}

func TestGlobAndExclude(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"a.log", "a.log.gz", "x/b.log", "x/y/c.log", "x/y/skip/d.log", "z.txt"} {
		mustWrite(t, filepath.Join(root, f), "")
	}
	var got []string
	glob(filepath.Join(root, "**", "*.log*"), func(p string) {
		if !excluded([]string{"*.gz", filepath.Join(root, "**", "skip", "*")}, p) {
			rel, _ := filepath.Rel(root, p)
			got = append(got, rel)
		}
	})
	want := "a.log x/b.log x/y/c.log"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if baseDir(filepath.Join(root, "x", "*", "*.log")) != filepath.Join(root, "x") {
		t.Fatalf("baseDir %q", baseDir(filepath.Join(root, "x", "*", "*.log")))
	}
	if checkPattern("/a/b**/c") == nil || checkPattern("/a/[x") == nil || checkPattern("/a/**/c") != nil {
		t.Fatal("checkPattern")
	}
}

// lineAsm is a test assembler: lines starting with a space continue the
// previous one; a group is flushed after 50ms without a line.
type lineAsm struct {
	cur  *event.Event
	buf  []byte
	last time.Time
}

func (a *lineAsm) Push(e *event.Event, out []*event.Event) []*event.Event {
	if a.cur != nil && len(e.Raw) > 0 && e.Raw[0] == ' ' {
		a.buf = append(a.buf, '\n')
		a.buf = append(a.buf, e.Raw...)
		a.cur.Join(e)
		a.last = time.Now()
		return out
	}
	out = a.Flush(out)
	a.cur, a.buf, a.last = e, append([]byte(nil), e.Raw...), time.Now()
	return out
}

func (a *lineAsm) Flush(out []*event.Event) []*event.Event {
	if a.cur == nil {
		return out
	}
	a.cur.Raw = a.buf
	out = append(out, a.cur)
	a.cur, a.buf = nil, nil
	return out
}

func (a *lineAsm) Deadline() (time.Time, bool) {
	if a.cur == nil {
		return time.Time{}, false
	}
	return a.last.Add(50 * time.Millisecond), true
}

func TestAssemblerDeadlineAndAcks(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	mustWrite(t, p, "one\n two\n three\nfour\n")
	tl, err := New(testConfig(p), input.Env{Name: "test", DataDir: data, NewAssembler: func() parser.Assembler { return &lineAsm{} }})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	s.keep = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, s.emit) }()
	// "four" is pending until the deadline passes: no line will come
	s.waitFor(t, waitAll, "2 events", func() bool { return s.total == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if string(s.events[0].Raw) != "one\n two\n three" || string(s.events[1].Raw) != "four" {
		t.Fatalf("got %q / %q", s.events[0].Raw, s.events[1].Raw)
	}
	doc, _, _ := loadCheckpoints(checkpointPath(data, "test"))
	if len(doc.Files) != 1 || doc.Files[0].Offset != 21 {
		t.Fatalf("checkpoint %+v, want offset 21", doc.Files)
	}
}

// A checkpoint entry for the inode that a new file now has, with another
// fingerprint: the inode was reused. The new file is read from its start
// under the next generation; a matching fingerprint resumes instead.
func TestInodeReuseAfterRestart(t *testing.T) {
	for _, same := range []bool{false, true} {
		logs, data := t.TempDir(), t.TempDir()
		p := filepath.Join(logs, "app.log")
		w := newWriter(t, p)
		w.write(50)
		w.close()
		st, _ := os.Stat(p)
		sys := st.Sys().(*syscall.Stat_t)
		content, _ := os.ReadFile(p)
		c := checkpoint{Dev: uint64(sys.Dev), Ino: sys.Ino, FP: 77, MatchFP: fingerprint([]byte("another file's first bytes")),
			MatchLen: 26, Gen: 3, Offset: 9 * 20, Path: p, Seen: time.Now().Unix()}
		if same {
			c.MatchFP, c.MatchLen = fingerprint(content[:40]), 40
		}
		if _, err := saveCheckpoints(checkpointPath(data, "test"), &checkpointDoc{Files: []checkpoint{c}}, nil); err != nil {
			t.Fatal(err)
		}
		s := newSink()
		s.keep = true
		r := start(t, testConfig(p), data, s.emit)
		want, gen, fp := 50, uint32(4), fingerprint(content[:len(content)])
		if same {
			want, gen, fp = 30, 3, 77
		}
		s.waitFor(t, waitAll, "lines", func() bool { return s.total == want })
		r.stop(t)
		if s.total != want || s.events[0].Pos.Generation != gen || s.events[0].Pos.FileID.Fingerprint != fp {
			t.Fatalf("same=%v: %d lines, first %s at %+v; want %d lines, generation %d", same, s.total, s.events[0].Raw, s.events[0].Pos, want, gen)
		}
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	c.Paths = []string{"relative/*.log", "/a/b**"}
	c.ReadFrom = "middle"
	c.MaxLine = 1
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, k := range []string{"paths[0]", "paths[1]", "read_from", "max_line_bytes"} {
		if !strings.Contains(err.Error(), k+":") {
			t.Errorf("error %q does not name %s", err, k)
		}
	}
	c = DefaultConfig()
	c.Paths = []string{"/var/log/*.log"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxLineBytes() != 1<<20 {
		t.Fatal("MaxLineBytes")
	}
}

// testdata/mixed.log: CRLF, empty lines, no final newline, read with
// exit_on_eof; testdata/mixed.expected holds one emitted line per line.
func TestGoldenMixed(t *testing.T) {
	src, err := os.ReadFile("testdata/mixed.log")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/mixed.expected")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "mixed.log")
	mustWrite(t, p, string(src))
	cfg := testConfig(p)
	cfg.ExitOnEOF = true
	tl, err := New(cfg, input.Env{Name: "test", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	s.keep = true
	if err := tl.Run(context.Background(), s.emit); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for _, e := range s.events {
		got.Write(e.Raw)
		got.WriteByte('\n')
	}
	if got.String() != string(want) {
		t.Fatalf("got\n%s\nwant\n%s", got.String(), want)
	}
}

// With polling effectively off, fsnotify alone finds a new file and its
// appended lines.
func TestFsnotifyWithoutPolling(t *testing.T) {
	logs := t.TempDir()
	cfg := testConfig(filepath.Join(logs, "*.log"))
	cfg.PollInterval = time.Hour
	s := newSink()
	r := start(t, cfg, t.TempDir(), s.emit)
	s.waitFor(t, waitAll, "first scan", func() bool { return r.t.Stats().Checkpoints >= 1 })
	w := newWriter(t, filepath.Join(logs, "new.log"))
	w.write(10)
	s.waitLines(t, 10)
	w.write(10)
	s.waitLines(t, 20)
	r.stop(t)
	s.checkNumbers(t, 20)
}

// When emit fails (the pipeline aborts), Run stops at once with the error.
func TestEmitErrorStops(t *testing.T) {
	logs := t.TempDir()
	w := newWriter(t, filepath.Join(logs, "a.log"))
	w.write(10)
	tl, err := New(testConfig(filepath.Join(logs, "*.log")), input.Env{Name: "test", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("aborting")
	done := make(chan error, 1)
	go func() {
		done <- tl.Run(context.Background(), func([]*event.Event) error { return boom })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("Run returned %v, want the emit error", err)
		}
	case <-time.After(waitAll):
		t.Fatal("Run did not stop after emit failed")
	}
}
