// Rotation and the end of a file: renamed-away and deleted files are read
// to their end and closed; truncations start a new generation.

package tail

import (
	"time"

	"github.com/sidelog/sidelog/event"
)

// atEOF runs when a read returns nothing: a file renamed away (rotate_wait
// after its end was first read: a reader held back by a blocked output may
// reach it long after the rename) or deleted is finished and closed. Call
// with f.mu held.
func (t *Tailer) atEOF(f *file, now time.Time) []*event.Event {
	deleted := !f.deletedAt.IsZero()
	if !f.rotatedAt.IsZero() && f.eofAt.IsZero() {
		f.eofAt = now // rotate_wait starts when the end is read, not at the rename
	}
	rotated := !f.rotatedAt.IsZero() && now.Sub(f.eofAt) >= t.cfg.RotateWait
	if !deleted && !rotated {
		return nil
	}
	out := t.asmFlush(f, t.sealPartial(f, now, nil))
	delete(t.deadlines, f)
	t.closeLocked(f)
	return out
}

// dropHeld gives up the lines f's assembler holds (a file released
// unread): their acknowledgements are released, so that the tracker drains
// and a stop does not wait for them. It returns their bytes (newlines
// included). Call with f.mu held.
func (t *Tailer) dropHeld(f *file) int64 {
	if f.asm == nil {
		return 0
	}
	var n int64
	for _, ev := range f.asm.Flush(nil) {
		n += int64(len(ev.Raw)) + 1
		ev.Done()
	}
	t.asmLost(f)
	return n
}

// closeLocked closes f and forgets its paths; the identity stays known for
// the checkpoint. Call with f.mu held.
func (t *Tailer) closeLocked(f *file) {
	if f.fd == nil {
		return
	}
	f.fd.Close()
	f.fd = nil
	t.nOpen.Add(-1)
	f.asm = nil
	f.partial = nil
	t.mu.Lock()
	if t.byPath[f.path] == f {
		delete(t.byPath, f.path)
	}
	if f.target != "" && t.byPath[f.target] == f {
		delete(t.byPath, f.target)
	}
	t.mu.Unlock()
	t.stats.closed.Add(1)
}

// newGeneration handles a truncation: what was held is emitted, and reading
// starts again at offset 0 under the next generation. Call with f.mu held.
func (t *Tailer) newGeneration(f *file, now time.Time) []*event.Event {
	out := t.asmFlush(f, t.sealPartial(f, now, nil))
	if lost := f.genMax - f.offset; lost > 0 {
		// truncated while the reader was behind: never read
		t.lose(f.path, lossTruncated, lost, "offset", f.offset, "size_before", f.genMax, "generation", f.tr.gen)
	}
	f.genMax = 0
	f.readErrAt = time.Time{}
	f.truncated = false
	f.mFP, f.mLen, f.vhLen = 0, 0, 0 // learnt again from the new content
	f.tr = newTracker(f.tr.gen+1, 0, &t.dirty)
	t.dirty.Store(true)
	f.offset, f.lineStart = 0, 0
	f.winN = 0
	f.offsetA.Store(0)
	f.partial = f.partial[:0]
	f.skipping = false
	t.stats.truncations.Add(1)
	t.log.Debug("tail: truncated: new generation", "path", f.path, "generation", f.tr.gen)
	return out
}

// forgets closed files gone for forget_after.
func (t *Tailer) sweep(now time.Time) {
	t.mu.Lock()
	all := make([]*file, 0, len(t.files))
	for _, f := range t.files {
		all = append(all, f)
	}
	t.mu.Unlock()
	var forget []key
	var gone []*file
	for _, f := range all {
		f.mu.Lock()
		if f.fd == nil {
			_, out := f.tr.state()
			if out == 0 && now.Sub(f.seen) > t.cfg.ForgetAfter {
				forget = append(forget, f.key)
			}
			if f.inactive && f.seenScan != t.scanN {
				// closed as idle, and no path matches it any more
				// (renamed away): looked for by identity, once
				f.inactive = false
				gone = append(gone, f)
			}
			f.mu.Unlock()
			continue
		}
		if !f.deletedAt.IsZero() || !f.rotatedAt.IsZero() {
			t.changed = true // not finished yet: rotate_wait, max_deleted_hold
		}
		if f.seenScan == t.scanN {
			if f.pathScan != t.scanN && f.altPath != "" { // renamed, still matched
				t.renamed(f, f.altPath)
			}
			t.closeInactive(f, now)
			f.mu.Unlock()
			continue
		}
		st, err := f.fd.Stat()
		if err != nil {
			f.mu.Unlock()
			continue
		}
		_, nlink := statKey(st)
		t.changed = true
		if nlink == 0 {
			if f.deletedAt.IsZero() {
				f.deletedAt = now
				t.stats.rotations.Add(1)
				t.log.Debug("tail: deleted", "path", f.path)
			}
		} else if f.rotatedAt.IsZero() {
			f.rotatedAt = now
			t.stats.rotations.Add(1)
			t.log.Debug("tail: renamed away", "path", f.path)
		}
		t.checkSize(f, st.Size(), st.ModTime())
		switch {
		case !f.deletedAt.IsZero() && now.Sub(f.deletedAt) > t.cfg.MaxDeletedHold:
			held := t.dropHeld(f)
			t.lose(f.path, lossDeleted, f.size-f.lineStart+held,
				"detail", "held past max_deleted_hold", "held", now.Sub(f.deletedAt).Round(time.Second))
			t.closeLocked(f)
		case !f.deletedAt.IsZero(), !f.rotatedAt.IsZero() && (f.eofAt.IsZero() || now.Sub(f.eofAt) >= t.cfg.RotateWait):
			t.enqueue(f) // the reader reads it to its end, and closes it rotate_wait after
		}
		f.mu.Unlock()
	}
	if len(gone) > 0 {
		t.lookForInactive(gone, now)
	}
	if len(forget) > 0 {
		t.mu.Lock()
		for _, k := range forget {
			if f := t.files[k]; f != nil && f.fd == nil {
				delete(t.files, k)
				for _, p := range [...]string{f.path, f.target} {
					if t.idleByPath[p] == f {
						delete(t.idleByPath, p)
					}
				}
			}
		}
		t.mu.Unlock()
		t.dirty.Store(true)
	}
}

// renamed moves f to its new matched path. Call with f.mu held.
func (t *Tailer) renamed(f *file, p string) {
	t.mu.Lock()
	if t.byPath[f.path] == f {
		delete(t.byPath, f.path)
	}
	t.byPath[p] = f
	t.mu.Unlock()
	t.log.Debug("tail: renamed", "from", f.path, "to", p)
	f.path = p
	f.pathScan = t.scanN
	t.changed = true
	t.stats.rotations.Add(1)
	t.watchFile(f)
}
