package tail

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
)

// TestHelperProcess is the child of TestCrashKill9: it tails the logs into
// an output file, appending each batch, fsyncing, then releasing the
// events (the file output's contract). It is not a test by itself: without
// the environment variable it returns at once.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("TAIL_CRASH_CHILD") != "1" {
		return
	}
	logs, data, out := os.Getenv("TAIL_CRASH_LOGS"), os.Getenv("TAIL_CRASH_DATA"), os.Getenv("TAIL_CRASH_OUT")
	cfg := testConfig(filepath.Join(logs, "app.log*"))
	cfg.ExitOnEOF = os.Getenv("TAIL_CRASH_EOF") == "1"
	tl, err := New(cfg, input.Env{Name: "crash", DataDir: data})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	var buf []byte
	emit := func(batch []*event.Event) error {
		buf = buf[:0]
		for _, e := range batch {
			p := e.Pos
			buf = fmt.Appendf(buf, "%d %d %d %d %s\n", p.FileID.Ino, p.FileID.Fingerprint, p.Generation, p.Offset, e.Raw)
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		for _, e := range batch {
			e.Done()
		}
		return nil
	}
	if err := tl.Run(ctx, emit); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

type record struct {
	ino, fp   uint64
	gen       uint32
	off       int64
	line      string
	delivered int // index of the record in the output
}

func readRecords(t *testing.T, path string) []record {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) != 5 {
			continue // a torn last write: it was never released
		}
		var r record
		r.ino, _ = strconv.ParseUint(parts[0], 10, 64)
		r.fp, _ = strconv.ParseUint(parts[1], 10, 64)
		g, _ := strconv.ParseUint(parts[2], 10, 32)
		r.gen = uint32(g)
		r.off, _ = strconv.ParseInt(parts[3], 10, 64)
		r.line = parts[4]
		out = append(out, r)
	}
	return out
}

// inFlight counts the delivered records that the persisted checkpoint does
// not cover: what a restart reads again.
func inFlight(t *testing.T, ckpt string, recs []record) int {
	t.Helper()
	doc, _, err := loadCheckpoints(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	type k struct{ ino, fp uint64 }
	pos := map[k]checkpoint{}
	for _, c := range doc.Files {
		pos[k{c.Ino, c.FP}] = c
	}
	n := 0
	for _, r := range recs {
		c, ok := pos[k{r.ino, r.fp}]
		if !ok || c.Gen < r.gen || c.Gen == r.gen && r.off > c.Offset {
			n++
		}
	}
	return n
}

func TestCrashKill9(t *testing.T) {
	root := t.TempDir()
	logs, data := filepath.Join(root, "logs"), filepath.Join(root, "data")
	out := filepath.Join(root, "out.txt")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	ckpt := checkpointPath(data, "crash")
	child := func(eof bool) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "TAIL_CRASH_CHILD=1", "TAIL_CRASH_LOGS="+logs,
			"TAIL_CRASH_DATA="+data, "TAIL_CRASH_OUT="+out)
		if eof {
			cmd.Env = append(cmd.Env, "TAIL_CRASH_EOF=1")
		}
		cmd.Stderr = os.Stderr
		return cmd
	}

	// the writer: numbered lines at a steady rate, a rename rotation every
	// 400 lines (rotated files keep matching app.log*)
	p := filepath.Join(logs, "app.log")
	w := newWriter(t, p)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		rot := 0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			w.write(10)
			if w.n/400 > rot {
				rot = w.n / 400
				if err := os.Rename(p, fmt.Sprintf("%s.%d", p, rot)); err != nil {
					t.Error(err)
					return
				}
				w.write(3) // the application has not reopened yet
				w.reopen()
			}
		}
	}()

	const kills = 24
	bound := 0
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := 0; i < kills; i++ {
		cmd := child(false)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond) // a random moment, not synchronisation
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		bound += inFlight(t, ckpt, readRecords(t, out))
	}
	close(stop)
	wg.Wait()
	w.close()

	// a last run reads everything to the end and exits by itself
	cmd := child(true)
	if err := cmd.Run(); err != nil {
		t.Fatalf("final run: %v", err)
	}
	recs := readRecords(t, out)
	counts := map[string]int{}
	for _, r := range recs {
		counts[r.line]++
	}
	missing, dups := 0, 0
	for i := 1; i <= w.n; i++ {
		c := counts[numLine(i)]
		if c == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("line %d never arrived", i)
			}
		}
		if c > 1 {
			dups += c - 1
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d lines lost", missing, w.n)
	}
	if len(counts) != w.n {
		t.Fatalf("%d distinct lines for %d written", len(counts), w.n)
	}
	t.Logf("%d kills, %d lines written, %d delivered, %d delivered twice (bound: %d records in flight summed over the kills)",
		kills, w.n, len(recs), dups, bound)
	if dups > bound {
		t.Fatalf("%d duplicates, more than the %d records in flight at the kills", dups, bound)
	}
}
