package buffer

import (
	"context"
	"sync"
	"time"
)

// Memory is a buffer held in memory, bounded in bytes. Records are
// acknowledged to the input only once delivered, so after a crash the input
// reads what was not acknowledged again from its files; what those files no
// longer hold (deleted, truncated) is lost (docs/buffer.md).
type Memory struct {
	mu       sync.Mutex
	cond     *sync.Cond // signalled on writes, acks, seal
	maxBytes int64
	dropNew  bool

	queue    []Record // not yet read: a window of qarr
	qarr     []Record // the queue's array (see push and take)
	bytes    int64    // bytes of queue + in flight
	records  int64    // records of queue + in flight
	seq      uint64
	sealed   bool
	dropped  int64
	inflight map[uint64]*memBatch
	oldest   time.Time
	// blocked counts writers waiting for room: then a reader does not
	// wait for a fuller batch (none can come before it takes one).
	blocked int
	// overflow: drop_newest dropped records since the last Read.
	overflow bool
	// in and out count records queued and handed out: sequence numbers
	// for arr, the arrival times that Limits.Linger counts from.
	in, out uint64
	arr     arrivals
	now     func() time.Time // time.Now; tests set a fake clock
	// spare: acknowledged batches whose arrays the next reads reuse.
	spare []*memBatch
	// spareRecs: the Records arrays of acknowledged batches.
	spareRecs [][][]byte
}

type memBatch struct {
	acks  []Record
	bytes int64
}

// maxSpareBatches bounds the acknowledged batches a memory buffer keeps
// for reuse (their bookkeeping arrays): one per delivery slot suffices.
const maxSpareBatches = 8

// NewMemory returns a memory buffer holding at most maxBytes (0:
// DefaultMemoryMaxBytes).
func NewMemory(maxBytes int64, whenFull string) *Memory {
	if maxBytes <= 0 {
		maxBytes = DefaultMemoryMaxBytes
	}
	m := &Memory{maxBytes: maxBytes, dropNew: whenFull == "drop_newest", inflight: map[uint64]*memBatch{}, now: time.Now}
	m.cond = sync.NewCond(&m.mu)
	return m
}

// wait blocks on the condition until ctx is done; it returns ctx.Err().
func (m *Memory) wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	m.cond.Wait()
	stop()
	return ctx.Err()
}

func (m *Memory) Write(ctx context.Context, recs []Record) error {
	t := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	from := m.in
	for _, r := range recs {
		n := int64(len(r.Data))
		for m.bytes > 0 && m.bytes+n > m.maxBytes && !m.sealed {
			if m.dropNew {
				break
			}
			m.arr.add(from, m.in, t)
			from = m.in
			m.blocked++
			m.cond.Broadcast() // a reader waiting for a fuller batch
			err := m.wait(ctx)
			m.blocked--
			if err != nil {
				return err
			}
		}
		if m.sealed {
			return ErrSealed
		}
		if m.bytes > 0 && m.bytes+n > m.maxBytes && m.dropNew {
			m.dropped++
			m.overflow = true
			r.Ack.Release()
			r.Arena.Release(1)
			continue
		}
		if len(m.queue) == 0 && len(m.inflight) == 0 {
			m.oldest = time.Now()
		}
		m.push(r)
		m.bytes += n
		m.records++
		m.in++
	}
	m.arr.add(from, m.in, t)
	m.cond.Broadcast()
	return nil
}

func (m *Memory) Read(ctx context.Context, l Limits) (*Batch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.queue) == 0 {
		if m.sealed {
			return nil, ErrDrained
		}
		if err := m.wait(ctx); err != nil {
			return nil, err
		}
	}
	if l.Timeout > 0 && !m.full(l) && !m.sealed {
		if rem := l.remaining(m.arr.at(m.out), m.now()); rem > 0 {
			tctx, cancel := context.WithTimeout(ctx, rem)
			for !m.full(l) && !m.sealed && tctx.Err() == nil {
				_ = m.wait(tctx)
			}
			cancel()
		}
	}
	n, size := 0, 0
	for n < len(m.queue) {
		d := len(m.queue[n].Data)
		if n > 0 && ((l.MaxEvents > 0 && n >= l.MaxEvents) || (l.MaxBytes > 0 && size+d > l.MaxBytes)) {
			break
		}
		n++
		size += d
	}
	mb := m.newBatch(n)
	mb.bytes = int64(size)
	copy(mb.acks, m.queue[:n])
	b := &Batch{Records: m.newRecords(n), Seq: m.seq}
	for i := range n {
		b.Records[i] = m.queue[i].Data
	}
	m.take(n)
	m.out += uint64(n)
	m.overflow = false
	m.inflight[m.seq] = mb
	m.seq++
	return b, nil
}

// take drops the first n records of the queue: the window moves on in
// its array (push moves it back to the front when it reaches the end).
func (m *Memory) take(n int) {
	clear(m.queue[:n])
	m.queue = m.queue[n:]
	if len(m.queue) == 0 {
		m.queue = m.qarr[:0]
	}
}

// push appends r to the queue. When the window reached the end of its
// array and at least half of the array lies free before it, the window
// moves to the front (each record is moved at most about once per trip
// through the array) instead of the array being outgrown: while the
// pipeline runs ahead of the output, the queue never empties, and growing
// it at every turn reallocated and copied the whole queue every few
// thousand records.
func (m *Memory) push(r Record) {
	if len(m.queue) == cap(m.queue) {
		if free := cap(m.qarr) - cap(m.queue); free > 0 && free >= cap(m.qarr)/2 {
			k := copy(m.qarr[:len(m.queue)], m.queue)
			clear(m.qarr[k:cap(m.qarr)]) // what the window held past k
			m.queue = m.qarr[:k]
		} else {
			q := make([]Record, len(m.queue), max(2*cap(m.qarr), 64))
			copy(q, m.queue)
			m.qarr, m.queue = q[:0], q
		}
	}
	m.queue = append(m.queue, r)
}

// full reports whether a batch of l can be taken now: it is as large as l
// allows, l.MinEvents records wait, or the buffer itself is full (max_bytes below the batch's
// max_bytes: waiting would stall the writers until the timeout).
func (m *Memory) full(l Limits) bool {
	if m.blocked > 0 || m.overflow {
		return true
	}
	if l.ready(int64(len(m.queue))) {
		return true
	}
	if l.MaxBytes > 0 {
		s := 0
		for _, r := range m.queue {
			s += len(r.Data)
			if s >= l.MaxBytes {
				return true
			}
		}
	}
	return false
}

// Ack releases the batch's records (their acks, then their arenas) and
// keeps the batch's arrays for the next reads: b must not be used after.
func (m *Memory) Ack(b *Batch) error {
	m.mu.Lock()
	mb := m.inflight[b.Seq]
	delete(m.inflight, b.Seq)
	if mb != nil {
		m.bytes -= mb.bytes
		m.records -= int64(len(mb.acks))
	}
	if len(m.queue) == 0 && len(m.inflight) == 0 {
		m.oldest = time.Time{}
	}
	m.cond.Broadcast()
	m.mu.Unlock()
	if mb == nil {
		return nil
	}
	// The records' arenas, one release per run of records sharing one.
	var arena *Arena
	k := 0
	for _, r := range mb.acks {
		r.Ack.Release()
		if r.Arena != arena {
			arena.Release(k)
			arena, k = r.Arena, 0
		}
		k++
	}
	arena.Release(k)
	clear(mb.acks)
	clear(b.Records)
	m.mu.Lock()
	if len(m.spare) < maxSpareBatches {
		m.spare = append(m.spare, mb)
	}
	if len(m.spareRecs) < maxSpareBatches && b.Records != nil {
		m.spareRecs = append(m.spareRecs, b.Records[:0])
		b.Records = nil
	}
	m.mu.Unlock()
	return nil
}

// newBatch returns the bookkeeping of a batch of n records: a spare one
// whose array is large enough, or a new one. m.mu is held.
func (m *Memory) newBatch(n int) *memBatch {
	for i := len(m.spare) - 1; i >= 0; i-- {
		if mb := m.spare[i]; cap(mb.acks) >= n {
			m.spare[i] = m.spare[len(m.spare)-1]
			m.spare[len(m.spare)-1] = nil
			m.spare = m.spare[:len(m.spare)-1]
			mb.acks = mb.acks[:n]
			return mb
		}
	}
	return &memBatch{acks: make([]Record, n)}
}

// newRecords returns a Batch.Records array of n records, a spare one when
// one is large enough. m.mu is held.
func (m *Memory) newRecords(n int) [][]byte {
	for i := len(m.spareRecs) - 1; i >= 0; i-- {
		if r := m.spareRecs[i]; cap(r) >= n {
			m.spareRecs[i] = m.spareRecs[len(m.spareRecs)-1]
			m.spareRecs[len(m.spareRecs)-1] = nil
			m.spareRecs = m.spareRecs[:len(m.spareRecs)-1]
			return r[:n]
		}
	}
	return make([][]byte, n)
}

func (m *Memory) Seal() {
	m.mu.Lock()
	m.sealed = true
	m.cond.Broadcast()
	m.mu.Unlock()
}

func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Records: m.records, Bytes: m.bytes, OldestUnacked: m.oldest, Dropped: m.dropped, InFlight: len(m.inflight)}
}

func (m *Memory) Close() error { m.Seal(); return nil }
