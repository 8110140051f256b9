// Discovery: the scanner matches the globs, opens new files and notices
// changes the reader must act on.

package tail

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// missHold is how long rescans keep to poll_interval after one found a
// change that fsnotify had not reported (a network or overlay volume):
// long enough not to pay a missed change every max_poll_interval again.
const missHold = 10 * time.Minute

// defaultMissGrace is how old a change must be before a rescan that finds
// it without an fsnotify event counts it as missed (events arrive late
// under load; a late one is not a miss). Tailer.missGrace (tests shorten
// it).
const defaultMissGrace = 2 * time.Second

// scanLoop rescans the globs: at once when fsnotify reports a creation, a
// removal or a rename; else after poll_interval, doubled after each scan
// that found nothing new up to max_poll_interval while fsnotify is healthy
// (see nextPoll).
func (t *Tailer) scanLoop(ctx context.Context) {
	interval := t.cfg.PollInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-t.trigger:
			if !t.fullScan.Swap(false) {
				// only writes to idle-closed files: those paths alone;
				// the poll timer keeps running
				t.touchScan(time.Now())
				continue
			}
		}
		now := time.Now()
		t.fullScan.Store(false)
		t.takeTouched() // the rescan visits every path
		t.scan(now)
		interval = t.nextPoll(interval, now)
		timer.Reset(interval) // Go 1.23 timers: no stale tick after Reset
	}
}

// nextPoll is the pause before the next rescan: poll_interval unless
// fsnotify is healthy (running, every required directory watched, no error
// and no missed change lately) and the last scan found nothing new; then
// twice the last pause, at most max_poll_interval.
func (t *Tailer) nextPoll(cur time.Duration, now time.Time) time.Duration {
	fast := t.cfg.PollInterval
	reset := t.pollReset.Swap(false)
	if t.cfg.MaxPollInterval <= fast || reset || t.changed || now.Before(t.fastUntil) || !t.watchHealthy() {
		return fast
	}
	return min(2*cur, t.cfg.MaxPollInterval)
}

// missed records that a scan found a change fsnotify had not reported.
func (t *Tailer) missed(path, what string, now time.Time) {
	if !now.Before(t.fastUntil) {
		t.log.Info("tail: fsnotify missed a change (network or overlay volume?): rescanning every poll_interval",
			"path", path, "change", what, "for", missHold)
	}
	t.fastUntil = now.Add(missHold)
	t.stats.missedEvents.Add(1)
}

// scan matches the globs, opens new files, notices renamed, deleted and
// truncated ones, releases deleted files held too long and queues files
// with unread bytes. It watches the directories the globs list.
func (t *Tailer) scan(now time.Time) {
	t.scanN++
	t.stats.scans.Add(1)
	t.changed = false
	t.retryWatches()
	clear(t.seenSet)
	for _, pat := range t.cfg.Paths {
		globDirs(pat, func(p string) {
			if _, dup := t.seenSet[p]; dup || excluded(t.cfg.Exclude, p) {
				return
			}
			t.seenSet[p] = struct{}{}
			st, err := os.Stat(p)
			if err != nil || !st.Mode().IsRegular() {
				return
			}
			t.visit(p, st, now)
		}, t.watchListed)
	}
	if t.initial {
		t.recoverRotated(now)
	}
	t.sweep(now)
}

// watchListed watches a directory a glob walk listed (or looked into).
func (t *Tailer) watchListed(dir string) { t.watchDir(dir, false) }

// watching reports that fsnotify runs (scanner only: set before the
// first scan).
func (t *Tailer) watching() bool {
	t.watchMu.Lock()
	defer t.watchMu.Unlock()
	return t.watcher != nil
}

func statKey(st os.FileInfo) (key, uint64) {
	s := st.Sys().(*syscall.Stat_t)
	return key{uint64(s.Dev), s.Ino}, uint64(s.Nlink)
}

// visit handles one matched path.
func (t *Tailer) visit(p string, st os.FileInfo, now time.Time) {
	k, _ := statKey(st)
	t.mu.Lock()
	f := t.files[k]
	t.mu.Unlock()
	if f != nil {
		f.mu.Lock()
		if f.fd != nil {
			t.refresh(f, p, st, now)
			f.mu.Unlock()
			return
		}
		// known and closed: a path matches it
		f.seen, f.seenScan = now, t.scanN
		if f.unchanged(st) { // closed as inactive, nothing new: stays closed
			f.pathScan = t.scanN
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
	}
	t.open(p, now)
}

// refresh updates an open file seen at path p with size. Call with f.mu held.
func (t *Tailer) refresh(f *file, p string, st os.FileInfo, now time.Time) {
	if f.seenScan != t.scanN {
		f.altPath = ""
	}
	f.seenScan = t.scanN
	f.seen = now
	if p == f.path {
		f.pathScan = t.scanN
	} else if f.altPath == "" {
		f.altPath = p
	}
	if !f.rotatedAt.IsZero() {
		f.rotatedAt, f.eofAt = time.Time{}, time.Time{} // back under a matched path
	}
	ev := f.wev.Load()
	if size := st.Size(); size > f.size && size > f.offset && ev == f.wevSeen && !f.queued.Load() &&
		now.Sub(st.ModTime()) > t.missGrace && !t.initial && t.watching() {
		// grew since the last scan, long enough ago, without a write
		// event, and the reader was not told
		t.missed(f.path, "write", now)
	}
	f.wevSeen = ev
	t.checkSize(f, st.Size(), st.ModTime())
}

// checkSize notices growth and truncation. Call with f.mu held.
func (t *Tailer) checkSize(f *file, size int64, mtime time.Time) {
	if size < f.offset || size < int64(f.mLen) {
		// size may come from a stat of the path taken before the reader
		// read further: confirm on the descriptor, under f.mu
		if st, err := f.fd.Stat(); err == nil {
			size, mtime = st.Size(), st.ModTime()
		}
	}
	// a truncation followed by writes up to the same size shows only in
	// the modification time
	changed := size != f.size || !mtime.Equal(f.mtime)
	f.size, f.mtime = size, mtime
	f.sizeA.Store(size)
	if size < f.offset {
		f.truncated = true
	} else if changed {
		// same inode, new size: a copytruncate followed by writes past our
		// offset shows as a changed first bytes
		if !f.checkPrefix(f.readHead(t.headBuf, size)) {
			f.truncated = true
		}
	}
	if f.truncated {
		t.changed = true
	} else if size > f.genMax {
		f.genMax = size
	}
	if f.truncated || size > f.offset {
		t.enqueue(f)
	}
}

// open opens a newly matched path and decides where to start reading.
func (t *Tailer) open(p string, now time.Time) {
	if !t.room() { // max_open_files: every open file busy, next scan
		if t.deferred == nil {
			t.deferred = map[string]struct{}{}
		}
		t.deferred[p] = struct{}{}
		return
	}
	fd, err := t.openFile(p)
	if err != nil {
		// gone between the glob and the open: not a failure
		if !errors.Is(err, fs.ErrNotExist) {
			t.openFailed(p, err, now)
		}
		return
	}
	st, err := fd.Stat()
	if err != nil || !st.Mode().IsRegular() {
		fd.Close()
		return
	}
	k, _ := statKey(st)
	size := st.Size()
	t.mu.Lock()
	old := t.files[k]
	t.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		if old.fd != nil { // opened meanwhile (another path, same file)
			t.refresh(old, p, st, now)
			old.mu.Unlock()
			fd.Close()
			return
		}
		old.mu.Unlock()
	}
	f := &file{key: k, path: p, seen: now, seenScan: t.scanN, pathScan: t.scanN}
	if err := f.setFD(fd); err != nil {
		fd.Close()
		return
	}
	f.id.Dev, f.id.Ino = k.dev, k.ino
	if t.newAsm != nil {
		f.asm = t.newAsm()
	}
	head := f.readHead(t.headBuf, size)
	if old == nil {
		old = t.movedDevice(p, k, head)
	}
	if old == nil && t.cfg.IgnoreOlder > 0 && now.Sub(st.ModTime()) > t.cfg.IgnoreOlder {
		t.ignoreOld(f, head, st, now)
		fd.Close()
		return
	}
	resumed := false
	if old != nil {
		old.mu.Lock()
		if old.mLen > 0 && len(head) >= old.mLen && fingerprint(head[:old.mLen]) == old.mFP {
			// the same file: resume after the last line emitted (closed
			// in this run) or acknowledged (known from the checkpoint,
			// where lineStart is the checkpointed offset)
			resumed = true
			f.id, f.idSet, f.mFP, f.mLen = old.id, old.idSet, old.mFP, old.mLen
			f.tr = old.tr
			f.offset, f.lineStart = old.lineStart, old.lineStart
			if size < f.offset { // truncated while we were away
				f.truncated = true
			}
		} else {
			// the inode was reused by another file: the next generation
			// keeps (identity, generation, offset) unique on this host
			f.tr = newTracker(old.tr.gen+1, 0, &t.dirty)
		}
		old.mu.Unlock()
	}
	if !resumed {
		if f.tr == nil {
			f.tr = newTracker(0, 0, &t.dirty)
		}
		if t.initial && t.firstStart && t.cfg.ReadFrom == "tail" {
			f.offset = tailOffset(fd, size)
			f.lineStart = f.offset
			f.tr.acked = f.offset
		}
	}
	f.checkPrefix(head)
	if !f.truncated {
		f.genMax = size
	} else if old != nil {
		f.genMax = old.size // truncated while we were away: its size then
	}
	f.size, f.mtime = size, st.ModTime()
	f.sizeA.Store(size)
	f.offsetA.Store(f.offset)
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if tgt, err := filepath.EvalSymlinks(p); err == nil {
			f.target = tgt
		}
	}
	needRead := f.truncated || size > f.offset
	t.changed = true
	_, wasDeferred := t.deferred[p]
	delete(t.deferred, p)
	if old == nil && !wasDeferred && !t.initial && now.Sub(changeTime(st, p)) > t.missGrace && t.watching() {
		// an old file found by a rescan, not announced by an event
		t.missed(p, "create", now)
	}
	t.log.Debug("tail: opened", "path", p, "offset", f.offset, "generation", f.tr.gen, "resumed", resumed)
	t.watchFile(f)
	t.mu.Lock()
	t.files[k] = f
	t.byPath[p] = f
	delete(t.idleByPath, p)
	if f.target != "" {
		t.byPath[f.target] = f
		delete(t.idleByPath, f.target)
	}
	t.mu.Unlock()
	t.dirty.Store(true)
	t.stats.opened.Add(1)
	if n := t.nOpen.Add(1); n > t.peakOpen.Load() {
		t.peakOpen.Store(n) // scanner only
	}
	f.opened = now
	if needRead {
		t.enqueue(f)
	}
}

// movedDevice finds the remembered (closed) file that the new file at p
// with key k and first bytes head is, when its device number changed (a
// remount, a volume attached again): a closed entry for the same path on
// another device whose first bytes match. The device number no longer
// says anything then, so the fingerprint alone decides (the inode is not
// required either). The entry takes the new key; its FileID (the positions
// already emitted) stays. Nil when there is none.
func (t *Tailer) movedDevice(p string, k key, head []byte) *file {
	// candidates under t.mu, checked under each f.mu after it is released
	// (the reader takes t.mu with f.mu held, in closeLocked)
	var cands []*file
	t.mu.Lock()
	for ck, c := range t.files {
		if ck.dev != k.dev {
			cands = append(cands, c)
		}
	}
	t.mu.Unlock()
	for _, c := range cands {
		c.mu.Lock()
		same := c.fd == nil && (c.path == p || c.target == p) && c.mLen > 0 &&
			len(head) >= c.mLen && fingerprint(head[:c.mLen]) == c.mFP
		c.mu.Unlock()
		if !same {
			continue
		}
		t.mu.Lock()
		ck := c.key // only the scanner changes keys
		if t.files[ck] == c {
			delete(t.files, ck)
		}
		t.files[k] = c
		t.mu.Unlock()
		c.mu.Lock()
		c.key = k
		c.mu.Unlock()
		t.dirty.Store(true)
		t.log.Info("tail: a known file on a new device (remount): resumed by its fingerprint",
			"path", p, "old_dev", ck.dev, "dev", k.dev)
		return c
	}
	return nil
}

// openFailed counts and logs a failed open of a matched file (EACCES,
// EMFILE, ENFILE...): it is tried again at the next scan. The warning is
// rate-limited per path like the loss warnings.
func (t *Tailer) openFailed(p string, err error, now time.Time) {
	t.stats.openErrors.Add(1)
	if ok, _, n := t.openWarn.due(warnKey{path: p}, 0, now); ok {
		t.log.Warn("tail: cannot open a matched file; it is tried again at the next scan",
			"path", p, "error", err, "failures", n)
	}
}

// openNoAtime opens p for reading without access time updates where the
// kernel allows it (the owner of the file, or CAP_FOWNER: an agent running
// as root): with relatime, the first read after each write updates the
// inode, a journalled metadata write per append of a slow file. Else p is
// opened as usual.
func openNoAtime(p string) (*os.File, error) {
	fd, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOATIME, 0)
	if errors.Is(err, syscall.EPERM) {
		return os.Open(p)
	}
	return fd, err
}

// changeTime is the later of the status change times of the file and, for
// a symbolic link, of the link itself: no earlier than when the path
// appeared.
func changeTime(st os.FileInfo, p string) time.Time {
	c := st.Sys().(*syscall.Stat_t).Ctim
	ct := time.Unix(c.Sec, c.Nsec)
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		lc := fi.Sys().(*syscall.Stat_t).Ctim
		if lt := time.Unix(lc.Sec, lc.Nsec); lt.After(ct) {
			ct = lt
		}
	}
	return ct
}

// tailOffset is where read_from: tail starts: just past the last newline
// in the last 64 KiB, else the end.
func tailOffset(fd *os.File, size int64) int64 {
	const look = 64 << 10
	from := size - look
	if from < 0 {
		from = 0
	}
	buf := make([]byte, size-from)
	n, _ := fd.ReadAt(buf, from)
	if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
		return from + int64(i) + 1
	}
	return size
}

// sweep looks at the open files no path matched in this scan (renamed away
// or deleted), releases deleted files held past max_deleted_hold, and
