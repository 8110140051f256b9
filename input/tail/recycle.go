package tail

import (
	"sync"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
)

// Reusing read memory (input.Recycler).
//
// Each read makes a block: the chunk the bytes were read into (events' Raw
// alias it) and the slab of events cut from it. All events of a block share
// one acknowledgement group, which names the block. The engine hands every
// emitted batch back through Recycle once it is finished with it; a block
// whose every event came back is reused by a later read.
//
// Assemblers (multiline, CRI partials) break the one-batch-one-block shape:
// an event may be held across reads and emitted with a later batch, and a
// piece absorbed into a joined event never comes back at all. Hence a block
// is counted event by event, and is reused only when its count reaches
// zero: a held event keeps its block (and the bytes its Raw aliases) out of
// reuse until it is emitted and recycled. A piece absorbed while its own
// line is pushed (join.Group copies its bytes, event.Join clears its ack)
// is not counted. A joined event's Raw is either its own piece's bytes
// (same block) or a new buffer, never bytes of another block. A block that
// cannot complete (a line held, then absorbed by a later push: multiline's
// blank lines) is forgotten once many blocks were read after it, and left
// to the garbage collector: not reusing memory is always safe.
//
// Nothing is tracked until the engine first calls Recycle, so an engine
// that never recycles costs nothing and retains nothing.
type recycler struct {
	mu      sync.Mutex
	active  bool
	out     map[*event.Ack]*block // blocks with events still out
	seq     uint64                // blocks made
	chunks  [][]byte              // free chunks
	slabs   [][]event.Event       // free slabs (zeroed)
	reused  uint64                // blocks reused (for tests)
	dropped uint64                // blocks forgotten before completing
}

type block struct {
	chunk []byte
	slab  []event.Event
	refs  int
	seq   uint64
}

const (
	freeBlocks = 4  // free chunks and slabs kept
	staleAfter = 16 // blocks made after an incomplete one before it is forgotten
)

// chunk returns a byte slice of length n (contents undefined).
func (r *recycler) chunk(n int) []byte {
	r.mu.Lock()
	for i, c := range r.chunks {
		if cap(c) >= n {
			last := len(r.chunks) - 1
			r.chunks[i] = r.chunks[last]
			r.chunks[last] = nil
			r.chunks = r.chunks[:last]
			r.mu.Unlock()
			return c[:n]
		}
	}
	r.mu.Unlock()
	return make([]byte, n)
}

// slab returns n zeroed events.
func (r *recycler) slab(n int) []event.Event {
	r.mu.Lock()
	for i, s := range r.slabs {
		if cap(s) >= n {
			last := len(r.slabs) - 1
			r.slabs[i] = r.slabs[last]
			r.slabs[last] = nil
			r.slabs = r.slabs[:last]
			r.mu.Unlock()
			return s[:n]
		}
	}
	r.mu.Unlock()
	return make([]event.Event, n)
}

// track registers a block whose n events (of slab, holding ack) are out:
// emitted, or held by an assembler. With n == 0 (or no ack) the block is
// free at once.
func (r *recycler) track(chunk []byte, slab []event.Event, ack *event.Ack, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n == 0 || ack == nil {
		r.free(chunk, slab)
		return
	}
	if !r.active {
		return // the engine does not recycle: let the GC have it
	}
	r.seq++
	if r.out == nil {
		r.out = map[*event.Ack]*block{}
	}
	r.out[ack] = &block{chunk: chunk, slab: slab, refs: n, seq: r.seq}
}

// putChunk returns a chunk that no event references.
func (r *recycler) putChunk(c []byte) {
	r.mu.Lock()
	if len(r.chunks) < freeBlocks {
		r.chunks = append(r.chunks, c[:0])
	}
	r.mu.Unlock()
}

// free keeps chunk and slab for reuse (zeroing the slab's events so that
// their fields are garbage now). Call with r.mu held.
func (r *recycler) free(chunk []byte, slab []event.Event) {
	if chunk != nil && len(r.chunks) < freeBlocks {
		r.chunks = append(r.chunks, chunk[:0])
	}
	if slab != nil && len(r.slabs) < freeBlocks {
		clear(slab[:cap(slab)])
		r.slabs = append(r.slabs, slab[:0])
	}
}

// recycle takes back a batch the engine is finished with.
func (r *recycler) recycle(batch []*event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.active {
		r.active = true
		return // blocks emitted so far were not tracked
	}
	var b *block
	var last *event.Ack
	for _, e := range batch {
		a := e.AckGroup()
		if a == nil {
			continue
		}
		if a != last {
			last, b = a, r.out[a]
		}
		if b == nil {
			continue // not from a tracked block (a sealed partial line, a forgotten block)
		}
		if b.refs--; b.refs == 0 {
			delete(r.out, a)
			r.free(b.chunk, b.slab)
			r.reused++
			b = nil
		}
	}
	for a, blk := range r.out {
		if r.seq-blk.seq > staleAfter {
			delete(r.out, a)
			r.dropped++
		}
	}
}

var _ input.Recycler = (*Tailer)(nil)

// Recycle implements input.Recycler: the engine is finished with batch, so
// the memory of the reads it came from may be reused once every event of
// those reads is back.
func (t *Tailer) Recycle(batch []*event.Event) {
	if noRecycle {
		return
	}
	t.recycle.recycle(batch)
}

// noRecycle turns Recycle into a no-op (tests compare runs with and without).
var noRecycle bool

// recycleStats returns how many blocks were reused and forgotten.
func (t *Tailer) recycleStats() (reused, dropped uint64) {
	t.recycle.mu.Lock()
	defer t.recycle.mu.Unlock()
	return t.recycle.reused, t.recycle.dropped
}
