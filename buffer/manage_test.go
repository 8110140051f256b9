package buffer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNewPicksType(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "buffer", "es")
	b, err := New(dir, Config{}, "disk")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*Disk); !ok {
		t.Fatalf("default disk: got %T", b)
	}
	b.Close()
	b, err = New(filepath.Join(dataDir, "buffer", "console"), Config{}, "memory")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*Memory); !ok {
		t.Fatalf("default memory: got %T", b)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "buffer", "console")); !os.IsNotExist(err) {
		t.Fatal("a memory buffer created a directory")
	}
	b, err = New(filepath.Join(dataDir, "buffer", "file"), Config{Type: "disk"}, "memory")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*Disk); !ok {
		t.Fatalf("type: disk overrides the default: got %T", b)
	}
	b.Close()
	if _, err := New(dir, Config{Type: "tape"}, "disk"); err == nil {
		t.Fatal("unknown type accepted")
	}
	if _, err := New(dir, Config{Compression: "lz4"}, "disk"); err == nil {
		t.Fatal("unknown compression accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	good := []Config{{}, {Type: "disk", WhenFull: "block", Compression: "zstd", MaxBytes: 1 << 30}, {Type: "memory", WhenFull: "drop_newest"}}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	c := Config{Type: "ram", WhenFull: "drop_oldest", Compression: "gzip", MaxBytes: -1}
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, key := range []string{"type:", "when_full:", "compression:", "max_bytes:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

func TestOrphansAndDrop(t *testing.T) {
	dataDir := t.TempDir()
	if o, err := Orphans(dataDir, nil); err != nil || len(o) != 0 {
		t.Fatalf("no buffer dir: %v %v", o, err)
	}
	a := newAcks()
	for _, name := range []string{"es", "old-dd", "gone"} {
		d, err := Open(filepath.Join(dataDir, "buffer", name), Config{})
		if err != nil {
			t.Fatal(err)
		}
		d.Write(context.Background(), []Record{a.rec("x")})
		d.Close()
	}
	o, err := Orphans(dataDir, []string{"es", "dd"})
	if err != nil || !slices.Equal(o, []string{"gone", "old-dd"}) {
		t.Fatalf("orphans %v %v", o, err)
	}
	if err := Drop(dataDir, "old-dd"); err != nil {
		t.Fatal(err)
	}
	if o, _ := Orphans(dataDir, []string{"es", "dd"}); !slices.Equal(o, []string{"gone"}) {
		t.Fatalf("after drop: %v", o)
	}
	for _, bad := range []string{"", "..", "../x", "a/b", "nope"} {
		if err := Drop(dataDir, bad); err == nil {
			t.Errorf("drop %q accepted", bad)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "buffer", "es")); err != nil {
		t.Fatal("drop removed another buffer")
	}
}

// Unacknowledged records survive a clean restart and are delivered again;
// acknowledged ones are not.
func TestRestartRedeliversUnacked(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, Config{}, WithSegmentSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	a := newAcks()
	var recs []Record
	for i := range 100 {
		recs = append(recs, a.rec(strings.Repeat("r", 50)+string(rune('A'+i%26))))
	}
	d.Write(context.Background(), recs)
	b1, _ := d.Read(context.Background(), Limits{MaxEvents: 30})
	b2, _ := d.Read(context.Background(), Limits{MaxEvents: 30})
	d.Ack(b2) // out of order: b1 holds the position
	d.Close()
	got, st := drainDir(t, dir)
	if len(got) != 100 || st.Records != 100 {
		t.Fatalf("after acking only the second batch: %d records redelivered, stats %+v", len(got), st)
	}
	_ = b1
	// drainDir acknowledged everything: nothing is left, and segments are gone.
	got, _ = drainDir(t, dir)
	if len(got) != 0 {
		t.Fatalf("after acking all: %d redelivered", len(got))
	}
	r, _ := StatsOf(dir)
	if r.Records != 0 || len(r.Segments) > 1 {
		t.Fatalf("stats after all acked: %s", r)
	}
}

// A reader that keeps up gets records from memory, not from the files; one
// that falls behind the memory cache reads the files, in order.
func TestReadsFromMemoryWhenKeepingUp(t *testing.T) {
	for _, behind := range []bool{false, true} {
		fsys := newMemFS()
		d, err := Open("/b", Config{}, WithFS(fsys), WithSegmentSize(16<<10), WithMemoryCache(8<<10))
		if err != nil {
			t.Fatal(err)
		}
		fsys.mu.Lock()
		fsys.reads = 0
		fsys.mu.Unlock()
		a := newAcks()
		var got []string
		const n = 2000
		for i := 0; i < n; i += 10 {
			var recs []Record
			for j := range 10 {
				recs = append(recs, a.rec(fmt.Sprintf("%05d-%090d", i+j, 0)))
			}
			d.Write(context.Background(), recs)
			if !behind {
				got = append(got, readAllRecords(t, d, Limits{MaxEvents: 100}, 10)...)
			}
		}
		if behind {
			waitFor(t, "all written", func() bool { return a.n.Load() == n })
			got = readAllRecords(t, d, Limits{MaxEvents: 100}, n)
		}
		for i, g := range got {
			if g[:5] != fmt.Sprintf("%05d", i) {
				t.Fatalf("behind=%v: record %d = %.8q", behind, i, g)
			}
		}
		fsys.mu.Lock()
		reads := fsys.reads
		fsys.mu.Unlock()
		if !behind && reads != 0 {
			t.Fatalf("a reader keeping up caused %d file reads", reads)
		}
		if behind && reads == 0 {
			t.Fatal("200 KiB read back through an 8 KiB cache without reading the files")
		}
		d.Close()
	}
}
