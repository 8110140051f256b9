package tail

import (
	"path/filepath"
	"testing"
	"time"
)

func TestReadsLinesAndFollows(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newWriter(t, p)
	w.write(100)
	s := newSink()
	r := start(t, testConfig(filepath.Join(dir, "*.log")), t.TempDir(), s.emit)
	s.waitFor(t, 10*time.Second, "first lines", func() bool { return len(s.counts) == 100 })
	w.write(900)
	s.waitFor(t, 10*time.Second, "more lines", func() bool { return len(s.counts) == 1000 })
	r.stop(t)
	s.checkNumbers(t, 1000)
}
