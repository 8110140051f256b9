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
	if len(comp) > 0 {
		// The compressed forms wait for the flusher: out of the scratch.
		comp = append([]byte(nil), comp...)
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
	if d.pendBytes >= d.o.maxPending/2 {
		d.poke()
	}
	d.workCond.Signal()
	d.dataCond.Broadcast()
	return nil
}

// poke ends the flusher's hold (see holdFor), or the next one if it is not
// holding yet; d.mu is held.
func (d *Disk) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
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

// append places one record in the segments and queues it for the flusher;
// d.mu is held.
func (d *Disk) append(r Record, payload []byte, fsz int64, now int64, z bool) {
	seq := d.writeSeq
	d.writeSeq++
	if d.needRoll || (d.activeOff+fsz > d.o.segmentSize && d.activeOff > segHeaderSize) {
		d.needRoll = false
		id := d.nextID
		d.nextID++
		d.segs = append(d.segs, &segment{id: id, firstSeq: seq})
		hdr := appendSegHeader(make([]byte, 0, segHeaderSize), segHeader{id: id, firstSeq: seq, created: now})
		d.pend = append(d.pend, pendRec{data: hdr, seq: seq, ms: now, seg: id, hdr: true})
		d.activeOff = segHeaderSize
		d.pendBytes += segHeaderSize
	}
	seg := d.segs[len(d.segs)-1].id
	var a *Arena
	if !z && r.Arena != nil {
		// The flusher frames Data when it writes it (the cache's reference
		// may be gone by then).
		r.Arena.Retain(1)
		a = r.Arena
	}
	d.pend = append(d.pend, pendRec{data: payload, arena: a, ack: r.Ack, seq: seq, ms: now, seg: seg, off: d.activeOff, z: z})
	d.pendFrames++
	d.activeOff += fsz
	d.pendBytes += fsz
	d.bytes += fsz
	d.records++
	d.unread++
	if n := len(d.marks); n == 0 || now-d.marks[n-1].ms >= 100 {
		d.marks = append(d.marks, timeMark{seq: seq, ms: now})
	}
	d.cache = append(d.cache, cached{data: r.Data, arena: r.Arena, seq: seq, seg: seg, end: d.activeOff, size: fsz})
	d.cacheBytes += int64(len(r.Data))
	d.evict()
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// flusher writes pending records, fsyncs them, releases their acks, and
// removes fully acknowledged segments. It holds records back for up to
// writeDelay (see holdFor): a record delivered and acknowledged meanwhile is
// not written at all, only its input's ack released (trim). While the
// outputs keep up, the files then see little but segment headers; when they
// fall behind, everything is written as before.
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
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	var gone []pendRec // trimmed records, released outside d.mu
	release := func() {
		for i := range gone {
			gone[i].arena.Release(1)
			gone[i].ack.Release()
		}
		clear(gone)
		gone = gone[:0]
	}
	backoff := 10 * time.Millisecond
	for {
		d.mu.Lock()
		for d.pendFrames == 0 && !d.closed && !d.wantRemove() {
			d.workCond.Wait()
		}
		if wait := d.holdFor(); wait > 0 {
			d.mu.Unlock()
			hold.Reset(wait)
			woken := false
			select {
			case <-hold.C:
			case <-d.closeCh:
			case <-d.wake:
				woken = true
			}
			hold.Stop()
			d.mu.Lock()
			var skipped []uint64
			d.pend, skipped = d.trim(d.pend, &gone)
			d.pendFrames = 0
			for i := range d.pend {
				if !d.pend[i].hdr {
					d.pendFrames++
				}
			}
			d.trimmed()
			if (woken && d.holdFor() > 0) || len(skipped) > 0 || (d.pendFrames == 0 && !d.closed) {
				d.mu.Unlock()
				release()
				if len(skipped) > 0 {
					d.removeSkipped(skipped, &wf, &wfID)
				}
				continue
			}
		}
		closing := d.closed
		if d.pendFrames == 0 && !closing {
			// Woken for segment removal; headers alone wait for records.
			d.mu.Unlock()
			release()
			if err := d.maintain(false); err != nil {
				d.sleep(backoff)
				backoff = min(backoff*2, 5*time.Second)
			}
			continue
		}
		// The records held long enough (all of them when closing, draining
		// or at half the pending bound) are written; the younger ones wait
		// on: most are delivered before their turn comes.
		k := d.writeCut(closing)
		recs := d.pend[:k:k]
		upTo := d.writeSeq
		d.pend = append(d.spare[:0], d.pend[k:]...)
		d.spare = nil
		d.pendFrames = 0
		for i := range d.pend {
			if !d.pend[i].hdr {
				if d.pendFrames == 0 {
					upTo = d.pend[i].seq
				}
				d.pendFrames++
			}
		}
		// where each segment's records end, skipped or not
		var ends []segEnd
		for i := range recs {
			r := &recs[i]
			if n := len(ends); n > 0 && ends[n-1].seg == r.seg {
				ends[n-1].end = r.off + r.size()
			} else {
				ends = append(ends, segEnd{r.seg, r.off + r.size()})
			}
		}
		d.mu.Unlock()
		release()

		var err error
		for len(recs) > 0 {
			d.mu.Lock()
			var skipped []uint64
			recs, skipped = d.trim(recs, &gone)
			if len(recs) == 0 {
				// Delivered while the disk failed: nothing left to write,
				// so no stall (cleared before their acks are released).
				d.stalled = false
			}
			d.mu.Unlock()
			release()
			if len(skipped) > 0 {
				d.removeSkipped(skipped, &wf, &wfID)
			}
			err = d.coverSkipped(recs)
			if err == nil {
				err = d.writeRecs(recs, &wf, &wfID)
			}
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
		if upTo > d.writtenSeq {
			d.writtenSeq = upTo
		}
		for _, e := range ends {
			for _, s := range d.segs {
				if s.id == e.seg && e.end > s.written {
					s.written = e.end
				}
			}
		}
		for i := range recs {
			d.pendBytes -= recs[i].size()
		}
		d.evict()
		d.spaceCond.Broadcast()
		d.dataCond.Broadcast()
		d.mu.Unlock()
		for i := range recs {
			recs[i].arena.Release(1)
			recs[i].ack.Release()
		}
		clear(recs)
		d.mu.Lock()
		d.spare = recs[:0]
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

type segEnd struct {
	seg uint64
	end int64
}

// holdFor is how much longer the flusher holds the pending records back;
// d.mu is held. Not at all when closing or draining, when the pending
// records take half the pending bound (writers wait at the bound), or
// without writeDelay.
func (d *Disk) holdFor() time.Duration {
	if d.o.writeDelay <= 0 || d.pendFrames == 0 || d.closed || d.sealed || d.pendBytes >= d.o.maxPending/2 {
		return 0
	}
	i := firstFrame(d.pend)
	if i < 0 {
		return 0
	}
	age := time.Duration(d.o.now().UnixMilli()-d.pend[i].ms) * time.Millisecond
	return min(d.o.writeDelay-age, d.o.writeDelay)
}

// writeCut is how many of the pending records (segment headers included)
// the flusher writes now, once the oldest waited writeDelay: those that
// waited half of it, with the headers of their segments; every one when
// closing, draining, at half the pending bound, or without writeDelay. A
// younger record stays pending with everything after it (and the headers
// just before it: a segment's header is written with its first record).
// Half, not all of writeDelay: the next write then comes at least
// writeDelay/2 later, so an output that delivers nothing costs at most two
// writes and fsyncs per writeDelay, not one per record. d.mu is held.
func (d *Disk) writeCut(closing bool) int {
	n := len(d.pend)
	if d.o.writeDelay <= 0 || closing || d.sealed || d.pendBytes >= d.o.maxPending/2 {
		return n
	}
	young := d.o.now().UnixMilli() - d.o.writeDelay.Milliseconds()/2
	k := n
	for i := range d.pend {
		if !d.pend[i].hdr && d.pend[i].ms > young {
			k = i
			break
		}
	}
	for k > 0 && d.pend[k-1].hdr {
		k--
	}
	if k == 0 {
		return n // nothing old enough (a forced write): all of it
	}
	return k
}

// firstFrame is the index of the first record (not a segment header) in
// recs, or -1.
func firstFrame(recs []pendRec) int {
	for i := range recs {
		if !recs[i].hdr {
			return i
		}
	}
	return -1
}

// trimmed moves writtenSeq over the records trimmed from pend: below the
// first record still pending, every record is in a file or acknowledged;
// d.mu is held.
func (d *Disk) trimmed() {
	upTo := d.writeSeq
	if i := firstFrame(d.pend); i >= 0 {
		upTo = d.pend[i].seq
	}
	if upTo > d.writtenSeq {
		d.writtenSeq = upTo
		d.evict()
	}
}

// trim drops from recs the records already acknowledged (delivered from
// memory while they waited: writing them would only cost) and appends them
// to gone, whose acks the caller releases. A new segment all of whose
// records are acknowledged, followed by another in recs, is not created at
// all: its id is returned (a failed attempt may have created its file).
// Skipping records leaves a hole in a segment if later ones are written;
// coverSkipped makes the ledger say first that they are acknowledged.
// d.mu is held.
func (d *Disk) trim(recs []pendRec, gone *[]pendRec) (out []pendRec, skipped []uint64) {
	ack := d.ackSeq
	if len(recs) == 0 || ack == 0 {
		return recs, nil
	}
	if first := firstFrame(recs); first < 0 || recs[first].seq >= ack {
		return recs, nil
	}
	out = recs[:0]
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && !recs[j].hdr && recs[j].seg == recs[i].seg {
			j++
		}
		if recs[i].hdr && j < len(recs) && recs[j-1].seq < ack {
			// A segment followed by another in this list is complete: no
			// later record will need its file.
			for k := i; k < j; k++ {
				d.pendBytes -= recs[k].size()
				if !recs[k].hdr {
					*gone = append(*gone, recs[k])
				}
			}
			for k, s := range d.segs {
				if s.id == recs[i].seg {
					d.segs = append(d.segs[:k], d.segs[k+1:]...)
					break
				}
			}
			skipped = append(skipped, recs[i].seg)
			i = j
			continue
		}
		for k := i; k < j; k++ {
			if !recs[k].hdr && recs[k].seq < ack {
				d.pendBytes -= recs[k].size()
				d.skipTo = max(d.skipTo, recs[k].seq+1)
				*gone = append(*gone, recs[k])
				continue
			}
			out = append(out, recs[k])
		}
		i = j
	}
	clear(recs[len(out):])
	d.spaceCond.Broadcast()
	return out, skipped
}

// coverSkipped makes the ledger durable over the skipped records before
// records after them are written: otherwise, after a power cut, recovery
// would take the hole they leave for lost records.
func (d *Disk) coverSkipped(recs []pendRec) error {
	if firstFrame(recs) < 0 {
		return nil
	}
	d.mu.Lock()
	need := d.skipTo
	d.mu.Unlock()
	d.ledgerMu.Lock()
	durable := d.ledgerSync
	d.ledgerMu.Unlock()
	if need <= durable {
		return nil
	}
	return d.writeLedger(true)
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

// writeRecs writes recs in order (runs of adjacent frames in one write),
// fsyncing each segment it touched; a new segment's directory entry is
// fsynced too. Writes are at fixed offsets, so a retry after a failure
// writes the same bytes again.
func (d *Disk) writeRecs(recs []pendRec, wf *File, wfID *uint64) error {
	if len(recs) == 0 {
		return nil
	}
	fsys := d.o.fs
	syncDir := false
	buf := d.wbuf[:0]
	var at int64
	write := func() error {
		if len(buf) == 0 {
			return nil
		}
		d.hook("write")
		_, err := (*wf).WriteAt(buf, at)
		buf = buf[:0]
		return err
	}
	defer func() {
		if cap(buf) <= 2*writeBufSize {
			d.wbuf = buf[:0]
		}
	}()
	for i := range recs {
		r := &recs[i]
		if *wf == nil || *wfID != r.seg {
			if err := write(); err != nil {
				return err
			}
			if *wf != nil {
				d.hook("fsync")
				if err := (*wf).Sync(); err != nil {
					return err
				}
				(*wf).Close()
				*wf = nil
			}
			flag := os.O_RDWR
			if r.hdr {
				flag |= os.O_CREATE
				d.hook("roll")
			}
			f, err := fsys.OpenFile(d.path(segName(r.seg)), flag, 0o600)
			if err != nil {
				return err
			}
			*wf, *wfID = f, r.seg
			syncDir = syncDir || r.hdr
		}
		if len(buf) > 0 && (at+int64(len(buf)) != r.off || len(buf) >= writeBufSize) {
			if err := write(); err != nil {
				return err
			}
		}
		if len(buf) == 0 {
			at = r.off
		}
		if r.hdr {
			buf = append(buf, r.data...)
		} else {
			buf = appendFrame(buf, r.seq, r.ms, r.data, r.z)
		}
	}
	if err := write(); err != nil {
		return err
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
