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
//
// Small reads (a slow file's append) share a pack: a block of packBytes
// and packEvents into which the reader copies the reads of many files one
// after the other, each read with its own acknowledgement (every record is
// still acknowledged to its own file's checkpoint). A pack is reused once
// the reader moved on to another (it is closed) and every event of every
// read in it came back. So two hundred files appended ten times a second
// cost no allocation per read, where each read used to copy its bytes and
// make its events anew. A read is packed only while its file's assembler
// holds nothing: an event the assembler keeps across reads (a multiline
// group's first line) keeps its whole pack out of reuse, so files that
// hold events keep copying their reads out (see readChunk).
type recycler struct {
	mu      sync.Mutex
	active  bool
	out     map[*event.Ack]*block // blocks with events still out
	made    uint64                // bytes of the blocks made
	stale   uint64                // made after an incomplete block before it is forgotten
	chunks  [][]byte              // free chunks
	slabs   [][]event.Event       // free slabs (zeroed)
	packs   []*block              // free packs (slabs zeroed)
	packLow int                   // fewest free packs since the last trim
	takes   int                   // packs taken since the last trim
	batches [][]*event.Event      // free batch slices (zeroed), for the reader's gathering
	reused  uint64                // blocks reused (for tests)
	packed  uint64                // packs reused (for tests)
	dropped uint64                // blocks forgotten before completing
}

type block struct {
	chunk []byte
	slab  []event.Event
	refs  int
	made  uint64 // recycler.made when it was made
	// packs only
	pack    bool
	open    bool         // the reader still copies reads into it
	dropped bool         // forgotten, or holds events not counted: never reused
	acks    []*event.Ack // its reads' acknowledgements (keys of out)
	used    int          // bytes of chunk used
	evUsed  int          // events of slab used
}

const (
	freeBlocks  = 4  // free chunks and slabs kept
	freePacks   = 32 // free packs kept at most (200 files' appends read in one burst fill about 26)
	trimEvery   = 128
	freeBatches = 4  // free batch slices kept
	staleAfter  = 16 // blocks (of read_buffer_bytes, at least 32 MiB in all) made after an incomplete one before it is forgotten
	packBytes   = 64 << 10
	packEvents  = 192
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
	r.made += uint64(cap(chunk))
	if r.out == nil {
		r.out = map[*event.Ack]*block{}
	}
	r.out[ack] = &block{chunk: chunk, slab: slab, refs: n, made: r.made}
}

// newPack returns an open pack for small reads (reader only).
//
// The free packs are as many as the reads need at their peak: the reads of
// many files come in bursts (every file appended within a few
// milliseconds), each burst fills packs faster than the pipeline gives
// them back. Every trimEvery packs taken, the free packs that were not
// needed meanwhile (the fewest free at any time) are left to the garbage
// collector.
func (r *recycler) newPack() *block {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.made += packBytes
	if r.takes++; r.takes >= trimEvery {
		drop := r.packLow
		clear(r.packs[len(r.packs)-drop:])
		r.packs = r.packs[:len(r.packs)-drop]
		r.takes, r.packLow = 0, len(r.packs)
	}
	if n := len(r.packs); n > 0 {
		b := r.packs[n-1]
		r.packs[n-1] = nil
		r.packs = r.packs[:n-1]
		r.packLow = min(r.packLow, n-1)
		*b = block{chunk: b.chunk, slab: b.slab, acks: b.acks[:0], pack: true, open: true, made: r.made}
		return b
	}
	r.packLow = 0
	return &block{
		chunk: make([]byte, packBytes), slab: make([]event.Event, packEvents),
		pack: true, open: true, made: r.made,
	}
}

// fits reports whether a read of n bytes and lines lines fits in the rest
// of the open pack b, which is not forgotten. Reader only (b.used and
// b.evUsed are the reader's while b is open).
func (r *recycler) fits(b *block, n, lines int) bool {
	r.mu.Lock()
	dropped := b.dropped
	r.mu.Unlock()
	return !dropped && b.used+n <= len(b.chunk) && b.evUsed+lines <= len(b.slab)
}

// trackPack registers n events of a read in pack b (holding ack) as out.
func (r *recycler) trackPack(b *block, ack *event.Ack, n int) {
	if n == 0 || ack == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.dropped {
		return
	}
	if !r.active {
		// emitted before the engine's first Recycle: these events are
		// not counted, so the pack must never be reused
		b.dropped = true
		return
	}
	if r.out == nil {
		r.out = map[*event.Ack]*block{}
	}
	r.out[ack] = b
	b.acks = append(b.acks, ack)
	b.refs += n
}

// closePack ends the reader's use of pack b: it is reused once every
// event in it came back.
func (r *recycler) closePack(b *block) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b.open = false
	if b.refs == 0 {
		r.freePack(b)
	}
}

// freePack forgets the acks of a closed pack whose events all came back
// and keeps it for reuse. Call with r.mu held.
func (r *recycler) freePack(b *block) {
	if b.dropped {
		return
	}
	for _, a := range b.acks {
		delete(r.out, a)
	}
	clear(b.acks)
	if len(r.packs) < freePacks {
		clear(b.slab[:b.evUsed])
		b.evUsed = 0
		r.packs = append(r.packs, b)
	}
	r.packed++
}

// batch returns an empty batch slice for the reader to gather events in.
func (r *recycler) batch() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.batches); n > 0 {
		b := r.batches[n-1]
		r.batches[n-1] = nil
		r.batches = r.batches[:n-1]
		return b
	}
	return make([]*event.Event, 0, 256)
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
			switch {
			case !b.pack:
				delete(r.out, a)
				r.free(b.chunk, b.slab)
				r.reused++
			case !b.open:
				r.freePack(b)
			}
			b = nil
		}
	}
	stale := r.stale
	if stale == 0 {
		stale = staleBytes(256 << 10)
	}
	for a, blk := range r.out {
		if r.made-blk.made > stale {
			delete(r.out, a)
			if !blk.dropped {
				blk.dropped = true // a pack: the reader leaves it if open
				r.dropped++
			}
		}
	}
	// The batch slice itself is free too: the reader gathers in it again.
	if cap(batch) >= 256 && len(r.batches) < freeBatches {
		clear(batch)
		r.batches = append(r.batches, batch[:0])
	}
}

// staleBytes is how many bytes of blocks are made after an incomplete
// block before it is forgotten: far more than the pipeline holds at once
// (its queues hold a few batches), so that only blocks that cannot
// complete are forgotten, not those of a pipeline that is behind.
func staleBytes(readBufferBytes int64) uint64 {
	return uint64(max(staleAfter*readBufferBytes, 32<<20))
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
	return t.recycle.reused + t.recycle.packed, t.recycle.dropped
}

// packStats returns how many packs of small reads were reused.
func (t *Tailer) packStats() uint64 {
	t.recycle.mu.Lock()
	defer t.recycle.mu.Unlock()
	return t.recycle.packed
}
