package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sidelog/sidelog/config"
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
//
// paths are -c's arguments: a directory is watched itself (its files are
// the config), a file through its directory.
func watchConfig(ctx context.Context, paths []string, log *slog.Logger, changed func()) {
	last, _ := fileHash(paths)
	w, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err == nil {
		defer w.Close()
		for _, p := range paths {
			dir := filepath.Dir(p)
			if st, serr := os.Stat(p); serr == nil && st.IsDir() {
				dir = p
			}
			if err = w.Add(dir); err != nil {
				break
			}
		}
		if err == nil {
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
		h, err := fileHash(paths)
		if err != nil {
			// Mid-swap, or removed: keep the old config, look again later.
			continue
		}
		if h != last {
			last = h
			log.Info("config file changed: reloading", "config", strings.Join(paths, ", "))
			changed()
		}
	}
}

// fileHash hashes the names and contents of the config's files, so a file
// added to or removed from a config directory is a change too.
func fileHash(paths []string) ([32]byte, error) {
	files, err := config.Files(paths)
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return [32]byte{}, err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}
