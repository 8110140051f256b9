package tail

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/input"
)

// TestRunToEOFCancelLeavesNoGoroutine: exit_on_eof, cancelled while the
// acknowledgements are held: Run returns after drain_timeout and leaves no
// goroutine of the Tailer behind (one used to wait for the acks forever).
// The check is the goroutines' stacks once Run has returned, while the
// acks are still held: a leaked waiter is blocked then, not timing out.
func TestRunToEOFCancelLeavesNoGoroutine(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := filepath.Join(dir, "a.log")
	mustWrite(t, p, numLine(1)+"\n"+numLine(2)+"\n")
	cfg := testConfig(p)
	cfg.DrainTimeout = time.Millisecond
	tl, err := New(cfg, input.Env{Name: "test", DataDir: data, ExitOnEOF: true})
	if err != nil {
		t.Fatal(err)
	}
	h := newHolder()
	defer h.releaseAll()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, h.emit) }()
	h.waitLines(t, 2)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the cancel")
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "tail.(*Tailer)") {
			t.Fatalf("a goroutine of the Tailer outlived Run:\n%s", g)
		}
	}
}
