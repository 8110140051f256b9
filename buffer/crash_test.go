package buffer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

// The crash test re-executes the test binary as a child that writes records
// through a disk buffer and delivers them, and kills it with SIGKILL.
const crashChildEnv = "SIDELOG_BUFFER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const crashBatch = 100 // max_events of the child's reader

// crashChild: env DIR, ACKED, DELIVERED, RUN, KILL ("point:n" to SIGKILL
// itself at the n-th call of a write-path hook, after writing the point's
// name to the file FIRED), DRAIN (read everything, then exit).
func crashChild() {
	dir := os.Getenv("DIR")
	run, _ := strconv.Atoi(os.Getenv("RUN"))
	var killPoint string
	var killAt int
	if k := os.Getenv("KILL"); k != "" {
		p, n, _ := strings.Cut(k, ":")
		killPoint = p
		killAt, _ = strconv.Atoi(n)
	}
	var hookMu sync.Mutex
	calls := 0
	hook := func(p string) {
		if p != killPoint {
			return
		}
		hookMu.Lock()
		calls++
		c := calls
		hookMu.Unlock()
		if c == killAt {
			// Tell the parent that this kill came from the hook (not from
			// its fallback timer). The name appears whole or not at all:
			// the timer may kill this process between a create and a write.
			tmp := os.Getenv("FIRED") + ".tmp"
			if err := os.WriteFile(tmp, []byte(p), 0o644); err == nil {
				os.Rename(tmp, os.Getenv("FIRED"))
			}
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	opts := []Option{WithSegmentSize(8 << 10), WithMemoryCache(4 << 10), WithHook(hook)}
	if os.Getenv("WDELAY") == "0" {
		opts = append(opts, WithWriteDelay(0)) // every record written
	}
	d, err := Open(dir, Config{MaxBytes: 1 << 20}, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	// A line torn by the previous kill must not swallow this run's first
	// line: start on a new line. Complete lines end with ';'.
	endLine(os.Getenv("DELIVERED"))
	endLine(os.Getenv("ACKED"))
	delivered, err := os.OpenFile(os.Getenv("DELIVERED"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		os.Exit(2)
	}
	ctx := context.Background()
	deliver := func(b *Batch) {
		var sb strings.Builder
		for _, r := range b.Records {
			fmt.Fprintf(&sb, "%d %s;\n", run, r)
		}
		if _, err := delivered.WriteString(sb.String()); err != nil {
			os.Exit(2)
		}
		d.Ack(b)
	}
	if os.Getenv("DRAIN") != "" {
		d.Seal()
		for {
			b, err := d.Read(ctx, Limits{MaxEvents: crashBatch})
			if errors.Is(err, ErrDrained) {
				d.Close()
				delivered.Sync()
				os.Exit(0)
			}
			if err != nil {
				os.Exit(3)
			}
			deliver(b)
		}
	}
	// Acks to the writer are recorded (and fsynced) by one goroutine.
	ackedF, err := os.OpenFile(os.Getenv("ACKED"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		os.Exit(2)
	}
	ackc := make(chan int, 4096)
	go func() {
		var buf []byte
		for id := range ackc {
			buf = strconv.AppendInt(buf[:0], int64(id), 10)
			buf = append(buf, ';', '\n')
			for more := true; more; {
				select {
				case id := <-ackc:
					buf = strconv.AppendInt(buf, int64(id), 10)
					buf = append(buf, ';', '\n')
				default:
					more = false
				}
			}
			ackedF.Write(buf)
			ackedF.Sync()
		}
	}()
	// Reader: holds two batches and acknowledges the second first.
	go func() {
		for {
			b1, err := d.Read(ctx, Limits{MaxEvents: crashBatch, Timeout: time.Millisecond})
			if err != nil {
				return
			}
			b2, err := d.Read(ctx, Limits{MaxEvents: crashBatch, Timeout: time.Millisecond})
			if err != nil {
				return
			}
			deliver(b2)
			deliver(b1)
		}
	}()
	tick := time.NewTicker(500 * time.Microsecond)
	rng := rand.New(rand.NewPCG(uint64(run), 3))
	next := run * 10_000_000
	for range tick.C {
		n := 1 + rng.IntN(40)
		recs := make([]Record, n)
		for i := range recs {
			id := next + i
			var e event.Event
			e.SetAck(event.NewAck(1, func() { ackc <- id }))
			recs[i] = Record{Data: fmt.Appendf(nil, "%d %0*d", id, 40+rng.IntN(200), 0), Ack: e.Releaser()}
		}
		next += n
		if err := d.Write(ctx, recs); err != nil {
			os.Exit(4)
		}
	}
}

func endLine(name string) {
	b, err := os.ReadFile(name)
	if err == nil && len(b) > 0 && b[len(b)-1] != '\n' {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			f.Write([]byte{'\n'})
			f.Close()
		}
	}
}

func TestCrashSIGKILL(t *testing.T) {
	root := t.TempDir()
	if k := os.Getenv("SIDELOG_CRASH_KEEP"); k != "" {
		root = k // keep the files for a post-mortem
	}
	dir := filepath.Join(root, "buffer", "out")
	acked := filepath.Join(root, "acked")
	delivered := filepath.Join(root, "delivered")
	fired := filepath.Join(root, "fired")
	rng := rand.New(rand.NewPCG(42, 42))
	points := []string{"fsync", "roll", "write", "ledger", "remove"}
	const runs = 60
	hookKills := map[string]int{}  // kills configured at a hook
	hookFired := map[string]int{}  // kills that the hook itself made
	timerKills := map[string]int{} // hook kills that the fallback timer made
	for run := 1; run <= runs+1; run++ {
		drain := run == runs+1
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		env := append(os.Environ(), crashChildEnv+"=1", "DIR="+dir, "ACKED="+acked, "DELIVERED="+delivered, "RUN="+strconv.Itoa(run), "FIRED="+fired)
		if err := os.Remove(fired); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		kill := ""
		if drain {
			env = append(env, "DRAIN=1")
		} else if run%2 == 0 {
			kill = fmt.Sprintf("%s:%d", points[(run/2)%len(points)], 1+rng.IntN(40))
			env = append(env, "KILL="+kill)
		}
		// Every other hook run writes every record at once (no write
		// delay): the write path's points are reached in each of those.
		// The other runs hold records back, so that most are delivered
		// before they are written and never written (holes in the files).
		writeAll := kill != "" && run%4 == 0
		if writeAll {
			env = append(env, "WDELAY=0")
		}
		cmd.Env = env
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var timer *time.Timer
		if !drain {
			after := time.Duration(20+rng.IntN(200)) * time.Millisecond
			if writeAll {
				// The child kills itself at the hook; the timer is a
				// fallback, counted apart (a hook called fewer times).
				after = 10 * time.Second
			}
			pid := cmd.Process.Pid
			timer = time.AfterFunc(after, func() { syscall.Kill(pid, syscall.SIGKILL) })
		}
		err := cmd.Wait()
		if timer != nil {
			timer.Stop()
		}
		if drain {
			if err != nil {
				t.Fatalf("drain run: %v", err)
			}
			continue
		}
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d: child ended with %v, not SIGKILL", run, err)
		}
		if kill != "" {
			point := strings.Split(kill, ":")[0]
			hookKills[point]++
			switch b, err := os.ReadFile(fired); {
			case err == nil && string(b) == point:
				hookFired[point]++
			case errors.Is(err, os.ErrNotExist):
				timerKills[point]++
			default:
				t.Fatalf("run %d: fired file: %q, %v (want %q)", run, b, err, point)
			}
		}
	}
	// Check: every record acknowledged to the writer was delivered; count
	// duplicates by the run that delivered them again.
	ackedIDs := readIDs(t, acked)
	type del struct{ run, id int }
	var dels []del
	f, err := os.Open(delivered)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, complete := strings.CutSuffix(sc.Text(), ";")
		fs := strings.Fields(line)
		if !complete || len(fs) < 2 {
			continue // a line torn by the kill (its batch was not acknowledged)
		}
		r, _ := strconv.Atoi(fs[0])
		id, err := strconv.Atoi(fs[1])
		if err != nil {
			continue
		}
		dels = append(dels, del{r, id})
	}
	f.Close()
	seen := map[int]bool{}
	dupsByRun := map[int]int{}
	total := 0
	for _, d := range dels {
		if seen[d.id] {
			dupsByRun[d.run]++
			total++
		}
		seen[d.id] = true
	}
	var lost []int
	for _, id := range ackedIDs {
		if !seen[id] {
			lost = append(lost, id)
		}
	}
	t.Logf("%d kills (%d configured at hooks: %v; made by the hook: %v; by the fallback timer: %v), %d records acknowledged to the writer, %d deliveries, %d duplicates",
		runs, runs/2, hookKills, hookFired, timerKills, len(ackedIDs), len(dels), total)
	for _, p := range points {
		if hookFired[p] == 0 {
			t.Errorf("no kill at hook %q actually fired (%d configured): that point of the write path was never crashed in", p, hookKills[p])
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged records never delivered, e.g. %v", len(lost), lost[:min(10, len(lost))])
	}
	if len(ackedIDs) < 5000 {
		t.Fatalf("only %d records acknowledged: the test exercised too little", len(ackedIDs))
	}
	// Duplicates come from the batches in flight at the kill: the reader
	// holds at most two batches.
	for run, n := range dupsByRun {
		if n > 2*crashBatch {
			t.Errorf("run %d delivered %d records again, more than the %d in flight at the previous kill", run, n, 2*crashBatch)
		}
	}
}

func readIDs(t *testing.T, name string) []int {
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, complete := strings.CutSuffix(sc.Text(), ";")
		if !complete {
			continue // torn by the kill
		}
		id, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		ids = append(ids, id)
	}
	return ids
}
