package kafka

import (
	"sync"
	"sync/atomic"
)

// partition tracks the records emitted from one assigned partition. They
// are added in offset order and released in any order; the acknowledged
// offset advances only over a prefix of released records, so the commit
// never passes a record that is not durably taken. Dropped and unrouted
// records release their references at once, so they count as taken.
type partition struct {
	topic string
	part  int32
	hwm   atomic.Int64 // high watermark of the last fetch (-1: none)

	mu       sync.Mutex
	q        []pending
	base     uint64 // sequence number of q[0]
	acked    int64  // offset past the acknowledged prefix (-1: none yet)
	epoch    int32  // leader epoch of the acknowledged prefix's last record
	commitAt int64  // last committed offset (-1: none by us)
	first    int64  // offset of the first record emitted (-1: none)
	detached bool
}

type pending struct {
	end   int64 // offset past the batch's last record
	epoch int32
	done  bool
}

func newPartition(topic string, part int32) *partition {
	p := &partition{topic: topic, part: part, acked: -1, commitAt: -1, first: -1}
	p.hwm.Store(-1)
	return p
}

// add registers a record ending before end (its offset + 1) and returns its sequence number.
func (p *partition) add(end int64, epoch int32) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	seq := p.base + uint64(len(p.q))
	p.q = append(p.q, pending{end: end, epoch: epoch})
	return seq
}

// setFirst records the offset the partition's first emitted batch starts
// at (the position before any commit).
func (p *partition) setFirst(off int64) {
	p.mu.Lock()
	if p.first < 0 {
		p.first = off
	}
	p.mu.Unlock()
}

// done marks record seq released; it reports whether the acknowledged
// offset moved (and the partition is still assigned).
func (p *partition) done(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.q[seq-p.base].done = true
	i := 0
	for i < len(p.q) && p.q[i].done {
		if p.q[i].end > p.acked {
			p.acked = p.q[i].end
			p.epoch = p.q[i].epoch
		}
		i++
	}
	if i == 0 {
		return false
	}
	p.q = p.q[i:]
	p.base += uint64(i)
	return !p.detached
}

// outstanding is the number of records not yet released.
func (p *partition) outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, b := range p.q {
		if !b.done {
			n++
		}
	}
	return n
}

// toCommit returns the offset to commit, if it moved since the last commit.
func (p *partition) toCommit() (off int64, epoch int32, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.detached || p.acked < 0 || p.acked <= p.commitAt {
		return 0, 0, false
	}
	return p.acked, p.epoch, true
}

func (p *partition) committed(off int64) {
	p.mu.Lock()
	if off > p.commitAt {
		p.commitAt = off
	}
	p.mu.Unlock()
}

// position is where the group would resume: the last commit, else the
// first emitted offset (-1: unknown).
func (p *partition) position() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.commitAt >= 0 {
		return p.commitAt
	}
	return p.first
}

func (p *partition) detach() {
	p.mu.Lock()
	p.detached = true
	p.mu.Unlock()
}
