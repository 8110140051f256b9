package buffer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sidelog/sidelog/event"
)

// benchRecords returns 1000 distinct log lines of 250 bytes.
func benchRecords() [][]byte {
	rng := rand.New(rand.NewPCG(1, 1))
	levels := []string{"info", "warn", "error", "debug"}
	out := make([][]byte, 1000)
	for i := range out {
		s := fmt.Sprintf(`{"ts":"2026-01-02T15:04:05.%06dZ","level":"%s","service":"checkout","trace_id":"%016x","msg":"request served","path":"/api/v1/orders/%d","status":%d,"latency_ms":%d,"pad":"`,
			rng.IntN(1e6), levels[rng.IntN(4)], rng.Uint64(), rng.IntN(1e6), 200+rng.IntN(300), rng.IntN(2000))
		for len(s) < 248 {
			s += string(rune('a' + rng.IntN(26)))
		}
		out[i] = []byte(s[:248] + `"}`)
	}
	return out
}

const benchBatch = 100

// writeN writes n records in batches, each batch acknowledged through one
// Ack group, and waits until every record's ack was released (all fsynced).
func writeN(b *testing.B, buf Buffer, recs [][]byte, n int) {
	var wg sync.WaitGroup
	batch := make([]Record, benchBatch)
	ctx := context.Background()
	for i := 0; i < n; i += benchBatch {
		k := min(benchBatch, n-i)
		wg.Add(1)
		var e event.Event
		e.SetAck(event.NewAck(k, wg.Done))
		r := e.Releaser()
		for j := range k {
			batch[j] = Record{Data: recs[(i+j)%len(recs)], Ack: r}
		}
		if err := buf.Write(ctx, batch[:k]); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}

func BenchmarkDiskWrite(b *testing.B) {
	recs := benchRecords()
	for _, comp := range []string{"none", "zstd"} {
		b.Run(comp, func(b *testing.B) {
			d, err := Open(b.TempDir(), Config{MaxBytes: 1 << 40, Compression: comp})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			// A reader that acknowledges everything, so that segments are
			// removed as they would be in production.
			go func() {
				for {
					bt, err := d.Read(context.Background(), Limits{MaxEvents: 1000})
					if err != nil {
						return
					}
					d.Ack(bt)
				}
			}()
			b.SetBytes(250)
			b.ReportAllocs()
			b.ResetTimer()
			writeN(b, d, recs, b.N)
			b.StopTimer()
		})
	}
}

// Multi-line records of about 2 KiB (stack traces), where per-record zstd
// pays off.
func BenchmarkDiskWriteLarge(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	recs := make([][]byte, 200)
	for i := range recs {
		s := fmt.Sprintf(`{"ts":"2026-01-02T15:04:05Z","level":"error","msg":"java.lang.IllegalStateException: order %d\n`, rng.IntN(1e6))
		for len(s) < 2000 {
			s += fmt.Sprintf(`\tat com.example.checkout.Service%d.handle(Service%d.java:%d)\n`, rng.IntN(40), rng.IntN(40), rng.IntN(900))
		}
		recs[i] = []byte(s + `"}`)
	}
	for _, comp := range []string{"none", "zstd"} {
		b.Run(comp, func(b *testing.B) {
			d, err := Open(b.TempDir(), Config{MaxBytes: 1 << 40, Compression: comp})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			b.SetBytes(int64(len(recs[0])))
			b.ReportAllocs()
			b.ResetTimer()
			writeN(b, d, recs, b.N)
			b.StopTimer()
			b.ReportMetric(float64(d.Stats().Bytes)/float64(b.N), "disk-B/rec")
		})
	}
}

func BenchmarkDiskRead(b *testing.B) {
	recs := benchRecords()
	for _, comp := range []string{"none", "zstd"} {
		b.Run(comp, func(b *testing.B) {
			// A small memory cache: the records are read back from the files.
			d, err := Open(b.TempDir(), Config{MaxBytes: 1 << 40, Compression: comp}, WithMemoryCache(1))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			writeN(b, d, recs, b.N)
			onDisk := float64(d.Stats().Bytes) / float64(b.N)
			b.SetBytes(250)
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for n < b.N {
				bt, err := d.Read(context.Background(), Limits{MaxEvents: 1000})
				if err != nil {
					b.Fatal(err)
				}
				n += len(bt.Records)
				d.Ack(bt)
			}
			b.ReportMetric(onDisk, "disk-B/rec")
		})
	}
}

// The reader keeps up with the writer: records come from memory.
func BenchmarkDiskWriteAndRead(b *testing.B) {
	recs := benchRecords()
	d, err := Open(b.TempDir(), Config{MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	done := make(chan int)
	b.SetBytes(250)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		n := 0
		for n < b.N {
			bt, err := d.Read(context.Background(), Limits{MaxEvents: 1000})
			if err != nil {
				break
			}
			n += len(bt.Records)
			d.Ack(bt)
		}
		done <- n
	}()
	writeN(b, d, recs, b.N)
	<-done
}

func BenchmarkMemoryWriteAndRead(b *testing.B) {
	recs := benchRecords()
	m := NewMemory(64<<20, "block")
	done := make(chan int)
	b.SetBytes(250)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		n := 0
		for n < b.N {
			bt, err := m.Read(context.Background(), Limits{MaxEvents: 1000})
			if err != nil {
				break
			}
			n += len(bt.Records)
			m.Ack(bt)
		}
		done <- n
	}()
	writeN(b, m, recs, b.N)
	<-done
}
