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
		batch := tl.split(f, data, time.Time{}, true)
		for _, e := range batch {
			e.Done()
		}
	}
}
