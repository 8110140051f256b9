package tail

import (
	"sync"
	"sync/atomic"
)

// tracker follows the batches of one generation of one file. Batches are
// added in file order with the offset just past their last complete line;
// they may be released in any order. The acknowledged offset advances only
// over a prefix of released batches, so it never passes a line that is not
// durably taken by the next stage.
type tracker struct {
	gen   uint32
	dirty *atomic.Bool // set when acked advances

	mu    sync.Mutex
	acked int64
	base  uint64 // sequence number of q[0]
	q     []pendingBatch
}

type pendingBatch struct {
	end  int64
	done bool
}

func newTracker(gen uint32, acked int64, dirty *atomic.Bool) *tracker {
	return &tracker{gen: gen, acked: acked, dirty: dirty}
}

// add registers a batch ending at end and returns its sequence number.
func (tr *tracker) add(end int64) uint64 {
	tr.mu.Lock()
	seq := tr.base + uint64(len(tr.q))
	tr.q = append(tr.q, pendingBatch{end: end})
	tr.mu.Unlock()
	return seq
}

// addDone registers a range without events (skipped bytes, empty lines).
func (tr *tracker) addDone(end int64) {
	tr.mu.Lock()
	if len(tr.q) == 0 {
		if end > tr.acked {
			tr.acked = end
			tr.dirty.Store(true)
		}
	} else {
		tr.q = append(tr.q, pendingBatch{end: end, done: true})
	}
	tr.mu.Unlock()
}

// done marks batch seq released and advances the acknowledged offset.
func (tr *tracker) done(seq uint64) {
	tr.mu.Lock()
	tr.q[seq-tr.base].done = true
	i := 0
	for i < len(tr.q) && tr.q[i].done {
		if tr.q[i].end > tr.acked {
			tr.acked = tr.q[i].end
		}
		i++
	}
	if i > 0 {
		if i == len(tr.q) {
			tr.q = tr.q[:0]
		} else {
			tr.q = tr.q[i:]
		}
		tr.base += uint64(i)
		tr.dirty.Store(true)
	}
	tr.mu.Unlock()
}

// state returns the acknowledged offset and the number of batches still out.
func (tr *tracker) state() (acked int64, outstanding int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.acked, len(tr.q)
}
