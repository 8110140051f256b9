// Package gctune keeps the garbage collector's headroom small when the live
// heap is large.
//
// The collector lets the heap grow by GOGC% of the live heap between
// collections (Go's default: 100 %). The agent's live heap is mostly
// reusable memory (read packs, encode arenas, buffers, gzip state) and it
// allocates little per record, so collections are rare and cheap while the
// headroom is a large share of its resident memory: at 50,000 records/s
// (docs/benchmarks.md, "A DaemonSet's day") 23 MiB live grew to 46 MiB
// between collections, which took 0.7 % of the agent's CPU samples.
//
// After each collection the tuner sets GOGC so that the headroom is half
// the live heap, but at least MinHeadroom, and never more than Go's
// default: a small heap (an idle sidecar, a file read from its head with
// field work, whose allocations are what the collector is busy with) keeps
// GOGC 100; a heap of 2×MinHeadroom or more gets GOGC 50.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

const (
	// MinHeadroom is the least headroom the tuner leaves (bytes).
	MinHeadroom = 12 << 20
	// MinPercent and MaxPercent bound the GOGC the tuner sets.
	MinPercent = 50
	MaxPercent = 100
)

// Percent is the GOGC the tuner sets for a live heap of live bytes.
func Percent(live uint64) int {
	if live == 0 {
		return MaxPercent
	}
	p := uint64(MinHeadroom) * 100 / live
	return int(min(max(p, MinPercent), MaxPercent))
}

var start sync.Once

// Start runs the tuner for the life of the process (once; later calls do
// nothing). The caller decides whether to (not when GOGC is set by the
// user). set is told each GOGC it sets (nil: nothing), for logging.
func Start(set func(percent int, live uint64)) {
	start.Do(func() { newTuner(set).arm() })
}

type tuner struct {
	set     func(int, uint64)
	last    int
	sample  []metrics.Sample
	stopped atomic.Bool // tests: no more runs
}

func newTuner(set func(int, uint64)) *tuner {
	return &tuner{set: set, last: MaxPercent, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

// sentinel is an object that only the collector frees: its cleanup runs
// once per collection, after it. It holds a pointer so that the runtime
// never packs it with other small objects (which would delay its freeing).
type sentinel struct{ _ *byte }

func (t *tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *tuner) { t.after() }, t)
}

// after runs on the cleanup goroutine after a collection.
func (t *tuner) after() {
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live := t.sample[0].Value.Uint64()
		if p := Percent(live); p != t.last {
			debug.SetGCPercent(p)
			t.last = p
			if t.set != nil {
				t.set(p, live)
			}
		}
	}
	t.arm()
}
