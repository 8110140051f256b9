package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
)

// getArena returns a block for records read from disk; d.readMu is held.
func (d *Disk) getArena() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.freeArenas); n > 0 {
		a := d.freeArenas[n-1][:0]
		d.freeArenas[n-1] = nil
		d.freeArenas = d.freeArenas[:n-1]
		return a
	}
	return make([]byte, 0, arenaSize)
}

// evict drops the oldest cached records beyond the cache's size, as long as
// they are on disk; the reader reads those from the files.
func (d *Disk) evict() {
	for d.ch < len(d.cache) && d.cacheBytes > d.o.cacheBytes && d.cache[d.ch].seq < d.writtenSeq {
		d.cacheBytes -= int64(len(d.cache[d.ch].data))
		// framed into the pending chunks long ago: nothing reads Data now
		d.cache[d.ch].arena.Release(1)
		d.cache[d.ch] = cached{}
		d.ch++
	}
	if d.ch == len(d.cache) {
		d.cache, d.ch = d.cache[:0], 0
	} else if d.ch > 1024 && d.ch > len(d.cache)/2 {
		n := copy(d.cache, d.cache[d.ch:])
		clear(d.cache[n:])
		d.cache, d.ch = d.cache[:n], 0
	}
}

// cacheStart is the first sequence number held by the cache; d.mu is held.
func (d *Disk) cacheStart() uint64 {
	if d.ch < len(d.cache) {
		return d.cache[d.ch].seq
	}
	return d.writeSeq
}

// Read returns the next records not yet handed out: from memory while the
// reader keeps up with the writer, else from the segment files.
func (d *Disk) Read(ctx context.Context, l Limits) (*Batch, error) {
	d.readMu.Lock()
	defer d.readMu.Unlock()
	d.mu.Lock()
	for d.readSeq >= d.writeSeq {
		if d.closed {
			d.mu.Unlock()
			return nil, ErrClosed
		}
		if d.sealed {
			d.mu.Unlock()
			return nil, ErrDrained
		}
		if err := d.wait(ctx, d.dataCond); err != nil {
			d.mu.Unlock()
			return nil, err
		}
	}
	if l.Timeout > 0 && !d.sealed && !d.enough(l) {
		if rem := l.remaining(d.arr.at(d.readSeq), d.o.now()); rem > 0 {
			tctx, cancel := context.WithTimeout(ctx, rem)
			for !d.enough(l) && !d.sealed && !d.closed && tctx.Err() == nil {
				_ = d.wait(tctx, d.dataCond)
			}
			cancel()
			if err := ctx.Err(); err != nil {
				d.mu.Unlock()
				return nil, err
			}
		}
	}
	b := &Batch{}
	db := &diskBatch{start: d.readSeq}
	size := 0
	full := func(n int) bool {
		k := len(b.Records)
		return k > 0 && ((l.MaxEvents > 0 && k >= l.MaxEvents) || (l.MaxBytes > 0 && size+n > l.MaxBytes))
	}
	var err error
	for d.readSeq < d.writeSeq && !full(0) {
		if cs := d.cacheStart(); d.readSeq >= cs && d.ch < len(d.cache) {
			limit := false
			for d.ch < len(d.cache) {
				c := &d.cache[d.ch]
				if full(len(c.data)) {
					limit = true
					break
				}
				b.Records = append(b.Records, c.data)
				db.hold(c.arena) // released at Ack
				size += len(c.data)
				db.bytes += c.size
				db.records++
				d.readSeq = c.seq + 1
				d.rseg, d.roff = c.seg, c.end
				d.cacheBytes -= int64(len(c.data))
				*c = cached{}
				d.ch++
			}
			d.evict()
			if limit {
				break
			}
			continue
		}
		// From disk, up to where the cache starts.
		stop := d.cacheStart()
		segs := make([]segment, len(d.segs))
		for i, s := range d.segs {
			segs[i] = *s
		}
		d.mu.Unlock()
		var exhausted bool
		exhausted, err = d.readDisk(segs, stop, l, b, &size, db)
		d.mu.Lock()
		if err != nil || full(0) || exhausted {
			if err == nil && exhausted && d.readSeq < stop {
				// The files end before the records the cache does not hold:
				// they are lost (counted by recovery); go on after them.
				d.log.Error("buffer: records missing from the segment files", "from_seq", d.readSeq, "to_seq", stop)
				d.readSeq = stop
			}
			break
		}
	}
	db.end = d.readSeq
	db.seg, db.off = d.rseg, d.roff
	d.unread -= db.records
	if d.unread < 0 {
		d.unread = 0
	}
	if db.end > db.start {
		b.Seq = db.start
		b.impl = db
		d.inflight = append(d.inflight, db)
	}
	d.mu.Unlock()
	if err != nil && len(b.Records) == 0 {
		if db.end > db.start {
			_ = d.Ack(b)
		}
		return nil, err
	}
	if len(b.Records) == 0 && db.end > db.start {
		// Only skipped records: acknowledge the range and read again.
		_ = d.Ack(b)
		d.readMu.Unlock()
		defer d.readMu.Lock()
		return d.Read(ctx, l)
	}
	return b, nil
}

// enough reports whether a batch of l can be filled now; d.mu is held.
func (d *Disk) enough(l Limits) bool {
	avail := int64(d.writeSeq - d.readSeq)
	if l.ready(avail) {
		return true
	}
	if l.MaxBytes > 0 {
		// Framed bytes of what is unread, approximated by the cache (the
		// reader keeps up) or assumed plenty (the reader is behind).
		if d.readSeq < d.cacheStart() {
			return true
		}
		return d.cacheBytes >= int64(l.MaxBytes)
	}
	return l.MaxEvents <= 0
}

// readDisk reads records from the segment files into b, from the reader's
// position up to sequence stop or the batch limits. It returns the number of
// whether it reached the end of the files before stop. d.readMu is held,
// d.mu is not.
func (d *Disk) readDisk(segs []segment, stop uint64, l Limits, b *Batch, size *int, db *diskBatch) (exhausted bool, err error) {
	d.mu.Lock()
	seq, segID, off := d.readSeq, d.rseg, d.roff
	d.mu.Unlock()
	idx := -1
	for i, s := range segs {
		if s.id >= segID {
			idx = i
			if s.id > segID {
				off = segHeaderSize
			}
			break
		}
	}
	if idx < 0 {
		return true, nil
	}
	if len(d.rbuf) == 0 {
		d.rbuf = make([]byte, 256<<10)
	}
	// Records are copied (or decompressed) into arena blocks that the batch
	// keeps until Ack, which recycles them. A full block is replaced, not
	// grown, so records already sliced from it stay valid.
	arena := d.getArena()
	reserve := func(n int) {
		if cap(arena)-len(arena) < n {
			db.arenas = append(db.arenas, arena)
			if n <= arenaSize {
				arena = d.getArena() // one that an Ack gave back
			} else {
				arena = make([]byte, 0, n)
			}
		}
	}
	keepOpen := false // the batch is full and the next record is in segs[idx]
	lastData := -1    // the last segment with frames written
	for i, s := range segs {
		if s.written > segHeaderSize {
			lastData = i
		}
	}
outer:
	for idx < len(segs) {
		s := segs[idx]
		if off < segHeaderSize {
			off = segHeaderSize
		}
		if off >= s.written {
			if idx >= lastData {
				exhausted = true
				break
			}
			idx++
			off = segHeaderSize
			continue
		}
		if d.rfile == nil || d.rfileID != s.id {
			if d.rfile != nil {
				d.rfile.Close()
				d.rfile = nil
			}
			f, oerr := d.o.fs.OpenFile(d.path(segName(s.id)), os.O_RDONLY, 0)
			if oerr != nil {
				err = oerr
				break
			}
			d.rfile, d.rfileID = f, s.id
		}
		want := min(int64(len(d.rbuf)), s.written-off)
		n, rerr := d.rfile.ReadAt(d.rbuf[:want], off)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			err = rerr
			break
		}
		buf := d.rbuf[:n]
		if n == 0 {
			// The file is shorter than expected: go on with the next one.
			off = s.written
			continue
		}
		p := 0
		for p < len(buf) {
			fr, st := parseFrame(buf[p:])
			switch st {
			case frameShort:
				need := int64(frameHeader)
				if len(buf)-p >= 12 {
					need += int64(binary.LittleEndian.Uint32(buf[p+8:]) & lenMask)
				}
				if off+int64(p)+need <= s.written {
					// The rest is in the file: refill (grow for a big frame).
					if p == 0 {
						d.rbuf = make([]byte, max(2*len(d.rbuf), int(need)))
					}
					off += int64(p)
					continue outer
				}
				if len(buf)-p < 12 {
					// Torn tail: skip to the end of the segment.
					off = s.written
					continue outer
				}
				// A length running past the end: damage; resynchronise.
				fallthrough
			case frameBad:
				j := nextMarker(buf, p+1)
				if j < 0 {
					// keep the last 3 bytes: a marker may straddle the refill
					adv := max(len(buf)-3, p+1)
					off += int64(adv)
					if off+int64(len(buf)-adv) >= s.written {
						off = s.written
					}
					continue outer
				}
				p = j
				continue
			}
			if fr.seq < seq {
				p += fr.size
				continue
			}
			if fr.seq >= stop {
				off += int64(p)
				break outer
			}
			rec := fr.payload
			if fr.zstd {
				reserve(4*len(fr.payload) + 4096)
				start := len(arena)
				out, derr := d.zdec.DecodeAll(fr.payload, arena)
				if derr != nil {
					d.log.Error("buffer: cannot decompress a record with a good CRC", "segment", segName(s.id), "offset", off+int64(p), "error", derr)
					p += fr.size
					seq = fr.seq + 1
					continue
				}
				if &out[:cap(out)][cap(out)-1] != &arena[:cap(arena)][cap(arena)-1] {
					// The decoder needed a bigger block.
					db.arenas = append(db.arenas, arena)
					start = 0
					out = out[len(arena):]
				}
				arena = out
				rec = arena[start:]
				arena = arena[:start]
			}
			k := len(b.Records)
			if k > 0 && ((l.MaxEvents > 0 && k >= l.MaxEvents) || (l.MaxBytes > 0 && *size+len(rec) > l.MaxBytes)) {
				off += int64(p)
				keepOpen = true
				break outer
			}
			if !fr.zstd {
				reserve(len(rec))
				s := len(arena)
				arena = append(arena, rec...)
				rec = arena[s:len(arena):len(arena)]
			} else {
				s := len(arena)
				arena = arena[:s+len(rec)]
				rec = arena[s:len(arena):len(arena)]
			}
			b.Records = append(b.Records, rec)
			*size += len(rec)
			db.bytes += int64(fr.size)
			db.records++
			seq = fr.seq + 1
			p += fr.size
		}
		off += int64(p)
	}
	db.arenas = append(db.arenas, arena)
	if !keepOpen && d.rfile != nil {
		// The reader leaves the files (for the cache, or at their end):
		// an open segment would keep its disk space after its removal,
		// outside max_bytes. Only a batch that ended inside a segment
		// keeps it open, and that segment holds the next unread record,
		// so it cannot be removed meanwhile.
		d.rfile.Close()
		d.rfile = nil
	}
	d.mu.Lock()
	if segs := segs; idx >= 0 && idx < len(segs) {
		d.rseg = segs[idx].id
	}
	d.roff = off
	d.readSeq = seq
	d.mu.Unlock()
	return exhausted, err
}
