package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{1 << 20, 100},            // an idle agent: Go's default
		{MinHeadroom, 100},        // headroom = live = MinHeadroom
		{MinHeadroom * 3 / 2, 66}, // headroom MinHeadroom
		{2 * MinHeadroom, 50},
		{1 << 30, 50}, // a large memory buffer: half of it, not less
	} {
		if got := Percent(c.live); got != c.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// The tuner runs after collections: with a large live heap it sets GOGC 50,
// and once the heap is small again Go's default.
func TestTunerFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	type setting struct {
		percent int
		live    uint64
	}
	sets := make(chan setting, 64)
	tu := newTuner(func(p int, live uint64) {
		select {
		case sets <- setting{p, live}:
		default: // never block the runtime's cleanup goroutine
		}
	})
	tu.arm()
	defer tu.stopped.Store(true)
	wait := func(want int) setting {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			runtime.GC() // the tuner runs after a collection
			select {
			case s := <-sets:
				if s.percent == want {
					return s
				}
			case <-deadline:
				t.Fatalf("GOGC never set to %d", want)
			case <-time.After(50 * time.Millisecond):
				// the cleanup of this collection may still be queued: collect again
			}
		}
	}
	big := make([][]byte, 64)
	for i := range big {
		big[i] = make([]byte, 1<<20)
	}
	s := wait(50)
	if s.live < 2*MinHeadroom {
		t.Fatalf("GOGC 50 set at %d MiB live", s.live>>20)
	}
	if got := debug.SetGCPercent(50); got != 50 {
		t.Fatalf("GOGC is %d after the tuner set 50", got)
	}
	runtime.KeepAlive(big)
	big = nil
	s = wait(100)
	if s.live > MinHeadroom {
		t.Fatalf("GOGC 100 set at %d MiB live", s.live>>20)
	}
}
