// Thousands of files: max_open_files caps the descriptors held, idle files
// are closed after close_inactive (or to make room) and reopened by
// identity at their position when they change; ignore_older skips files
// found already old.

package tail

import (
	"os"
	"path/filepath"
	"sort"
	"time"
)

// idle reports that f can be closed without giving anything up: read to
// its end, nothing held (partial line, skipped line, assembler group), not
// queued, not renamed away or deleted (those are finished and closed by
// the reader). Call with f.mu held.
func (f *file) idle() bool {
	return f.fd != nil && f.deletedAt.IsZero() && f.rotatedAt.IsZero() && !f.truncated &&
		f.offset >= f.size && len(f.partial) == 0 && !f.skipping && !f.queued.Load() &&
		f.readErrAt.IsZero() && (f.asm == nil || !asmPending(f))
}

func asmPending(f *file) bool {
	_, ok := f.asm.Deadline()
	return ok
}

// active is the last sign of life of an open file: its last change or the
// last read that found bytes. Call with f.mu held.
func (f *file) active() time.Time {
	if f.lastData.After(f.mtime) {
		return f.lastData
	}
	return f.mtime
}

// closeIdle closes f as inactive: it stays known (closed, like a file
// known from the checkpoint) and is reopened by identity, at its position,
// when a scan finds it changed. Call with f.mu held.
func (t *Tailer) closeIdle(f *file) {
	t.closeLocked(f)
	f.inactive = true
	t.noteIdle(f)
	t.stats.idleClosed.Add(1)
}

// noteIdle indexes a file closed as inactive by its paths, for write
// events. Call with f.mu held.
func (t *Tailer) noteIdle(f *file) {
	t.mu.Lock()
	t.idleByPath[f.path] = f
	if f.target != "" {
		t.idleByPath[f.target] = f
	}
	t.mu.Unlock()
}

// touch records a write event for a file closed as inactive: the scanner
// looks at that path alone (touchScan) unless a full rescan is due.
func (t *Tailer) touch(path string) {
	t.touchMu.Lock()
	if t.touched == nil {
		t.touched = map[string]struct{}{}
	}
	t.touched[path] = struct{}{}
	t.touchMu.Unlock()
	t.wantScan()
}

func (t *Tailer) takeTouched() map[string]struct{} {
	t.touchMu.Lock()
	defer t.touchMu.Unlock()
	m := t.touched
	t.touched = nil
	return m
}

// touchScan visits the paths of idle-closed files that write events
// reported, and only them: a file that changed is reopened by identity at
// its position. A slow writer's file closed by max_open_files or
// close_inactive then costs one stat per write, not a rescan of every
// file. A path gone or replaced asks for a full rescan. Scanner only.
func (t *Tailer) touchScan(now time.Time) {
	paths := t.takeTouched()
	if len(paths) == 0 {
		return
	}
	t.stats.touchScans.Add(1)
	t.idleScan = 0 // idle candidates are gathered again
	for p := range paths {
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			t.fullScan.Store(true)
			t.wantScan()
			continue
		}
		t.visit(p, st, now)
	}
}

// room makes room for one more open file under max_open_files: it closes
// the idle open file that was active the longest ago. It reports false
// when every open file is busy (the open waits for a later scan). Scanner
// only.
func (t *Tailer) room() bool {
	max := t.cfg.MaxOpenFiles
	if max <= 0 || int(t.nOpen.Load()) < max {
		return true
	}
	if t.idleScan != t.scanN { // candidates once per scan, oldest first
		t.idleScan = t.scanN
		t.idleCands = t.idleCands[:0]
		for _, f := range t.openFiles() {
			f.mu.Lock()
			if f.idle() {
				t.idleCands = append(t.idleCands, idleCand{f, f.active()})
			}
			f.mu.Unlock()
		}
		sort.Slice(t.idleCands, func(i, j int) bool { return t.idleCands[i].at.Before(t.idleCands[j].at) })
	}
	for len(t.idleCands) > 0 {
		f := t.idleCands[0].f
		t.idleCands[0] = idleCand{}
		t.idleCands = t.idleCands[1:]
		f.mu.Lock()
		ok := f.idle()
		if ok {
			t.closeIdle(f)
		}
		f.mu.Unlock()
		if ok {
			return true
		}
	}
	t.stats.deferred.Add(1)
	t.changed = true // every open file is busy: try again at the next poll
	return false
}

type idleCand struct {
	f  *file
	at time.Time
}

// closeInactive closes the open files idle for close_inactive. Call from
// sweep with f.mu held, for a file a path matched in this scan.
func (t *Tailer) closeInactive(f *file, now time.Time) {
	if t.cfg.CloseInactive > 0 && f.idle() && now.Sub(f.active()) >= t.cfg.CloseInactive && now.Sub(f.opened) >= t.cfg.CloseInactive {
		t.closeIdle(f)
	}
}

// unchanged reports that a closed inactive file seen at a path with st is
// as it was when closed: the scan only notes it was seen. Call with f.mu
// held.
func (f *file) unchanged(st os.FileInfo) bool {
	return f.fd == nil && f.inactive && st.Size() == f.size && st.ModTime().Equal(f.mtime)
}

// ignoreOld records f, a file no checkpoint knows found older than
// ignore_older, as read to its end without reading it: a checkpoint entry
// at its end, closed (inactive); what is appended later is read when a scan
// finds it changed. head is its first bytes; the caller closes the
// descriptor. Call with f.mu held (f is not shared yet).
func (t *Tailer) ignoreOld(f *file, head []byte, st os.FileInfo, now time.Time) {
	size := st.Size()
	f.checkPrefix(head)
	f.fd = nil
	f.inactive = true
	f.tr = newTracker(0, size, &t.dirty)
	f.offset, f.lineStart, f.size, f.genMax, f.mtime = size, size, size, size, st.ModTime()
	f.sizeA.Store(size)
	f.offsetA.Store(size)
	if fi, err := os.Lstat(f.path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if tgt, err := filepath.EvalSymlinks(f.path); err == nil {
			f.target = tgt
		}
	}
	t.mu.Lock()
	t.files[f.key] = f
	t.mu.Unlock()
	t.noteIdle(f)
	t.dirty.Store(true)
	t.stats.ignored.Add(1)
	t.log.Debug("tail: older than ignore_older: skipped, checkpointed at its end", "path", f.path, "size", size)
}

// lookForInactive looks, by identity, for closed inactive files that no
// path matched in this scan (renamed away while closed: the writer may
// have appended before the rename), in their directories and the
// rotated_dirs; one found with bytes past its position is read to its end.
// Each is looked for once. Scanner only.
func (t *Tailer) lookForInactive(gone []*file, now time.Time) {
	byDir := map[string][]*file{}
	for _, f := range gone {
		for _, d := range t.rotatedDirs(f) {
			byDir[d] = append(byDir[d], f)
		}
	}
	found := map[*file]bool{}
	for dir, want := range byDir {
		t.searchDir(dir, want, found, now)
	}
}
