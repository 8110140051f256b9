package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// A full disk pauses the writers (never an error or a crash), is reported in
// Stats, and writing resumes once there is room: freed by someone else, or
// by the buffer's own acknowledged segments.
func TestNoSpace(t *testing.T) {
	for _, how := range []string{"freed by the operator", "freed by acknowledgements"} {
		t.Run(how, func(t *testing.T) {
			fsys := newMemFS()
			fsys.setCapacity(24 << 10)
			d, err := Open("/data/buffer/out", Config{MaxBytes: 1 << 20}, WithFS(fsys), WithSegmentSize(4<<10), WithMemoryCache(1<<10), WithLogger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			a := newAcks()
			ctx := context.Background()
			written := 0
			for {
				wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				// one record per call: a Write cut short by its context
				// may have taken part of a batch
				recs := []Record{a.rec(fmt.Sprintf("%06d %0100d", written, 0))}
				err := d.Write(wctx, recs)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				written++
				if written > 100000 {
					t.Fatal("writes never paused on a full disk")
				}
			}
			waitFor(t, "stalled", func() bool { s := d.Stats(); return s.Stalled && s.NoSpace > 0 })
			if acked := a.n.Load(); acked >= int64(written) {
				t.Fatalf("all %d records acknowledged although the disk is full", acked)
			}
			// Room comes back.
			if how == "freed by the operator" {
				fsys.setCapacity(0)
			}
			var got []string
			for len(got) < written {
				b, err := d.Read(ctx, Limits{MaxEvents: 50})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range b.Records {
					got = append(got, string(r))
				}
				d.Ack(b)
			}
			for i, g := range got {
				if g[:6] != fmt.Sprintf("%06d", i) {
					t.Fatalf("record %d = %.10q", i, g)
				}
			}
			waitFor(t, "every ack released", func() bool { return a.n.Load() == int64(written) })
			if s := d.Stats(); s.Stalled {
				t.Fatalf("still stalled: %+v", s)
			}
			// And writing works again.
			if err := d.Write(ctx, []Record{a.rec("after")}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "ack after recovery", func() bool { return a.n.Load() == int64(written)+1 })
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}
