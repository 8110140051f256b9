package tail

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
)

// writeLogFile writes about size bytes of JSON lines of ~240 bytes.
func writeLogFile(b *testing.B, path string, size int64) int64 {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var n int64
	for i := 0; n < size; i++ {
		k, _ := fmt.Fprintf(w, `{"ts":"2026-11-25T10:00:%02d.%06dZ","level":"info","service":"checkout","trace_id":"%016x","msg":"request served","path":"/api/v1/orders/%d","status":200,"latency_ms":%d,"bytes":%d}`+"\n",
			i%60, i%1000000, uint64(i)*2654435761, i, i%997, i%65536)
		n += int64(k)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTail1GiB: one 1 GiB file, tail → a null sink that releases each
// event at once. Reports MB/s and CPU seconds per GiB.
func BenchmarkTail1GiB(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "big.log")
	size := writeLogFile(b, p, 1<<30)
	var lines atomic.Int64
	null := func(batch []*event.Event) error {
		lines.Add(int64(len(batch)))
		for _, e := range batch {
			e.Done()
		}
		return nil
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		cfg := testConfig(p)
		cfg.ExitOnEOF = true
		tl, err := New(cfg, input.Env{Name: "bench", DataDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		if err := tl.Run(context.Background(), null); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
	b.ReportMetric(float64(lines.Load())/float64(b.N), "lines/op")
}

// BenchmarkSplit is the hot path alone: one 256 KiB read cut into events.
func BenchmarkSplit(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "chunk.log")
	writeLogFile(b, p, 256<<10)
	data, _ := os.ReadFile(p)
	data = data[:256<<10]
	tl, err := New(testConfig(p), input.Env{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	var dirty atomic.Bool
	f := &file{path: p, tr: newTracker(0, 0, &dirty), idSet: true}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.offset, f.lineStart, f.partial = int64(len(data)), 0, f.partial[:0]
		batch := tl.split(f, data, data, nil, time.Time{})
		for _, e := range batch {
			e.Done()
		}
	}
}

// BenchmarkSmallAppend is a slow file's turn of the reader: one 130-byte
// line appended, then verify and one read, the event released (what each
// of a thousand files appended once a second costs). It runs the reader's
// own path (verify, readChunk, send, flush) on an open file.
func BenchmarkSmallAppend(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "slow.log")
	line := []byte(`{"ts":"2025-06-01T00:00:00.000Z","level":"info","msg":"heartbeat","service":"idle","file":1,"tick":1}` + "\n")
	if err := os.WriteFile(p, line, 0o644); err != nil {
		b.Fatal(err)
	}
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	tl, err := New(testConfig(p), input.Env{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	var lines int
	tl.emit = func(batch []*event.Event) error {
		lines += len(batch)
		for _, e := range batch {
			e.Done()
		}
		tl.Recycle(batch)
		return nil
	}
	tl.open(p, time.Now())
	f := tl.byPath[p]
	defer f.fd.Close()
	// past the first fingerprint_bytes, as a file that has been written
	// for a while
	for f.offset < int64(tl.cfg.FingerprintBytes)+1 {
		w.Write(line)
		tl.readChunk(f, time.Now(), -1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(line); err != nil {
			b.Fatal(err)
		}
		tl.verify(f)
		batch, _ := tl.readChunk(f, time.Now(), -1)
		if err := tl.send(batch); err != nil {
			b.Fatal(err)
		}
		if err := tl.flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if lines < b.N {
		b.Fatalf("%d lines for %d appends", lines, b.N)
	}
}

// BenchmarkCheckpoint writes the checkpoint of 1,000 files (what persist
// does every checkpoint_interval while they are appended): encoding, the
// slot written in place, fdatasync. cpu-us/op includes the kernel's share.
func BenchmarkCheckpoint(b *testing.B) {
	path := checkpointPath(b.TempDir(), "bench")
	doc := checkpointDoc{Input: "bench"}
	for i := range 1000 {
		doc.Files = append(doc.Files, checkpoint{
			Dev: 2049, Ino: uint64(100000 + i), FP: uint64(i) * 0x9e3779b97f4a7c15, MatchFP: uint64(i) * 0xbf58476d1ce4e5b9,
			MatchLen: 1024, Gen: 1, Offset: int64(i) * 130, Path: fmt.Sprintf("/var/log/idle/app-%04d.log", i), Seen: 1764000000,
			enc: new(entryEnc), // as persist gives each file's entry
		})
	}
	var buf []byte
	var err error
	store := newCkptStore(path, ckptState{})
	defer store.close()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		doc.Files[i%1000].Offset += 130
		if buf, err = store.save(&doc, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}

// BenchmarkCheckpointEncode encodes the checkpoint of 200 files (the
// DaemonSet bench's pods) whose offsets all moved: from each file's cached
// entry (persist) and from the fields alone.
func BenchmarkCheckpointEncode(b *testing.B) {
	for _, cached := range []bool{true, false} {
		b.Run(map[bool]string{true: "cached", false: "fields"}[cached], func(b *testing.B) {
			doc := checkpointDoc{Version: slotVersion, Input: "pods", Seq: 1}
			for i := range 200 {
				c := checkpoint{
					Dev: 2049, Ino: uint64(100000 + i), FP: uint64(i) * 0x9e3779b97f4a7c15, MatchFP: uint64(i) * 0xbf58476d1ce4e5b9,
					MatchLen: 1024, Gen: 1, Offset: int64(i) * 130, Size: int64(i) * 131, Seen: 1764000000,
					Path: fmt.Sprintf("/var/log/pods/shop_checkout-%04d_6f1c2a4e-0b7d-4a55-9d1e-%012d/app/0.log", i, i),
				}
				if cached {
					c.enc = new(entryEnc)
				}
				doc.Files = append(doc.Files, c)
			}
			var buf []byte
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for j := range doc.Files {
					doc.Files[j].Offset += 130
					doc.Files[j].Size += 130
				}
				buf = appendCheckpoints(buf[:0], &doc)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
