package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes (the agent gives
// no other signal that a line was written).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fileHas(path, s string) func() bool {
	return func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), s)
	}
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "logs", "app.log")
	out1, out2 := filepath.Join(dir, "out1.ndjson"), filepath.Join(dir, "out2.ndjson")
	cfgPath := filepath.Join(dir, "sidelog.yaml")
	config := func(out string) string {
		return `data_dir: ` + dir + `/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["` + dir + `/logs/*.log"], poll_interval: 50ms}
outputs:
  - {name: out, type: file, path: ` + out + `, batch: {timeout: 10ms}}
`
	}
	writeFile(t, cfgPath, config(out1))
	appendLine(t, logf, `{"n":1}`)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := sidelog(ctx, "run", "-c", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logLines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logLines <- sc.Text()
		}
		close(logLines)
	}()
	waitLog := func(s string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-logLines:
				if !ok {
					t.Fatalf("agent exited before logging %q", s)
				}
				if strings.Contains(l, s) {
					return
				}
			case <-timeout:
				t.Fatalf("no log line with %q", s)
			}
		}
	}
	waitFor(t, "line 1 in out1", fileHas(out1, `{"n":1}`))

	// An invalid config is refused; the old pipeline keeps running.
	writeFile(t, cfgPath, config(out2)+"bogus_key: 1\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("config reload refused")
	appendLine(t, logf, `{"n":2}`)
	waitFor(t, "line 2 in out1", fileHas(out1, `{"n":2}`))

	// A valid config is applied: new lines go to out2, none is lost.
	writeFile(t, cfgPath, config(out2))
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("config reloaded")
	appendLine(t, logf, `{"n":3}`)
	waitFor(t, "line 3 in out2", fileHas(out2, `{"n":3}`))
	if fileHas(out1, `{"n":3}`)() {
		t.Fatal("line 3 went to the old output")
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
