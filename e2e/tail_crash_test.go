package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tailin "github.com/sidelog/sidelog/input/tail"
)

// Issue 3's crash test, on the real agent: the sidelog binary runs with a
// file output while a writer appends numbered lines and rotates the file by
// rename; the test kills the agent with SIGKILL at random moments, 20
// times, restarting it each time; a last run reads everything to the end.
// Every line must arrive at least once. Lines delivered twice are counted
// and must be at most the records in flight at the kills: delivered to the
// output file but not yet covered by the persisted checkpoint (read from
// the checkpoint file right after each kill).
func TestTailCrashSIGKILL(t *testing.T) {
	const kills = 20
	const width = 16 // `{"n":%9d}` + "\n": fixed width, so offsets count lines
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	out := filepath.Join(dir, "out.ndjson")
	cfg := filepath.Join(dir, "sidelog.yaml")
	os.WriteFile(cfg, []byte(`data_dir: `+dir+`/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["`+logs+`/app.log*"], poll_interval: 50ms}
outputs:
  - {name: out, type: file, path: `+out+`, batch: {timeout: 20ms}}
`), 0o644)

	// The writer: numbered lines, a rename rotation every 3,000 lines.
	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := os.OpenFile(filepath.Join(logs, "app.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		rot := 0
		for n := 0; ; n++ {
			select {
			case <-stop:
				f.Close()
				return
			default:
			}
			fmt.Fprintf(f, `{"n":%9d}`+"\n", n)
			written.Store(int64(n + 1))
			if n%3000 == 2999 {
				rot++
				f.Close()
				os.Rename(filepath.Join(logs, "app.log"), filepath.Join(logs, fmt.Sprintf("app.log.%03d", rot)))
				f, _ = os.OpenFile(filepath.Join(logs, "app.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			}
			if n%10 == 0 {
				time.Sleep(time.Millisecond) // a steady stream, not a burst
			}
		}
	}()

	inFlightBound := 0
	for k := range kills {
		cmd := exec.Command(binary(t), "run", "-c", cfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A random moment (checkpoints are written every second, so some
		// runs live longer than that): the point is not to synchronise.
		time.Sleep(time.Duration(100+rand.IntN(2400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		// Lines are read in order (one file after the other, in rotation
		// order), so the lines in flight at this kill are those past the
		// checkpoint up to the highest line delivered.
		highest := highestLine(t, out)
		checkpointed := checkpointedLines(t, filepath.Join(dir, "data", "checkpoints", "tail-app.json"), width)
		if highest+1 > checkpointed {
			inFlightBound += highest + 1 - checkpointed
		}
		t.Logf("kill %d: %d written, up to line %d delivered, %d checkpointed", k+1, written.Load(), highest, checkpointed)
	}
	close(stop)
	wg.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, binary(t), "run", "-c", cfg, "--exit-on-eof").CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}

	total := int(written.Load())
	seen := make([]int, total)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct{ N int }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("bad output line %q: %v", sc.Text(), err)
		}
		if rec.N < 0 || rec.N >= total {
			t.Fatalf("line %d was never written", rec.N)
		}
		seen[rec.N]++
	}
	dups := 0
	for n, c := range seen {
		if c == 0 {
			t.Fatalf("line %d of %d lost", n, total)
		}
		dups += c - 1
	}
	t.Logf("%d lines written, all delivered; %d delivered twice (bound: %d in flight at the kills)", total, dups, inFlightBound)
	if dups > inFlightBound {
		t.Fatalf("%d duplicates, more than the %d records in flight at the kills", dups, inFlightBound)
	}
}

// highestLine is the highest line number in the output file (-1: none).
func highestLine(t *testing.T, path string) int {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	high := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct{ N int }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.N > high {
			high = rec.N
		}
	}
	return high
}

// checkpointedLines sums the checkpointed offsets of every file: with
// fixed-width lines, the number of lines the checkpoint covers.
func checkpointedLines(t *testing.T, path string, width int) int {
	b, _, err := tailin.ReadCheckpointFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Files []struct {
			Off int64 `json:"off"`
		} `json:"files"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("checkpoint %s: %v", path, err)
	}
	sum := int64(0)
	for _, f := range doc.Files {
		sum += f.Off
	}
	return int(sum) / width
}
