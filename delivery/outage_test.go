package delivery

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/event"
)

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// An output down for a long time with when_full: block: the disk buffer
// fills, the writer (the tailer) blocks, memory stays flat while the runner
// keeps retrying; when the output comes back every record is delivered, in
// and every writer ack is released.
func TestOutageBlockThenRecover(t *testing.T) {
	dir := t.TempDir()
	buf, err := buffer.Open(dir, buffer.Config{MaxBytes: 512 << 10, WhenFull: "block"}, buffer.WithSegmentSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	var got []int
	out := &fakeOut{noRecord: true, answer: func(call int, batch [][]byte) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		mu.Lock()
		for _, b := range batch {
			var id int
			fmt.Sscanf(string(b), `{"id":%d`, &id)
			got = append(got, id)
		}
		mu.Unlock()
		return nil
	}}
	r := &Runner{Name: "es", Out: out, Buf: buf, Batch: BatchConfig{MaxEvents: 500, Timeout: 10 * time.Millisecond},
		Retry: RetryConfig{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}, MaxInFlight: 2}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error)
	go func() { runDone <- r.Run(ctx) }()

	const n = 20000
	var written, acked atomic.Int64
	writeDone := make(chan error)
	go func() {
		for i := 0; i < n; i += 100 {
			recs := make([]buffer.Record, 100)
			for j := range recs {
				var e event.Event
				e.SetAck(event.NewAck(1, func() { acked.Add(1) }))
				recs[j] = buffer.Record{Data: fmt.Appendf(nil, `{"id":%d,"msg":"%0180d"}`, i+j, 0), Ack: e.Releaser()}
			}
			if err := buf.Write(ctx, recs); err != nil {
				writeDone <- err
				return
			}
			written.Add(100)
		}
		writeDone <- nil
	}()
	// The writer stalls once the buffer is full.
	deadline := time.Now().Add(10 * time.Second)
	for {
		w := written.Load()
		time.Sleep(100 * time.Millisecond)
		if written.Load() == w && w > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never blocked")
		}
	}
	stalledAt := written.Load()
	if stalledAt >= n {
		t.Fatalf("all %d records written although the output is down", n)
	}
	heap1 := heapAfterGC()
	calls1 := out.ncalls()
	// The output stays down while the runner retries many times.
	for out.ncalls() < calls1+50 {
		time.Sleep(10 * time.Millisecond)
	}
	heap2 := heapAfterGC()
	if written.Load() != stalledAt {
		t.Fatalf("the writer went on while the buffer was full: %d then %d", stalledAt, written.Load())
	}
	t.Logf("writer blocked after %d of %d records; heap %d KiB then %d KiB after %d more failed writes; buffer %+v",
		stalledAt, n, heap1>>10, heap2>>10, out.ncalls()-calls1, buf.Stats())
	if heap2 > heap1+2<<20 {
		t.Fatalf("memory grew while the output was down: %d → %d bytes", heap1, heap2)
	}
	// The output comes back.
	down.Store(false)
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	buf.Seal()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	// Two batches in flight: batches may complete out of order; each record
	// arrives exactly once.
	seen := make([]int, n)
	for _, id := range got {
		seen[id]++
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("record %d delivered %d times (%d deliveries in all)", id, c, len(got))
		}
	}
	// Writer acks follow the fsyncs, asynchronously.
	for deadline := time.Now().Add(10 * time.Second); acked.Load() != n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if acked.Load() != n {
		t.Fatalf("%d writer acks released of %d", acked.Load(), n)
	}
}
