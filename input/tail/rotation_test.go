package tail

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The rotation matrix: one test per case. The test goroutine is the writer:
// it appends numbered lines and rotates while the tailer runs; at the end
// every number must have arrived exactly once.

const waitAll = 20 * time.Second

// waitOpened waits until the tailer has opened n files: a file renamed out
// of the globs (or deleted) before any scan saw it cannot be followed by
// anyone, so the writer lets the tailer see each new file first. It does not
// wait for the lines to be read.
func (r *running) waitOpened(t *testing.T, s *sink, n uint64) {
	t.Helper()
	s.waitFor(t, waitAll, "file opened", func() bool { return r.t.Stats().FilesOpened >= n })
}

func (s *sink) waitLines(t *testing.T, n int) {
	t.Helper()
	defer func() {
		if t.Failed() {
			s.mu.Lock()
			var miss []int
			for i := 1; i <= n && len(miss) < 10; i++ {
				if s.counts[numLine(i)] == 0 {
					miss = append(miss, i)
				}
			}
			s.mu.Unlock()
			t.Logf("first missing: %v", miss)
		}
	}()
	s.waitFor(t, waitAll, strconv.Itoa(n)+" lines", func() bool { return len(s.counts) >= n })
}

func TestRotationRenameCreate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newWriter(t, p)
	s := newSink()
	r := start(t, testConfig(p), t.TempDir(), s.emit)
	for round := 0; round < 10; round++ {
		for i := 0; i < 10; i++ {
			w.write(50)
		}
		r.waitOpened(t, s, uint64(round+1))
		// logrotate's create: rename, then the application writes a few
		// more lines to its old descriptor before it reopens its log
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
		w.write(20)
		w.reopen()
	}
	w.write(500)
	s.waitLines(t, w.n)
	r.stop(t)
	s.checkNumbers(t, w.n)
	if st := r.t.Stats(); st.Rotations < 5 {
		t.Errorf("rotations = %d, want most of the 10 renames noticed", st.Rotations)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
}

func TestRotationCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newWriter(t, p)
	s := newSink()
	r := start(t, testConfig(p), t.TempDir(), s.emit)
	for round := 0; round < 10; round++ {
		for i := 0; i < 10; i++ {
			w.write(50)
		}
		// the writer pauses from the copy to the truncation: lines
		// written in that window, or not read before the truncation,
		// exist only in the copy (which the glob does not match)
		copyFile(t, p, p+".1")
		s.waitLines(t, w.n)
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
		w.write(5) // O_APPEND: lands at the new start
	}
	w.write(500)
	s.waitLines(t, w.n)
	r.stop(t)
	s.checkNumbers(t, w.n)
	if st := r.t.Stats(); st.Truncations != 10 {
		t.Errorf("truncations = %d, want 10", st.Truncations)
	}
}

func TestRotationDeleteRecreate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newWriter(t, p)
	s := newSink()
	r := start(t, testConfig(p), t.TempDir(), s.emit)
	for round := 0; round < 10; round++ {
		for i := 0; i < 10; i++ {
			w.write(50)
		}
		r.waitOpened(t, s, uint64(round+1))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		w.reopen() // creates the file again
	}
	w.write(500)
	s.waitLines(t, w.n)
	r.stop(t)
	s.checkNumbers(t, w.n)
}

// Truncation in place, then the file grows past the old offset before the
// next scan (no fsnotify, slow polling): the changed first bytes tell.
func TestRotationTruncateInPlace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newWriter(t, p)
	s := newSink()
	cfg := testConfig(p)
	cfg.Watch = false
	cfg.PollInterval = 200 * time.Millisecond
	r := start(t, cfg, t.TempDir(), s.emit)
	for round := 0; round < 5; round++ {
		w.write(300)
		s.waitLines(t, w.n) // the writer pauses until the truncation
		if err := w.f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		w.write(400) // more bytes than before, at once
	}
	w.write(100)
	s.waitLines(t, w.n)
	r.stop(t)
	s.checkNumbers(t, w.n)
	if st := r.t.Stats(); st.Truncations != 5 {
		t.Errorf("truncations = %d, want 5", st.Truncations)
	}
}

// Ten rename+create rotations between two scans (fsnotify off): the glob
// matches the rotated names, so every rotated file is found by its inode.
func TestRotationTenWithinOnePoll(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newWriter(t, p)
	w.write(100)
	s := newSink()
	cfg := testConfig(p + "*")
	cfg.Watch = false
	cfg.PollInterval = 2 * time.Second
	r := start(t, cfg, t.TempDir(), s.emit)
	s.waitLines(t, w.n)
	began := time.Now()
	for i := 1; i <= 10; i++ {
		w.write(50)
		if err := os.Rename(p, p+"."+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		w.reopen()
	}
	if el := time.Since(began); el >= cfg.PollInterval {
		t.Fatalf("the 10 rotations took %v, not within one poll interval (%v)", el, cfg.PollInterval)
	}
	w.write(100)
	s.waitLines(t, w.n)
	r.stop(t)
	s.checkNumbers(t, w.n)
}

func inode(t *testing.T, p string) uint64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// Delete, wait until the tailer closed the file (its inode is free), create
// a new file at the same path: the file system often hands out the same
// inode, which the fingerprint tells apart.
func TestRotationInodeReuse(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newWriter(t, p)
	s := newSink()
	s.keep = true
	r := start(t, testConfig(p), t.TempDir(), s.emit)
	reused := 0
	for round := 0; round < 8; round++ {
		w.write(300)
		s.waitLines(t, w.n)
		old := inode(t, p)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		w.f.Close()
		w.f = nil
		s.waitFor(t, waitAll, "the deleted file closed", func() bool { return r.t.Stats().OpenFiles == 0 })
		w.reopen()
		if inode(t, p) == old {
			reused++
		}
	}
	w.write(300)
	s.waitLines(t, w.n)
	r.stop(t)
	s.checkNumbers(t, w.n)
	// (identity, generation, offset) names one line: never twice
	seen := map[string]bool{}
	for _, e := range s.events {
		k := strconv.FormatUint(e.Pos.FileID.Ino, 10) + "/" + strconv.FormatUint(e.Pos.FileID.Fingerprint, 10) + "/" + strconv.Itoa(int(e.Pos.Generation)) + "/" + strconv.FormatInt(e.Pos.Offset, 10)
		if seen[k] {
			t.Fatalf("position %s named two lines", k)
		}
		seen[k] = true
	}
	t.Logf("inode reused in %d of 8 recreations", reused)
}

func TestRotationSymlinkRetargeted(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "containers", "app.log")
	target := func(i int) string { return filepath.Join(dir, "pods", "app", strconv.Itoa(i)+".log") }
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(target(0)), 0o755); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, target(0))
	if err := os.Symlink(target(0), link); err != nil {
		t.Fatal(err)
	}
	s := newSink()
	s.keep = true
	r := start(t, testConfig(filepath.Join(dir, "containers", "*.log")), t.TempDir(), s.emit)
	for round := 1; round <= 6; round++ {
		for i := 0; i < 6; i++ {
			w.write(50)
		}
		r.waitOpened(t, s, uint64(round))
		// a container restart: the new log file, then the link moved to it
		w.path = target(round)
		w.reopen()
		tmp := link + ".tmp"
		if err := os.Symlink(target(round), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, link); err != nil {
			t.Fatal(err)
		}
	}
	w.write(300)
	s.waitLines(t, w.n)
	r.stop(t)
	s.checkNumbers(t, w.n)
	for _, e := range s.events {
		if e.Path != link {
			t.Fatalf("event path %q, want the link %q", e.Path, link)
		}
	}
}
