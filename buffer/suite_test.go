package buffer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

// acks counts released acknowledgements, by record.
type acks struct {
	mu       sync.Mutex
	released map[string]int
	n        atomic.Int64
}

func newAcks() *acks { return &acks{released: map[string]int{}} }

// rec returns a record whose Ack, when released, is counted under data.
func (a *acks) rec(data string) Record {
	var e event.Event
	e.SetAck(event.NewAck(1, func() {
		a.mu.Lock()
		a.released[data]++
		a.mu.Unlock()
		a.n.Add(1)
	}))
	return Record{Data: []byte(data), Ack: e.Releaser()}
}

func (a *acks) count(data string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.released[data]
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type factory func(t *testing.T, cfg Config) Buffer

// recSize is what one record of n bytes counts against max_bytes.
type impl struct {
	name     string
	open     factory
	overhead int // per record, counted against max_bytes
}

func impls() []impl {
	return []impl{
		{"memory", func(t *testing.T, cfg Config) Buffer {
			return NewMemory(int64(cfg.MaxBytes), cfg.WhenFull)
		}, 0},
		{"disk", func(t *testing.T, cfg Config) Buffer {
			d, err := Open(t.TempDir(), cfg, WithSegmentSize(4096), WithMemoryCache(2048))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		}, frameHeader},
		{"disk-zstd", func(t *testing.T, cfg Config) Buffer {
			cfg.Compression = "zstd"
			d, err := Open(t.TempDir(), cfg, WithSegmentSize(4096), WithMemoryCache(2048))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		}, -1},
	}
}

func readAllRecords(t *testing.T, b Buffer, l Limits, n int) []string {
	t.Helper()
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(out) < n {
		bt, err := b.Read(ctx, l)
		if err != nil {
			t.Fatalf("read after %d records: %v", len(out), err)
		}
		for _, r := range bt.Records {
			out = append(out, string(r))
		}
		if err := b.Ack(bt); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestSuite(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) { runSuite(t, im) })
	}
}

func runSuite(t *testing.T, im impl) {
	ctx := context.Background()
	t.Run("order", func(t *testing.T) {
		b := im.open(t, Config{})
		a := newAcks()
		want := make([]string, 0, 3000)
		for w := range 30 {
			recs := make([]Record, 100)
			for i := range recs {
				s := fmt.Sprintf(`{"w":%d,"i":%d,"pad":"%0100d"}`, w, i, i)
				want = append(want, s)
				recs[i] = a.rec(s)
			}
			if err := b.Write(ctx, recs); err != nil {
				t.Fatal(err)
			}
		}
		got := readAllRecords(t, b, Limits{MaxEvents: 77}, len(want))
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("record %d: got %q, want %q", i, got[i], want[i])
			}
		}
		waitFor(t, "all acks released", func() bool { return a.n.Load() == int64(len(want)) })
		if s := b.Stats(); s.Records != 0 || s.Bytes != 0 {
			t.Fatalf("stats after everything acked: %+v", s)
		}
	})

	t.Run("batch limits", func(t *testing.T) {
		b := im.open(t, Config{})
		a := newAcks()
		var recs []Record
		for i := range 100 {
			recs = append(recs, a.rec(fmt.Sprintf("%09d", i))) // 9 bytes each
		}
		if err := b.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		bt, err := b.Read(ctx, Limits{MaxEvents: 7})
		if err != nil || len(bt.Records) != 7 {
			t.Fatalf("max_events 7: %d records, %v", len(bt.Records), err)
		}
		b.Ack(bt)
		bt, err = b.Read(ctx, Limits{MaxBytes: 50})
		if err != nil || len(bt.Records) != 5 { // 5*9=45, a 6th would make 54
			t.Fatalf("max_bytes 50: %d records, %v", len(bt.Records), err)
		}
		if string(bt.Records[0]) != "000000007" {
			t.Fatalf("second batch starts with %q", bt.Records[0])
		}
		b.Ack(bt)
		// A single record bigger than max_bytes still goes, alone.
		big := a.rec(string(make([]byte, 200)))
		rest := readAllRecords(t, b, Limits{MaxEvents: 1000}, 88)
		if len(rest) != 88 {
			t.Fatalf("rest: %d", len(rest))
		}
		written := time.Now()
		if err := b.Write(ctx, []Record{big, a.rec("x")}); err != nil {
			t.Fatal(err)
		}
		bt, err = b.Read(ctx, Limits{MaxBytes: 100})
		if err != nil || len(bt.Records) != 1 || len(bt.Records[0]) != 200 {
			t.Fatalf("oversized record: %v %v", bt, err)
		}
		b.Ack(bt)
		// Timeout: fewer records than max_events arrive; Read returns them
		// once the oldest has waited the timeout since it was written.
		bt, err = b.Read(ctx, Limits{MaxEvents: 1000, Timeout: 50 * time.Millisecond})
		if err != nil || len(bt.Records) != 1 || string(bt.Records[0]) != "x" {
			t.Fatalf("timeout batch: %v %v", bt, err)
		}
		if el := time.Since(written); el < 50*time.Millisecond {
			t.Fatalf("returned %v after the record was written, before the timeout", el)
		}
		b.Ack(bt)
		// Timeout cut short by a full batch.
		done := make(chan *Batch)
		go func() {
			bt, _ := b.Read(ctx, Limits{MaxEvents: 3, Timeout: time.Hour})
			done <- bt
		}()
		b.Write(ctx, []Record{a.rec("a")})
		b.Write(ctx, []Record{a.rec("b"), a.rec("c")})
		bt = <-done
		if len(bt.Records) != 3 {
			t.Fatalf("full batch before timeout: %d records", len(bt.Records))
		}
	})

	t.Run("out of order acks", func(t *testing.T) {
		b := im.open(t, Config{})
		a := newAcks()
		var recs []Record
		for i := range 30 {
			recs = append(recs, a.rec(fmt.Sprintf("r%02d", i)))
		}
		b.Write(ctx, recs)
		var bs []*Batch
		for range 3 {
			bt, err := b.Read(ctx, Limits{MaxEvents: 10})
			if err != nil || len(bt.Records) != 10 {
				t.Fatal(bt, err)
			}
			bs = append(bs, bt)
		}
		if s := b.Stats(); s.Records == 0 {
			t.Fatalf("records in flight not counted: %+v", s)
		}
		b.Ack(bs[2])
		b.Ack(bs[0])
		if s := b.Stats(); s.Records != 10 {
			t.Fatalf("after acking batches 3 and 1: %d unacknowledged, want 10 (batch 2 holds the ack position)", s.Records)
		}
		b.Ack(bs[1])
		b.Ack(bs[1]) // twice: harmless
		waitFor(t, "acks", func() bool { return a.n.Load() == 30 })
		if s := b.Stats(); s.Records != 0 || s.Bytes != 0 {
			t.Fatalf("stats: %+v", s)
		}
	})

	t.Run("block when full", func(t *testing.T) {
		const recLen = 100
		per := recLen + max(im.overhead, frameHeader)
		b := im.open(t, Config{MaxBytes: 10 * 128, WhenFull: "block"})
		_ = per
		a := newAcks()
		// incompressible payloads so that zstd does not change the sums
		payload := func(i int) string {
			s := fmt.Sprintf("%03d", i)
			for len(s) < recLen {
				s += fmt.Sprintf("%x", (i*7919+len(s)*31)%251)
			}
			return s[:recLen]
		}
		n := 0
		for ; n < 100; n++ {
			wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			err := b.Write(wctx, []Record{a.rec(payload(n))})
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if n < 8 || n > 13 {
			t.Fatalf("buffer of 1280 bytes took %d records of %d bytes", n, recLen)
		}
		// A blocked writer resumes when a batch is acknowledged.
		wrote := make(chan error)
		go func() { wrote <- b.Write(ctx, []Record{a.rec(payload(n))}) }()
		select {
		case err := <-wrote:
			t.Fatalf("write returned while full: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		bt, err := b.Read(ctx, Limits{MaxEvents: 3})
		if err != nil {
			t.Fatal(err)
		}
		b.Ack(bt)
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		got := readAllRecords(t, b, Limits{MaxEvents: 100}, n+1-3)
		if got[len(got)-1] != payload(n) {
			t.Fatalf("last record %q", got[len(got)-1])
		}
		if s := b.Stats(); s.Dropped != 0 {
			t.Fatalf("block dropped %d", s.Dropped)
		}
	})

	t.Run("drop_newest", func(t *testing.T) {
		b := im.open(t, Config{MaxBytes: 10 * 128, WhenFull: "drop_newest"})
		a := newAcks()
		var recs []Record
		for i := range 50 {
			s := fmt.Sprintf("%03d%097x", i, i*1234567)
			recs = append(recs, a.rec(s[:100]))
		}
		if err := b.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		s := b.Stats()
		kept := 50 - int(s.Dropped)
		if s.Dropped < 1 || kept < 8 || (im.overhead >= 0 && s.Dropped < 30) {
			t.Fatalf("dropped %d of 50 records of 100 bytes into 1280 bytes", s.Dropped)
		}
		// Dropped records' acks are released at once; the newest are dropped.
		for i := kept; i < 50; i++ {
			if a.count(string(recs[i].Data)) != 1 {
				t.Fatalf("dropped record %d: ack released %d times", i, a.count(string(recs[i].Data)))
			}
		}
		got := readAllRecords(t, b, Limits{MaxEvents: 100}, kept)
		for i, g := range got {
			if g != string(recs[i].Data) {
				t.Fatalf("kept record %d = %q", i, g)
			}
		}
		waitFor(t, "acks", func() bool { return a.n.Load() == 50 })
	})

	// A batch limit above max_bytes must not make the reader wait for a
	// batch that cannot come: the writers wait for room meanwhile, so every
	// batch would cost the whole timeout (1 s by default).
	for _, whenFull := range []string{"block", "drop_newest"} {
		t.Run("full buffer ends the batch wait/"+whenFull, func(t *testing.T) {
			const timeout = 20 * time.Second
			b := im.open(t, Config{MaxBytes: 16 << 10, WhenFull: whenFull})
			a := newAcks()
			var recs []Record
			rng := rand.New(rand.NewPCG(1, 2)) // random: zstd cannot shrink it much
			for range 200 {
				s := ""
				for len(s) < 1024 {
					s += fmt.Sprintf("%016x", rng.Uint64())
				}
				recs = append(recs, a.rec(s))
			}
			wrote := make(chan error, 1)
			if whenFull == "drop_newest" {
				// Written at once: the newest records are dropped.
				wrote <- b.Write(ctx, recs)
				if b.Stats().Dropped == 0 {
					t.Fatal("drop_newest dropped nothing into 16 KiB")
				}
			} else {
				go func() {
					err := b.Write(ctx, recs)
					b.Seal() // the last, partial batch need not wait for the timeout
					wrote <- err
				}()
			}
			l := Limits{MaxEvents: 1000, MaxBytes: 1 << 20, Timeout: timeout}
			start := time.Now()
			rctx, cancel := context.WithTimeout(ctx, timeout/2)
			defer cancel()
			got := 0
			for {
				bt, err := b.Read(rctx, l)
				if err != nil {
					t.Fatalf("read after %d records, %s: %v", got, time.Since(start), err)
				}
				got += len(bt.Records)
				b.Ack(bt)
				if whenFull == "drop_newest" || got == len(recs) {
					break
				}
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el > timeout/4 {
				t.Fatalf("reading %d records took %s: the reader waited for a fuller batch", got, el)
			}
		})
	}

	t.Run("seal and drain", func(t *testing.T) {
		b := im.open(t, Config{})
		a := newAcks()
		b.Write(ctx, []Record{a.rec("1"), a.rec("2"), a.rec("3")})
		// A reader waiting on an empty buffer is woken by Seal.
		b.Seal()
		if err := b.Write(ctx, []Record{a.rec("4")}); !errors.Is(err, ErrSealed) {
			t.Fatalf("write after seal: %v", err)
		}
		got := readAllRecords(t, b, Limits{MaxEvents: 2}, 3)
		if fmt.Sprint(got) != "[1 2 3]" {
			t.Fatalf("drained %v", got)
		}
		if _, err := b.Read(ctx, Limits{}); !errors.Is(err, ErrDrained) {
			t.Fatalf("read after drain: %v", err)
		}
	})

	t.Run("seal wakes reader", func(t *testing.T) {
		b := im.open(t, Config{})
		errc := make(chan error)
		go func() {
			_, err := b.Read(ctx, Limits{})
			errc <- err
		}()
		b.Seal()
		if err := <-errc; !errors.Is(err, ErrDrained) {
			t.Fatalf("read: %v", err)
		}
	})

	t.Run("context", func(t *testing.T) {
		b := im.open(t, Config{})
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, err := b.Read(cctx, Limits{}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read on empty buffer: %v", err)
		}
	})
}
