package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/internal/syncbuf"
	"github.com/sidelog/sidelog/output"
)

// keyedOut delivers records "<key>:<n>"; records of a key in blocked fail
// with BlockedOn(key). It signals each delivered record.
type keyedOut struct {
	mu        sync.Mutex
	blocked   map[string]bool
	got       map[string]int
	attempts  map[string]int // blocked attempts per key
	delivered chan string
}

func (k *keyedOut) write(batch [][]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	failed := map[int]error{}
	for i, r := range batch {
		key, _, _ := strings.Cut(string(r), ":")
		if k.blocked[key] {
			k.attempts[key]++
			failed[i] = BlockedOn(key, "cluster_block_exception", fmt.Errorf("index [%s] blocked by: [FORBIDDEN/8/index write (api)]", key))
			continue
		}
		k.got[string(r)]++
		select {
		case k.delivered <- string(r):
		default:
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &output.BatchError{Failed: failed}
}

// funcOut is an output whose Write is a func.
type funcOut struct{ write func([][]byte) error }

func (f *funcOut) Encode(dst []byte, _ *event.Event) ([]byte, error) { return dst, nil }
func (f *funcOut) Close(context.Context) error                       { return nil }
func (f *funcOut) Write(_ context.Context, b [][]byte) error         { return f.write(b) }

// A blocked key parks its records (kept, retried, never dead-lettered)
// while the records of another key keep flowing through the same runner
// with one batch in flight; the state shows in Blocks, the gauge and two
// log lines, and ends when the block is lifted.
func TestBlockedKeyParksOthersFlow(t *testing.T) {
	dataDir := t.TempDir()
	var logs syncbuf.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	k := &keyedOut{blocked: map[string]bool{"a": true}, got: map[string]int{}, attempts: map[string]int{}, delivered: make(chan string, 1<<16)}
	buf := buffer.NewMemory(0, "block")
	const n = 200
	for i := range n {
		buf.Write(context.Background(), []buffer.Record{{Data: []byte(fmt.Sprintf("a:%d", i))}, {Data: []byte(fmt.Sprintf("b:%d", i))}})
	}
	bs := NewBlockState(log)
	dl := NewDeadLetterFiles(dataDir, 0, nil)
	r := &Runner{Name: "es", Out: &funcOut{write: k.write}, Buf: buf, Batch: BatchConfig{MaxEvents: 20, Timeout: time.Millisecond},
		Retry: RetryConfig{Initial: time.Millisecond, Max: 20 * time.Millisecond, MaxElapsed: time.Millisecond}, DeadLetter: dl, Blocks: bs, Logger: log, MaxParked: 32}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	// Every b record arrives while a is blocked (20 batches, 1 in flight:
	// the a records of each batch park).
	gotB := 0
	for gotB < n {
		select {
		case <-k.delivered:
			gotB++
		case <-ctx.Done():
			t.Fatalf("only %d of %d records of the other key arrived while a was blocked", gotB, n)
		}
	}
	blocks := bs.Blocks("es")
	if len(blocks) != 1 || blocks[0].Key != "a" || blocks[0].Reason != "cluster_block_exception" || !strings.Contains(blocks[0].Message, "FORBIDDEN/8") || blocks[0].Since.IsZero() {
		t.Fatalf("blocks while blocked: %+v", blocks)
	}
	if g := bs.Gauge()["es"]["cluster_block_exception"]; g != 1 {
		t.Fatalf("gauge while blocked: %d", g)
	}
	// Retried while blocked (more attempts than records), past max_elapsed.
	for {
		k.mu.Lock()
		a := k.attempts["a"]
		k.mu.Unlock()
		if a > 2*n {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("blocked records are not retried")
		}
		time.Sleep(5 * time.Millisecond) // polling the fake's counter; no signal to wait on
	}
	k.mu.Lock()
	k.blocked["a"] = false
	k.mu.Unlock()
	buf.Seal()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for _, key := range []string{"a", "b"} {
			if c := k.got[fmt.Sprintf("%s:%d", key, i)]; c != 1 {
				t.Fatalf("%s:%d delivered %d times", key, i, c)
			}
		}
	}
	if len(bs.Blocks("es")) != 0 || bs.Gauge()["es"]["cluster_block_exception"] != 0 {
		t.Fatalf("still blocked after the block was lifted: %+v", bs.Blocks("es"))
	}
	if _, err := os.Stat(DeadLetterDir(dataDir, "es")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("something was dead-lettered: %v", err)
	}
	l := logs.String()
	if strings.Count(l, `"msg":"output blocked`) != 1 || strings.Count(l, `"msg":"output unblocked"`) != 1 || !strings.Contains(l, `"key":"a"`) {
		t.Fatalf("log lines:\n%s", l)
	}
}

// A whole-output block with the parking places full pauses the output;
// it resumes when the cause is fixed.
func TestBlockedWholeOutput(t *testing.T) {
	var blocked atomic.Bool
	blocked.Store(true)
	var calls atomic.Int64
	lifted := make(chan struct{})
	var once sync.Once
	out := &funcOut{write: func(batch [][]byte) error {
		if blocked.Load() {
			if calls.Add(1) == 20 {
				once.Do(func() { close(lifted) })
			}
			return Blocked("security_exception", errors.New("action [indices:data/write/bulk] is unauthorized"))
		}
		return nil
	}}
	buf := buffer.NewMemory(0, "block")
	buf.Write(context.Background(), records(50, "r%d"))
	bs := NewBlockState(nil)
	r := &Runner{Name: "o", Out: out, Buf: buf, Batch: BatchConfig{MaxEvents: 10}, MaxParked: 2,
		Retry: RetryConfig{Initial: time.Millisecond, Max: 2 * time.Millisecond}, Blocks: bs}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-lifted:
	case <-ctx.Done():
		t.Fatal("no retries")
	}
	if b := bs.Blocks("o"); len(b) != 1 || b[0].Key != "" || b[0].Reason != "security_exception" {
		t.Fatalf("blocks %+v", b)
	}
	if st := buf.Stats(); st.InFlight > 3 {
		t.Fatalf("%d batches in flight with 1 slot and 2 parking places", st.InFlight)
	}
	blocked.Store(false)
	buf.Seal()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := buf.Stats(); st.Records != 0 {
		t.Fatalf("%d records left", st.Records)
	}
	if len(bs.Blocks("o")) != 0 {
		t.Fatal("still blocked")
	}
}

// dead_letter.when_full: block: a full dead-letter directory pauses the
// output as blocked (reason dead_letter_full), nothing is lost; replaying
// the files (here with the agent running) ends the block.
func TestDeadLetterFullBlocks(t *testing.T) {
	dataDir := t.TempDir()
	dl := NewDeadLetterFiles(dataDir, 2<<10, nil)
	out := &funcOut{write: func(batch [][]byte) error {
		return output.PermanentError(errors.New("mapper_parsing_exception: failed to parse"))
	}}
	buf := buffer.NewMemory(0, "block")
	rec := `{"i":%03d,"pad":"` + strings.Repeat("x", 100) + `"}`
	buf.Write(context.Background(), records(40, rec))
	bs := NewBlockState(nil)
	r := &Runner{Name: "es", Out: out, Buf: buf, Batch: BatchConfig{MaxEvents: 1}, DeadLetter: dl, Blocks: bs,
		Retry: RetryConfig{Initial: time.Millisecond, Max: time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for len(bs.Blocks("es")) == 0 {
		if ctx.Err() != nil {
			t.Fatal("never blocked")
		}
		time.Sleep(2 * time.Millisecond) // no signal: the block is the observable
	}
	b := bs.Blocks("es")[0]
	if b.Reason != "dead_letter_full" || b.Key != "dead-letter" || !strings.Contains(b.Message, "dead_letter.max_bytes") {
		t.Fatalf("block %+v", b)
	}
	if lines := readDeadLetters(t, dataDir, "es"); len(lines) >= 40 || dirBytes(DeadLetterDir(dataDir, "es")) > 2<<10 {
		t.Fatalf("%d lines written past max_bytes", len(lines))
	}
	// Replay while running: every replayed record goes back through a
	// sender that accepts it, the files are removed, the block ends.
	replayed := 0
	buf.Seal()
	for {
		n, err := dl.Replay("es", func(batch [][]byte) error { replayed += len(batch); return nil })
		if err != nil {
			t.Fatal(err)
		}
		_ = n
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			n, _ := dl.Replay("es", func(batch [][]byte) error { replayed += len(batch); return nil })
			_ = n
			if replayed != 40 {
				t.Fatalf("replayed %d of 40 records", replayed)
			}
			if len(bs.Blocks("es")) != 0 {
				t.Fatal("still blocked")
			}
			return
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the block never ended")
		}
	}
}

// A bulk record (an action line and a document line) is written readable:
// "action" and "record" as JSON; replay sends the two lines again.
func TestDeadLetterReadableBulkRecord(t *testing.T) {
	dataDir := t.TempDir()
	dl := NewDeadLetterFiles(dataDir, 0, nil)
	rec := "{\"create\":{\"_index\":\"logs-app-default\",\"_id\":\"abc\"}}\n{\"@timestamp\":\"2026-12-02T10:00:00Z\",\"n\":\"x\"}\n"
	if err := dl.Write("es", [][]byte{[]byte(rec)}, []string{"mapper_parsing_exception: failed to parse field [n] of type [long]"}); err != nil {
		t.Fatal(err)
	}
	dl.Close()
	raw, _ := os.ReadFile(mustOnlyFile(t, DeadLetterDir(dataDir, "es")))
	for _, want := range []string{`"action":{"create":{"_index":"logs-app-default","_id":"abc"}}`, `"record":{"@timestamp":"2026-12-02T10:00:00Z","n":"x"}`, `"reason":"mapper_parsing_exception`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Fatalf("missing %s in %s", want, raw)
		}
	}
	var got []string
	if _, err := Replay(dataDir, "es", func(b [][]byte) error {
		for _, r := range b {
			got = append(got, string(r))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != rec {
		t.Fatalf("replayed %q, want %q", got, rec)
	}
}

func mustOnlyFile(t *testing.T, dir string) string {
	t.Helper()
	files, err := listFiles(dir)
	if err != nil || len(files) != 1 {
		t.Fatalf("files in %s: %v %v", dir, files, err)
	}
	return files[0].path
}

// Parked batches of one blocked key do not each retry: one leads (retries
// at its backoff), the others wait for it, and all go through at once when
// it does. With the defaults, more batches than the former 16 parking
// places wait while the other key flows.
func TestBlockedKeyRetriesCoalesced(t *testing.T) {
	var mu sync.Mutex
	blocked := true
	tries := map[string]int{} // first record of a blocked attempt → attempts
	got := map[string]int{}
	leaderRetried := make(chan struct{})
	var once sync.Once
	out := &funcOut{write: func(batch [][]byte) error {
		mu.Lock()
		defer mu.Unlock()
		failed := map[int]error{}
		first := ""
		for i, r := range batch {
			if strings.HasPrefix(string(r), "a:") && blocked {
				if first == "" {
					first = string(r)
				}
				failed[i] = BlockedOn("a", "cluster_block_exception", errors.New("index [a] blocked by: [FORBIDDEN/8/index write (api)]"))
				continue
			}
			got[string(r)]++
		}
		if first != "" {
			tries[first]++
			if tries[first] == 6 {
				once.Do(func() { close(leaderRetried) })
			}
		}
		if len(failed) == 0 {
			return nil
		}
		return &output.BatchError{Failed: failed}
	}}
	buf := buffer.NewMemory(0, "block")
	const batches = 40
	for i := range batches * 5 {
		buf.Write(context.Background(), []buffer.Record{{Data: []byte(fmt.Sprintf("a:%d", i))}, {Data: []byte(fmt.Sprintf("b:%d", i))}})
	}
	bs := NewBlockState(nil)
	// Backoff 1 ms doubling up to 10 s: the leader's 6th attempt comes
	// after ~60 ms; a follower waits up to 10 s unless woken.
	r := &Runner{Name: "es", Out: out, Buf: buf, Batch: BatchConfig{MaxEvents: 10, Timeout: time.Millisecond},
		Retry: RetryConfig{Initial: time.Millisecond, Max: 10 * time.Second}, Blocks: bs}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-leaderRetried:
	case <-ctx.Done():
		t.Fatal("the blocked records were not retried")
	}
	// Wait until every batch was tried once (and parked): the b records
	// of all 40 batches went through meanwhile.
	for {
		mu.Lock()
		n, bs := len(tries), 0
		for k := range got {
			if strings.HasPrefix(k, "b:") {
				bs++
			}
		}
		mu.Unlock()
		if n == batches && bs == batches*5 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d batches tried, %d b records delivered", n, batches, bs)
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	retrying := 0
	for _, n := range tries {
		if n > 2 {
			retrying++
		}
	}
	blocked = false
	mu.Unlock()
	if retrying != 1 {
		t.Errorf("%d batches retried more than twice while blocked, want 1 (the leader): %v", retrying, tries)
	}
	buf.Seal()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range batches * 5 {
		for _, k := range []string{"a", "b"} {
			if n := got[fmt.Sprintf("%s:%d", k, i)]; n != 1 {
				t.Fatalf("%s:%d delivered %d times", k, i, n)
			}
		}
	}
}

// MaxParkedBytes bounds what waits aside: past it the output pauses.
func TestBlockedParkedBytesBound(t *testing.T) {
	out := &funcOut{write: func(batch [][]byte) error {
		return Blocked("security_exception", errors.New("unauthorized"))
	}}
	buf := buffer.NewMemory(0, "block")
	buf.Write(context.Background(), records(100, "r%03d")) // 4 bytes each
	r := &Runner{Name: "o", Out: out, Buf: buf, Batch: BatchConfig{MaxEvents: 10, Timeout: time.Millisecond}, MaxParkedBytes: 100,
		Retry: RetryConfig{Initial: time.Millisecond, Max: 2 * time.Millisecond}, Blocks: NewBlockState(nil)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// 40-byte batches: two fit in 100 bytes, plus the one holding the
	// slot; no more are ever read.
	deadline := time.Now().Add(10 * time.Second)
	for buf.Stats().InFlight < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for range 50 { // give a wrong implementation time to read more
		if n := buf.Stats().InFlight; n > 3 {
			t.Fatalf("%d batches in flight: 2 parked (100 bytes) + 1 slot allowed", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if n := buf.Stats().InFlight; n != 3 {
		t.Fatalf("%d batches in flight, want 3", n)
	}
	cancel()
	<-done
}
