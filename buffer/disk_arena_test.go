package buffer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

// TestDiskReleasesArenas: the disk buffer hands an encoded batch's arena
// back to its pool once every record of it left the memory cache (evicted
// once on disk, or read from the cache and acknowledged), never before: a
// batch read from the cache keeps its bytes until it is acknowledged, while
// later batches are encoded into arenas from the same pool. Never twice
// either (Arena.Release panics). With a large cache every record is read
// from it; with a tiny one most are evicted and read from the files.
func TestDiskReleasesArenas(t *testing.T) {
	for _, cache := range []int64{1 << 20, 1 << 10} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) {
			ctx := context.Background()
			var pool ArenaPool
			d, err := Open(t.TempDir(), Config{}, WithMemoryCache(cache))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			line := func(tag byte, i int) string {
				return fmt.Sprintf("%c-%04d-%s", tag, i, strings.Repeat(string(tag), 80))
			}
			var arenas []*Arena
			var acked, fromDisk int
			write := func(tag byte, n int) {
				a := pool.Get(n * 100)
				arenas = append(arenas, a)
				buf := a.Bytes()
				var recs []Record
				for i := range n {
					start := len(buf)
					buf = append(buf, line(tag, i)...)
					ack := event.NewAck(1, func() { acked++ })
					recs = append(recs, Record{Data: buf[start:len(buf):len(buf)], Arena: a, Ack: releaser(ack)})
				}
				a.Hold(buf, n)
				if err := d.Write(ctx, recs); err != nil {
					t.Fatal(err)
				}
			}
			read := func() *Batch {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				b, err := d.Read(rctx, Limits{MaxEvents: 50})
				if err != nil {
					t.Fatal(err)
				}
				if len(b.impl.(*diskBatch).arenas) > 0 {
					fromDisk++
				}
				return b
			}
			check := func(b *Batch, tag byte) {
				for i, r := range b.Records {
					if string(r) != line(tag, i) {
						t.Fatalf("record %d of batch %c: %q", i, tag, r)
					}
				}
			}
			write('a', 50)
			first := read()
			// later batches through the same pool while the first is out;
			// each once the flusher wrote what came before, so that a
			// small cache evicts it
			flushed := func() {
				deadline := time.Now().Add(10 * time.Second)
				for {
					d.mu.Lock()
					done := d.writtenSeq == d.writeSeq
					d.mu.Unlock()
					if done {
						return
					}
					if time.Now().After(deadline) {
						t.Fatal("the flusher did not write the records")
					}
					time.Sleep(time.Millisecond)
				}
			}
			for k := range 5 {
				flushed()
				write(byte('b'+k), 50)
			}
			check(first, 'a')
			if err := d.Ack(first); err != nil {
				t.Fatal(err)
			}
			for k := range 5 {
				b := read()
				check(b, byte('b'+k))
				if err := d.Ack(b); err != nil {
					t.Fatal(err)
				}
			}
			if small := cache < 4096; small != (fromDisk > 0) {
				t.Fatalf("cache of %d bytes: %d batches read from the files", cache, fromDisk)
			}
			// every arena is back in the pool once the flusher is done
			// with the records it held back (written, or dropped as
			// acknowledged)
			deadline := time.Now().Add(10 * time.Second)
			for i := 0; i < len(arenas); {
				pool.mu.Lock()
				back := slices.Contains(pool.free, arenas[i])
				pool.mu.Unlock()
				if back {
					i++
					continue
				}
				if time.Now().After(deadline) {
					t.Fatalf("arena %d of %d not given back", i, len(arenas))
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// releaser is the Releaser of an event holding ack.
func releaser(ack *event.Ack) event.Releaser {
	e := &event.Event{}
	e.SetAck(ack)
	return e.Releaser()
}
