// Rotated files found by identity: at start-up, a checkpoint entry that no
// glob matched (its file was renamed out of the globs, or moved to
// logrotate's olddir, while the agent was down) is looked for among the
// entries of its directory and of the rotated_dirs, by device + inode and
// fingerprint, and read to its end.

package tail

import (
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// recoverRotated runs at the end of the first scan, before the sweep: every
// remembered file that is still closed (no glob matched it) is looked for
// by identity. A file found with bytes past its checkpointed offset is
// opened (and, as no glob matches it, read to its end and closed like any
// file renamed away). One that is not found anywhere while the checkpoint
// knew it had unread bytes is counted as lost.
func (t *Tailer) recoverRotated(now time.Time) {
	t.mu.Lock()
	all := make([]*file, 0, len(t.files))
	for _, f := range t.files {
		all = append(all, f)
	}
	t.mu.Unlock()
	var lost []*file
	for _, f := range all { // f.mu after t.mu is released: the reader takes t.mu under f.mu
		f.mu.Lock()
		// closed, and no path matched it in this scan (one that did is
		// where it was: not opened yet under max_open_files, or skipped by
		// ignore_older)
		if f.fd == nil && f.seenScan != t.scanN {
			lost = append(lost, f)
		}
		f.mu.Unlock()
	}
	if len(lost) == 0 {
		return
	}
	// the directories to list, each once
	byDir := map[string][]*file{}
	for _, f := range lost {
		for _, d := range t.rotatedDirs(f) {
			byDir[d] = append(byDir[d], f)
		}
	}
	found := map[*file]bool{}
	for dir, want := range byDir {
		t.searchDir(dir, want, found, now)
	}
	for _, f := range lost {
		if found[f] {
			continue
		}
		f.mu.Lock()
		if unread := f.size - f.lineStart; unread > 0 {
			t.lose(f.path, lossDeleted, unread, "offset", f.lineStart,
				"detail", "a rotated file with unread bytes is gone (deleted or compressed while the agent was down)")
			f.size = f.lineStart // counted once
			t.dirty.Store(true)
		}
		f.mu.Unlock()
	}
}

// rotatedDirs are the directories where f may have been rotated to: its
// own (and its link target's), then each rotated_dirs entry (relative ones
// below f's directory).
func (t *Tailer) rotatedDirs(f *file) []string {
	dirs := []string{filepath.Dir(f.path)}
	if f.target != "" && filepath.Dir(f.target) != dirs[0] {
		dirs = append(dirs, filepath.Dir(f.target))
	}
	n := len(dirs)
	for _, base := range dirs[:n] {
		for _, r := range t.cfg.RotatedDirs {
			if !filepath.IsAbs(r) {
				r = filepath.Join(base, r)
			}
			dirs = append(dirs, filepath.Clean(r))
		}
	}
	return dirs
}

// searchDir looks for the files of want among dir's entries: by device and
// inode with the same first bytes; when dir is on another device than the
// one a file was recorded on (a remount), by its first bytes alone.
func (t *Tailer) searchDir(dir string, want []*file, found map[*file]bool, now time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var dirDev uint64
	if st, err := os.Stat(dir); err == nil {
		dirDev = uint64(st.Sys().(*syscall.Stat_t).Dev)
	}
	byKey := map[key]*file{}
	var byFP []*file
	for _, f := range want {
		if found[f] {
			continue
		}
		if f.key.dev == dirDev {
			byKey[f.key] = f
		} else if f.mLen > 0 { // no first bytes known: device + inode only
			byFP = append(byFP, f)
		}
	}
	for _, e := range ents {
		if len(byKey) == 0 && len(byFP) == 0 {
			return
		}
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if excluded(t.cfg.Exclude, p) {
			continue
		}
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		k, _ := statKey(st)
		t.mu.Lock()
		cur := t.files[k]
		t.mu.Unlock()
		if cur != nil && cur.fd != nil {
			continue // open already (a glob matches it)
		}
		if f := byKey[k]; f != nil {
			if t.adopt(f, p, st, now) {
				found[f] = true
				delete(byKey, k)
			}
			continue
		}
		for i, f := range byFP {
			if t.adopt(f, p, st, now) {
				found[f] = true
				byFP = append(byFP[:i], byFP[i+1:]...)
				break
			}
		}
	}
}

// adopt checks that the file at p has f's first bytes and, if it has bytes
// past f's checkpointed offset, opens it to be read from there. It
// reports whether p is f.
func (t *Tailer) adopt(f *file, p string, st os.FileInfo, now time.Time) bool {
	f.mu.Lock()
	mLen, mFP, off := f.mLen, f.mFP, f.lineStart
	f.mu.Unlock()
	if st.Size() < int64(mLen) {
		return false
	}
	if mLen > 0 {
		fd, err := openNoAtime(p)
		if err != nil {
			return false
		}
		head := make([]byte, mLen)
		n, _ := fd.ReadAt(head, 0)
		fd.Close()
		if n < mLen || fingerprint(head) != mFP {
			return false
		}
	}
	k, _ := statKey(st)
	if k != f.key {
		// the same file on a new device number (a remount): it takes the
		// new key; its FileID (positions already emitted) stays
		t.mu.Lock()
		if t.files[f.key] == f {
			delete(t.files, f.key)
		}
		f.key = k
		t.files[k] = f
		t.mu.Unlock()
		t.dirty.Store(true)
	}
	if st.Size() <= off {
		return true // read to its end before the stop: nothing to do
	}
	t.log.Info("tail: rotated file found by identity, reading it to its end",
		"path", p, "was", f.path, "offset", off, "unread_bytes", st.Size()-off)
	t.stats.rotations.Add(1)
	t.open(p, now)
	return true
}
