package delivery

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output"
)

// fakeOut records every Write and answers with a scripted error.
type fakeOut struct {
	noRecord bool // keep only the number of calls
	mu       sync.Mutex
	calls    [][]string
	times    []time.Time
	answer   func(call int, batch [][]byte) error
	got      map[string]int
}

func (f *fakeOut) Encode(dst []byte, e *event.Event) ([]byte, error) { return dst, nil }
func (f *fakeOut) Close(ctx context.Context) error                   { return nil }
func (f *fakeOut) Write(ctx context.Context, batch [][]byte) error {
	f.mu.Lock()
	call := len(f.calls)
	var s []string
	if !f.noRecord {
		for _, b := range batch {
			s = append(s, string(b))
		}
		f.times = append(f.times, time.Now())
	}
	f.calls = append(f.calls, s)
	answer := f.answer
	f.mu.Unlock()
	var err error
	if answer != nil {
		err = answer(call, batch)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.got == nil {
		f.got = map[string]int{}
	}
	if f.noRecord {
		return err
	}
	var be *output.BatchError
	switch {
	case err == nil:
		for _, b := range batch {
			f.got[string(b)]++
		}
	case errors.As(err, &be):
		for i, b := range batch {
			if _, failed := be.Failed[i]; !failed {
				f.got[string(b)]++
			}
		}
	}
	return err
}

func (f *fakeOut) ncalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeOut) delivered() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps(f.got)
}

func maps(m map[string]int) map[string]int {
	o := map[string]int{}
	for k, v := range m {
		o[k] = v
	}
	return o
}

func records(n int, format string) []buffer.Record {
	recs := make([]buffer.Record, n)
	for i := range recs {
		recs[i] = buffer.Record{Data: []byte(fmt.Sprintf(format, i))}
	}
	return recs
}

func runUntilDrained(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r.Buf.Seal()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestBatchingLimits(t *testing.T) {
	buf := buffer.NewMemory(0, "block")
	buf.Write(context.Background(), records(2500, "r%04d"))
	out := &fakeOut{}
	r := &Runner{Name: "t", Out: out, Buf: buf, Batch: BatchConfig{MaxEvents: 1000}}
	runUntilDrained(t, r)
	var sizes []int
	for _, c := range out.calls {
		sizes = append(sizes, len(c))
	}
	if !slices.Equal(sizes, []int{1000, 1000, 500}) {
		t.Fatalf("batch sizes %v", sizes)
	}
	// max_bytes: records of 5 bytes, batches of at most 52 bytes → 10.
	buf = buffer.NewMemory(0, "block")
	buf.Write(context.Background(), records(25, "r%04d"))
	out = &fakeOut{}
	r = &Runner{Name: "t", Out: out, Buf: buf, Batch: BatchConfig{MaxBytes: 52}}
	runUntilDrained(t, r)
	if len(out.calls) != 3 || len(out.calls[0]) != 10 || len(out.calls[2]) != 5 {
		t.Fatalf("max_bytes batches: %d calls, first %d", len(out.calls), len(out.calls[0]))
	}
}

func TestBatchTimeout(t *testing.T) {
	buf := buffer.NewMemory(0, "block")
	out := &fakeOut{}
	// A linger longer than the timeout: the timeout is the bound.
	r := &Runner{Name: "t", Out: out, Buf: buf, Batch: BatchConfig{MaxEvents: 100, Timeout: 80 * time.Millisecond, Linger: time.Hour}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	start := time.Now()
	buf.Write(ctx, records(3, "r%d"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		out.mu.Lock()
		n := len(out.calls)
		out.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no batch sent after the timeout")
		}
		time.Sleep(time.Millisecond)
	}
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Fatalf("partial batch sent after %v, before batch.timeout", el)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	if len(out.calls[0]) != 3 {
		t.Fatalf("batch %v", out.calls[0])
	}
}

// Natural batching (issue 22): with a free send slot, min_events waiting
// are sent at once, long before batch.timeout and batch.linger; while the
// only slot is busy, records accumulate into full batches. Decided by
// signals from a blocked output, not by timing.
func TestNaturalBatching(t *testing.T) {
	buf := buffer.NewMemory(0, "block")
	started := make(chan []string, 8)
	release := make(chan struct{}, 8)
	out := writeFunc(func(batch [][]byte) error {
		var s []string
		for _, b := range batch {
			s = append(s, string(b))
		}
		started <- s
		<-release
		return nil
	})
	r := &Runner{Name: "t", Out: out, Buf: buf, MaxInFlight: 1,
		Batch: BatchConfig{MaxEvents: 10, MinEvents: 1, Timeout: time.Hour, Linger: time.Hour}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	next := func(what string) []string {
		t.Helper()
		select {
		case b := <-started:
			return b
		case <-time.After(20 * time.Second): // a guard: the rules need no timer of an hour
			t.Fatalf("%s: no send started", what)
			return nil
		}
	}
	buf.Write(ctx, records(1, "a%02d"))
	if b := next("one record, a free slot, min_events 1"); !slices.Equal(b, []string{"a00"}) {
		t.Fatalf("first batch %v", b)
	}
	// The slot is busy: 25 records arrive in 5 writes and wait.
	for i := range 5 {
		buf.Write(ctx, records(5, fmt.Sprintf("b%d%%d", i)))
	}
	release <- struct{}{}
	var sizes []int
	for _, what := range []string{"second", "third", "fourth"} {
		b := next(what + " batch")
		sizes = append(sizes, len(b))
		release <- struct{}{}
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Fatalf("batches after the busy slot: %v, want full ones [10 10 5]", sizes)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
}

// Several batches in flight, acknowledged out of order.
func TestMaxInFlight(t *testing.T) {
	buf := buffer.NewMemory(0, "block")
	var acked sync.WaitGroup
	recs := make([]buffer.Record, 40)
	acked.Add(len(recs))
	for i := range recs {
		var e event.Event
		e.SetAck(event.NewAck(1, acked.Done))
		recs[i] = buffer.Record{Data: []byte(fmt.Sprint(i)), Ack: e.Releaser()}
	}
	buf.Write(context.Background(), recs)
	var mu sync.Mutex
	inFlight, peak, closed := 0, 0, false
	release := make(chan struct{})
	out := &fakeOut{answer: func(call int, batch [][]byte) error {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		if inFlight == 3 && peak == 3 && !closed {
			close(release) // all three slots busy at once
			closed = true
		}
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	}}
	r := &Runner{Name: "t", Out: out, Buf: buf, Batch: BatchConfig{MaxEvents: 10}, MaxInFlight: 3}
	runUntilDrained(t, r)
	acked.Wait()
	if peak != 3 {
		t.Fatalf("peak in flight %d, want 3", peak)
	}
	if got := len(out.delivered()); got != 40 {
		t.Fatalf("delivered %d", got)
	}
}

func TestRetryBackoffAndRetryAfter(t *testing.T) {
	buf := buffer.NewMemory(0, "block")
	buf.Write(context.Background(), records(5, "r%d"))
	out := &fakeOut{answer: func(call int, batch [][]byte) error {
		switch call {
		case 0, 1, 2:
			return errors.New("connection refused")
		case 3:
			return output.ThrottledError(errors.New("429"), 300*time.Millisecond)
		}
		return nil
	}}
	r := &Runner{Name: "t", Out: out, Buf: buf, Retry: RetryConfig{Initial: 20 * time.Millisecond, Max: 60 * time.Millisecond}}
	runUntilDrained(t, r)
	if len(out.calls) != 5 {
		t.Fatalf("%d calls", len(out.calls))
	}
	gaps := make([]time.Duration, 4)
	for i := range gaps {
		gaps[i] = out.times[i+1].Sub(out.times[i])
	}
	// attempt k waits in [b/2, b] with b = min(20ms·2^k, 60ms), plus scheduling
	// (generous on a loaded 2-core machine).
	bounds := []time.Duration{20, 40, 60}
	for i, b := range bounds {
		lo := b * time.Millisecond / 2
		if gaps[i] < lo || gaps[i] > b*time.Millisecond+500*time.Millisecond {
			t.Errorf("retry %d after %v, want within [%v, %v]", i+1, gaps[i], lo, b*time.Millisecond)
		}
	}
	if gaps[3] < 300*time.Millisecond {
		t.Errorf("Retry-After 300ms not honoured: retried after %v", gaps[3])
	}
}

func TestBackoffBounds(t *testing.T) {
	for attempt := range 20 {
		for range 100 {
			d := Backoff(500*time.Millisecond, 30*time.Second, attempt, 0)
			b := min(500*time.Millisecond<<min(attempt, 10), 30*time.Second)
			if d < b/2 || d > b {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, b/2, b)
			}
		}
	}
	if d := Backoff(time.Millisecond, time.Second, 0, 5*time.Second); d != 5*time.Second {
		t.Fatalf("retry-after above max: %v", d)
	}
}

// Partial failures: only the failed records are sent again; permanent ones
// go to the dead-letter files.
func TestPartialFailure(t *testing.T) {
	dataDir := t.TempDir()
	buf := buffer.NewMemory(0, "block")
	buf.Write(context.Background(), []buffer.Record{
		{Data: []byte(`{"n":0}`)}, {Data: []byte(`{"n":1}`)}, {Data: []byte(`{"n":2}`)}, {Data: []byte("not json \x00\xff")}, {Data: []byte(`{"n":4}`)},
	})
	out := &fakeOut{answer: func(call int, batch [][]byte) error {
		if call == 0 {
			return &output.BatchError{Failed: map[int]error{
				1: errors.New("es_rejected_execution_exception"),
				2: output.PermanentError(errors.New("mapper_parsing_exception")),
				3: output.PermanentError(errors.New("bad bytes")),
				4: output.ThrottledError(errors.New("429"), 0),
			}}
		}
		return nil
	}}
	dl := NewDeadLetterFiles(dataDir, 0, nil)
	r := &Runner{Name: "es", Out: out, Buf: buf, DeadLetter: dl, Retry: RetryConfig{Initial: time.Millisecond}}
	runUntilDrained(t, r)
	if len(out.calls) != 2 || strings.Join(out.calls[1], ",") != `{"n":1},{"n":4}` {
		t.Fatalf("calls %q", out.calls)
	}
	lines := readDeadLetters(t, dataDir, "es")
	if len(lines) != 2 {
		t.Fatalf("dead letters: %d", len(lines))
	}
	if string(lines[0].Record) != `{"n":2}` || lines[0].Reason != "mapper_parsing_exception" || lines[0].Output != "es" || time.Since(lines[0].Time) > time.Minute {
		t.Fatalf("dead letter 0: %+v", lines[0])
	}
	if lines[1].Record != nil || string(lines[1].RecordBase64) != "not json \x00\xff" || lines[1].Reason != "bad bytes" {
		t.Fatalf("dead letter 1 (not JSON, base64): %+v", lines[1])
	}
}

func readDeadLetters(t *testing.T, dataDir, out string) []Line {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(DeadLetterDir(dataDir, out), "*.ndjson"))
	slices.Sort(files)
	var lines []Line
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var l Line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %v: %q", f, err, sc.Text())
			}
			lines = append(lines, l)
		}
		fh.Close()
	}
	return lines
}

func TestPermanentBatchAndMaxElapsed(t *testing.T) {
	dataDir := t.TempDir()
	buf := buffer.NewMemory(0, "block")
	buf.Write(context.Background(), records(3, `{"i":%d,"nested":{"a":[1, 2]}}`))
	out := &fakeOut{answer: func(call int, batch [][]byte) error {
		if call == 0 {
			return output.PermanentError(errors.New("401 unauthorized"))
		}
		return nil
	}}
	dl := NewDeadLetterFiles(dataDir, 0, nil)
	r := &Runner{Name: "dd", Out: out, Buf: buf, DeadLetter: dl}
	runUntilDrained(t, r)
	lines := readDeadLetters(t, dataDir, "dd")
	if len(lines) != 3 || string(lines[2].Record) != `{"i":2,"nested":{"a":[1,2]}}` || lines[2].Reason != "401 unauthorized" {
		t.Fatalf("dead letters %+v", lines)
	}
	// retry.max_elapsed: retryable errors give up into the dead-letter file.
	buf = buffer.NewMemory(0, "block")
	buf.Write(context.Background(), records(2, `{"j":%d}`))
	out = &fakeOut{answer: func(int, [][]byte) error { return errors.New("503") }}
	r = &Runner{Name: "dd", Out: out, Buf: buf, DeadLetter: dl, Retry: RetryConfig{Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond, MaxElapsed: 30 * time.Millisecond}}
	runUntilDrained(t, r)
	lines = readDeadLetters(t, dataDir, "dd")
	if len(lines) != 5 || !strings.HasPrefix(lines[4].Reason, "retry.max_elapsed exceeded") {
		t.Fatalf("after max_elapsed: %d lines, last %+v", len(lines), lines[len(lines)-1])
	}
}

// dead_letter.when_full: drop_oldest.
func TestDeadLetterBounded(t *testing.T) {
	dataDir := t.TempDir()
	dl := NewDeadLetterFiles(dataDir, 16<<10, nil) // files of 4 KiB
	dl.WhenFull = WhenFullDropOldest
	var evicted int
	dl.OnEvict = func(out string, n int) { evicted += n }
	rec := []byte(`{"msg":"` + strings.Repeat("x", 200) + `"}`)
	const n = 500
	for i := range n {
		if err := dl.Write("es", [][]byte{rec}, []string{fmt.Sprint("reason ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := listFiles(DeadLetterDir(dataDir, "es"))
	var total int64
	for _, f := range files {
		total += f.size
	}
	if total > 16<<10 {
		t.Fatalf("dead-letter directory holds %d bytes, above max_bytes 16KiB", total)
	}
	lines := readDeadLetters(t, dataDir, "es")
	if evicted == 0 || int64(evicted) != dl.Evicted("es") || evicted+len(lines) != n {
		t.Fatalf("evicted %d (counter %d) + kept %d != written %d", evicted, dl.Evicted("es"), len(lines), n)
	}
	// The newest are kept.
	if lines[len(lines)-1].Reason != fmt.Sprint("reason ", n-1) {
		t.Fatalf("last kept: %q", lines[len(lines)-1].Reason)
	}
	// A new writer (restart) counts what is already there.
	dl2 := NewDeadLetterFiles(dataDir, 16<<10, nil)
	dl2.WhenFull = WhenFullDropOldest
	dl2.Write("es", [][]byte{rec}, []string{"after restart"})
	files, _ = listFiles(DeadLetterDir(dataDir, "es"))
	total = 0
	for _, f := range files {
		total += f.size
	}
	if total > 16<<10 {
		t.Fatalf("after restart: %d bytes", total)
	}
	dl.Close()
	dl2.Close()
}

func TestReplay(t *testing.T) {
	dataDir := t.TempDir()
	dl := NewDeadLetterFiles(dataDir, 1<<20, nil) // files of 256 KiB
	var want []string
	for i := range 1200 {
		r := fmt.Sprintf(`{"i":%d,"pad":"%0400d"}`, i, i)
		if i%7 == 0 {
			r = fmt.Sprintf("raw line %d \xff", i)
		}
		want = append(want, r)
		if err := dl.Write("es", [][]byte{[]byte(r)}, []string{"x"}); err != nil {
			t.Fatal(err)
		}
	}
	dl.Close()
	files, _ := listFiles(DeadLetterDir(dataDir, "es"))
	if len(files) < 3 {
		t.Fatalf("%d files", len(files))
	}
	// The destination fails after two batches: the files not sent stay.
	var got []string
	calls := 0
	sent, err := Replay(dataDir, "es", func(b [][]byte) error {
		calls++
		if calls == 3 {
			return errors.New("still down")
		}
		for _, r := range b {
			got = append(got, string(r))
		}
		return nil
	})
	if err == nil || sent != len(got) {
		t.Fatalf("replay with a failure: sent %d, err %v", sent, err)
	}
	left, _ := listFiles(DeadLetterDir(dataDir, "es"))
	if len(left) == 0 || len(left) >= len(files) {
		t.Fatalf("files left after a failed replay: %d of %d (the sent ones are removed, the others kept)", len(left), len(files))
	}
	if dl.Evicted("es") != 0 {
		t.Fatal("test setup: files were evicted")
	}
	// Replay again: everything arrives; files sent before the failure are
	// gone, so nothing is lost and only the failed file's first records
	// arrive twice.
	sent2, err := Replay(dataDir, "es", func(b [][]byte) error {
		for _, r := range b {
			got = append(got, string(r))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range got {
		seen[g] = true
	}
	for _, w := range want {
		if !seen[w] {
			t.Fatalf("record %q never replayed", w)
		}
	}
	if left, _ := listFiles(DeadLetterDir(dataDir, "es")); len(left) != 0 {
		t.Fatalf("%d files left after a full replay", len(left))
	}
	t.Logf("replayed %d + %d records from %d files", sent, sent2, len(files))
}

// With source headers, Write sees the records without them and a dead
// letter names the record's source.
func TestSourceHeadersStrippedAndDeadLettered(t *testing.T) {
	e := &event.Event{Input: "app", Path: "/var/log/a.log", Pos: event.Position{Offset: 42}}
	good := append(AppendSource(nil, e), `{"ok":1}`...)
	bad := append(AppendSource(nil, e), `{"bad":1}`...)
	dir := t.TempDir()
	dl := NewDeadLetterFiles(dir, 0, nil)
	dl.SourceHeaders = true
	var written [][]byte
	out := writeFunc(func(batch [][]byte) error {
		written = append(written, batch...)
		fails := map[int]error{}
		for i, r := range batch {
			if string(r) == `{"bad":1}` {
				fails[i] = output.PermanentError(errors.New("mapping conflict"))
			}
		}
		if len(fails) > 0 {
			return &output.BatchError{Failed: fails}
		}
		return nil
	})
	r := &Runner{Name: "es", Out: out, DeadLetter: dl, SourceHeaders: true}
	if err := r.deliver(context.Background(), [][]byte{good, bad}, nil); err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || string(written[0]) != `{"ok":1}` || string(written[1]) != `{"bad":1}` {
		t.Fatalf("Write saw %q", written)
	}
	files, _ := filepath.Glob(filepath.Join(DeadLetterDir(dir, "es"), "*.ndjson"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	b, _ := os.ReadFile(files[0])
	var line Line
	if err := json.Unmarshal(b, &line); err != nil {
		t.Fatal(err)
	}
	if string(line.Source) != `{"input":"app","path":"/var/log/a.log","offset":42}` || string(line.Data()) != `{"bad":1}` || line.Reason != "mapping conflict" {
		t.Fatalf("dead letter %s", b)
	}
}

type writeFunc func(batch [][]byte) error

func (f writeFunc) Encode(dst []byte, e *event.Event) ([]byte, error) { return dst, nil }
func (f writeFunc) Close(context.Context) error                       { return nil }
func (f writeFunc) Write(_ context.Context, batch [][]byte) error     { return f(batch) }

// SourceWriter writes the headers AppendSource writes, across records that
// change input, path and offset (long paths: a two-byte length).
func TestSourceWriterMatchesAppendSource(t *testing.T) {
	long := "/var/log/" + strings.Repeat("x", 200) + ".log"
	evs := []*event.Event{
		{Input: "app", Path: "/var/log/a.log", Pos: event.Position{Offset: 0}},
		{Input: "app", Path: "/var/log/a.log", Pos: event.Position{Offset: 1234567}},
		{Input: "app", Path: long, Pos: event.Position{Offset: 9}},
		{Input: "app", Path: long, Pos: event.Position{Offset: 99999999999}},
		{Input: `in"2`, Path: "/var/log/a.log", Pos: event.Position{Offset: 5}},
		{Input: "", Path: "", Pos: event.Position{Offset: -1}},
	}
	var w SourceWriter
	var got, want []byte
	for _, e := range evs {
		got = w.Append(got, e)
		want = AppendSource(want, e)
		if string(got) != string(want) {
			t.Fatalf("%+v: got %q, want %q", e, got, want)
		}
	}
}

func BenchmarkSourceHeader(b *testing.B) {
	e := &event.Event{Input: "app", Path: "/var/log/pods/shop_checkout-7d9f_0123/app/0.log", Pos: event.Position{Offset: 123456789}}
	buf := make([]byte, 0, 256)
	b.Run("AppendSource", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendSource(buf[:0], e)
		}
	})
	b.Run("SourceWriter", func(b *testing.B) {
		var w SourceWriter
		b.ReportAllocs()
		for b.Loop() {
			buf = w.Append(buf[:0], e)
		}
	})
}
