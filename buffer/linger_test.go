package buffer

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the arrival times that Limits.Linger
// counts from.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// clocked opens each buffer kind with clk as its clock.
func clocked() []struct {
	name string
	open func(t *testing.T, clk *fakeClock) Buffer
} {
	return []struct {
		name string
		open func(t *testing.T, clk *fakeClock) Buffer
	}{
		{"memory", func(t *testing.T, clk *fakeClock) Buffer {
			m := NewMemory(0, "")
			m.now = clk.Now
			return m
		}},
		{"disk", func(t *testing.T, clk *fakeClock) Buffer {
			d, err := Open(t.TempDir(), Config{}, func(o *options) { o.now = clk.Now })
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		}},
	}
}

// readNow reads one batch that must come without waiting for a timeout or
// a linger of an hour: a Read that waits fails the test at its guard.
func readNow(t *testing.T, b Buffer, l Limits) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bt, err := b.Read(ctx, l)
	if err != nil || ctx.Err() != nil {
		// (A memory buffer returns what it has when ctx ends its wait.)
		t.Fatalf("Read waited for a fuller batch until the guard's deadline (%v): it should have returned at once", err)
	}
	var out []string
	for _, r := range bt.Records {
		out = append(out, string(r))
	}
	if err := b.Ack(bt); err != nil {
		t.Fatal(err)
	}
	return out
}

// The batching rules of Read (natural batching, issue 22), decided by
// counts and by the buffer's clock, never by the test's timing.
func TestReadBatchingRules(t *testing.T) {
	ctx := context.Background()
	for _, k := range clocked() {
		t.Run(k.name, func(t *testing.T) {
			t.Run("min_events waiting are taken at once", func(t *testing.T) {
				clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
				b := k.open(t, clk)
				a := newAcks()
				if err := b.Write(ctx, []Record{a.rec("a"), a.rec("b"), a.rec("c")}); err != nil {
					t.Fatal(err)
				}
				got := readNow(t, b, Limits{MaxEvents: 1000, MinEvents: 3, Timeout: time.Hour, Linger: time.Hour})
				if len(got) != 3 {
					t.Fatalf("got %q, want the 3 records", got)
				}
			})
			t.Run("below min_events the batch waits for more", func(t *testing.T) {
				clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
				b := k.open(t, clk)
				a := newAcks()
				if err := b.Write(ctx, []Record{a.rec("a"), a.rec("b")}); err != nil {
					t.Fatal(err)
				}
				done := make(chan []string)
				go func() {
					done <- readNow(t, b, Limits{MaxEvents: 1000, MinEvents: 3, Timeout: time.Hour, Linger: time.Hour})
				}()
				if err := b.Write(ctx, []Record{a.rec("c"), a.rec("d")}); err != nil {
					t.Fatal(err)
				}
				// Two records never make a batch: the Read returns once
				// the second Write brought the count to min_events.
				if got := <-done; len(got) != 4 {
					t.Fatalf("got %q, want the 4 records", got)
				}
			})
			t.Run("linger counts from the oldest record's arrival", func(t *testing.T) {
				clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
				b := k.open(t, clk)
				a := newAcks()
				if err := b.Write(ctx, []Record{a.rec("old")}); err != nil {
					t.Fatal(err)
				}
				clk.Add(time.Hour)
				if err := b.Write(ctx, []Record{a.rec("new")}); err != nil {
					t.Fatal(err)
				}
				// The first record has waited its linger (while no slot
				// was free): both go at once, the newer one too. (A
				// linger counted from the call would wait an hour.)
				got := readNow(t, b, Limits{MaxEvents: 1000, Timeout: 2 * time.Hour, Linger: time.Hour})
				if len(got) != 2 || got[0] != "old" || got[1] != "new" {
					t.Fatalf("got %q, want [old new]", got)
				}
			})
			t.Run("timeout bounds a longer linger", func(t *testing.T) {
				clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
				b := k.open(t, clk)
				a := newAcks()
				if err := b.Write(ctx, []Record{a.rec("x")}); err != nil {
					t.Fatal(err)
				}
				clk.Add(time.Hour)
				got := readNow(t, b, Limits{MaxEvents: 1000, Timeout: time.Hour, Linger: 2 * time.Hour})
				if len(got) != 1 {
					t.Fatalf("got %q", got)
				}
			})
			t.Run("records left behind keep their arrival time", func(t *testing.T) {
				clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
				b := k.open(t, clk)
				a := newAcks()
				if err := b.Write(ctx, []Record{a.rec("1"), a.rec("2"), a.rec("3")}); err != nil {
					t.Fatal(err)
				}
				clk.Add(time.Hour)
				l := Limits{MaxEvents: 2, Timeout: 2 * time.Hour, Linger: time.Hour}
				if got := readNow(t, b, l); len(got) != 2 {
					t.Fatalf("first batch %q", got)
				}
				// "3" arrived an hour ago: it goes at once, not after
				// another linger.
				if got := readNow(t, b, l); len(got) != 1 || got[0] != "3" {
					t.Fatalf("second batch %q", got)
				}
			})
		})
	}
	t.Run("disk: records recovered at start-up count as long waiting", func(t *testing.T) {
		dir := t.TempDir()
		clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		d, err := Open(dir, Config{}, func(o *options) { o.now = clk.Now })
		if err != nil {
			t.Fatal(err)
		}
		a := newAcks()
		if err := d.Write(ctx, []Record{a.rec("kept")}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the record durable", func() bool { return a.n.Load() == 1 })
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		// Same clock, no time passed: only the recovery makes it old.
		d, err = Open(dir, Config{}, func(o *options) { o.now = clk.Now })
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if got := readNow(t, d, Limits{MaxEvents: 1000, Timeout: time.Hour, Linger: time.Hour}); len(got) != 1 || got[0] != "kept" {
			t.Fatalf("got %q", got)
		}
	})
}

func TestArrivals(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var a arrivals
	if !a.at(0).IsZero() {
		t.Fatal("empty: want the zero time")
	}
	a.add(5, 8, t0)
	a.add(8, 9, t0)                      // same time: merged
	a.add(9, 12, t0.Add(time.Second))    // next
	a.add(12, 12, t0.Add(2*time.Second)) // empty: ignored
	if len(a.s) != 2 {
		t.Fatalf("entries %+v", a.s)
	}
	for _, c := range []struct {
		seq  uint64
		want time.Time
	}{{3, time.Time{}}, {5, t0}, {8, t0}, {9, t0.Add(time.Second)}, {11, t0.Add(time.Second)}, {12, time.Time{}}} {
		if got := a.at(c.seq); !got.Equal(c.want) {
			t.Fatalf("at(%d) = %v, want %v", c.seq, got, c.want)
		}
	}
	l := Limits{Timeout: time.Second, Linger: 20 * time.Millisecond}
	if r := l.remaining(t0, t0.Add(5*time.Millisecond)); r != 15*time.Millisecond {
		t.Fatalf("remaining %v", r)
	}
	if r := l.remaining(time.Time{}, t0); r > 0 {
		t.Fatalf("unknown arrival: remaining %v, want none", r)
	}
	if w := (Limits{Timeout: time.Second, Linger: time.Hour}).maxWait(); w != time.Second {
		t.Fatalf("timeout is the bound: %v", w)
	}
	if w := (Limits{Timeout: time.Second}).maxWait(); w != time.Second {
		t.Fatalf("no linger: %v", w)
	}
}
