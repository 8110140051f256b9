package buffer

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// arenaRecords appends n records "<prefix><i>" to a's memory and holds it
// for them, like the pipeline's encode.
func arenaRecords(a *Arena, prefix string, n int) []Record {
	buf := a.Bytes()
	recs := make([]Record, 0, n)
	for i := range n {
		start := len(buf)
		buf = fmt.Appendf(buf, "%s%d", prefix, i)
		recs = append(recs, Record{Data: buf[start:len(buf):len(buf)], Arena: a})
	}
	a.Hold(buf, len(recs))
	return recs
}

// An arena's memory goes back to the pool only once every record in it is
// delivered: records of one arena read in two batches keep it out of the
// pool after the first batch's Ack (a batch encoded meanwhile gets other
// memory, and the second batch's bytes stay intact), and the second Ack
// hands it back.
func TestMemoryReturnsArenaWhenAllItsRecordsAreDelivered(t *testing.T) {
	ctx := context.Background()
	var pool ArenaPool
	a := pool.Get(1 << 10)
	m := NewMemory(1<<20, "block")
	if err := m.Write(ctx, arenaRecords(a, "a", 10)); err != nil {
		t.Fatal(err)
	}
	b1, err := m.Read(ctx, Limits{MaxEvents: 4})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := m.Read(ctx, Limits{MaxEvents: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ack(b1); err != nil {
		t.Fatal(err)
	}
	// The next batch: encoded into other memory, over the same bytes if
	// the arena had gone back too early.
	next := pool.Get(1 << 10)
	if next == a {
		t.Fatal("arena back in the pool while 6 of its records are not delivered")
	}
	arenaRecords(next, "XXXXXXXX", 10)
	for i, r := range b2.Records {
		if want := fmt.Sprint("a", i+4); string(r) != want {
			t.Fatalf("record %d of the second batch reads %q, want %q", i, r, want)
		}
	}
	if err := m.Ack(b2); err != nil {
		t.Fatal(err)
	}
	if got := pool.Get(1 << 10); got != a {
		t.Fatal("arena not back in the pool after all its records were delivered")
	}
}

// drop_newest releases the arena reference of each record it drops.
func TestMemoryDropNewestReleasesArena(t *testing.T) {
	ctx := context.Background()
	var pool ArenaPool
	m := NewMemory(8, "drop_newest")
	// The first record fits (an empty buffer takes one of any size); the
	// other two are dropped.
	a := pool.Get(64)
	buf := a.Bytes()
	buf = append(buf, "0123456789"...)
	recs := []Record{{Data: buf[0:4], Arena: a}, {Data: buf[4:8], Arena: a}, {Data: buf[8:10], Arena: a}}
	a.Hold(buf, 3)
	if err := m.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Dropped != 1 {
		t.Fatalf("dropped %d, want 1 (8 bytes hold two records of 4)", st.Dropped)
	}
	b, err := m.Read(ctx, Limits{MaxEvents: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join([]string{string(b.Records[0]), string(b.Records[1])}, ","); got != "0123,4567" {
		t.Fatalf("read %s", got)
	}
	if err := m.Ack(b); err != nil {
		t.Fatal(err)
	}
	if got := pool.Get(64); got != a {
		t.Fatal("arena not back in the pool: the dropped record's reference was not released")
	}
}

// Releasing an arena more often than it was held is a bug that would hand
// the same memory to two batches: it panics.
func TestArenaOverReleasePanics(t *testing.T) {
	var pool ArenaPool
	a := pool.Get(16)
	a.Hold(append(a.Bytes(), "x"...), 1)
	a.Release(1)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	a.Release(1)
}

// The pool hands out the smallest free arena large enough, allocates a
// larger one when none is, and keeps at most maxPooledBytes (the largest).
func TestArenaPoolReuse(t *testing.T) {
	var pool ArenaPool
	small, large := pool.Get(100), pool.Get(1000)
	small.Hold(small.Bytes(), 0)
	large.Hold(large.Bytes(), 0)
	if got := pool.Get(50); got != small {
		t.Fatal("a request of 50 bytes did not get the smallest free arena")
	}
	if got := pool.Get(500); got != large {
		t.Fatal("a request of 500 bytes did not get the arena of 1000")
	}
	if got := pool.Get(2000); got == small || got == large || cap(got.Bytes()) < 2000 {
		t.Fatalf("a request of 2000 bytes got an arena of %d", cap(got.Bytes()))
	}
	// An arena that grew while encoding keeps the grown memory.
	g := pool.Get(8)
	grown := append(g.Bytes(), make([]byte, 100)...)
	g.Hold(grown, 0)
	if got := pool.Get(100); got != g {
		t.Fatal("the grown arena was not reused for 100 bytes")
	}
	// Released arenas past maxPooledBytes: the smallest go to the GC.
	var pool2 ArenaPool
	var many []*Arena
	for i := range 6 {
		many = append(many, pool2.Get((i+1)<<20))
	}
	for _, a := range many {
		a.Hold(a.Bytes(), 0)
	}
	if pool2.bytes > maxPooledBytes {
		t.Fatalf("%d bytes of free arenas kept, at most %d wanted", pool2.bytes, maxPooledBytes)
	}
	sum := 0
	for _, a := range pool2.free {
		sum += cap(a.buf)
		if cap(a.buf) < cap(many[3].buf) {
			t.Fatalf("kept an arena of %d bytes, dropping a larger one", cap(a.buf))
		}
	}
	if sum != pool2.bytes || len(pool2.free) == 0 {
		t.Fatalf("pool counts %d bytes, holds %d in %d arenas", pool2.bytes, sum, len(pool2.free))
	}
}

// Arenas a burst needed and a steady flow does not are left to the
// garbage collector after a trim period, and the flow keeps reusing the one
// it needs without allocating.
func TestArenaPoolTrimsWhatStayedFree(t *testing.T) {
	var pool ArenaPool
	var burst []*Arena
	for range 10 {
		burst = append(burst, pool.Get(1000))
	}
	for _, a := range burst {
		a.Hold(a.Bytes(), 0)
	}
	if len(pool.free) != 10 {
		t.Fatalf("%d free arenas after the burst, want 10", len(pool.free))
	}
	fromBurst := map[*Arena]bool{}
	for _, a := range burst {
		fromBurst[a] = true
	}
	for i := range 3 * trimEvery {
		a := pool.Get(1000)
		if !fromBurst[a] {
			t.Fatalf("get %d: a new arena for a steady flow that releases each one before the next", i)
		}
		a.Hold(append(a.Bytes(), "x"...), 1)
		a.Release(1)
	}
	if len(pool.free) != 1 {
		t.Fatalf("%d free arenas after %d gets of one at a time, want 1", len(pool.free), 3*trimEvery)
	}
	if pool.bytes != cap(pool.free[0].buf) {
		t.Fatalf("pool counts %d bytes, holds %d", pool.bytes, cap(pool.free[0].buf))
	}
	// A flow that needs three at a time keeps three.
	for range 3 * trimEvery {
		var three []*Arena
		for range 3 {
			three = append(three, pool.Get(1000))
		}
		for _, a := range three {
			a.Hold(a.Bytes(), 0)
		}
	}
	if len(pool.free) != 3 {
		t.Fatalf("%d free arenas for a flow of three at a time, want 3", len(pool.free))
	}
}

// While the pipeline runs ahead of the output the queue never empties: its
// array is reused (the window moves back to the front) instead of growing
// with every few thousand records written, and the records still come out
// in order.
func TestMemoryQueueArrayStaysBoundedWhenNeverEmpty(t *testing.T) {
	m := NewMemory(1<<30, "block")
	q := &seqQueue{t: t, m: m}
	q.write(3000)
	for round := range 2000 {
		q.write(100 + round%50) // about as much as is read: about 3,000 wait
		q.read(125)
	}
	if c := cap(m.qarr); c > 4*3000+64 {
		t.Fatalf("queue array of %d records for a queue of about 3,000", c)
	}
	for q.want < q.next {
		q.read(1000)
	}
	for i, r := range m.qarr[:cap(m.qarr)] {
		if r.Data != nil {
			t.Fatalf("drained queue array still references record %d (%q)", i, r.Data)
		}
	}
}
