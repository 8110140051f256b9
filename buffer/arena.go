package buffer

import (
	"sync"
	"sync/atomic"
)

// Arena is the memory that the Data of one encoded batch's records share.
// A buffer that keeps Data until the record is delivered (the memory
// buffer) releases the record's reference then; the last release hands the
// memory back to its pool, and the next batch is encoded into it instead of
// into a fresh allocation (which the runtime zeroes, and whose volume sets
// how often the garbage collector runs). The disk buffer, which copies Data
// into its files, releases a record once it leaves its memory cache
// (evicted, or read from it and acknowledged). A buffer that never
// releases leaves its arenas to the garbage collector, as if there were no
// pool.
//
// A release must come only once nothing reads the record's Data any more:
// an output's Write never keeps the batch's slices after it returns (the
// Kafka output copies what its client may still hold).
type Arena struct {
	buf  []byte
	refs atomic.Int64
	pool *ArenaPool
}

// Bytes returns the arena's memory, empty, to append records to.
func (a *Arena) Bytes() []byte { return a.buf[:0] }

// Hold records the memory the records were appended into (Bytes grown by
// append: the records point into it and, if it grew, into what it grew
// from) and how many records share it. With none, the arena goes back to
// its pool at once.
func (a *Arena) Hold(b []byte, records int) {
	if cap(b) > cap(a.buf) {
		a.buf = b[:0]
	}
	if records == 0 {
		a.pool.put(a)
		return
	}
	a.refs.Store(int64(records))
}

// Retain adds k references (nil: nothing): a holder beside the records'
// own, released with Release like theirs.
func (a *Arena) Retain(k int) {
	if a != nil {
		a.refs.Add(int64(k))
	}
}

// Release drops k records' references (nil or k == 0: nothing). The last
// one hands the memory back to the pool.
func (a *Arena) Release(k int) {
	if a == nil || k == 0 {
		return
	}
	switch v := a.refs.Add(-int64(k)); {
	case v == 0:
		a.pool.put(a)
	case v < 0:
		panic("buffer: Arena released more often than held")
	}
}

// maxPooledBytes bounds the memory of the arenas a pool keeps for reuse.
// Releases come in bursts: while the pipeline waits for room in a full
// buffer (or for a core), the output may deliver a dozen batches, whose
// arenas the pipeline then needs one after the other. A default memory
// buffer (4 MiB) fits in it twice; with a larger buffer, the arenas past
// it are left to the garbage collector.
const maxPooledBytes = 8 << 20

// trimEvery is how many Gets make a trim period: at its end, the arenas
// that stayed free the whole period (the fewest free at any Get) are left
// to the garbage collector. A steady flow, whose batches are delivered
// before the next few are encoded, needs one or two arenas, not the burst's
// dozen: the free ones are live memory to the collector, which lets the
// heap grow by GOGC% of them again (at 50,000 records/s 6-7 MiB of free
// arenas sat in the pool; docs/benchmarks.md, "A DaemonSet's day").
const trimEvery = 64

// ArenaPool hands out arenas, reusing the released ones. The zero value is
// ready; it is safe for concurrent use.
type ArenaPool struct {
	mu    sync.Mutex
	free  []*Arena
	bytes int // the capacity of free's arenas
	gets  int // Gets in this trim period
	low   int // fewest free arenas at a Get in this trim period
}

// Get returns an arena with room for at least size bytes: the smallest
// free one that has it, or a new one a little larger.
func (p *ArenaPool) Get(size int) *Arena {
	p.mu.Lock()
	if p.gets++; p.gets >= trimEvery {
		p.trim(p.low)
		p.gets, p.low = 0, len(p.free)
	}
	best := -1
	for i, a := range p.free {
		if cap(a.buf) >= size && (best < 0 || cap(a.buf) < cap(p.free[best].buf)) {
			best = i
		}
	}
	if best >= 0 {
		a := p.free[best]
		p.bytes -= cap(a.buf)
		last := len(p.free) - 1
		p.free[best] = p.free[last]
		p.free[last] = nil
		p.free = p.free[:last]
		p.low = min(p.low, len(p.free))
		p.mu.Unlock()
		return a
	}
	p.low = 0
	p.mu.Unlock()
	// An eighth more than asked: the next batches, a few records more or
	// a little longer, still fit.
	return &Arena{buf: make([]byte, 0, size+size/8), pool: p}
}

// put takes a released arena back; when the pool would hold more than
// maxPooledBytes, the smallest arenas (this one or free ones) are left to
// the garbage collector.
func (p *ArenaPool) put(a *Arena) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, a)
	p.bytes += cap(a.buf)
	for p.bytes > maxPooledBytes && len(p.free) > 1 {
		p.dropSmallest()
	}
}

// trim leaves n of the free arenas, the smallest, to the garbage
// collector. Call with p.mu held.
func (p *ArenaPool) trim(n int) {
	for range min(n, len(p.free)) {
		p.dropSmallest()
	}
}

// dropSmallest forgets the smallest free arena. Call with p.mu held and
// p.free not empty.
func (p *ArenaPool) dropSmallest() {
	small := 0
	for i, f := range p.free {
		if cap(f.buf) < cap(p.free[small].buf) {
			small = i
		}
	}
	p.bytes -= cap(p.free[small].buf)
	last := len(p.free) - 1
	p.free[small] = p.free[last]
	p.free[last] = nil
	p.free = p.free[:last]
}
