// The reader: one goroutine reads the queued files a chunk at a time,
// splits lines, seals batches and hands them to the pipeline.

package tail

import (
	"bytes"
	"context"
	"slices"
	"time"

	"github.com/sidelog/sidelog/event"
	ilines "github.com/sidelog/sidelog/input/lines"
	"github.com/sidelog/sidelog/parser"
)

// maxPending is how many events of small reads the reader gathers into
// one batch before it emits them; maxPendingAge how long the first of them
// may wait while the reader keeps finding files to read.
// linger is how long the reader, with events gathered and no file ready,
// waits for more before it emits them.
const (
	maxPending    = 1024
	maxPendingAge = 50 * time.Millisecond
	linger        = 10 * time.Millisecond
)

// send hands a batch to the pipeline, in order. The small batches of slow
// files (one line each, say) are gathered and emitted together when the
// reader has nothing else to read (flush) or maxPending events are
// gathered: a thousand files appended once a second cost one pass through
// the pipeline, not a thousand. A large batch is emitted as it is, after
// those gathered before it. Reader only.
func (t *Tailer) send(batch []*event.Event) error {
	if len(batch) == 0 {
		return nil
	}
	if len(t.pending)+len(batch) > maxPending {
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(batch) >= maxPending/4 && len(t.pending) == 0 {
		// batch may be the reader's scratch (see split): the pipeline
		// gets a slice of its own
		return t.emit(slices.Clone(batch))
	}
	if t.pending == nil {
		t.pending = t.recycle.batch() // one the engine gave back
		t.pendingSince = time.Now()
	}
	t.pending = append(t.pending, batch...)
	return nil
}

// flush emits the gathered events. Reader only.
func (t *Tailer) flush() error {
	if len(t.pending) == 0 {
		return nil
	}
	b := t.pending
	t.pending = nil // the pipeline owns b now
	return t.emit(b)
}

func (t *Tailer) enqueue(f *file) {
	if !f.queued.CompareAndSwap(false, true) {
		return
	}
	t.qmu.Lock()
	t.queue = append(t.queue, f)
	t.qmu.Unlock()
	select {
	case t.qsig <- struct{}{}:
	default:
	}
}

func (t *Tailer) dequeue() *file {
	t.qmu.Lock()
	defer t.qmu.Unlock()
	if len(t.queue) == 0 {
		return nil
	}
	f := t.queue[0]
	t.queue[0] = nil
	t.queue = t.queue[1:]
	if len(t.queue) == 0 {
		t.queue = t.queue[:0:0]
	}
	return f
}

// readLoop reads ready files until ctx is cancelled.
func (t *Tailer) readLoop(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		f := t.dequeue()
		if f == nil {
			if t.pending != nil {
				// gathered events: wait briefly for more ready files (a
				// burst of appends to many files arrives as events over a
				// few milliseconds), then emit them together
				if wait := t.pendingSince.Add(linger).Sub(time.Now()); wait > 0 {
					timer.Reset(wait)
					select {
					case <-ctx.Done():
						return nil
					case <-t.qsig:
						continue
					case <-timer.C:
					}
				}
				if err := t.flush(); err != nil {
					return err
				}
			}
			next, ok := t.nextDeadline()
			if ok {
				timer.Reset(time.Until(next))
			} else {
				timer.Reset(time.Hour)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.qsig:
			case <-timer.C:
				if err := t.flushDue(time.Now()); err != nil {
					return err
				}
			}
			continue
		}
		f.queued.Store(false)
		t.verify(f)
		more := false
		for i := 0; i < chunksPerTurn; i++ {
			var batch []*event.Event
			batch, more = t.readChunk(f, time.Now(), -1)
			if err := t.send(batch); err != nil {
				return err
			}
			if !more {
				break
			}
		}
		if more {
			t.enqueue(f)
		}
		now := time.Now()
		if err := t.flushDue(now); err != nil {
			return err
		}
		if t.pending != nil && now.Sub(t.pendingSince) >= maxPendingAge {
			if err := t.flush(); err != nil {
				return err
			}
		}
	}
}

func (t *Tailer) nextDeadline() (time.Time, bool) {
	var min time.Time
	for _, d := range t.deadlines {
		if min.IsZero() || d.Before(min) {
			min = d
		}
	}
	return min, !min.IsZero()
}

// flushDue flushes the assemblers whose deadline has passed, except those
// of files waiting in the reader's queue: a group's timeout (flush_timeout,
// a multiline timeout) is how long its next piece may take to be written,
// and bytes written meanwhile may hold it. A reader held back by a slow
// output (its emit blocked past the timeout) reads them first; the group is
// flushed once the reader is at the end of the file and the deadline still
// passed.
func (t *Tailer) flushDue(now time.Time) error {
	for f, d := range t.deadlines {
		if d.After(now) || f.queued.Load() {
			continue
		}
		delete(t.deadlines, f)
		f.mu.Lock()
		var out []*event.Event
		if f.asm != nil {
			// only what is due: a composite assembler holds groups with
			// deadlines of their own (partials per stream, multiline)
			if e, ok := f.asm.(parser.Expirer); ok {
				out = e.Expire(now, nil)
			} else {
				out = f.asm.Flush(nil)
			}
			t.asmLost(f)
			t.noteDeadline(f)
		}
		f.mu.Unlock()
		if err := t.send(out); err != nil {
			return err
		}
	}
	return nil
}

// noteDeadline records the assembler's deadline. Call with f.mu held.
func (t *Tailer) noteDeadline(f *file) {
	if f.asm == nil {
		return
	}
	if d, ok := f.asm.Deadline(); ok {
		t.deadlines[f] = d
	} else {
		delete(t.deadlines, f)
	}
}

// verify compares the file's first bytes with its fingerprint before a turn
// of reads, when the reader has not read the file yet in this run (just
// opened, resumed from the checkpoint): a file truncated and written again
// past our offset (copytruncate) would otherwise be read from the old
// offset. Once the reader has read from it, each read checks the bytes just
// before its offset instead, in the same system call (see readChunk).
func (t *Tailer) verify(f *file) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd == nil || f.offset == 0 || f.mLen == 0 || f.truncated || f.winN > 0 {
		return
	}
	if !f.checkPrefix(f.readHead(t.readerHead, int64(f.mLen))) {
		f.truncated = true
	}
}

// readChunk reads one chunk of f and returns the events it completes.
// more reports that the read filled the buffer (there is likely more to
// read). target >= 0 stops reading at that offset (graceful stop).
func (t *Tailer) readChunk(f *file, now time.Time, target int64) (batch []*event.Event, more bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd == nil {
		return nil, false
	}
	if f.truncated {
		batch = t.newGeneration(f, now)
		return batch, true
	}
	if !f.idSet {
		if st, err := f.fd.Stat(); err == nil {
			f.checkPrefix(f.readHead(t.readerHead, st.Size()))
		}
	}
	p := len(f.partial)
	size := int(t.cfg.ReadBufferBytes)
	if p > size/2 {
		size += p
	}
	want := size - p - winBytes // the buffer stays read_buffer_bytes
	if target >= 0 {
		if f.offset >= target {
			return nil, false
		}
		if r := target - f.offset; r < int64(want) {
			want = int(r)
		}
	}
	// The scratch holds, from s: the held partial line, then the bytes
	// read. The read starts w bytes early, over the last bytes consumed
	// (the window, kept in f.win; they end the partial line, or go in
	// front of it in the winBytes reserved): if they are no longer the
	// same, or the file is shorter, it was truncated (and maybe written
	// again past our offset) since the last read.
	w := f.winN
	s := winBytes + p
	if cap(t.scratch) < s+want {
		if t.scratch != nil {
			t.recycle.putChunk(t.scratch)
		}
		t.scratch = t.recycle.chunk(s + want)
	}
	chunk := t.scratch
	buf := chunk[:s+want]
	copy(buf[winBytes:], f.partial)
	n, err := f.pread(buf[s-w:], f.offset-int64(w))
	if err != nil {
		return t.readFailed(f, err, now), false
	}
	if !f.readErrAt.IsZero() {
		t.log.Info("tail: reads work again", "path", f.path, "failing_for", now.Sub(f.readErrAt).Round(time.Millisecond))
		f.readErrAt = time.Time{}
	}
	if w > 0 {
		if n < w || !bytes.Equal(buf[s-w:s], f.win[:w]) {
			f.truncated = true // the next call starts a new generation
			return nil, true
		}
		if n -= w; n < 0 {
			n = 0
		}
	}
	if n == 0 {
		return t.atEOF(f, now), false
	}
	f.eofAt = time.Time{} // more was written: rotate_wait starts again at the end
	f.lastData = now
	// the window for the next read: the last bytes now consumed
	end := s + n
	f.winN = copy(f.win[:], buf[max(min(s-w, winBytes), end-winBytes):end])
	data := buf[winBytes:end]
	var pack *block
	if len(data) <= t.smallRead() {
		// a small read (a slow file): copy it out and keep the scratch,
		// so that its events hold a buffer of their own size: into the
		// pack shared with other files' small reads while the file's
		// assembler holds no event (a held event would keep the pack),
		// else into a buffer of its own
		chunk = nil
		if pack = t.packFor(f, data); pack != nil {
			k := pack.used
			pack.used += copy(pack.chunk[k:], data)
			data = pack.chunk[k:pack.used:pack.used]
		} else {
			data = bytes.Clone(data)
		}
	} else {
		t.scratch = nil // the events own it now
	}
	f.offset += int64(n)
	f.offsetA.Store(f.offset)
	if f.mLen < t.cfg.FingerprintBytes {
		// learn the fingerprint of a short file (or of a new generation)
		// from the bytes consumed, so that the next truncation shows:
		// from the bytes just read when they continue the known prefix
		// (checked before this read), else read again
		if !f.extendPrefix(buf[s:end], f.offset-int64(n), t.cfg.FingerprintBytes) &&
			!f.checkPrefix(f.readHead(t.readerHead, f.offset)) {
			f.truncated = true
		}
	}
	t.stats.bytesRead.Add(uint64(n))
	batch = t.split(f, data, chunk, pack, now)
	if f.asm != nil {
		t.noteDeadline(f)
	}
	return batch, n == want && target < 0 || target >= 0 && f.offset < target
}

// readFailed handles a failed read (EIO, ESTALE): not the end of the file.
// The read is tried again at each scan for max_read_error_hold; then the
// bytes from the read position to the file's size are given up (counted as
// lost), the held partial line is emitted as it is, and reading goes on
// after them. Call with f.mu held.
func (t *Tailer) readFailed(f *file, err error, now time.Time) []*event.Event {
	if f.readErrAt.IsZero() {
		f.readErrAt = now
		t.log.Warn("tail: read failed; retried at each scan for max_read_error_hold", "path", f.path,
			"offset", f.offset, "error", err, "max_read_error_hold", t.cfg.MaxReadErrorHold)
	}
	t.stats.readErrors.Add(1)
	if now.Sub(f.readErrAt) < t.cfg.MaxReadErrorHold {
		return nil
	}
	size := f.size
	if st, serr := f.fd.Stat(); serr == nil {
		size = st.Size()
	}
	out := t.sealPartial(f, now, nil)
	if size > f.offset {
		t.lose(f.path, lossReadError, size-f.offset, "offset", f.offset, "error", err,
			"failing_for", now.Sub(f.readErrAt).Round(time.Millisecond))
		f.offset, f.lineStart = size, size
		f.offsetA.Store(size)
		f.winN = 0 // the bytes before the new offset were not read
		f.tr.addDone(size)
	}
	f.readErrAt = time.Time{}
	return out
}

// winBytes is how many bytes before its offset each read of a file reads
// again and compares with what it consumed there.
const winBytes = 32

// smallRead is the largest read that is copied out of the reader's
// scratch buffer rather than handed over with it.
func (t *Tailer) smallRead() int { return int(t.cfg.ReadBufferBytes) / 8 }

// packFor returns the open pack to copy a small read of f into (its data,
// not yet copied; f.mu held), or nil when the read is copied out on its
// own: f's assembler holds events, or the read is too large for a pack.
// A pack without room for it is closed and a new one opened. Reader only.
func (t *Tailer) packFor(f *file, data []byte) *block {
	if noRecycle || len(data) > packBytes/4 {
		return nil
	}
	if f.asm != nil {
		if _, holds := f.asm.Deadline(); holds {
			return nil
		}
	}
	lines := bytes.Count(data, []byte{'\n'}) + 1
	if lines > packEvents/4 {
		return nil
	}
	if t.pack != nil && !t.recycle.fits(t.pack, len(data), lines) {
		t.recycle.closePack(t.pack)
		t.pack = nil
	}
	if t.pack == nil {
		t.pack = t.recycle.newPack()
	}
	return t.pack
}

// split cuts data (the held partial line followed by what was just read)
// into line events, holds the unterminated rest, and seals the batch.
// With chunk (the read buffer data lies in), the recycler takes chunk back
// with the event slab once every event came back; with pack (data was
// copied into it), the events come from the pack's slab and the pack is
// reused once every event of its reads came back; with neither, data and
// the slab are sized for this read and left to the garbage collector. The
// batch returned may be the reader's scratch: send copies it.
func (t *Tailer) split(f *file, data, chunk []byte, pack *block, now time.Time) []*event.Event {
	pooled := chunk != nil
	base := f.offset - int64(len(data)) // file offset of data[0]
	maxLine := int(t.cfg.MaxLine)
	n := bytes.Count(data, []byte{'\n'}) + 1
	var slab []event.Event
	switch {
	case pack != nil:
		slab = pack.slab[pack.evUsed : pack.evUsed+n]
		pack.evUsed += n
	case pooled:
		slab = t.recycle.slab(n)
	default:
		slab = make([]event.Event, n)
	}
	lines := t.lines[:0]
	if cap(lines) < n {
		lines = make([]*event.Event, 0, max(n, 64))
	}
	gen := f.tr.gen
	var cut int64 // bytes past max_line_bytes given up
	s := 0
	for {
		i := bytes.IndexByte(data[s:], '\n')
		if i < 0 {
			break
		}
		start := base + int64(s)
		line := data[s : s+i : s+i]
		s += i + 1
		if f.skipping { // the rest of a line already cut
			f.skipping = false
			f.lineStart = base + int64(s)
			cut += int64(len(line))
			continue
		}
		f.lineStart = base + int64(s)
		line, keep := ilines.Trim(line) // the same rule as sidelog test
		if !keep {
			continue
		}
		ev := &slab[len(lines)]
		off := base + int64(s)
		if len(line) > maxLine {
			n := len(line)
			line = ilines.Cut(line, maxLine) // never inside a UTF-8 character
			cut += int64(n - len(line))
			ev.Flags = event.Truncated
			off = start + int64(maxLine)
		}
		ev.Raw = line
		ev.Input = t.name
		ev.Path = f.path
		ev.Time = now
		ev.Pos = event.Position{FileID: f.id, Generation: gen, Offset: off}
		lines = append(lines, ev)
	}
	rest := data[s:]
	switch {
	case f.skipping:
		cut += int64(len(rest))
		f.partial = f.partial[:0]
	case len(rest) >= maxLine:
		ev := &slab[len(lines)]
		ev.Raw = ilines.Cut(rest, maxLine)
		cut += int64(len(rest) - len(ev.Raw))
		ev.Flags = event.Truncated
		ev.Input, ev.Path, ev.Time = t.name, f.path, now
		ev.Pos = event.Position{FileID: f.id, Generation: gen, Offset: f.lineStart + int64(maxLine)}
		lines = append(lines, ev)
		f.skipping = true
		f.partial = f.partial[:0]
	default:
		f.partial = append(f.partial[:0], rest...)
	}
	t.stats.linesRead.Add(uint64(len(lines)))
	t.lose(f.path, lossLineCut, cut)
	t.lines = lines[:0] // kept for the next read (send copies out)
	out, ack := t.seal(f, lines, f.lineStart)
	// The held partial line was copied out of data, so only the events
	// reference the chunk and the slab: those that come back through
	// Recycle, and none that an assembler absorbed into a joined event
	// during seal (its bytes were copied; event.Join cleared its ack).
	if !pooled && pack == nil {
		return out
	}
	live := 0
	for _, ev := range lines {
		if ev.AckGroup() != nil {
			live++
		}
	}
	if pack != nil {
		t.recycle.trackPack(pack, ack, live)
	} else {
		t.recycle.track(chunk[:cap(chunk)], slab, ack, live)
	}
	return out
}

// seal attaches one acknowledgement to lines, registers the batch (ending
// at end) with the tracker, and runs the lines through the assembler. It
// returns the events to emit and the acknowledgement (nil without lines).
// Call with f.mu held.
func (t *Tailer) seal(f *file, lines []*event.Event, end int64) ([]*event.Event, *event.Ack) {
	if len(lines) == 0 {
		f.tr.addDone(end)
		return nil, nil
	}
	tr := f.tr
	seq := tr.add(end)
	t.inflight.Add(1)
	ack := event.NewAck(len(lines), func() {
		tr.done(seq)
		t.batchDone()
	})
	for _, ev := range lines {
		ev.SetAck(ack)
	}
	if f.asm == nil {
		return lines, ack
	}
	out := t.asmOut[:0]
	for _, ev := range lines {
		out = f.asm.Push(ev, out)
	}
	t.asmOut = out[:0] // the reader's scratch: send copies out
	t.asmLost(f)
	return out, ack
}

// asmFlush appends everything f's assembler holds. Call with f.mu held.
func (t *Tailer) asmFlush(f *file, out []*event.Event) []*event.Event {
	if f.asm == nil {
		return out
	}
	out = f.asm.Flush(out)
	t.asmLost(f)
	return out
}

// sealPartial emits the held unterminated line as it is (the file was
// rotated away, deleted or is read for the last time). Call with f.mu held.
func (t *Tailer) sealPartial(f *file, now time.Time, out []*event.Event) []*event.Event {
	if f.skipping {
		f.skipping = false
		f.lineStart = f.offset
		f.tr.addDone(f.offset)
		return out
	}
	if len(f.partial) == 0 {
		return out
	}
	raw := f.partial
	if raw[len(raw)-1] == '\r' {
		raw = raw[:len(raw)-1]
	}
	ev := &event.Event{
		Raw:   bytes.Clone(raw),
		Input: t.name, Path: f.path, Time: now,
		Pos: event.Position{FileID: f.id, Generation: f.tr.gen, Offset: f.offset},
	}
	f.partial = nil
	f.lineStart = f.offset
	t.stats.linesRead.Add(1)
	if len(ev.Raw) == 0 {
		f.tr.addDone(f.offset)
		return out
	}
	sealed, _ := t.seal(f, []*event.Event{ev}, f.offset)
	return append(out, sealed...)
}
