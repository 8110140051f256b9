package tail

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
)

// sink records every emitted line and releases the events.
type sink struct {
	mu     sync.Mutex
	counts map[string]int
	total  int
	events []event.Event // copies (Raw copied) when keep is set
	keep   bool
	notify chan struct{}
}

func newSink() *sink {
	return &sink{counts: map[string]int{}, notify: make(chan struct{}, 1)}
}

func (s *sink) emit(batch []*event.Event) error {
	s.mu.Lock()
	for _, e := range batch {
		s.counts[string(e.Raw)]++
		s.total++
		if s.keep {
			c := *e
			c.Raw = append([]byte(nil), e.Raw...)
			s.events = append(s.events, c)
		}
	}
	s.mu.Unlock()
	for _, e := range batch {
		e.Done()
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// waitFor waits until cond holds (checked after every emit), at most d.
func (s *sink) waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond) // conditions on other state
	defer tick.Stop()
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.notify:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timeout waiting for %s", what)
		}
	}
}

func (s *sink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}

// checkNumbers asserts that lines 1..n each arrived exactly once and
// nothing else arrived.
func (s *sink) checkNumbers(t *testing.T, n int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	missing, dups := 0, 0
	for i := 1; i <= n; i++ {
		c := s.counts[numLine(i)]
		if c == 0 {
			missing++
			if missing < 5 {
				t.Errorf("line %d missing", i)
			}
		}
		if c > 1 {
			dups++
			if dups < 5 {
				t.Errorf("line %d arrived %d times", i, c)
			}
		}
	}
	if len(s.counts) != n {
		for k := range s.counts {
			if v, err := strconv.Atoi(k); err != nil || v < 1 || v > n {
				t.Errorf("unexpected line %q", k)
				break
			}
		}
	}
	if missing > 0 || dups > 0 {
		t.Fatalf("%d of %d lines missing, %d duplicated (%d events)", missing, n, dups, s.total)
	}
	if s.total != n {
		t.Fatalf("%d events for %d lines", s.total, n)
	}
}

func numLine(i int) string { return fmt.Sprintf("%08d", i) }

// testConfig is a fast-polling config over paths.
func testConfig(paths ...string) *Config {
	c := DefaultConfig()
	c.Paths = paths
	c.PollInterval = 20 * time.Millisecond
	c.RotateWait = 100 * time.Millisecond
	c.CheckpointInterval = 50 * time.Millisecond
	return c
}

// running is a tailer running in the background.
type running struct {
	t      *Tailer
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg *Config, dataDir string, emit input.Emit) *running {
	t.Helper()
	return startWith(t, cfg, dataDir, emit, nil)
}

// startWith is start with a hook that adjusts the tailer before it runs.
func startWith(t *testing.T, cfg *Config, dataDir string, emit input.Emit, adjust func(*Tailer)) *running {
	t.Helper()
	var log *slog.Logger
	if os.Getenv("TAIL_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tl, err := New(cfg, input.Env{Name: "test", DataDir: dataDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(tl)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: tl, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- tl.Run(ctx, emit) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// writer appends numbered lines to a file.
type writer struct {
	t    *testing.T
	path string
	f    *os.File
	n    int // last number written
}

func newWriter(t *testing.T, path string) *writer {
	w := &writer{t: t, path: path}
	w.reopen()
	return w
}

func (w *writer) reopen() {
	if w.f != nil {
		w.f.Close()
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func (w *writer) write(k int) {
	buf := make([]byte, 0, 9*k)
	for i := 0; i < k; i++ {
		w.n++
		buf = append(buf, numLine(w.n)...)
		buf = append(buf, '\n')
	}
	if _, err := w.f.Write(buf); err != nil {
		w.t.Fatal(err)
	}
}

func (w *writer) close() { w.f.Close() }

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}
