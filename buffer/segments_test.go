package buffer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sidelog/sidelog/event"
)

// trackFS is the OS file system, keeping count of the open handles of each
// file and signalling each removal.
type trackFS struct {
	OSFS
	mu      sync.Mutex
	open    map[string]int
	lastRO  string // the last file opened read-only
	removed map[string]chan struct{}
}

type trackFile struct {
	File
	fs   *trackFS
	name string
	once sync.Once
}

func (f *trackFile) Close() error {
	f.once.Do(func() {
		f.fs.mu.Lock()
		f.fs.open[f.name]--
		f.fs.mu.Unlock()
	})
	return f.File.Close()
}

func (t *trackFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := t.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open[name]++
	if flag == os.O_RDONLY && strings.HasSuffix(name, ".seg") {
		t.lastRO = name
	}
	return &trackFile{File: f, fs: t, name: name}, nil
}

// removal returns a channel closed when name is removed.
func (t *trackFS) removal(name string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removedCh(name)
}

// removedCh: t.mu is held.
func (t *trackFS) removedCh(name string) chan struct{} {
	c, ok := t.removed[name]
	if !ok {
		c = make(chan struct{})
		t.removed[name] = c
	}
	return c
}

func (t *trackFS) Remove(name string) error {
	err := t.OSFS.Remove(name)
	if err == nil {
		t.mu.Lock()
		c := t.removedCh(name)
		select {
		case <-c:
		default:
			close(c)
		}
		t.mu.Unlock()
	}
	return err
}

// A reader that read segments from disk and went back to the memory cache
// keeps no removed segment open: an open handle would keep the segment's
// blocks on disk, outside max_bytes, until the reader next reads the disk
// (maybe never).
func TestReaderClosesRemovedSegments(t *testing.T) {
	ctx := context.Background()
	fsys := &trackFS{open: map[string]int{}, removed: map[string]chan struct{}{}}
	dir := t.TempDir()
	d, err := Open(dir, Config{MaxBytes: 1 << 20}, WithFS(fsys), WithSegmentSize(4096), WithMemoryCache(1024))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Each call's records are released together, after their fsync: the
	// cache keeps only records on disk, so the next call waits for that.
	write := func(from, n int) {
		durable := make(chan struct{})
		ack := event.NewAck(n, func() { close(durable) })
		var recs []Record
		for i := from; i < from+n; i++ {
			var e event.Event
			e.SetAck(ack)
			recs = append(recs, Record{Data: []byte(fmt.Sprintf("record %04d %s", i, strings.Repeat("x", 80))), Ack: e.Releaser()})
		}
		if err := d.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		<-durable
	}
	readAll := func(n int) {
		for got := 0; got < n; {
			b, err := d.Read(ctx, Limits{MaxEvents: 7})
			if err != nil {
				t.Fatal(err)
			}
			got += len(b.Records)
			if err := d.Ack(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Behind by 20 KiB with a 1 KiB cache: the reader reads segment files,
	// then the cache.
	for i := 0; i < 200; i += 10 {
		write(i, 10)
	}
	readAll(200)
	fsys.mu.Lock()
	last := fsys.lastRO
	fsys.mu.Unlock()
	if last == "" {
		t.Fatal("the reader never read a segment file: the test does not test anything")
	}
	// New segments, read from the cache; every old segment is acknowledged
	// and removed.
	removed := fsys.removal(last)
	for i := 200; i < 400; i += 10 {
		write(i, 10)
		readAll(10)
	}
	<-removed
	fsys.mu.Lock()
	n := fsys.open[last]
	fsys.mu.Unlock()
	if n != 0 {
		t.Fatalf("segment %s removed with %d handle(s) still open", filepath.Base(last), n)
	}
}
