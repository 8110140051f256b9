package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output"
)

// runBound is how long a test lets Run take to return after its context is
// cancelled with shutdown_timeout: 200ms: generous (Run's own bound is the
// timeout plus abortGrace), so that a loaded machine cannot fail the test;
// a Run that hangs fails it.
const runBound = 20 * time.Second

func runAndCancel(t *testing.T, p *Pipeline, ready <-chan struct{}) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-ready
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(runBound):
		t.Fatal("Run did not return after the shutdown timeout")
		return nil
	}
}

// stuckBuffer is a memory buffer whose Write, once armed, blocks until its
// ctx is done: a worker blocked on a full buffer, deterministically.
type stuckBuffer struct {
	buffer.Buffer
	entered chan struct{}
	once    sync.Once
}

func (b *stuckBuffer) Write(ctx context.Context, recs []buffer.Record) error {
	b.once.Do(func() { close(b.entered) })
	<-ctx.Done()
	return ctx.Err()
}

// deafOutput blocks every Write until release is closed, whatever ctx says
// (a write(2) to a pipe nobody reads).
type deafOutput struct {
	capture
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func (o *deafOutput) Write(ctx context.Context, batch [][]byte) error {
	o.once.Do(func() { close(o.entered) })
	<-o.release
	return nil
}

// Shutdown with a stuck output is bounded whatever the pipeline is doing
// when it starts: an input waiting for acknowledgements that the stuck
// output holds, a worker blocked in the buffer's Write, an output that
// ignores cancellation. Each stuck point is reached before the cancel, by
// a signal.
func TestShutdownBoundedWithStuckOutput(t *testing.T) {
	const cfg = `
shutdown_timeout: 200ms
inputs:
  - {name: gen, type: gen, count: %d, batch: 10}
outputs:
  - {name: stuck, type: capture, buffer: {max_bytes: 4KiB}, batch: {max_events: 10, timeout: 1ms}}
`
	t.Run("input waits for acks", func(t *testing.T) {
		h := newHarness()
		h.blockOut["stuck"] = make(chan struct{})
		h.waiting = make(chan struct{})
		p := h.build(t, strings.Replace(cfg, "%d", "30", 1))
		if err := runAndCancel(t, p, h.waiting); err != nil {
			t.Fatal(err)
		}
		if _, ok := h.acked.Load(int64(0)); ok {
			t.Fatal("a batch held by the stuck output was acknowledged")
		}
	})
	t.Run("worker blocked in buffer write", func(t *testing.T) {
		h := newHarness()
		sb := &stuckBuffer{Buffer: buffer.NewMemory(4096, "block"), entered: make(chan struct{})}
		h.opts.NewBuffer = func(*config.Output, string) (buffer.Buffer, error) { return sb, nil }
		p := h.build(t, strings.Replace(cfg, "%d", "100000", 1))
		if err := runAndCancel(t, p, sb.entered); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("output ignores cancellation", func(t *testing.T) {
		h := newHarness()
		o := &deafOutput{entered: make(chan struct{}), release: make(chan struct{})}
		t.Cleanup(func() { close(o.release) })
		h.newOutput = func(string) output.Output { return o }
		p := h.build(t, strings.Replace(cfg, "%d", "100000", 1))
		err := runAndCancel(t, p, o.entered)
		if err == nil || !strings.Contains(err.Error(), "output stuck: did not stop") {
			t.Fatalf("Run returned %v, want the stuck output named", err)
		}
	})
}

// pickyOutput cannot encode lines that are not JSON objects.
type pickyOutput struct{ capture }

func (o *pickyOutput) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e.Has(event.ParseFailed) {
		return dst, errors.New("not an object")
	}
	return o.capture.Encode(dst, e)
}

// failingDL fails its first `fail` writes (all when fail < 0).
type failingDL struct {
	mu       sync.Mutex
	fail     int
	attempts int
	recs     []string
	reasons  []string
	tried    chan struct{} // signalled after each failed attempt
}

func (d *failingDL) Write(_ string, recs [][]byte, reasons []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attempts++
	if d.fail < 0 || d.attempts <= d.fail {
		select {
		case d.tried <- struct{}{}:
		default:
		}
		return errors.New("disk full")
	}
	for i, r := range recs {
		d.recs = append(d.recs, string(r))
		d.reasons = append(d.reasons, reasons[i])
	}
	return nil
}

// A record that the output cannot encode is acknowledged only once its
// dead letter is written: a failing dead-letter write is retried, and a
// shutdown that aborts first leaves it unacknowledged (read again at the
// next start), never released as if it were kept.
func TestUnencodableRecordWaitsForItsDeadLetter(t *testing.T) {
	const cfg = `
shutdown_timeout: 200ms
inputs:
  - {name: gen, type: gen, batch: 1, lines: ['{"n":0}', 'not json', '{"n":2}']}
outputs:
  - {name: picky, type: capture}
`
	setup := func(dl *failingDL) (*harness, *Pipeline, *pickyOutput) {
		h := newHarness()
		o := &pickyOutput{}
		h.newOutput = func(string) output.Output { return o }
		h.opts.DeadLetter = func(*config.Output) delivery.DeadLetter { return dl }
		return h, h.build(t, cfg), o
	}
	t.Run("retried until written", func(t *testing.T) {
		dl := &failingDL{fail: 2, tried: make(chan struct{}, 1)}
		h, p, o := setup(dl)
		// gen returns once every batch is acknowledged.
		if err := p.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if dl.attempts != 3 || len(dl.recs) != 1 || !strings.Contains(dl.recs[0], "not json") || !strings.HasPrefix(dl.reasons[0], "encode: ") {
			t.Fatalf("dead letter: %d attempts, records %q, reasons %q; want 3 attempts and the record", dl.attempts, dl.recs, dl.reasons)
		}
		if got := o.records(); len(got) != 2 {
			t.Fatalf("delivered %q", got)
		}
		for n := range int64(3) {
			if _, ok := h.acked.Load(n); !ok {
				t.Fatalf("batch %d not acknowledged", n)
			}
		}
	})
	t.Run("never written", func(t *testing.T) {
		dl := &failingDL{fail: -1, tried: make(chan struct{}, 1)}
		h, p, _ := setup(dl)
		tried := make(chan struct{})
		go func() {
			<-dl.tried
			<-dl.tried // retried at least once: the worker waits for it
			close(tried)
		}()
		if err := runAndCancel(t, p, tried); err != nil {
			t.Fatal(err)
		}
		if _, ok := h.acked.Load(int64(1)); ok {
			t.Fatal("the record whose dead letter was never written was acknowledged")
		}
	})
}
