package buffer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

// TestDiskSkipsDeliveredRecords: records delivered and acknowledged while
// the flusher holds them back are never written, their inputs' acks are
// released all the same, and the hole they leave between written records
// is not damage after a restart.
func TestDiskSkipsDeliveredRecords(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	// A long delay: records are written only at Close (or when half the
	// pending bound is reached), never by the timer within the test.
	d, err := Open(dir, Config{}, WithWriteDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Int64
	write := func(from, n int) {
		t.Helper()
		recs := make([]Record, n)
		for i := range recs {
			recs[i] = Record{Data: []byte(fmt.Sprintf("record %04d", from+i)), Ack: releaser(event.NewAck(1, func() { released.Add(1) }))}
		}
		if err := d.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	read := func(n int) *Batch {
		t.Helper()
		b, err := d.Read(ctx, Limits{MaxEvents: n})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Records) != n {
			t.Fatalf("read %d records, want %d", len(b.Records), n)
		}
		return b
	}
	waitReleased := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for released.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d input acks released, want %d", released.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	frames := func() int64 {
		t.Helper()
		r, err := Verify(dir)
		if err != nil {
			t.Fatal(err)
		}
		return r.Frames
	}

	// 1. Delivered before their turn: released without a write.
	write(0, 100)
	if err := d.Ack(read(100)); err != nil {
		t.Fatal(err)
	}
	waitReleased(100)
	if n := frames(); n != 0 {
		t.Fatalf("%d frames in the files, want none: every record was delivered before it was written", n)
	}

	// 2. Half of the next ones delivered, then Close: the others are
	// written after a hole.
	write(100, 100)
	if err := d.Ack(read(50)); err != nil {
		t.Fatal(err)
	}
	waitReleased(150)
	if released.Load() != 150 {
		t.Fatalf("%d input acks released before the rest was written", released.Load())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if released.Load() != 200 {
		t.Fatalf("%d input acks released after Close, want 200", released.Load())
	}
	r, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	holes := int64(0)
	for _, s := range r.Segments {
		holes += s.Holes
	}
	if !r.OK() || r.Frames != 50 || r.Records != 50 || holes != 1 || r.AckSeq != 150 {
		t.Fatalf("after Close: ok %v, %d frames, %d unacknowledged, %d holes, ack %d (want ok, 50, 50, 1, 150)\n%s", r.OK(), r.Frames, r.Records, holes, r.AckSeq, r)
	}

	// 3. A restart reads the 50 in order, counts no damage.
	d, err = Open(dir, Config{}, WithWriteDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st := d.Stats()
	if st.Corrupt != 0 || st.CorruptBytes != 0 || st.Records != 50 {
		t.Fatalf("after restart: %d corrupt records, %d corrupt bytes, %d records (want 0, 0, 50)", st.Corrupt, st.CorruptBytes, st.Records)
	}
	b := read(50)
	for i, rec := range b.Records {
		if want := fmt.Sprintf("record %04d", 150+i); string(rec) != want {
			t.Fatalf("record %d: %q, want %q", i, rec, want)
		}
	}
}

// TestDiskHoleIsNotDamageButZerosAreWhenUnacked: a range of zeros counts as
// a hole only when the ledger says its records were acknowledged; the same
// zeros over unacknowledged records are damage.
func TestDiskHoleIsNotDamageButZerosAreWhenUnacked(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	d, err := Open(dir, Config{}, WithWriteDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]Record, 30)
	for i := range recs {
		recs[i] = Record{Data: []byte(fmt.Sprintf("record %04d", i))}
	}
	if err := d.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Zero frames 10..19 (all unacknowledged) in the file.
	seg := filepath.Join(dir, segName(1))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	fsz := frameHeader + len("record 0000")
	start := segHeaderSize + 10*fsz
	clear(b[start : start+10*fsz])
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || r.LostRecords != 10 || r.Segments[0].Holes != 0 {
		t.Fatalf("zeros over unacknowledged records: ok %v, %d lost, %d holes (want damage, 10 lost, no hole)\n%s", r.OK(), r.LostRecords, r.Segments[0].Holes, r)
	}
}

// TestDiskHoleAfterPowerCut: records skipped as delivered, then later ones
// written and fsynced, then the power goes before anything else: the
// ledger must already say that the skipped records were acknowledged, or
// recovery takes their hole for damage and counts them lost.
func TestDiskHoleAfterPowerCut(t *testing.T) {
	ctx := context.Background()
	fsys := newMemFS()
	d, err := Open("/data/buffer/out", Config{}, WithFS(fsys), WithWriteDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	recs := func(from int, ack *event.Ack) []Record {
		out := make([]Record, 10)
		for i := range out {
			out[i] = Record{Data: []byte(fmt.Sprintf("record %04d", from+i)), Ack: releaser(ack)}
		}
		return out
	}
	firstDone := make(chan struct{})
	if err := d.Write(ctx, recs(0, event.NewAck(10, func() { close(firstDone) }))); err != nil {
		t.Fatal(err)
	}
	b, err := d.Read(ctx, Limits{MaxEvents: 10})
	if err != nil || len(b.Records) != 10 {
		t.Fatalf("read %v, %v", b, err)
	}
	if err := d.Ack(b); err != nil {
		t.Fatal(err)
	}
	<-firstDone // skipped: released without a write
	// The next ten are written (Seal ends the hold) and fsynced; the power
	// goes at the moment their acks are released, before the flusher
	// does anything else.
	cut := make(chan *memFS, 1)
	if err := d.Write(ctx, recs(10, event.NewAck(10, func() { cut <- fsys.Crash() }))); err != nil {
		t.Fatal(err)
	}
	d.Seal()
	after := <-cut
	d.Close()

	d, err = Open("/data/buffer/out", Config{}, WithFS(after))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if st := d.Stats(); st.Corrupt != 0 || st.CorruptBytes != 0 || st.Records != 10 {
		t.Fatalf("after the power cut: %d damaged records (%d bytes), %d records (want 0, 0, 10)", st.Corrupt, st.CorruptBytes, st.Records)
	}
	b, err = d.Read(ctx, Limits{MaxEvents: 100})
	if err != nil || len(b.Records) != 10 {
		t.Fatalf("read %v, %v", b, err)
	}
	for i, r := range b.Records {
		if want := fmt.Sprintf("record %04d", 10+i); string(r) != want {
			t.Fatalf("record %d: %q, want %q", i, r, want)
		}
	}
}

// TestDiskWritesOnlyTheRecordsThatWaited: once the oldest pending record
// has waited the write delay, the flusher writes the records that waited
// half of it and keeps the younger ones back, which are then delivered and
// never written. The buffer's clock is the test's; the write delay is an
// hour, so that no timer of the flusher ends within the test.
func TestDiskWritesOnlyTheRecordsThatWaited(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var clock atomic.Int64 // minutes since t0, the buffer's now
	t0 := time.Now()
	now := func(o *options) {
		o.now = func() time.Time { return t0.Add(time.Duration(clock.Load()) * time.Minute) }
	}
	d, err := Open(dir, Config{}, WithWriteDelay(time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Int64
	write := func(from, n int) {
		t.Helper()
		recs := make([]Record, n)
		for i := range recs {
			recs[i] = Record{Data: []byte(fmt.Sprintf("record %04d", from+i)), Ack: releaser(event.NewAck(1, func() { released.Add(1) }))}
		}
		if err := d.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	frames := func() int64 {
		t.Helper()
		r, err := Verify(dir)
		if err != nil {
			t.Fatal(err)
		}
		return r.Frames
	}
	write(0, 10) // at 0 min
	clock.Store(50)
	write(10, 10) // at 50 min
	clock.Store(60)
	// The first ten waited the hour: written once the flusher looks again
	// (poked as an Ack would). The next ten waited 10 minutes: held.
	select {
	case d.wake <- struct{}{}:
	default:
	}
	deadline := time.Now().Add(10 * time.Second)
	for released.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d acks released, want the 10 written records'", released.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if n := frames(); n != 10 {
		t.Fatalf("%d frames written, want the 10 that waited", n)
	}
	if released.Load() != 10 {
		t.Fatalf("%d acks released, want 10: the younger records are neither written nor delivered", released.Load())
	}
	b, err := d.Read(ctx, Limits{MaxEvents: 20})
	if err != nil || len(b.Records) != 20 {
		t.Fatalf("read %v records, %v; want 20", b, err)
	}
	if err := d.Ack(b); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if released.Load() != 20 {
		t.Fatalf("%d acks released after delivery and Close, want 20", released.Load())
	}
	if n := frames(); n != 10 {
		t.Fatalf("%d frames after Close, want 10: the younger records were delivered before they were written", n)
	}
}
