package buffer

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
)

// memFS is a file system double for power-loss tests. It keeps, for every
// file, the bytes written and the bytes covered by the last fsync, and for
// every directory the entries made durable by the last directory fsync.
// Crash returns the state a machine would find after a power cut: only
// fsynced bytes of files whose entries were fsynced. (Directories themselves
// are assumed to exist durably.)
type memFS struct {
	mu       sync.Mutex
	cur      map[string]*memNode // path → node: what the running process sees
	durable  map[string]*memNode // entries that survive a crash
	crashed  bool
	capacity int64 // 0: unlimited; else writes beyond it fail with ENOSPC
	lying    bool  // Sync does nothing (to show the test catches it)
	reads    int   // ReadAt calls
}

type memNode struct {
	data   []byte
	synced []byte
}

var errCrashed = errors.New("memfs: machine crashed")

func newMemFS() *memFS {
	return &memFS{cur: map[string]*memNode{}, durable: map[string]*memNode{}}
}

func (m *memFS) used() int64 {
	var n int64
	for _, nd := range m.cur {
		n += int64(len(nd.data))
	}
	return n
}

func (m *memFS) setCapacity(c int64) {
	m.mu.Lock()
	m.capacity = c
	m.mu.Unlock()
}

// Crash freezes this FS (every later call fails) and returns what survives.
func (m *memFS) Crash() *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashed = true
	n := newMemFS()
	for p, nd := range m.durable {
		nn := &memNode{data: append([]byte(nil), nd.synced...)}
		nn.synced = append([]byte(nil), nn.data...)
		n.cur[p] = nn
		n.durable[p] = nn
	}
	n.lying = m.lying
	return n
}

type memFile struct {
	fs   *memFS
	node *memNode
	ro   bool
}

func (m *memFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return nil, errCrashed
	}
	name = filepath.Clean(name)
	nd, ok := m.cur[name]
	if !ok {
		if flag&os.O_CREATE == 0 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		nd = &memNode{}
		m.cur[name] = nd
	}
	if flag&os.O_TRUNC != 0 {
		nd.data = nd.data[:0]
	}
	return &memFile{fs: m, node: nd, ro: flag&(os.O_RDWR|os.O_WRONLY) == 0}, nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return errCrashed
	}
	name = filepath.Clean(name)
	if _, ok := m.cur[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.cur, name)
	return nil
}

func (m *memFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return nil, errCrashed
	}
	dir = filepath.Clean(dir)
	var out []string
	for p := range m.cur {
		if filepath.Dir(p) == dir {
			out = append(out, filepath.Base(p))
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *memFS) MkdirAll(dir string, perm os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return errCrashed
	}
	return nil
}

func (m *memFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return errCrashed
	}
	if m.lying {
		return nil
	}
	dir = filepath.Clean(dir)
	for p := range m.durable {
		if filepath.Dir(p) == dir {
			if _, ok := m.cur[p]; !ok {
				delete(m.durable, p)
			}
		}
	}
	for p, nd := range m.cur {
		if filepath.Dir(p) == dir {
			m.durable[p] = nd
		}
	}
	return nil
}

func (f *memFile) ReadAt(b []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.fs.reads++
	if f.fs.crashed {
		return 0, errCrashed
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(b, f.node.data[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(b []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.crashed {
		return 0, errCrashed
	}
	if f.ro {
		return 0, fs.ErrPermission
	}
	end := off + int64(len(b))
	if grow := end - int64(len(f.node.data)); grow > 0 && f.fs.capacity > 0 && f.fs.used()+grow > f.fs.capacity {
		return 0, &fs.PathError{Op: "write", Path: "memfs", Err: syscall.ENOSPC}
	}
	if end > int64(len(f.node.data)) {
		f.node.data = append(f.node.data, make([]byte, end-int64(len(f.node.data)))...)
	}
	copy(f.node.data[off:], b)
	return len(b), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.crashed {
		return errCrashed
	}
	if !f.fs.lying {
		f.node.synced = append(f.node.synced[:0], f.node.data...)
	}
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.crashed {
		return errCrashed
	}
	if size < int64(len(f.node.data)) {
		f.node.data = f.node.data[:size]
	} else {
		f.node.data = append(f.node.data, make([]byte, size-int64(len(f.node.data)))...)
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.crashed {
		return 0, errCrashed
	}
	return int64(len(f.node.data)), nil
}

func (f *memFile) Close() error { return nil }
