package tail

import (
	"context"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// dirWatcher wakes the tailer on file system events. Polling runs beside
// it always: fsnotify misses events on network and overlay volumes, and a
// watch can fail (inotify limits); nothing depends on it but latency.
type dirWatcher interface {
	run(ctx context.Context)
	add(dir string) error
	close()
}

type notifyWatcher struct {
	t *Tailer
	w *fsnotify.Watcher
}

func newDirWatcher(t *Tailer) (dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &notifyWatcher{t: t, w: w}, nil
}

func (n *notifyWatcher) add(dir string) error { return n.w.Add(dir) }
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
			if ev.Op == fsnotify.Write {
				t.mu.Lock()
				f := t.byPath[ev.Name]
				t.mu.Unlock()
				if f != nil {
					t.enqueue(f)
					continue
				}
			}
			if ev.Op&(fsnotify.Create|fsnotify.Remove|fsnotify.Rename|fsnotify.Write) != 0 {
				select {
				case t.trigger <- struct{}{}:
				default:
				}
			}
		case err, ok := <-n.w.Errors:
			if !ok {
				return
			}
			t.log.Warn("tail: fsnotify error, polling continues", "error", err)
		}
	}
}

// watchBaseDirs watches the fixed leading directory of every pattern.
func (t *Tailer) watchBaseDirs() {
	for _, p := range t.cfg.Paths {
		t.watchDir(baseDir(p))
	}
}

// watchFile watches the directories of a file's path and link target.
func (t *Tailer) watchFile(f *file) {
	t.watchDir(filepath.Dir(f.path))
	if f.target != "" {
		t.watchDir(filepath.Dir(f.target))
	}
}

func (t *Tailer) watchDir(dir string) {
	t.watchMu.Lock()
	defer t.watchMu.Unlock()
	if t.watcher == nil || t.watched[dir] {
		return
	}
	if err := t.watcher.add(dir); err == nil {
		t.watched[dir] = true
	}
}
