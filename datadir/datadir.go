// Package datadir owns sidelog's data directory: it creates it private
// (0700), holds an exclusive lock on it so that a second agent cannot share
// it, and keeps the agent's instance id, which stable document ids are built
// from.
package datadir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Dir is an open, locked data directory.
type Dir struct {
	Path       string
	InstanceID string
	// Warning, when set, says why the directory is not 0700 (an existing
	// directory whose mode the agent may not change): log it.
	Warning string
	lock    *os.File
}

// ErrLocked means another process holds the data directory.
var ErrLocked = errors.New("data_dir is in use by another sidelog process")

// Open creates (0700) and locks dir, and loads or creates its instance id.
// An existing directory with another mode is made 0700 (MkdirAll leaves it
// as it is); when that is not allowed, Warning says so.
func Open(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	var warning string
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			warning = fmt.Sprintf("data_dir %s has mode %#o and cannot be made 0700 (%v): other users of the volume may read checkpoints, buffers and dead letters", dir, fi.Mode().Perm(), err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(pid))
			if holder != "" {
				return nil, fmt.Errorf("%w (%s, held by pid %s): give each agent its own data_dir", ErrLocked, dir, holder)
			}
			return nil, fmt.Errorf("%w (%s): give each agent its own data_dir", ErrLocked, dir)
		}
		return nil, fmt.Errorf("data_dir %s: lock: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	d := &Dir{Path: dir, lock: f, Warning: warning}
	if d.InstanceID, err = instanceID(dir); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func instanceID(dir string) (string, error) {
	p := filepath.Join(dir, "instance-id")
	if b, err := os.ReadFile(p); err == nil {
		if id := strings.TrimSpace(string(b)); len(id) == 32 {
			return id, nil
		}
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw[:])
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(id + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	if err := os.Rename(tmp, p); err != nil {
		return "", err
	}
	return id, SyncDir(dir)
}

// SyncDir fsyncs the directory dir, making the entries created, renamed
// or removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Sub returns a subdirectory of the data directory, created 0700.
func (d *Dir) Sub(parts ...string) (string, error) {
	p := filepath.Join(append([]string{d.Path}, parts...)...)
	return p, os.MkdirAll(p, 0o700)
}

// Close releases the lock.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}
