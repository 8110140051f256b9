package main

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchPoll is how often --watch-config also re-reads the config file, in
// case a change raised no inotify event (network volumes).
const watchPoll = 2 * time.Second

// watchConfig calls changed when the content of the config file at path
// changes. It watches the file's directory, not the file: a mounted
// ConfigMap is updated by Kubernetes by writing a new timestamped directory
// and renaming a `..data` symlink over the old one, so the file's own inode
// never changes and a watch on it would never fire. Every event in the
// directory (and every watchPoll) re-reads the file through its symlinks
// and compares a hash of its content, so an atomic swap, an editor's
// rename and an in-place write are all seen once, and a touch without a
// change is not a reload.
func watchConfig(ctx context.Context, path string, log *slog.Logger, changed func()) {
	last, _ := fileHash(path)
	w, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err == nil {
		defer w.Close()
		if err = w.Add(filepath.Dir(path)); err == nil {
			events, errs = w.Events, w.Errors
		}
	}
	if err != nil {
		log.Warn("--watch-config: cannot watch the config directory, polling it instead", "error", err.Error(), "every", watchPoll.String())
	}
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	// A burst of events (new directory, symlink, rename) is read once,
	// after the burst.
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			settle = time.After(100 * time.Millisecond)
			continue
		case err, ok := <-errs:
			if ok {
				log.Warn("--watch-config: watch error", "error", err.Error())
			} else {
				errs = nil
			}
			continue
		case <-settle:
			settle = nil
		case <-tick.C:
		}
		h, err := fileHash(path)
		if err != nil {
			// Mid-swap, or removed: keep the old config, look again later.
			continue
		}
		if h != last {
			last = h
			log.Info("config file changed: reloading", "config", path)
			changed()
		}
	}
}

func fileHash(path string) ([32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}
