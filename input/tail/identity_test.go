package tail

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Issue 14: rotate_wait counts from when the renamed file's end was read,
// not from when the rename was noticed. The reader is held back (a blocked
// output) for longer than rotate_wait after the rename; once it reaches the
// end, a line the writer still appends to the renamed file is read (before:
// the file was closed at its first end, the line lost).
func TestRotateWaitCountsFromTheEnd(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(20000)
	cfg := testConfig(p)
	cfg.ReadBufferBytes = 4 << 10
	cfg.RotateWait = 3 * time.Second
	bs := newBlockingSink()
	r := start(t, cfg, data, bs.emit)
	<-bs.entered // the reader is blocked far from the end
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st := r.t.Stats(); len(st.Files) == 1 && st.Files[0].Rotated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rename was not noticed")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	time.Sleep(cfg.RotateWait + 500*time.Millisecond) // the scenario: blocked past rotate_wait
	close(bs.release)
	bs.waitFor(t, 20*time.Second, "every line", func() bool { return bs.total == 20000 })
	// a few scans later the reader has found the end (each scan queues the
	// renamed file): it must still hold the file open for rotate_wait
	scans := r.t.Stats().Scans
	bs.waitFor(t, 10*time.Second, "3 scans", func() bool { return r.t.Stats().Scans >= scans+3 })
	if st := r.t.Stats(); st.OpenFiles != 1 {
		t.Fatalf("the renamed file was closed at its end, rotate_wait after the rename (%d open)", st.OpenFiles)
	}
	w.write(1) // the writer has not reopened its log yet
	w.close()
	bs.waitFor(t, 10*time.Second, "the line appended after the end was read", func() bool { return bs.total == 20001 })
	bs.checkNumbers(t, 20001)
}

// Issue 14: a known file whose device number changed (a remount) is
// resumed at its checkpoint by its fingerprint, not read again from its
// start; the checkpoint keeps one entry, under the new device.
func TestDeviceChangeResumesByFingerprint(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	w.write(100)
	s := newSink()
	r := start(t, testConfig(p), data, s.emit)
	s.waitFor(t, 10*time.Second, "100 lines", func() bool { return s.total == 100 })
	r.stop(t)
	// the same file, as if its volume came back with another device number
	ckpt := checkpointPath(data, "test")
	doc, _, err := loadCheckpoints(ckpt)
	if err != nil || len(doc.Files) != 1 || doc.Files[0].Offset != 900 {
		t.Fatalf("checkpoint %+v %v", doc.Files, err)
	}
	dev := doc.Files[0].Dev
	doc.Files[0].Dev = dev + 1000
	b, _ := json.Marshal(doc)
	if err := os.WriteFile(ckpt, b, 0o600); err != nil {
		t.Fatal(err)
	}
	w.write(10)
	s2 := newSink()
	r2 := start(t, testConfig(p), data, s2.emit)
	s2.waitFor(t, 10*time.Second, "the 10 new lines", func() bool { return s2.total >= 10 })
	r2.stop(t)
	if s2.total != 10 || s2.counts[numLine(101)] != 1 || s2.counts[numLine(110)] != 1 {
		t.Fatalf("%d lines after the device change (want the 10 new ones)", s2.total)
	}
	doc, _, _ = loadCheckpoints(ckpt)
	if len(doc.Files) != 1 || doc.Files[0].Dev != dev || doc.Files[0].Offset != 990 {
		t.Fatalf("checkpoint after %+v", doc.Files)
	}
}
