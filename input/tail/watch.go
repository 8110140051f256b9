package tail

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"

	"github.com/fsnotify/fsnotify"
)

// dirWatcher wakes the tailer on file system events. Polling runs beside
// it always: fsnotify misses events on network and overlay volumes, and a
// watch can fail (inotify limits). Nothing depends on it but latency and
// how often the globs are rescanned: while every directory that matters is
// watched and no rescan found a change that fsnotify did not report, the
// rescans back off to max_poll_interval (see scanLoop).
type dirWatcher interface {
	run(ctx context.Context)
	add(dir string) error
	remove(dir string)
	close()
}

type notifyWatcher struct {
	t *Tailer
	w *fsnotify.Watcher
}

// newWatcher makes the tailer's watcher (tests replace it).
var newWatcher = newDirWatcher

func newDirWatcher(t *Tailer) (dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &notifyWatcher{t: t, w: w}, nil
}

func (n *notifyWatcher) add(dir string) error { return n.w.Add(dir) }
func (n *notifyWatcher) remove(dir string)    { _ = n.w.Remove(dir) }
func (n *notifyWatcher) close()               { n.w.Close() }

func (n *notifyWatcher) run(ctx context.Context) {
	t := n.t
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-n.w.Events:
			if !ok {
				return
			}
			t.onEvent(ev.Name, ev.Op)
		case err, ok := <-n.w.Errors:
			if !ok {
				return
			}
			t.log.Warn("tail: fsnotify error, rescanning", "error", err)
			t.pollReset.Store(true) // events may be lost (queue overflow)
			t.fullScan.Store(true)
			t.wantScan()
		}
	}
}

// onEvent handles one fsnotify event. A write to an open file queues it for
// the reader (no rescan); a write to another path rescans only when a glob
// matches that path (a file not opened yet); creations, removals and
// renames rescan.
func (t *Tailer) onEvent(name string, op fsnotify.Op) {
	if op == fsnotify.Write {
		t.mu.Lock()
		f := t.byPath[name]
		idle := f == nil && t.idleByPath[name] != nil
		t.mu.Unlock()
		if f != nil {
			f.wev.Add(1)
			t.enqueue(f)
			return
		}
		if idle { // closed as inactive: reopened alone
			t.touch(name)
			return
		}
		if !matches(t.cfg.Paths, t.cfg.Exclude, name) {
			return
		}
	}
	if op&(fsnotify.Remove|fsnotify.Rename) != 0 {
		t.dirGone(name)
	}
	if op&(fsnotify.Create|fsnotify.Remove|fsnotify.Rename|fsnotify.Write) != 0 {
		t.fullScan.Store(true)
		t.wantScan()
	}
}

func (t *Tailer) wantScan() {
	select {
	case t.trigger <- struct{}{}:
	default:
	}
}

// watchBaseDirs watches the fixed leading directory of every pattern. They
// are required: while one cannot be watched (it does not exist yet, or the
// inotify limit is reached), rescans keep to poll_interval.
func (t *Tailer) watchBaseDirs() {
	for _, p := range t.cfg.Paths {
		t.watchDir(baseDir(p), true)
	}
}

// watchFile watches the directories of a file's path and link target.
func (t *Tailer) watchFile(f *file) {
	t.watchDir(filepath.Dir(f.path), true)
	if f.target != "" {
		t.watchDir(filepath.Dir(f.target), true)
	}
}

// watchDir watches dir. A required directory that cannot be watched marks
// the watch unhealthy until it is watched; so does a directory found by a
// glob walk (not required) that fails for another reason than not existing
// (a missing one appears as an event in its parent, which is watched).
func (t *Tailer) watchDir(dir string, required bool) {
	t.watchMu.Lock()
	defer t.watchMu.Unlock()
	if t.watcher == nil || t.watched[dir] {
		return
	}
	err := t.watcher.add(dir)
	if err == nil {
		t.watched[dir] = true
		delete(t.unwatched, dir)
		return
	}
	if !required && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR)) {
		return
	}
	if !t.unwatched[dir] {
		t.log.Debug("tail: cannot watch a directory, polling every poll_interval", "dir", dir, "error", err)
	}
	t.unwatched[dir] = true
}

// retryWatches tries again the required directories that could not be
// watched (the scanner calls it before each scan).
func (t *Tailer) retryWatches() {
	t.watchMu.Lock()
	if t.watcher == nil || len(t.unwatched) == 0 {
		t.watchMu.Unlock()
		return
	}
	dirs := make([]string, 0, len(t.unwatched))
	for d := range t.unwatched {
		dirs = append(dirs, d)
	}
	// forgotten now: a directory still needed is required again below or
	// by the scan (base directories, directories of open files)
	clear(t.unwatched)
	t.watchMu.Unlock()
	for _, d := range dirs {
		t.watchDir(d, false)
	}
	t.watchBaseDirs()
}

// dirGone forgets a watched directory that was removed or renamed: its
// watch is gone (or follows it elsewhere), so the next scan watches
// whatever directory then has that path.
func (t *Tailer) dirGone(name string) {
	t.watchMu.Lock()
	defer t.watchMu.Unlock()
	if t.watcher == nil || !t.watched[name] {
		return
	}
	delete(t.watched, name)
	t.watcher.remove(name)
}

// watchHealthy reports that fsnotify runs and every required directory is
// watched.
func (t *Tailer) watchHealthy() bool {
	t.watchMu.Lock()
	defer t.watchMu.Unlock()
	return t.watcher != nil && len(t.unwatched) == 0
}
