package buffer

import (
	"context"
	"fmt"
	"testing"
)

// A memory buffer holds the only copy of its records: their acks must be
// released once the batch holding them is delivered (Ack), never at Write
// or at Read, or a crash in between loses them with the checkpoint already
// past them.
func TestMemoryReleasesAcksOnlyWhenDelivered(t *testing.T) {
	ctx := context.Background()
	a := newAcks()
	m := NewMemory(1<<20, "block")
	var recs []Record
	for i := range 10 {
		recs = append(recs, a.rec(fmt.Sprint("r", i)))
	}
	if err := m.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if n := a.n.Load(); n != 0 {
		t.Fatalf("%d acks released by Write", n)
	}
	b1, err := m.Read(ctx, Limits{MaxEvents: 4})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := m.Read(ctx, Limits{MaxEvents: 4})
	if err != nil {
		t.Fatal(err)
	}
	if n := a.n.Load(); n != 0 {
		t.Fatalf("%d acks released by Read", n)
	}
	// Out of order: the second batch first.
	if err := m.Ack(b2); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		want := 0
		if i >= 4 && i < 8 {
			want = 1
		}
		if got := a.count(fmt.Sprint("r", i)); got != want {
			t.Fatalf("after the second batch's Ack, r%d released %d times, want %d", i, got, want)
		}
	}
	if err := m.Ack(b1); err != nil {
		t.Fatal(err)
	}
	if n := a.n.Load(); n != 8 {
		t.Fatalf("%d acks released after two batches of 4, want 8", n)
	}
	// Sealed and closed with records never delivered: still held.
	m.Seal()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := a.count("r8") + a.count("r9"); got != 0 {
		t.Fatalf("undelivered records released at Close (%d)", got)
	}
}

// seqQueue writes numbered records to a memory buffer and reads them back,
// checking that each comes out once and in order.
type seqQueue struct {
	t          *testing.T
	m          *Memory
	next, want int // the next record to write, the next one expected
}

func (q *seqQueue) write(k int) {
	q.t.Helper()
	recs := make([]Record, k)
	for i := range recs {
		recs[i] = Record{Data: []byte(fmt.Sprint(q.next))}
		q.next++
	}
	if err := q.m.Write(context.Background(), recs); err != nil {
		q.t.Fatal(err)
	}
}

func (q *seqQueue) read(maxEvents int) {
	q.t.Helper()
	b, err := q.m.Read(context.Background(), Limits{MaxEvents: maxEvents})
	if err != nil {
		q.t.Fatal(err)
	}
	for _, r := range b.Records {
		if string(r) != fmt.Sprint(q.want) {
			q.t.Fatalf("got record %s, want %d", r, q.want)
		}
		q.want++
	}
	if err := q.m.Ack(b); err != nil {
		q.t.Fatal(err)
	}
}

// Reads that take part of the queue, interleaved with writes, hand out every
// record once and in order (the queue's array is compacted in place when
// more was taken than remains).
func TestMemoryPartialReadsKeepOrder(t *testing.T) {
	m := NewMemory(1<<20, "block")
	q := &seqQueue{t: t, m: m}
	for round := range 50 {
		q.write(1 + round%7)
		q.read(1 + round%3) // sometimes less than half, sometimes more
		q.write(round % 5)
	}
	for q.want < q.next {
		q.read(4)
	}
	if st := m.Stats(); st.Records != 0 || st.Bytes != 0 {
		t.Fatalf("stats after draining: %+v", st)
	}
}
