package buffer

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sidelog/sidelog/event"
)

type scratch struct {
	comp []byte
	ends []int
}

var compScratch = sync.Pool{New: func() any { return new(scratch) }}

// Write appends records. Their acks are released after the fsync that makes
// them durable. When the buffer is full it blocks (when_full: block) or drops
// the records that do not fit and releases their acks (drop_newest); a full
// or failing disk blocks writers until the flusher gets through.
func (d *Disk) Write(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	var comp []byte
	var ends []int
	if d.zenc != nil {
		sc := compScratch.Get().(*scratch)
		defer compScratch.Put(sc)
		comp, ends = sc.comp[:0], sc.ends[:0]
		for _, r := range recs {
			comp = d.zenc.EncodeAll(r.Data, comp)
			ends = append(ends, len(comp))
		}
		sc.comp, sc.ends = comp, ends
	}
	var drops []event.Releaser
	defer func() {
		for _, a := range drops {
			a.Release()
		}
	}()
	t := d.o.now()
	now := t.UnixMilli()
	d.mu.Lock()
	defer d.mu.Unlock()
	from := d.writeSeq
	// stamp notes the arrival of the records appended so far (for
	// Limits.Linger), before they are handed to the reader.
	stamp := func() {
		d.arr.add(from, d.writeSeq, t)
		from = d.writeSeq
	}
	start := 0
	for i, r := range recs {
		payload, z := r.Data, false
		if d.zenc != nil {
			// Keep the compressed form only when it is smaller (short
			// records often are not).
			if c := comp[start:ends[i]]; len(c) < len(r.Data) {
				payload, z = c, true
			}
			start = ends[i]
		}
		fsz := int64(frameHeader + len(payload))
		for {
			if d.closed {
				return ErrClosed
			}
			if d.sealed {
				return ErrSealed
			}
			if d.pendBytes >= d.o.maxPending {
				stamp()
				if err := d.waitRoom(ctx); err != nil {
					return err
				}
				continue
			}
			if d.bytes > 0 && d.bytes+fsz > d.maxBytes {
				if d.dropNew {
					break
				}
				stamp()
				if err := d.waitRoom(ctx); err != nil {
					return err
				}
				continue
			}
			break
		}
		if d.bytes > 0 && d.bytes+fsz > d.maxBytes {
			d.dropped++
			drops = append(drops, r.Ack)
			r.Arena.Release(1) // its Data is not kept
			continue
		}
		d.append(r, payload, fsz, now, z)
	}
	stamp()
	d.workCond.Signal()
	d.dataCond.Broadcast()
	return nil
}

// waitRoom waits for room for a writer; d.mu is held. The records of the
// call appended so far are handed to the flusher and the reader first:
// otherwise a call holding more than the pending bound (or max_bytes) would
// wait for room that only they can make.
func (d *Disk) waitRoom(ctx context.Context) error {
	d.workCond.Signal()
	d.dataCond.Broadcast()
	return d.wait(ctx, d.spaceCond)
}

// append frames one record into the pending chunks; d.mu is held.
func (d *Disk) append(r Record, payload []byte, fsz int64, now int64, z bool) {
	seq := d.writeSeq
	d.writeSeq++
	if d.needRoll || (d.activeOff+fsz > d.o.segmentSize && d.activeOff > segHeaderSize) {
		d.needRoll = false
		id := d.nextID
		d.nextID++
		d.segs = append(d.segs, &segment{id: id, firstSeq: seq})
		c := d.newChunk(id, 0)
		c.create = true
		c.data = appendSegHeader(c.data, segHeader{id: id, firstSeq: seq, created: now})
		d.pend = append(d.pend, c)
		d.activeOff = segHeaderSize
		d.pendBytes += segHeaderSize
	}
	// Chunks are fixed buffers: a full one is followed by another rather
	// than grown (no copying of what is already framed).
	if n := len(d.pend); n == 0 || d.pend[n-1].seg != d.segs[len(d.segs)-1].id || len(d.pend[n-1].data)+int(fsz) > cap(d.pend[n-1].data) {
		c := d.newChunk(d.segs[len(d.segs)-1].id, d.activeOff)
		if cap(c.data) < int(fsz) {
			c.data = make([]byte, 0, fsz)
		}
		d.pend = append(d.pend, c)
	}
	c := &d.pend[len(d.pend)-1]
	c.data = appendFrame(c.data, seq, now, payload, z)
	c.endSeq = seq + 1
	d.activeOff += fsz
	d.pendBytes += fsz
	d.pendAcks = append(d.pendAcks, r.Ack)
	d.bytes += fsz
	d.records++
	d.unread++
	if n := len(d.marks); n == 0 || now-d.marks[n-1].ms >= 100 {
		d.marks = append(d.marks, timeMark{seq: seq, ms: now})
	}
	d.cache = append(d.cache, cached{data: r.Data, arena: r.Arena, seq: seq, seg: c.seg, end: d.activeOff, size: fsz})
	d.cacheBytes += int64(len(r.Data))
	d.evict()
}

func (d *Disk) newChunk(seg uint64, off int64) chunk {
	c := chunk{seg: seg, off: off}
	if n := len(d.freeBufs); n > 0 {
		c.data = d.freeBufs[n-1][:0]
		d.freeBufs[n-1] = nil
		d.freeBufs = d.freeBufs[:n-1]
	} else {
		c.data = make([]byte, 0, chunkSize)
	}
	return c
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// flusher writes pending chunks, fsyncs them, releases their acks, and
// removes fully acknowledged segments.
func (d *Disk) flusher() {
	defer close(d.done)
	var wf File
	var wfID uint64
	closeW := func() {
		if wf != nil {
			wf.Close()
			wf = nil
		}
	}
	defer closeW()
	backoff := 10 * time.Millisecond
	for {
		d.mu.Lock()
		for len(d.pend) == 0 && !d.closed && !d.wantRemove() {
			d.workCond.Wait()
		}
		closing := d.closed
		chunks := d.pend
		acks := d.pendAcks
		upTo := d.writeSeq
		d.pend, d.pendAcks = d.spare[:0], d.spareAcks[:0]
		d.spare, d.spareAcks = nil, nil
		d.mu.Unlock()

		var err error
		for len(chunks) > 0 {
			d.mu.Lock()
			var skipped []uint64
			chunks, skipped = d.skipAcked(chunks)
			d.mu.Unlock()
			if len(skipped) > 0 {
				d.removeSkipped(skipped, &wf, &wfID)
			}
			err = d.writeChunks(chunks, &wf, &wfID)
			if err == nil {
				break
			}
			d.mu.Lock()
			d.ioErrors++
			if isNoSpace(err) {
				d.noSpace++
			}
			d.stalled = true
			d.mu.Unlock()
			d.log.Error("buffer: write failed, writers paused until it succeeds", "error", err, "retry_in", backoff.String(), "no_space", isNoSpace(err))
			closeW()
			if closing {
				break
			}
			// Acknowledged segments may be what fills the disk.
			_ = d.maintain(false)
			if !d.sleep(backoff) {
				closing = true
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		if err != nil {
			// Closing with a failing disk: what is pending is lost, but its
			// acks were never released, so the inputs read it again.
			return
		}
		backoff = 10 * time.Millisecond
		d.mu.Lock()
		d.stalled = false
		if len(chunks) > 0 {
			d.writtenSeq = upTo
			for _, c := range chunks {
				d.pendBytes -= int64(len(c.data))
				for _, s := range d.segs {
					if s.id == c.seg {
						s.written = c.off + int64(len(c.data))
					}
				}
			}
			for _, c := range chunks {
				if cap(c.data) == chunkSize && int64(len(d.freeBufs)*chunkSize) < d.o.maxPending+chunkSize {
					d.freeBufs = append(d.freeBufs, c.data[:0])
				}
			}
			clear(chunks)
			d.spare = chunks[:0]
			d.evict()
			d.spaceCond.Broadcast()
			d.dataCond.Broadcast()
		}
		d.mu.Unlock()
		for i, a := range acks {
			a.Release()
			acks[i] = event.Releaser{}
		}
		d.mu.Lock()
		d.spareAcks = acks[:0]
		d.mu.Unlock()

		if err := d.maintain(closing); err != nil && !closing {
			d.sleep(backoff)
			backoff = min(backoff*2, 5*time.Second)
		}
		if closing {
			d.mu.Lock()
			more := len(d.pend) > 0
			d.mu.Unlock()
			if !more {
				return
			}
		}
	}
}

// skipAcked drops the chunks of segments never written whose records are
// all acknowledged already (read from memory and delivered while the disk
// was slow or full): writing them would only delay what is not delivered.
// d.mu is held.
func (d *Disk) skipAcked(chunks []chunk) (out []chunk, skipped []uint64) {
	if len(chunks) < 2 || d.ackSeq == 0 {
		return chunks, nil
	}
	out = chunks[:0]
	for i := 0; i < len(chunks); {
		j := i + 1
		for j < len(chunks) && chunks[j].seg == chunks[i].seg {
			j++
		}
		// A segment followed by another in this list is complete: no later
		// chunk will need its file.
		if chunks[i].create && j < len(chunks) && chunks[j-1].endSeq <= d.ackSeq {
			for k := i; k < j; k++ {
				d.pendBytes -= int64(len(chunks[k].data))
			}
			for k, s := range d.segs {
				if s.id == chunks[i].seg {
					d.segs = append(d.segs[:k], d.segs[k+1:]...)
					break
				}
			}
			skipped = append(skipped, chunks[i].seg)
		} else {
			out = append(out, chunks[i:j]...)
		}
		i = j
	}
	if len(skipped) > 0 {
		clear(chunks[len(out):])
		d.spaceCond.Broadcast()
	}
	return out, skipped
}

// removeSkipped removes the files that a failed attempt may have created for
// skipped segments, once the ledger that covers them is durable.
func (d *Disk) removeSkipped(ids []uint64, wf *File, wfID *uint64) {
	if err := d.writeLedger(true); err != nil {
		return // the files stay; recovery removes acknowledged segments
	}
	for _, id := range ids {
		if *wf != nil && *wfID == id {
			(*wf).Close()
			*wf = nil
		}
		if err := d.o.fs.Remove(d.path(segName(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("buffer: cannot remove acknowledged segment", "segment", segName(id), "error", err)
		}
	}
}

// sleep waits dur or until Close; it reports false on Close.
func (d *Disk) sleep(dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.closeCh:
		return false
	}
}

// writeChunks writes chunks in order, fsyncing each segment it touched; a new
// segment's directory entry is fsynced too. Writes are at fixed offsets, so a
// retry after a failure writes the same bytes again.
func (d *Disk) writeChunks(chunks []chunk, wf *File, wfID *uint64) error {
	if len(chunks) == 0 {
		return nil
	}
	fsys := d.o.fs
	syncDir := false
	for _, c := range chunks {
		if *wf == nil || *wfID != c.seg {
			if *wf != nil {
				d.hook("fsync")
				if err := (*wf).Sync(); err != nil {
					return err
				}
				(*wf).Close()
				*wf = nil
			}
			flag := os.O_RDWR
			if c.create {
				flag |= os.O_CREATE
				d.hook("roll")
			}
			f, err := fsys.OpenFile(d.path(segName(c.seg)), flag, 0o600)
			if err != nil {
				return err
			}
			*wf, *wfID = f, c.seg
			syncDir = syncDir || c.create
		}
		d.hook("write")
		if _, err := (*wf).WriteAt(c.data, c.off); err != nil {
			return err
		}
	}
	d.hook("fsync")
	if err := (*wf).Sync(); err != nil {
		return err
	}
	if syncDir {
		if err := fsys.SyncDir(d.dir); err != nil {
			return err
		}
	}
	return nil
}
