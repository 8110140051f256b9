package tail

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

// scansIn counts the rescans of r during d (a measuring window).
func scansIn(r *running, d time.Duration) (uint64, time.Duration) {
	s0, t0 := r.t.Stats().Scans, time.Now()
	tm := time.NewTimer(d)
	<-tm.C
	return r.t.Stats().Scans - s0, time.Since(t0)
}

// While fsnotify watches everything and nothing changes, the rescans back
// off from poll_interval to max_poll_interval; without fsnotify they keep
// to poll_interval.
func TestRescansBackOff(t *testing.T) {
	for _, watch := range []bool{true, false} {
		t.Run(fmt.Sprintf("watch=%v", watch), func(t *testing.T) {
			root := t.TempDir()
			for i := range 5 {
				mustWrite(t, filepath.Join(root, fmt.Sprintf("%d.log", i)), "x\n")
			}
			cfg := testConfig(filepath.Join(root, "*.log"))
			cfg.PollInterval = 10 * time.Millisecond
			cfg.MaxPollInterval = 200 * time.Millisecond
			cfg.Watch = watch
			s := newSink()
			r := start(t, cfg, t.TempDir(), s.emit)
			s.waitFor(t, 10*time.Second, "first lines", func() bool { return s.total == 5 })
			n, d := scansIn(r, 1500*time.Millisecond)
			t.Logf("%d rescans in %v", n, d.Round(time.Millisecond))
			if watch {
				// 10+20+40+80+160 ms of ramp, then one every 200 ms
				if max := uint64(d/cfg.MaxPollInterval) + 5; n > max {
					t.Fatalf("%d rescans in %v with fsnotify healthy, want at most %d", n, d, max)
				}
				if st := r.t.Stats(); st.MissedEvents != 0 {
					t.Fatalf("%d missed events reported on a local file system", st.MissedEvents)
				}
			} else if n < 40 {
				t.Fatalf("%d rescans in %v without fsnotify, want about one every %v", n, d, cfg.PollInterval)
			}
		})
	}
}

// With rescans in effect off (poll_interval 1h), fsnotify alone finds
// appends, new files, files in new subdirectories and rotations: what the
// back-off relies on.
func TestEventsAloneFindEverything(t *testing.T) {
	root := t.TempDir()
	a := filepath.Join(root, "a.log")
	mustWrite(t, a, "a1\n")
	cfg := testConfig(filepath.Join(root, "**", "*.log"))
	cfg.PollInterval = time.Hour
	s := newSink()
	r := start(t, cfg, t.TempDir(), s.emit)
	s.waitFor(t, 10*time.Second, "a1", func() bool { return s.counts["a1"] == 1 })
	scans := r.t.Stats().Scans

	appendFile(t, a, "a2\n")
	s.waitFor(t, 10*time.Second, "an appended line", func() bool { return s.counts["a2"] == 1 })
	if n := r.t.Stats().Scans; n != scans {
		t.Fatalf("an append to an open file cost %d rescans", n-scans)
	}

	mustWrite(t, filepath.Join(root, "b.log"), "b1\n")
	s.waitFor(t, 10*time.Second, "a new file", func() bool { return s.counts["b1"] == 1 })

	deep := filepath.Join(root, "sub", "deeper")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(deep, "c.log"), "c1\n")
	s.waitFor(t, 10*time.Second, "a file in a new subdirectory", func() bool { return s.counts["c1"] == 1 })
	// and later files in that directory (watched since it was listed)
	mustWrite(t, filepath.Join(deep, "d.log"), "d1\n")
	s.waitFor(t, 10*time.Second, "a second file in the new subdirectory", func() bool { return s.counts["d1"] == 1 })

	// rename + create: the last line of the old file and the new file
	appendFile(t, a, "a3\n")
	if err := os.Rename(a, a+".1"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, a, "a4\n")
	s.waitFor(t, 10*time.Second, "the lines around a rotation", func() bool { return s.counts["a3"] == 1 && s.counts["a4"] == 1 })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total != 7 {
		t.Fatalf("%d lines, want 7: %v", s.total, s.counts)
	}
}

// blindWatcher accepts every watch and reports nothing: fsnotify on a
// network or overlay volume where changes made elsewhere raise no event.
type blindWatcher struct{}

func (blindWatcher) run(ctx context.Context) { <-ctx.Done() }
func (blindWatcher) add(string) error        { return nil }
func (blindWatcher) remove(string)           {}
func (blindWatcher) close()                  {}

// A rescan that finds a change fsnotify did not report brings the rescans
// back to poll_interval: a volume where events are missed is polled.
func TestMissedEventsBringPollingBack(t *testing.T) {
	newWatcher = func(*Tailer) (dirWatcher, error) { return blindWatcher{}, nil }
	defer func() { newWatcher = newDirWatcher }()
	root := t.TempDir()
	p := filepath.Join(root, "app.log")
	w := newWriter(t, p)
	defer w.close()
	w.write(1)
	cfg := testConfig(p)
	cfg.PollInterval = 20 * time.Millisecond
	cfg.MaxPollInterval = 400 * time.Millisecond
	s := newSink()
	r := startWith(t, cfg, t.TempDir(), s.emit, func(tl *Tailer) { tl.missGrace = 30 * time.Millisecond })
	s.waitFor(t, 10*time.Second, "the first line", func() bool { return s.total == 1 })
	// the watch looks healthy: rescans back off
	s.waitFor(t, 20*time.Second, "the back-off", func() bool { return r.t.Stats().Scans >= 6 })
	if n := r.t.Stats().MissedEvents; n != 0 {
		t.Fatalf("%d missed events before any write", n)
	}
	// appends reach the output through rescans alone; one of them comes
	// late enough after its write to count as missed (the grace is short)
	for r.t.Stats().MissedEvents == 0 {
		if w.n > 50 {
			t.Fatalf("no missed event noticed after %d appends without events", w.n)
		}
		w.write(1)
		n := w.n
		s.waitFor(t, 10*time.Second, "an appended line", func() bool { return s.total == n })
	}
	n, d := scansIn(r, time.Second)
	t.Logf("after a missed event: %d rescans in %v", n, d.Round(time.Millisecond))
	if n < 15 {
		t.Fatalf("%d rescans in %v after a missed event, want about one every %v", n, d, cfg.PollInterval)
	}
	s.checkNumbers(t, w.n)
}

// A file truncated and written again past our offset with the same first
// bytes (a fixed header longer than fingerprint_bytes) is told by the bytes
// just before the offset, which every read compares: nothing before the old
// offset is lost.
func TestRewriteWithSameHeaderIsATruncation(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "app.log")
	var header bytes.Buffer
	for i := range 12 {
		fmt.Fprintf(&header, "# header %02d %s\n", i, strings.Repeat("-", 85))
	}
	if header.Len() <= DefaultConfig().FingerprintBytes {
		t.Fatalf("header of %d bytes does not cover the fingerprint", header.Len())
	}
	lines := func(prefix string, n int) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "%s-%06d\n", prefix, i)
		}
		return b.String()
	}
	mustWrite(t, p, header.String()+lines("a", 20))
	cfg := testConfig(p)
	cfg.Watch = false // only the reader's checks and the scanner's
	s := newSink()
	r := start(t, cfg, t.TempDir(), s.emit)
	s.waitFor(t, 10*time.Second, "the first content", func() bool { return s.total == 32 })
	// truncated and rewritten with the same header, past the old offset
	if err := os.WriteFile(p, []byte(header.String()+lines("b", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, 10*time.Second, "the rewritten content", func() bool { return s.total == 32+112 })
	st := r.t.Stats()
	r.stop(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i <= 100; i++ {
		if c := s.counts[fmt.Sprintf("b-%06d", i)]; c != 1 {
			t.Errorf("b-%06d arrived %d times", i, c)
		}
	}
	if st.Truncations != 1 {
		t.Errorf("%d truncations, want 1", st.Truncations)
	}
}

// Events of small reads own their bytes: later reads (into the reader's
// scratch buffer) do not change the lines of events still in flight.
func TestSmallReadsOwnTheirBytes(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "app.log")
	w := newWriter(t, p)
	defer w.close()
	var mu sync.Mutex
	var held []*event.Event
	got := make(chan struct{}, 1)
	hold := func(batch []*event.Event) error {
		mu.Lock()
		held = append(held, batch...)
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(held) }
	cfg := testConfig(p)
	start(t, cfg, t.TempDir(), hold)
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for i := 1; i <= 100; i++ {
		w.write(1) // one read per line: wait for it before the next
		for count() < i {
			select {
			case <-got:
			case <-deadline.C:
				t.Fatalf("%d of %d lines", count(), i)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, e := range held {
		if string(e.Raw) != numLine(i+1) {
			t.Fatalf("event %d holds %q, want %q", i, e.Raw, numLine(i+1))
		}
		e.Done()
	}
}

// The small reads of many files go out together, each file's lines in
// order.
func TestSmallBatchesGathered(t *testing.T) {
	root := t.TempDir()
	const files = 20
	ws := make([]*writer, files)
	for i := range ws {
		ws[i] = newWriter(t, filepath.Join(root, fmt.Sprintf("%02d.log", i)))
		ws[i].write(1)
		defer ws[i].close()
	}
	var mu sync.Mutex
	gate := make(chan struct{})
	first := true
	last := map[string]string{}
	var mixed, total int
	var bad string
	notify := make(chan struct{}, 1)
	emit := func(batch []*event.Event) error {
		mu.Lock()
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-gate // the pipeline is busy while every file is appended to
		}
		mu.Lock()
		paths := map[string]bool{}
		for _, e := range batch {
			paths[e.Path] = true
			if prev := last[e.Path]; prev >= string(e.Raw) && bad == "" {
				bad = fmt.Sprintf("%s: %q after %q", e.Path, e.Raw, prev)
			}
			last[e.Path] = string(e.Raw)
			total++
			e.Done()
		}
		if len(paths) > 1 {
			mixed++
		}
		mu.Unlock()
		select {
		case notify <- struct{}{}:
		default:
		}
		return nil
	}
	cfg := testConfig(filepath.Join(root, "*.log"))
	r := start(t, cfg, t.TempDir(), emit)
	for _, w := range ws {
		w.write(3)
	}
	close(gate)
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		mu.Lock()
		n := total
		mu.Unlock()
		if n == files*4 {
			break
		}
		select {
		case <-notify:
		case <-deadline.C:
			t.Fatalf("%d of %d lines", n, files*4)
		}
	}
	r.stop(t)
	mu.Lock()
	defer mu.Unlock()
	if bad != "" {
		t.Fatal(bad)
	}
	if mixed == 0 {
		t.Fatal("no batch held the lines of more than one file")
	}
}

// The checkpoint encoder writes what json.Marshal would decode to the same
// document, whatever the paths hold.
func TestCheckpointEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"/var/log/", "a", "é", "日本", `"`, `\`, "\n", "\t", "\x00", "\x1f", "\x7f", "<>&", "\u2028", "\xff", "\xc3", "😀", " "}
	for k := range 300 {
		doc := checkpointDoc{Version: checkpointVersion, Input: pieces[rng.IntN(len(pieces))], Seq: rng.Uint64N(3)}
		if k%10 != 0 {
			for range rng.IntN(5) {
				var path strings.Builder
				for range rng.IntN(8) {
					path.WriteString(pieces[rng.IntN(len(pieces))])
				}
				doc.Files = append(doc.Files, checkpoint{
					Dev: rng.Uint64(), Ino: rng.Uint64(), FP: rng.Uint64(), MatchFP: rng.Uint64(),
					MatchLen: rng.IntN(1025), Gen: rng.Uint32(), Offset: rng.Int64(), Path: path.String(), Seen: rng.Int64N(1 << 40),
					Size: rng.Int64(), Target: path.String()[:rng.IntN(path.Len()+1)],
				})
			}
		}
		got := appendCheckpoints(nil, &doc)
		want, err := json.Marshal(&doc)
		if err != nil {
			t.Fatal(err)
		}
		var a, b checkpointDoc
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("decoded\n%+v\nwant\n%+v\n(%s)", a, b, got)
		}
	}
}
