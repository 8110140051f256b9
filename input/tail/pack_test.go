package tail

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/parser"
)

// pieceAsm joins a line ending with a backslash to the next one (without
// the backslash), like a CRI P piece and its F: it holds an event across
// reads only when a read ends inside such a group.
type pieceAsm struct {
	held *event.Event
	buf  []byte
}

func (a *pieceAsm) Push(e *event.Event, out []*event.Event) []*event.Event {
	cont := bytes.HasSuffix(e.Raw, []byte(`\`))
	piece := bytes.TrimSuffix(e.Raw, []byte(`\`))
	if a.held != nil {
		a.buf = append(a.buf, piece...)
		a.held.Join(e)
		if cont {
			return out
		}
		a.held.Raw = a.buf
		out = append(out, a.held)
		a.held, a.buf = nil, nil
		return out
	}
	if cont {
		a.held, a.buf = e, append([]byte(nil), piece...)
		return out
	}
	return append(out, e)
}

func (a *pieceAsm) Flush(out []*event.Event) []*event.Event {
	if a.held == nil {
		return out
	}
	a.held.Raw = a.buf
	out = append(out, a.held)
	a.held, a.buf = nil, nil
	return out
}

func (a *pieceAsm) Deadline() (time.Time, bool) {
	return time.Now().Add(time.Hour), a.held != nil
}

// packLine is line k of file i: its number, then filler of a length and
// letter that depend on both, so that bytes of another line (a pack
// reused too early) never pass for it.
func packLine(i, k int) string {
	return fmt.Sprintf("f%03d-l%06d-%s", i, k, strings.Repeat(string(rune('a'+(i+k)%26)), 20+(i*7+k*13)%120))
}

// TestSmallReadsSharePacks drives the reader's own path (verify, readChunk,
// send, flush) over 60 files appended in rounds, every read small, so that
// the reads of many files share packs. The engine's side is played by the
// test: each emitted batch stays "in the pipeline" for three rounds; then
// its events are checked against the lines written, released and handed
// back through Recycle. A pack reused while any of its events was still out
// would change their bytes. Some lines are written as two pieces joined by
// the assembler, and some rounds end a file inside such a group, so the
// assembler holds events across reads (those files copy their reads out
// until it holds nothing again). Every line must come out once and intact,
// every acknowledgement must be released, and packs must have been reused.
func TestSmallReadsSharePacks(t *testing.T) {
	// packs filled within a round, their events out for three rounds;
	// then packs that stay open over rounds while every event of their
	// first reads come back
	for _, c := range []struct{ perRound, inFlight int }{{12, 3}, {2, 0}} {
		t.Run(fmt.Sprintf("%d lines a round, %d rounds out", c.perRound, c.inFlight), func(t *testing.T) {
			testSmallReadsSharePacks(t, c.perRound, c.inFlight)
		})
	}
}

func testSmallReadsSharePacks(t *testing.T, perRound, inFlight int) {
	const files, rounds = 60, 40
	dir := t.TempDir()
	var paths []string
	for i := range files {
		paths = append(paths, filepath.Join(dir, fmt.Sprintf("app-%03d.log", i)))
	}
	tl, err := New(testConfig(paths...), input.Env{Name: "t", NewAssembler: func() parser.Assembler { return &pieceAsm{} }})
	if err != nil {
		t.Fatal(err)
	}
	var queue [][][]*event.Event // batches emitted, per round
	var cur [][]*event.Event
	tl.emit = func(batch []*event.Event) error {
		cur = append(cur, batch)
		return nil
	}
	seen := map[string]int{}
	check := func(batches [][]*event.Event) {
		for _, batch := range batches {
			for _, e := range batch {
				var i, k int
				if _, err := fmt.Sscanf(string(e.Raw), "f%03d-l%06d-", &i, &k); err != nil || string(e.Raw) != packLine(i, k) {
					t.Fatalf("event %q: not a line written (%v)", e.Raw, err)
				}
				seen[string(e.Raw[:12])]++
				e.Done()
			}
			tl.Recycle(batch)
		}
	}
	// the engine's first Recycle only switches recycling on
	tl.Recycle(nil)

	writers := make([]*os.File, files)
	for i, p := range paths {
		if writers[i], err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			t.Fatal(err)
		}
		defer writers[i].Close()
		tl.open(p, time.Now())
		defer func() {
			if f := tl.byPath[p]; f != nil && f.fd != nil {
				f.fd.Close()
			}
		}()
	}
	next := make([]int, files)
	rest := make([]string, files) // a group's last piece, for the next round
	held := 0
	for r := range rounds {
		for i, w := range writers {
			var b strings.Builder
			b.WriteString(rest[i])
			rest[i] = ""
			for range perRound {
				k := next[i]
				next[i]++
				line := packLine(i, k)
				cut := 12 + (k % 7)
				switch {
				case k%5 == 0: // in two pieces
					b.WriteString(line[:cut] + "\\\n" + line[cut:] + "\n")
				default:
					b.WriteString(line + "\n")
				}
			}
			if r%3 == 0 && i%4 == 0 && r < rounds-1 {
				// the round ends inside a group: the read too
				k := next[i]
				next[i]++
				line := packLine(i, k)
				b.WriteString(line[:15] + "\\\n")
				rest[i] = line[15:] + "\n"
			}
			if _, err := w.WriteString(b.String()); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range paths {
			f := tl.byPath[p]
			tl.verify(f)
			batch, _ := tl.readChunk(f, time.Now(), -1)
			if err := tl.send(batch); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			if _, holds := f.asm.Deadline(); holds {
				held++
			}
			f.mu.Unlock()
		}
		if err := tl.flush(); err != nil {
			t.Fatal(err)
		}
		queue = append(queue, cur)
		cur = nil
		if len(queue) > inFlight {
			check(queue[0])
			queue = queue[1:]
		}
	}
	// the groups still held, then everything left in flight
	for _, p := range paths {
		f := tl.byPath[p]
		f.mu.Lock()
		out := tl.asmFlush(f, nil)
		f.mu.Unlock()
		if err := tl.send(out); err != nil {
			t.Fatal(err)
		}
	}
	if err := tl.flush(); err != nil {
		t.Fatal(err)
	}
	queue = append(queue, cur)
	for _, q := range queue {
		check(q)
	}
	for i := range files {
		for k := range next[i] {
			if n := seen[packLine(i, k)[:12]]; n != 1 {
				t.Fatalf("line %d of file %d came out %d times", k, i, n)
			}
		}
	}
	if n := tl.inflight.Load(); n != 0 {
		t.Fatalf("%d batches not acknowledged", n)
	}
	if held == 0 {
		t.Fatal("no read ended with the assembler holding a group")
	}
	if p := tl.packStats(); p < 5 {
		t.Fatalf("%d packs reused", p)
	}
	t.Logf("%d packs reused, %d reads ended with a held group", tl.packStats(), held)
}

// BenchmarkManySmallReads is a DaemonSet's tick on the reader: 200 files
// appended 25 lines each, then each read once, the events gathered and
// emitted, released and recycled. Per op: one tick (5,000 lines).
func BenchmarkManySmallReads(b *testing.B) {
	const files, perTick = 200, 25
	dir := b.TempDir()
	var paths []string
	for i := range files {
		paths = append(paths, filepath.Join(dir, fmt.Sprintf("app-%03d.log", i)))
	}
	tl, err := New(testConfig(paths...), input.Env{Name: "bench"})
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
	tick := make([][]byte, files)
	writers := make([]*os.File, files)
	for i, p := range paths {
		var buf bytes.Buffer
		for k := range perTick {
			fmt.Fprintf(&buf, `{"ts":"2025-06-01T00:00:00.000Z","level":"info","msg":"order accepted and queued for fulfilment","service":"svc-%03d","trace_id":"3ce1ecd46ea8330f0cbce89df2e02dcc","n":%d}`+"\n", i, k)
		}
		tick[i] = buf.Bytes()
		if writers[i], err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			b.Fatal(err)
		}
		defer writers[i].Close()
		writers[i].Write(tick[i])
		tl.open(p, time.Now())
		defer func() {
			if f := tl.byPath[p]; f != nil && f.fd != nil {
				f.fd.Close()
			}
		}()
	}
	round := func() {
		for i, w := range writers {
			if _, err := w.Write(tick[i]); err != nil {
				b.Fatal(err)
			}
		}
		for _, p := range paths {
			f := tl.byPath[p]
			tl.verify(f)
			batch, _ := tl.readChunk(f, time.Now(), -1)
			if err := tl.send(batch); err != nil {
				b.Fatal(err)
			}
		}
		if err := tl.flush(); err != nil {
			b.Fatal(err)
		}
	}
	for range 3 { // past the first fingerprint_bytes and the first Recycle
		round()
	}
	b.SetBytes(int64(files * len(tick[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round()
	}
	b.StopTimer()
	if lines < b.N*files*perTick {
		b.Fatalf("%d lines for %d ticks", lines, b.N)
	}
}
