package buffer

import (
	"errors"
	"os"
	"time"
)

// wantRemove reports whether the oldest segment is fully acknowledged and
// written; d.mu is held.
func (d *Disk) wantRemove() bool {
	return len(d.segs) > 1 && d.segs[1].firstSeq <= min(d.ackSeq, d.writtenSeq)
}

// maintain fsyncs the ledger when acks moved, then removes segments whose
// records are all acknowledged (in that order: a removed segment's records
// are below the durable ack position).
func (d *Disk) maintain(force bool) error {
	d.mu.Lock()
	want := d.wantRemove()
	d.mu.Unlock()
	d.ledgerMu.Lock()
	due := d.ledgerAck != d.ledgerSync && (force || time.Since(d.lastLSync) >= ledgerSyncEvery)
	d.ledgerMu.Unlock()
	if !due && !want && !force {
		return nil
	}
	if err := d.writeLedger(true); err != nil {
		d.log.Error("buffer: ledger write failed", "error", err)
		return err
	}
	d.ledgerMu.Lock()
	durable := d.ledgerSync
	d.ledgerMu.Unlock()
	for {
		d.mu.Lock()
		if !d.wantRemove() || d.segs[1].firstSeq > durable {
			d.mu.Unlock()
			return nil
		}
		s := d.segs[0]
		d.segs = d.segs[1:]
		d.mu.Unlock()
		d.hook("remove")
		if err := d.o.fs.Remove(d.path(segName(s.id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("buffer: cannot remove acknowledged segment", "segment", segName(s.id), "error", err)
		}
	}
}

// writeLedger writes the current ack position into the next ledger slot
// (without fsync unless sync). The write survives a crash of the process;
// a power cut may lose it, which only delivers records again.
func (d *Disk) writeLedger(sync bool) error {
	d.mu.Lock()
	// The ack position may be ahead of what is durable (records read from
	// memory before their fsync): after a power cut, recovery starts the
	// sequence above it, and those records were delivered.
	ack := d.ackSeq
	l := ledgerState{ackSeq: ack, writeSeq: d.writeSeq}
	if len(d.marks) > 0 {
		l.ackMs = d.marks[0].ms
	}
	d.mu.Unlock()
	d.ledgerMu.Lock()
	defer d.ledgerMu.Unlock()
	if ack != d.ledgerAck || d.ledgerGen == 0 {
		d.ledgerGen++
		l.gen = d.ledgerGen
		var buf [ledgerSlot]byte
		d.hook("ledger")
		if _, err := d.ledgerF.WriteAt(encodeLedger(buf[:0], l), int64(l.gen%2)*ledgerSlot); err != nil {
			return err
		}
		d.ledgerAck = ack
	}
	if sync && d.ledgerSync != d.ledgerAck {
		if err := d.ledgerF.Sync(); err != nil {
			return err
		}
		d.lastLSync = time.Now()
		d.ledgerSync = d.ledgerAck
	} else if sync && d.ledgerGen == 1 {
		if err := d.ledgerF.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// Ack marks a batch done. The ack position moves over every batch acked
// so far without a gap; the ledger file is rewritten at once (no fsync), so
// a killed process delivers again only the batches in flight.
func (d *Disk) Ack(b *Batch) error {
	db, ok := b.impl.(*diskBatch)
	if !ok || db == nil {
		return nil
	}
	d.mu.Lock()
	if db.done {
		d.mu.Unlock()
		return nil
	}
	db.done = true
	for _, a := range db.arenas {
		if cap(a) == arenaSize && len(d.freeArenas) < maxFreeArenas {
			d.freeArenas = append(d.freeArenas, a)
		}
	}
	db.arenas = nil
	for _, h := range db.held {
		h.a.Release(h.k)
	}
	db.held = nil
	d.bytes -= db.bytes
	d.records -= db.records
	d.spaceCond.Broadcast()
	moved := false
	for len(d.inflight) > 0 && d.inflight[0].done {
		x := d.inflight[0]
		d.inflight[0] = nil
		d.inflight = d.inflight[1:]
		d.ackSeq = x.end
		moved = true
	}
	if !moved {
		d.mu.Unlock()
		return nil
	}
	for len(d.marks) > 1 && d.marks[1].seq <= d.ackSeq {
		d.marks = d.marks[1:]
	}
	if len(d.marks) == 1 && d.marks[0].seq < d.ackSeq {
		if d.ackSeq >= d.writeSeq {
			d.marks = d.marks[:0]
		}
	}
	if d.bytes < 0 {
		d.bytes = 0
	}
	d.spaceCond.Broadcast()
	if d.wantRemove() {
		d.workCond.Signal()
	}
	if i := firstFrame(d.pend); i >= 0 && d.pend[i].seq < d.ackSeq {
		// Records the flusher holds back are acknowledged now: it drops
		// them instead of writing them.
		d.poke()
	}
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil
	}
	return d.writeLedger(false)
}
